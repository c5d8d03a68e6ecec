/**
 * The browser's copy of the job list, kept current by the server's job-change
 * events (pushed on jupyter_server's event bus), not by asking.
 *
 * The first load asks for the unfinished jobs and the newest finished ones
 * (two `GET jobs`), and notes the store's revision. Then each event says what
 * changed between two revisions, and is applied in place. When the model
 * cannot apply one (it missed an event in between, the server had too many
 * changes to send, the store is another one) or the event socket reconnects
 * (a server restart: what was sent meanwhile is lost), it asks once for what
 * changed since the revision it holds (`GET jobs?since=`), and loads afresh
 * only when that is another store's or more than `CATCH_UP_LIMIT` jobs. An
 * idle page sends no request at all.
 *
 * It holds every unfinished job and a bounded number of finished ones: the
 * newest at the first load, then those it learned of since (a job that ends
 * while the page is open), the `finishedLimit` it learned of last, plus any
 * job someone asked `job(id)` for (a log the page opened).
 */
import { Event, ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import {
  FINISHED_STATES,
  IJob,
  IJobChanges,
  IJobList,
  JOB_CHANGES_SCHEMA_ID,
  JobState,
  JobsApi,
  UNFINISHED_STATES,
  WIRE_SCHEMA_VERSION,
  isFinished
} from './api';
import { IEventSource } from './eventbus';

/** Finished jobs a model holds by default (besides the ones opened). */
export const DEFAULT_FINISHED_LIMIT = 50;
/** The most finished jobs opened by `job(id)` a model keeps besides those. */
const MAX_OPENED = 100;
/**
 * The most changes a catch-up takes; with more, the model loads afresh (two
 * requests of bounded size) rather than download every changed job.
 */
const CATCH_UP_LIMIT = 200;

/** Options for a `JobsModel`. */
export interface IJobsModelOptions {
  api: JobsApi;
  /**
   * The server's event bus. The model takes it over (starts and disposes it).
   * Without one, the model loads only when `refresh()` is called.
   */
  events?: IEventSource;
  /** How many finished jobs to hold (default `DEFAULT_FINISHED_LIMIT`). */
  finishedLimit?: number;
}

/** The unfinished jobs of the store and its latest finished ones. */
export class JobsModel implements IDisposable {
  constructor(options: IJobsModelOptions) {
    this.api = options.api;
    this._events = options.events ?? null;
    this._finishedLimit = Math.max(
      0,
      options.finishedLimit ?? DEFAULT_FINISHED_LIMIT
    );
  }

  readonly api: JobsApi;

  /** Emitted whenever the jobs or the counts changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The unfinished jobs and the finished ones held, by ascending id. */
  get jobs(): ReadonlyArray<IJob> {
    if (this._sorted === null) {
      this._sorted = [...this._unfinished.values(), ...this._finished.values()];
      this._sorted.sort((a, b) => a.id - b.id);
    }
    return this._sorted;
  }

  /** The number of jobs whose process is running. */
  get runningCount(): number {
    let count = 0;
    for (const job of this._unfinished.values()) {
      count += job.state === 'running' ? 1 : 0;
    }
    return count;
  }

  /** How many jobs the store has in each state (all 0 until loaded). */
  get counts(): Readonly<Record<JobState, number>> {
    return this._counts;
  }

  /** How many finished jobs the store has (most of them not held here). */
  get finishedTotal(): number {
    return FINISHED_STATES.reduce((sum, state) => sum + this._counts[state], 0);
  }

  /** Whether the model has heard from the server at least once. */
  get loaded(): boolean {
    return this._version !== undefined;
  }

  get isDisposed(): boolean {
    return this._abort.signal.aborted;
  }

  /**
   * A job by id, if the model holds it. A finished job it does not hold
   * (an old job whose log is open) is asked for once, and held from then on:
   * `changed` is emitted when it arrives.
   */
  job(id: number): IJob | undefined {
    const job = this._unfinished.get(id) ?? this._finished.get(id);
    if (job === undefined && this.loaded && !this._asked.has(id)) {
      this._asked.add(id);
      void this._fetchOne(id);
    }
    return job;
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
    const received = this._receivedAt.get(job) ?? now;
    return job.runtime + Math.max(0, now - received) / 1000;
  }

  /** Start following the server's events (once); the first load follows. */
  start(): void {
    if (this._started || this.isDisposed) {
      return;
    }
    this._started = true;
    const events = this._events;
    if (events === null) {
      this._syncSoon();
      return;
    }
    events.stream.connect(this._onEmission);
    // Loading once the socket is open: nothing sent after the load is missed.
    events.connected.connect(() => this._syncSoon());
    // A socket that cannot open yet: load anyway (its `connected` catches up).
    events.disconnected.connect(() => {
      if (!this.loaded) {
        this._syncSoon();
      }
    });
    events.start();
  }

  /**
   * Ask the server now: the first load, or what changed since the revision
   * held (the events keep the model current anyway).
   */
  refresh(): Promise<void> {
    return this._sync();
  }

  /**
   * Ask the server to stop a job; the events report the new state. A job
   * that finished meanwhile is not an error.
   */
  async stop(id: number): Promise<void> {
    await unlessEnded(this.api.stopJob(id));
  }

  /**
   * Ask the server to pause a running job (SIGSTOP to its process group); the
   * events report the new state. A job that ended meanwhile is not an error.
   */
  async pause(id: number): Promise<void> {
    await unlessEnded(this.api.pauseJob(id));
  }

  /**
   * Ask the server to let a paused job go on (SIGCONT); the events report
   * the new state. A job that ended meanwhile is not an error.
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

  /** Stop following the server (and close its event socket); drop requests. */
  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._abort.abort();
    this._events?.dispose();
    Signal.clearData(this);
  }

  // -- asking the server --------------------------------------------------

  /** `_sync()` for a caller that does not wait (its failure is logged there). */
  private _syncSoon(): void {
    this._sync().catch(() => undefined);
  }

  /**
   * The first load, or a catch-up from the revision held. One at a time: a
   * call during one makes one more run after it, and events that arrive
   * meanwhile wait for its answer.
   */
  private _sync(): Promise<void> {
    if (this.isDisposed) {
      return Promise.resolve();
    }
    if (this._syncing !== null) {
      this._syncAgain = true;
      return this._syncing;
    }
    this._syncing = (async () => {
      try {
        do {
          this._syncAgain = false;
          if (this._version === undefined) {
            await this._load();
          } else {
            await this._catchUp(this._version, this._store);
          }
        } while (this._syncAgain && !this.isDisposed);
      } catch (reason) {
        if (!this.isDisposed) {
          // The next event or reconnection asks again.
          console.warn('jobmagic: the job list is unavailable', reason);
          throw reason;
        }
      } finally {
        this._syncing = null;
        this._takePending();
      }
    })();
    return this._syncing;
  }

  private async _load(): Promise<void> {
    const signal = this._abort.signal;
    const [unfinished, finished] = await Promise.all([
      this.api.listJobs({ states: UNFINISHED_STATES }, signal),
      this.api.listJobs(
        {
          states: FINISHED_STATES,
          order: 'newest',
          limit: this._finishedLimit
        },
        signal
      )
    ]);
    if (this.isDisposed) {
      return;
    }
    // Both answers hold every change up to the older of their revisions.
    const older =
      unfinished.version <= finished.version ? unfinished : finished;
    const newer = older === unfinished ? finished : unfinished;
    this._checkSchema(newer);
    // A job may be in both (it ended between the two reads): it has ended.
    const jobs = [...unfinished.jobs, ...[...finished.jobs].reverse()];
    this._replace(jobs, newer.counts, older.version, older.store);
  }

  private async _catchUp(
    version: number,
    store: string | undefined
  ): Promise<void> {
    const answer = await this.api.listJobs(
      { since: version, store, order: 'newest', limit: CATCH_UP_LIMIT },
      this._abort.signal
    );
    if (this.isDisposed) {
      return;
    }
    this._checkSchema(answer);
    if (answer.full || answer.jobs.length >= CATCH_UP_LIMIT) {
      // Another store (or a revision it never had), or more changes than are
      // worth sending (10,000 jobs added at once): load afresh, as at first.
      await this._load();
      return;
    }
    this._patch(
      answer.jobs,
      answer.removed ?? [],
      answer.counts,
      answer.version
    );
  }

  private async _fetchOne(id: number): Promise<void> {
    this._fetching.add(id);
    let job: IJob;
    try {
      job = await this.api.getJob(id, this._abort.signal);
    } catch (reason) {
      this._fetching.delete(id);
      const gone =
        reason instanceof ServerConnection.ResponseError &&
        reason.response.status === 404;
      if (!gone && !this.isDisposed) {
        this._asked.delete(id); // (not gone: ask again next time)
        console.warn(`jobmagic: job ${id} is unavailable`, reason);
      }
      return;
    }
    // (Not when an event removed it meanwhile.)
    if (!this._fetching.delete(id) || this.isDisposed) {
      return;
    }
    if (isFinished(job.state)) {
      this._opened.delete(id);
      this._opened.add(id);
      if (this._opened.size > MAX_OPENED) {
        const [oldest] = this._opened;
        this._opened.delete(oldest);
      }
    }
    this._patch([job], [], this._counts, this._version ?? 0);
  }

  // -- events -------------------------------------------------------------

  private readonly _onEmission = (
    _: IEventSource,
    emission: Event.Emission
  ): void => {
    if (emission.schema_id !== JOB_CHANGES_SCHEMA_ID) {
      return;
    }
    this._pending.push(emission as unknown as IJobChanges);
    this._takePending();
  };

  /** Apply the events that came, or ask for what they cannot tell. */
  private _takePending(): void {
    while (this._pending.length > 0) {
      if (this._syncing !== null || this._version === undefined) {
        return; // after the answer (the first load comes with the socket)
      }
      const event = this._pending.shift()!;
      const version = this._version;
      const sameStore = event.store === this._store;
      if (sameStore && event.version <= version) {
        continue; // what the model has is as new
      }
      if (!sameStore || event.reload || event.previous > version) {
        this._syncSoon();
        continue;
      }
      // Every change after `previous` is in it: newer than what the model has.
      this._patch(event.jobs, event.removed, event.counts, event.version);
    }
  }

  // -- the jobs held ------------------------------------------------------

  /** Hold exactly `jobs` (finished ones oldest-learned first). */
  private _replace(
    jobs: ReadonlyArray<IJob>,
    counts: Record<JobState, number>,
    version: number,
    store: string
  ): void {
    const sameStore = this._store === undefined || store === this._store;
    const opened = sameStore
      ? [...this._finished.values()].filter(job => this._opened.has(job.id))
      : [];
    if (!sameStore) {
      this._opened.clear();
      this._asked.clear();
    }
    this._unfinished = new Map();
    this._finished = new Map(opened.map(job => [job.id, job]));
    this._version = version;
    this._store = store;
    this._patch(jobs, [], counts, version, true);
  }

  /** Apply changed jobs and removed ids; emit `changed` if anything moved. */
  private _patch(
    jobs: ReadonlyArray<IJob>,
    removed: ReadonlyArray<number>,
    counts: Record<JobState, number>,
    version: number,
    force = false
  ): void {
    const now = Date.now();
    let moved = force;
    for (const job of jobs) {
      this._receivedAt.set(job, now);
      const held = this._unfinished.get(job.id) ?? this._finished.get(job.id);
      if (
        held !== undefined &&
        isFinished(held.state) &&
        !isFinished(job.state)
      ) {
        continue; // an older report: an ended job never runs again
      }
      moved ||= !sameJob(job, held);
      if (isFinished(job.state)) {
        this._unfinished.delete(job.id);
        if (!this._finished.has(job.id)) {
          moved = true;
        }
        this._finished.set(job.id, job);
      } else {
        this._unfinished.set(job.id, job);
      }
    }
    for (const id of removed) {
      this._fetching.delete(id);
      this._opened.delete(id);
      const held = this._unfinished.delete(id) || this._finished.delete(id);
      moved = held || moved;
    }
    moved = this._trim() || moved;
    moved ||= FINISHED_STATES.concat(UNFINISHED_STATES).some(
      state => counts[state] !== this._counts[state]
    );
    this._counts = { ...counts };
    this._version = Math.max(this._version ?? version, version);
    if (moved) {
      this._sorted = null;
      this._changed.emit();
    }
  }

  /** Drop the finished jobs learned of first, past the limit; true if any. */
  private _trim(): boolean {
    let over = this._finished.size - this._finishedLimit;
    if (over <= 0) {
      return false;
    }
    for (const id of this._opened) {
      over -= this._finished.has(id) ? 1 : 0;
    }
    let dropped = false;
    for (const id of this._finished.keys()) {
      if (over <= 0) {
        break;
      }
      if (!this._opened.has(id)) {
        this._finished.delete(id);
        over--;
        dropped = true;
      }
    }
    return dropped;
  }

  private _checkSchema(list: IJobList): void {
    if (list.schema_version !== WIRE_SCHEMA_VERSION && !this._warnedSchema) {
      this._warnedSchema = true;
      console.warn(
        `jobmagic: the server sends wire schema ${list.schema_version}, this page ` +
          `understands ${WIRE_SCHEMA_VERSION}; reload the page after an upgrade`
      );
    }
  }

  private readonly _events: IEventSource | null;
  private readonly _finishedLimit: number;
  private readonly _abort = new AbortController();
  private readonly _changed = new Signal<this, void>(this);
  private _started = false;
  private _warnedSchema = false;
  /** The store's revision the jobs held are at; undefined before the load. */
  private _version: number | undefined = undefined;
  /** The store's generation. */
  private _store: string | undefined = undefined;
  private _counts: Record<JobState, number> = {
    queued: 0,
    running: 0,
    paused: 0,
    succeeded: 0,
    failed: 0,
    stopped: 0
  };
  private _unfinished = new Map<number, IJob>();
  /** In the order the model learned of them: the first are trimmed first. */
  private _finished = new Map<number, IJob>();
  /** Finished jobs asked for by `job(id)`: never trimmed (at most MAX_OPENED). */
  private readonly _opened = new Set<number>();
  /** Ids `job(id)` has asked the server for. */
  private readonly _asked = new Set<number>();
  /** Ids `job(id)` is asking for now. */
  private readonly _fetching = new Set<number>();
  private readonly _receivedAt = new WeakMap<IJob, number>();
  private _sorted: IJob[] | null = null;
  private _pending: IJobChanges[] = [];
  private _syncing: Promise<void> | null = null;
  private _syncAgain = false;
}

/**
 * Waits for `request`; a 409 (the job has ended, or is not in a state the
 * action applies to any more) counts as done: the events show what it is now.
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
