/**
 * Follows one job's log over HTTP: the last `windowBytes` first, then every
 * new byte through long-polls (`GET jobs/{id}/log?offset=N&follow=1`).
 *
 * Traffic stays bounded whatever the job's output rate: at most one request
 * per `minInterval`, and when the log has grown more than `windowBytes`
 * past what was read, the follower skips ahead to the last `windowBytes`.
 * A `Poll` drives the requests: it backs off after errors and stands by while
 * the page is hidden.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';

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
    this._poll = new Poll<void>({
      name: `jobmagic:log-${this._jobId}`,
      auto: false,
      factory: () => this._step(),
      standby: 'when-hidden'
    });
    this._poll.frequency = { interval: 1000, backoff: 2, max: 30000 };
    void this._poll.start();
  }

  /**
   * Whether following is paused (the view is hidden). A pause cancels the
   * open request; resuming continues from the last byte read.
   */
  get paused(): boolean {
    return this._paused;
  }

  set paused(value: boolean) {
    if (value === this._paused || this._disposed) {
      return;
    }
    this._paused = value;
    if (value) {
      // Stop first, so that the aborted request is not taken for an error.
      void this._poll.stop();
      this._request?.abort();
    } else {
      void this._poll.start();
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
    this._poll.dispose();
    this._request?.abort();
  }

  /**
   * One request (two for the tail), the poll's factory. It schedules the next
   * one itself; it throws only for errors the poll should retry with back-off.
   */
  private async _step(): Promise<void> {
    const tick = this._poll.tick;
    const request = new AbortController();
    this._request = request;
    const began = Date.now();
    const tail = this._offset === null;
    let finished: boolean;
    try {
      finished = tail
        ? await this._readTail(request.signal)
        : await this._follow(request.signal);
    } catch (reason) {
      if (request.signal.aborted || this._poll.tick !== tick) {
        return; // paused or disposed: whoever did it decides what follows
      }
      const status =
        reason instanceof ServerConnection.ResponseError
          ? reason.response.status
          : 0;
      if (status === 404) {
        this._sink.problem('This job is no longer in the job store.');
        this._poll.dispose();
        return;
      }
      if (status === 400 && !tail) {
        // The offset is past the end: the log was replaced. Start over.
        this._offset = null;
        this._next(tick, 0);
        return;
      }
      this._sink.problem(`Cannot read the log (${String(reason)}); retrying.`);
      throw reason;
    } finally {
      if (this._request === request) {
        this._request = null;
      }
    }
    if (finished) {
      this._sink.problem(null);
      this._decoderFlush();
      this._sink.end();
      this._poll.dispose();
      return;
    }
    if (this._poll.tick !== tick) {
      return;
    }
    this._sink.problem(null);
    // Follow at once after the tail; then at most one request per minInterval.
    const elapsed = Date.now() - began;
    this._next(tick, tail ? 0 : Math.max(0, this._minInterval - elapsed));
  }

  /** Schedule the next step, unless the poll was rescheduled meanwhile. */
  private _next(tick: Promise<unknown>, interval: number): void {
    if (this._poll.tick === tick) {
      void this._poll.schedule({
        interval,
        phase:
          this._poll.state.phase === 'rejected' ? 'reconnected' : 'resolved'
      });
    }
  }

  /** Start over at the last `windowBytes` of the log. Returns whether the log is complete. */
  private async _readTail(signal: AbortSignal): Promise<boolean> {
    const probe = await this._api.readLog(this._jobId, {
      offset: 0,
      length: 0,
      signal
    });
    const start = Math.max(0, probe.logSize - this._window);
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
    const offset = this._offset ?? 0;
    const chunk = await this._api.readLog(this._jobId, {
      offset,
      length: this._window,
      follow: true,
      signal
    });
    if (chunk.logSize - offset > 2 * this._window) {
      // Far behind a fast writer: skip to the end instead of reading it all.
      this._offset = null;
      return false;
    }
    this._offset = offset + chunk.data.length;
    if (chunk.data.length > 0) {
      this._sink.append(this._decode(chunk.data));
    }
    return this._isComplete(chunk);
  }

  /** Whether a chunk says that the job ended and nothing is left to read. */
  private _isComplete(chunk: ILogChunk): boolean {
    if (chunk.state === null || !isFinished(chunk.state)) {
      return false;
    }
    return (this._offset ?? 0) >= chunk.logSize;
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

  private readonly _api: JobsApi;
  private readonly _jobId: number;
  private readonly _sink: ILogSink;
  private readonly _window: number;
  private readonly _minInterval: number;
  private _decoder = new TextDecoder();
  /** The next byte to read; `null` until the tail was read (or after a skip). */
  private _offset: number | null = null;
  private readonly _poll: Poll<void>;
  private _paused = false;
  private _disposed = false;
  private _request: AbortController | null = null;
}
