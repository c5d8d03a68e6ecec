/**
 * The browser's copy of the job list, kept current by the server's long-poll
 * change feed (`GET jobs?wait_for=VERSION`).
 *
 * One request is open at a time and the server answers it only when the
 * store changed (or after ~30 s), so an idle page costs nothing; a change
 * reaches the page as soon as the server sees it. A `Poll` drives the feed:
 * it backs off after errors and stands by while the page is hidden.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  IJob,
  IJobList,
  JobsApi,
  WIRE_SCHEMA_VERSION,
  isFinished
} from './api';

/** Options for a `JobsModel`. */
export interface IJobsModelOptions {
  api: JobsApi;
  /**
   * First delay after a failed request, and the shortest time between two
   * requests when the first brought no change, in milliseconds.
   */
  minBackoff?: number;
  /** Longest delay between retries, in milliseconds. */
  maxBackoff?: number;
}

/** Every job in the store, as last reported by the server. */
export class JobsModel implements IDisposable {
  constructor(options: IJobsModelOptions) {
    this.api = options.api;
    this._minInterval = Math.max(1, options.minBackoff ?? 1000);
    this._poll = new Poll<IJobList>({
      name: 'jobmagic:jobs',
      auto: false,
      factory: () => this._ask(),
      standby: 'when-hidden'
    });
    // Set after construction: the constructor raises `max` to at least 30 s.
    this._poll.frequency = {
      interval: this._minInterval,
      backoff: 2,
      max: Math.max(this._minInterval, options.maxBackoff ?? 30000)
    };
  }

  readonly api: JobsApi;

  /** Emitted whenever the job list changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** All jobs, by ascending id. */
  get jobs(): ReadonlyArray<IJob> {
    return this._jobs;
  }

  /** How many finished jobs the store holds (the page may hold fewer). */
  get finishedTotal(): number {
    return this._jobs.filter(job => isFinished(job.state)).length;
  }

  /** The number of jobs whose process is running. */
  get runningCount(): number {
    return this._jobs.filter(job => job.state === 'running').length;
  }

  /** Whether the model has heard from the server at least once. */
  get loaded(): boolean {
    return this._version !== undefined;
  }

  get isDisposed(): boolean {
    return this._abort.signal.aborted;
  }

  /** A job by id, if the store has it. */
  job(id: number): IJob | undefined {
    return this._byId.get(id);
  }

  /**
   * A job's runtime in seconds now: the server's figure plus the time since
   * the server sent it, for running jobs (so clock skew does not matter).
   */
  runtime(job: IJob, now = Date.now()): number | null {
    if (job.runtime === null || job.runtime === undefined) {
      return null;
    }
    if (job.state !== 'running') {
      return job.runtime;
    }
    return job.runtime + Math.max(0, now - this._receivedAt) / 1000;
  }

  /** Start following the change feed (once). */
  start(): void {
    if (!this._started && !this.isDisposed) {
      this._started = true;
      void this._poll.start();
    }
  }

  /** Fetch the job list now (the feed keeps it current anyway). */
  async refresh(): Promise<void> {
    this._apply(await this.api.listJobs(undefined, this._abort.signal));
  }

  /**
   * Ask the server to stop a job; the feed reports the new state. A job that
   * finished meanwhile is not an error.
   */
  async stop(id: number): Promise<void> {
    await unlessEnded(this.api.stopJob(id));
  }

  /**
   * Ask the server to pause a running job (SIGSTOP to its process group); the
   * feed reports the new state. A job that ended meanwhile is not an error.
   */
  async pause(id: number): Promise<void> {
    await unlessEnded(this.api.pauseJob(id));
  }

  /**
   * Ask the server to let a paused job go on (SIGCONT); the feed reports the
   * new state. A job that ended meanwhile is not an error.
   */
  async resume(id: number): Promise<void> {
    await unlessEnded(this.api.resumeJob(id));
  }

  /**
   * Start an ended job again as a new job; resolves with the new job. Rejects
   * with the server's `ResponseError` when it cannot (the message says why).
   */
  restart(id: number): Promise<IJob> {
    return this.api.restartJob(id);
  }

  /** Stop following the feed and drop pending requests. */
  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._abort.abort();
    this._poll.dispose();
    Signal.clearData(this);
  }

  /**
   * One request of the feed, the poll's factory. It schedules the next one
   * itself when it succeeds; after a failure the poll retries with back-off.
   */
  private async _ask(): Promise<IJobList> {
    const tick = this._poll.tick;
    const asked = this._version;
    const sent = Date.now();
    let list: IJobList;
    try {
      list = await this.api.listJobs(asked, this._abort.signal);
    } catch (reason) {
      if (!this.isDisposed) {
        console.warn('jobmagic: job list unavailable, retrying', reason);
      }
      throw reason;
    }
    this._apply(list);
    if (this._poll.tick === tick) {
      // After a change, ask again at once: the server holds the request until
      // the next one. An answer without a change came after the server's wait,
      // or at once from a server that does not long-poll: then keep the
      // minimum interval rather than spin.
      const changed = asked === undefined || list.version !== asked;
      const elapsed = Date.now() - sent;
      void this._poll.schedule({
        interval: changed ? 0 : Math.max(0, this._minInterval - elapsed),
        payload: list,
        phase:
          this._poll.state.phase === 'rejected' ? 'reconnected' : 'resolved'
      });
    }
    return list;
  }

  private _apply(list: IJobList): void {
    if (this.isDisposed) {
      return;
    }
    if (list.schema_version !== WIRE_SCHEMA_VERSION && !this._warnedSchema) {
      this._warnedSchema = true;
      console.warn(
        `jobmagic: the server sends wire schema ${list.schema_version}, this page ` +
          `understands ${WIRE_SCHEMA_VERSION}; reload the page after an upgrade`
      );
    }
    this._receivedAt = Date.now();
    this._version = list.version;
    const jobs = [...list.jobs].sort((a, b) => a.id - b.id);
    const same =
      jobs.length === this._jobs.length &&
      jobs.every((job, i) => sameJob(job, this._jobs[i]));
    this._jobs = jobs;
    this._byId = new Map(jobs.map(job => [job.id, job]));
    if (!same) {
      this._changed.emit();
    }
  }

  private readonly _minInterval: number;
  private readonly _poll: Poll<IJobList>;
  private readonly _abort = new AbortController();
  private readonly _changed = new Signal<this, void>(this);
  private _started = false;
  private _warnedSchema = false;
  private _version: number | undefined = undefined;
  private _receivedAt = Date.now();
  private _jobs: IJob[] = [];
  private _byId = new Map<number, IJob>();
}

/**
 * Waits for `request`; a 409 (the job has ended, or is not in a state the
 * action applies to any more) counts as done: the feed shows what it is now.
 */
async function unlessEnded(request: Promise<unknown>): Promise<void> {
  try {
    await request;
  } catch (reason) {
    const conflict =
      reason instanceof ServerConnection.ResponseError &&
      reason.response.status === 409;
    if (!conflict) {
      throw reason;
    }
  }
}

/** Whether two reports of a job differ in anything but the running clock. */
function sameJob(a: IJob, b: IJob | undefined): boolean {
  if (!b || a.id !== b.id || a.state !== b.state) {
    return false;
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  keys.delete('runtime');
  for (const key of keys) {
    const k = key as keyof IJob;
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) {
      return false;
    }
  }
  return isFinished(a.state) ? a.runtime === b.runtime : true;
}
