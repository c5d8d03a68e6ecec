/**
 * The REST client for the jobmagic server extension (`{baseUrl}jobmagic/api/`).
 *
 * Every request goes through `ServerConnection.makeRequest`, so Jupyter's
 * token and XSRF headers are set the same way as for JupyterLab's own calls.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IJob, IJobList, IJobUsage, JobState } from './wire';

export type {
  IJob,
  IJobChanges,
  IJobList,
  IJobUsage,
  ILimits,
  JobState
} from './wire';
export { JOB_CHANGES_SCHEMA_ID, WIRE_SCHEMA_VERSION } from './wire';

/** A slice of a job's log and what the server said about the log around it. */
export interface ILogChunk {
  /** The bytes, exactly as the job wrote them. */
  data: Uint8Array;
  /** The log's size in bytes when the server answered (`X-Log-Size`). */
  logSize: number;
  /** The job's state when the server answered (`X-Job-State`), if sent. */
  state: JobState | null;
}

/** Options for reading a job's log. */
export interface ILogRequest {
  /** The first byte to read. */
  offset: number;
  /** At most this many bytes; the server's own limit when omitted. */
  length?: number;
  /** Long-poll until there are bytes past `offset` or the job has ended. */
  follow?: boolean;
  signal?: AbortSignal;
}

/** Which jobs `listJobs` asks for; every field is optional (see `GET jobs`). */
export interface IJobQuery {
  /** Only jobs in these states. */
  states?: ReadonlyArray<JobState>;
  /** Only the jobs changed after this revision, and the ids removed since. */
  since?: number;
  /** The store (generation) `since` comes from: another store's gets every job. */
  store?: string;
  /** At most this many jobs, after skipping `offset`. */
  limit?: number;
  offset?: number;
  /** By ascending id (the default) or descending. */
  order?: 'oldest' | 'newest';
  /** Long-poll (up to ~30 s on the server) until the version differs from this. */
  waitFor?: number;
}

/** The states a job is in until it ends. */
export const UNFINISHED_STATES: ReadonlyArray<JobState> = [
  'queued',
  'running',
  'paused'
];

/** The states a job ends in. */
export const FINISHED_STATES: ReadonlyArray<JobState> = [
  'succeeded',
  'failed',
  'stopped'
];

/** The queue group a job waits and runs in unless it names one. */
export const DEFAULT_GROUP = 'default';

/** Whether a job has reached a final state. */
export function isFinished(state: JobState): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'stopped';
}

/**
 * A client for the jobmagic REST API.
 *
 * Methods reject with `ServerConnection.ResponseError` for an HTTP error, and
 * with the fetch `AbortError` when their signal is aborted.
 */
export class JobsApi {
  constructor(serverSettings?: ServerConnection.ISettings) {
    this.serverSettings = serverSettings ?? ServerConnection.makeSettings();
  }

  readonly serverSettings: ServerConnection.ISettings;

  /** The jobs `query` asks for: by default every job in the store. */
  async listJobs(
    query: IJobQuery = {},
    signal?: AbortSignal
  ): Promise<IJobList> {
    const params = new URLSearchParams();
    for (const state of query.states ?? []) {
      params.append('state', state);
    }
    const numbers: [string, number | undefined][] = [
      ['since', query.since],
      ['limit', query.limit],
      ['offset', query.offset],
      ['wait_for', query.waitFor]
    ];
    for (const [name, value] of numbers) {
      if (value !== undefined) {
        params.set(name, String(value));
      }
    }
    if (query.store !== undefined) {
      params.set('store', query.store);
    }
    if (query.order !== undefined) {
      params.set('order', query.order);
    }
    const text = params.toString();
    const response = await this._request('jobs', text ? `?${text}` : '', {
      signal
    });
    return (await response.json()) as IJobList;
  }

  /** One job by id. */
  async getJob(id: number, signal?: AbortSignal): Promise<IJob> {
    const response = await this._request(`jobs/${id}`, '', { signal });
    return (await response.json()) as IJob;
  }

  /**
   * What a job uses: live while it runs or is paused (`running` true; the
   * server reads it at most once a second, and `cpu_percent` is the rate
   * since its previous reading), else what it used in all.
   */
  async getUsage(id: number, signal?: AbortSignal): Promise<IJobUsage> {
    const response = await this._request(`jobs/${id}/usage`, '', { signal });
    return (await response.json()) as IJobUsage;
  }

  /** Ask the server to stop a job (SIGTERM to its group, SIGKILL later). */
  async stopJob(id: number): Promise<void> {
    await this._request(`jobs/${id}/stop`, '', { method: 'POST' });
  }

  /**
   * Pause a running job: SIGSTOP to its process group. Rejects with a 409
   * `ResponseError` when the job is queued or has ended.
   */
  async pauseJob(id: number): Promise<IJob> {
    const response = await this._request(`jobs/${id}/pause`, '', {
      method: 'POST'
    });
    return (await response.json()) as IJob;
  }

  /**
   * Let a paused job go on: SIGCONT to its process group. Rejects with a 409
   * `ResponseError` when the job is queued or has ended.
   */
  async resumeJob(id: number): Promise<IJob> {
    const response = await this._request(`jobs/${id}/resume`, '', {
      method: 'POST'
    });
    return (await response.json()) as IJob;
  }

  /**
   * Start an ended job again as a new job (same command, options and cwd);
   * resolves with the new job. Rejects with a 409 `ResponseError` when the
   * job has not ended or cannot be restarted (the message says why).
   */
  async restartJob(id: number): Promise<IJob> {
    const response = await this._request(`jobs/${id}/restart`, '', {
      method: 'POST'
    });
    return (await response.json()) as IJob;
  }

  /**
   * Delete an ended job's record and log. Rejects with a 409 `ResponseError`
   * when the job has not ended, and a 404 when there is no such job.
   */
  async removeJob(id: number): Promise<void> {
    await this._request(`jobs/${id}`, '', { method: 'DELETE' });
  }

  /**
   * Read bytes from a job's log; see `ILogRequest`. Rejects with an `Error`
   * when the answer lacks the `X-Log-Size` header the server always sends.
   */
  async readLog(id: number, request: ILogRequest): Promise<ILogChunk> {
    const params = new URLSearchParams({ offset: String(request.offset) });
    if (request.length !== undefined) {
      params.set('length', String(request.length));
    }
    if (request.follow) {
      params.set('follow', '1');
    }
    const response = await this._request(`jobs/${id}/log`, `?${params}`, {
      signal: request.signal
    });
    const data = new Uint8Array(await response.arrayBuffer());
    const size = response.headers.get('X-Log-Size');
    if (size === null || !/^[0-9]+$/.test(size.trim())) {
      // The server sends it with every log answer: without it the offsets
      // that follow cannot be trusted, so the answer is not used.
      throw new Error(`no valid X-Log-Size header (${String(size)})`);
    }
    const state = response.headers.get('X-Job-State');
    return {
      data,
      logSize: Number(size),
      state: state === null ? null : (state as JobState)
    };
  }

  private async _request(
    path: string,
    query: string,
    init: RequestInit
  ): Promise<Response> {
    const base = this.serverSettings.baseUrl;
    const url = URLExt.join(base, 'jobmagic/api', path) + query;
    const response = await ServerConnection.makeRequest(
      url,
      init,
      this.serverSettings
    );
    if (!response.ok) {
      throw await ServerConnection.ResponseError.create(response);
    }
    return response;
  }
}
