/**
 * Test doubles: jobs as the server sends them, a scripted job list, a job
 * store that answers and pushes like the server, an event source, a job log
 * that grows on demand, and a sink that records what a log view was told.
 */
import { Event, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

import {
  IJob,
  IJobChanges,
  IJobList,
  IJobQuery,
  ILogChunk,
  ILogRequest,
  JOB_CHANGES_SCHEMA_ID,
  JobsApi,
  isFinished
} from '../src/api';
import { IEventSource } from '../src/eventbus';
import { ILogSink } from '../src/logfollower';
import { JobState, WIRE_SCHEMA_VERSION } from '../src/wire';

/** A job as the server sends it, with `fields` changed. */
export function makeJob(fields: Partial<IJob> = {}): IJob {
  return {
    id: 1,
    name: null,
    command: 'sleep 10',
    cwd: null,
    state: 'running',
    exit_code: null,
    exit_text: null,
    error: null,
    pid: 1234,
    backend: 'local',
    created_at: 1700000000,
    started_at: 1700000001,
    ended_at: null,
    runtime: 5,
    paused_at: null,
    orphaned: false,
    owner: 'host:99',
    detached: false,
    stop_requested_by: null,
    group: 'default',
    priority: 0,
    after: [],
    queue_reason: null,
    restarted_from: null,
    gpus: 0,
    resources: {},
    devices: [],
    limits: { memory: null, cpus: null, pids: null },
    containment: 'none',
    peak_memory: null,
    cpu_seconds: null,
    address: null,
    where: 'local',
    detail: null,
    notebook: null,
    log_path: '/home/u/.jobmagic/logs/1.log',
    stop_grace_left: null,
    ...fields
  };
}

/** How many of `jobs` are in each state. */
export function countStates(jobs: Iterable<IJob>): Record<JobState, number> {
  const counts: Record<JobState, number> = {
    queued: 0,
    running: 0,
    paused: 0,
    succeeded: 0,
    failed: 0,
    stopped: 0
  };
  for (const job of jobs) {
    counts[job.state]++;
  }
  return counts;
}

/** A job list answer of store `store-1`. */
export function makeList(
  version: number,
  jobs: IJob[] = [],
  store = 'store-1'
): IJobList {
  return {
    schema_version: WIRE_SCHEMA_VERSION,
    version,
    store,
    total: jobs.length,
    counts: countStates(jobs),
    jobs
  };
}

/** The error `JobsApi` rejects with for an HTTP status. */
export function httpError(status: number): ServerConnection.ResponseError {
  return new ServerConnection.ResponseError(
    new Response(JSON.stringify({ message: `status ${status}` }), { status }),
    `status ${status}`
  );
}

/** The error fetch rejects with when its signal is aborted. */
export function abortError(): Error {
  return new DOMException('The operation was aborted.', 'AbortError');
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

/** Polls `condition` every 5 ms until it holds, failing after `timeout` ms. */
export async function waitFor(
  condition: () => boolean,
  timeout = 3000,
  what = 'condition'
): Promise<void> {
  const end = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(5);
  }
}

/** Never resolves; rejects like fetch when `signal` is aborted. */
export function untilAborted<T>(signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((_, reject) => {
    if (signal?.aborted) {
      reject(abortError());
    }
    signal?.addEventListener('abort', () => reject(abortError()));
  });
}

/** One call of `listJobs`, with when it was made. */
export interface IListCall {
  query: IJobQuery;
  signal: AbortSignal | undefined;
  at: number;
}

/**
 * A `JobsApi` whose `listJobs` answers are given by `answer` (called once
 * per request, with the request's number from 0).
 */
export class FakeListApi {
  constructor(answer: (call: IListCall, index: number) => Promise<IJobList>) {
    this._answer = answer;
  }

  readonly calls: IListCall[] = [];
  readonly stopped: number[] = [];
  stopError: Error | null = null;
  /** The actions asked for, as `pause 3`, `resume 3`, `restart 3`. */
  readonly actions: string[] = [];
  /** What the next pause, resume or restart rejects with, if anything. */
  actionError: Error | null = null;
  /** What `getJob` answers with, by id (else 404); `gets` records the ids. */
  readonly single = new Map<number, IJob>();
  readonly gets: number[] = [];

  listJobs(query: IJobQuery = {}, signal?: AbortSignal): Promise<IJobList> {
    const call = { query, signal, at: Date.now() };
    this.calls.push(call);
    return this._answer(call, this.calls.length - 1);
  }

  getJob(id: number): Promise<IJob> {
    this.gets.push(id);
    const job = this.single.get(id);
    return job ? Promise.resolve(job) : Promise.reject(httpError(404));
  }

  stopJob(id: number): Promise<void> {
    this.stopped.push(id);
    return this.stopError === null
      ? Promise.resolve()
      : Promise.reject(this.stopError);
  }

  pauseJob(id: number): Promise<IJob> {
    return this._act('pause', id, makeJob({ id, state: 'paused' }));
  }

  resumeJob(id: number): Promise<IJob> {
    return this._act('resume', id, makeJob({ id }));
  }

  restartJob(id: number): Promise<IJob> {
    return this._act(
      'restart',
      id,
      makeJob({ id: id + 100, state: 'queued', restarted_from: id })
    );
  }

  /** This fake where a `JobsApi` is expected. */
  get api(): JobsApi {
    return this as unknown as JobsApi;
  }

  private _act(action: string, id: number, answer: IJob): Promise<IJob> {
    this.actions.push(`${action} ${id}`);
    const error = this.actionError;
    this.actionError = null;
    return error === null ? Promise.resolve(answer) : Promise.reject(error);
  }

  private readonly _answer: (
    call: IListCall,
    index: number
  ) => Promise<IJobList>;
}

/**
 * A job store on a fake server: revisions, tombstones and `GET jobs` answers
 * as the real one makes them, and the events it would push.
 */
export class FakeJobServer {
  constructor(readonly store = 'store-1') {
    this.fake = new FakeListApi(call =>
      Promise.resolve(this.answer(call.query))
    );
  }

  readonly fake: FakeListApi;
  revision = 0;

  /** Create or change a job (one revision). */
  set(job: IJob): IJob {
    this.revision++;
    this._rows.set(job.id, { job, rev: this.revision });
    return job;
  }

  /** Remove a job (one revision). */
  remove(id: number): void {
    this.revision++;
    this._rows.delete(id);
    this._removed.set(id, this.revision);
  }

  /** The store's jobs now, by id. */
  get jobs(): IJob[] {
    return [...this._rows.values()]
      .map(row => row.job)
      .sort((a, b) => a.id - b.id);
  }

  /** The answer of `GET jobs` for `query`. */
  answer(query: IJobQuery): IJobList {
    const since = query.since;
    const incremental =
      since !== undefined &&
      since <= this.revision &&
      (query.store === undefined || query.store === this.store);
    const rows = [...this._rows.values()].filter(
      row => !query.states || query.states.includes(row.job.state)
    );
    const total = rows.length;
    let jobs = rows
      .filter(row => !incremental || row.rev > since)
      .map(row => row.job)
      .sort((a, b) => (query.order === 'newest' ? b.id - a.id : a.id - b.id));
    jobs = jobs.slice(query.offset ?? 0);
    if (query.limit !== undefined) {
      jobs = jobs.slice(0, query.limit);
    }
    const list: IJobList = {
      schema_version: WIRE_SCHEMA_VERSION,
      version: this.revision,
      store: this.store,
      total,
      counts: countStates(this.jobs),
      jobs
    };
    if (incremental) {
      list.since = since;
      list.removed = [...this._removed.entries()]
        .filter(([, rev]) => rev > since)
        .map(([id]) => id)
        .sort((a, b) => a - b);
    } else if (since !== undefined) {
      list.full = true;
    }
    return list;
  }

  /** The event of the changes after `previous`, as the server pushes it. */
  event(previous: number, reload = false): Event.Emission {
    const changes = this.answer({ since: previous });
    const event: IJobChanges = {
      version: this.revision,
      previous,
      store: this.store,
      reload,
      jobs: reload ? [] : changes.jobs,
      removed: reload ? [] : (changes.removed ?? []),
      counts: changes.counts
    };
    return {
      schema_id: JOB_CHANGES_SCHEMA_ID,
      ...event
    } as unknown as Event.Emission;
  }

  /** What the calls asked for, as `since=N`, `states=a,b`, `newest limit=N`. */
  get asked(): string[] {
    return this.fake.calls.map(({ query }) => {
      const parts: string[] = [];
      if (query.states) {
        parts.push(`states=${query.states.join(',')}`);
      }
      if (query.order) {
        parts.push(query.order);
      }
      if (query.limit !== undefined) {
        parts.push(`limit=${query.limit}`);
      }
      if (query.since !== undefined) {
        parts.push(`since=${query.since}`);
      }
      if (query.store !== undefined) {
        parts.push(`store=${query.store}`);
      }
      return parts.join(' ');
    });
  }

  get api(): JobsApi {
    return this.fake.api;
  }

  private readonly _rows = new Map<number, { job: IJob; rev: number }>();
  private readonly _removed = new Map<number, number>();
}

/** A job that has ended, as the server sends it. */
export function endedJob(id: number, fields: Partial<IJob> = {}): IJob {
  return makeJob({
    id,
    state: 'succeeded',
    exit_code: 0,
    exit_text: 'exit code 0',
    ended_at: 1700000100 + id,
    runtime: 3,
    ...fields
  });
}

/** An event source the test drives: open, close, and events. */
export class FakeEventSource implements IEventSource {
  started = false;
  isDisposed = false;

  get stream(): ISignal<this, Event.Emission> {
    return this._stream;
  }

  get connected(): ISignal<this, void> {
    return this._connected;
  }

  get disconnected(): ISignal<this, void> {
    return this._disconnected;
  }

  start(): void {
    this.started = true;
  }

  open(): void {
    this._connected.emit();
  }

  close(): void {
    this._disconnected.emit();
  }

  push(emission: Event.Emission): void {
    this._stream.emit(emission);
  }

  dispose(): void {
    this.isDisposed = true;
    Signal.clearData(this);
  }

  private readonly _stream = new Signal<this, Event.Emission>(this);
  private readonly _connected = new Signal<this, void>(this);
  private readonly _disconnected = new Signal<this, void>(this);
}

/** Whether `job` has ended (re-exported for tests). */
export { isFinished };

/** One call of `readLog`. */
export interface ILogCall extends ILogRequest {
  at: number;
}

/**
 * A job's log on a fake server: `readLog` answers like the real one, and a
 * follow request waits until the log grows, the job ends or it is aborted.
 */
export class FakeLogApi {
  readonly calls: ILogCall[] = [];
  /** Errors the next requests reject with, first one first. */
  readonly failures: Error[] = [];
  state: JobState = 'running';

  /** The bytes of the log so far. */
  get size(): number {
    return this._data.length;
  }

  /** Requests waiting for the log to grow. */
  get waiting(): number {
    return this._waiters.size;
  }

  /** The job writes `text`. */
  write(text: string): void {
    const bytes = new TextEncoder().encode(text);
    const data = new Uint8Array(this._data.length + bytes.length);
    data.set(this._data);
    data.set(bytes, this._data.length);
    this._data = data;
    this._wake();
  }

  /** The job ends in `state`. */
  finish(state: JobState = 'succeeded'): void {
    this.state = state;
    this._wake();
  }

  async readLog(_id: number, request: ILogRequest): Promise<ILogChunk> {
    this.calls.push({ ...request, at: Date.now() });
    if (request.signal?.aborted) {
      throw abortError();
    }
    const failure = this.failures.shift();
    if (failure !== undefined) {
      throw failure;
    }
    if (request.offset > this.size) {
      throw httpError(400);
    }
    if (
      request.follow &&
      request.offset >= this.size &&
      this.state === 'running'
    ) {
      await new Promise<void>((resolve, reject) => {
        const wake = (): void => {
          this._waiters.delete(wake);
          resolve();
        };
        this._waiters.add(wake);
        request.signal?.addEventListener('abort', () => {
          this._waiters.delete(wake);
          reject(abortError());
        });
      });
    }
    const end =
      request.length === undefined
        ? this.size
        : Math.min(this.size, request.offset + request.length);
    return {
      data: this._data.slice(request.offset, end),
      logSize: this.size,
      state: this.state
    };
  }

  /** This fake where a `JobsApi` is expected. */
  get api(): JobsApi {
    return this as unknown as JobsApi;
  }

  private _wake(): void {
    for (const wake of [...this._waiters]) {
      wake();
    }
  }

  private _data = new Uint8Array(0);
  private readonly _waiters = new Set<() => void>();
}

/** An `ILogSink` that records every call, and the text it would show. */
export class RecordingSink implements ILogSink {
  readonly events: string[] = [];
  text = '';
  ended = false;
  problemText: string | null = null;

  restart(offset: number): void {
    this.events.push(`restart ${offset}`);
    this.text = '';
  }

  append(text: string): void {
    this.events.push(`append ${JSON.stringify(text)}`);
    this.text += text;
  }

  skipped(bytes: number): void {
    this.events.push(`skipped ${bytes}`);
  }

  end(): void {
    this.events.push('end');
    this.ended = true;
  }

  problem(message: string | null): void {
    if (message !== this.problemText) {
      this.events.push(`problem ${String(message)}`);
    }
    this.problemText = message;
  }
}

/** The file `relative` in the nearest directory above the compiled test that has it. */
export function findUp(relative: string): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const candidate = join(dir, relative);
    if (existsSync(candidate)) {
      return candidate;
    }
    if (dirname(dir) === dir) {
      throw new Error(`${relative} not found above ${__dirname}`);
    }
  }
}
