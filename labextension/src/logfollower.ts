/**
 * Follows one job's log over HTTP: the last `windowBytes` first, then every
 * new byte through long-polls (`GET jobs/{id}/log?offset=N&follow=1`).
 *
 * Traffic stays bounded whatever the job's output rate: at most one request
 * per `minInterval`, and when the log has grown more than `windowBytes`
 * past what was read, the follower skips ahead to the last `windowBytes`.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';

import { ILogChunk, JobsApi, isFinished } from './api';

/** What the follower reports to its view. */
export interface ILogSink {
  /**
   * The output shown so far is to be discarded; what follows starts at byte
   * `offset` of the log (earlier bytes are not shown).
   */
  restart(offset: number): void;
  /** Decoded output to append. */
  append(text: string): void;
  /** The job ended and its whole log was read. */
  end(): void;
  /** A problem worth showing (`null` when it went away). */
  problem(message: string | null): void;
}

/** Options for a `LogFollower`. */
export interface ILogFollowerOptions {
  api: JobsApi;
  jobId: number;
  sink: ILogSink;
  /** Bytes of log kept in view (and read at most per request). */
  windowBytes: number;
  /** Shortest time between two follow requests, in milliseconds. */
  minInterval?: number;
}

/** Reads a job's log and feeds it to a sink until the job ended or disposal. */
export class LogFollower implements IDisposable {
  constructor(options: ILogFollowerOptions) {
    this._api = options.api;
    this._jobId = options.jobId;
    this._sink = options.sink;
    this._window = Math.max(1024, options.windowBytes);
    this._minInterval = options.minInterval ?? 100;
    void this._run();
  }

  /**
   * Whether following is paused (the view is hidden). A pause cancels the
   * open request; resuming continues from the last byte read.
   */
  get paused(): boolean {
    return this._paused;
  }

  set paused(value: boolean) {
    if (value === this._paused) {
      return;
    }
    this._paused = value;
    if (value) {
      this._request?.abort();
    } else {
      this._resume?.();
    }
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._request?.abort();
    this._resume?.();
  }

  private async _run(): Promise<void> {
    let backoff = 1000;
    while (!this._disposed) {
      if (this._paused) {
        await new Promise<void>(resolve => (this._resume = resolve));
        this._resume = null;
        continue;
      }
      const request = new AbortController();
      this._request = request;
      try {
        const finished =
          this._offset === null
            ? await this._readTail(request.signal)
            : await this._follow(request.signal);
        this._sink.problem(null);
        backoff = 1000;
        if (finished) {
          this._decoderFlush();
          this._sink.end();
          return;
        }
      } catch (reason) {
        if (this._disposed || request.signal.aborted) {
          continue;
        }
        const status =
          reason instanceof ServerConnection.ResponseError
            ? reason.response.status
            : 0;
        if (status === 404) {
          this._sink.problem('This job is no longer in the job store.');
          return;
        }
        if (status === 400 && this._offset !== null) {
          // The offset is past the end: the log was replaced. Start over.
          this._offset = null;
          continue;
        }
        this._sink.problem(
          `Cannot read the log (${String(reason)}); retrying.`
        );
        await this._sleep(backoff);
        backoff = Math.min(backoff * 2, 30000);
      } finally {
        this._request = null;
      }
    }
  }

  /** Start over at the last `windowBytes` of the log. Returns whether the log is complete. */
  private async _readTail(signal: AbortSignal): Promise<boolean> {
    const probe = await this._api.readLog(this._jobId, {
      offset: 0,
      length: 0,
      signal
    });
    let size = probe.logSize;
    if (size === null) {
      size = (await this._api.getJob(this._jobId, signal)).log_size;
    }
    const start = Math.max(0, size - this._window);
    const chunk = await this._api.readLog(this._jobId, {
      offset: start,
      length: this._window,
      signal
    });
    this._decoder = new TextDecoder();
    this._offset = start;
    this._sink.restart(start);
    let data = chunk.data;
    if (start > 0) {
      // Start at a line boundary rather than in the middle of a line (or of
      // a UTF-8 character); a single huge line is shown from where it was cut.
      const newline = data.indexOf(0x0a);
      if (newline >= 0 && newline < data.length - 1) {
        data = data.subarray(newline + 1);
      }
    }
    this._offset += chunk.data.length;
    this._sink.append(this._decode(data));
    return this._isComplete(chunk);
  }

  /** Wait for and read bytes past the offset. Returns whether the log is complete. */
  private async _follow(signal: AbortSignal): Promise<boolean> {
    const began = Date.now();
    const offset = this._offset ?? 0;
    const chunk = await this._api.readLog(this._jobId, {
      offset,
      length: this._window,
      follow: true,
      signal
    });
    if (chunk.logSize !== null && chunk.logSize - offset > 2 * this._window) {
      // Far behind a fast writer: skip to the end instead of reading it all.
      this._offset = null;
      return false;
    }
    this._offset = offset + chunk.data.length;
    if (chunk.data.length > 0) {
      this._sink.append(this._decode(chunk.data));
    }
    if (this._isComplete(chunk)) {
      return true;
    }
    const wait = this._minInterval - (Date.now() - began);
    if (wait > 0) {
      await this._sleep(wait);
    }
    return false;
  }

  /** Whether a chunk says that the job ended and nothing is left to read. */
  private _isComplete(chunk: ILogChunk): boolean {
    if (chunk.state === null || !isFinished(chunk.state)) {
      return false;
    }
    return chunk.logSize === null
      ? chunk.data.length === 0
      : (this._offset ?? 0) >= chunk.logSize;
  }

  private _decode(data: Uint8Array): string {
    return this._decoder.decode(data, { stream: true });
  }

  private _decoderFlush(): void {
    const rest = this._decoder.decode();
    if (rest) {
      this._sink.append(rest);
    }
  }

  /** Wait `ms` milliseconds, or less if the open request is aborted. */
  private _sleep(ms: number): Promise<void> {
    const signal = this._request?.signal;
    if (signal?.aborted) {
      return Promise.resolve();
    }
    return new Promise(resolve => {
      const timer = setTimeout(resolve, ms);
      signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private readonly _api: JobsApi;
  private readonly _jobId: number;
  private readonly _sink: ILogSink;
  private readonly _window: number;
  private readonly _minInterval: number;
  private _decoder = new TextDecoder();
  /** The next byte to read; `null` until the tail was read (or after a skip). */
  private _offset: number | null = null;
  private _paused = false;
  private _disposed = false;
  private _request: AbortController | null = null;
  private _resume: (() => void) | null = null;
}
