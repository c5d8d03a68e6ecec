/**
 * Test doubles: jobs as the server sends them, a scripted job list, a job log
 * that grows on demand, and a sink that records what a log view was told.
 */
import { ServerConnection } from '@jupyterlab/services';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { IJob, IJobList, ILogChunk, ILogRequest, JobsApi } from '../src/api';
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
    ...fields
  };
}

/** A job list answer. */
export function makeList(version: number, jobs: IJob[] = []): IJobList {
  return { schema_version: WIRE_SCHEMA_VERSION, version, jobs };
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
  waitFor: number | undefined;
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

  listJobs(waitFor?: number, signal?: AbortSignal): Promise<IJobList> {
    const call = { waitFor, signal, at: Date.now() };
    this.calls.push(call);
    return this._answer(call, this.calls.length - 1);
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
