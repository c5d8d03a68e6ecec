/**
 * Follows one job's log over HTTP: the last `windowBytes` first, then every
 * new byte through long-polls (`GET jobs/{id}/log?offset=N&follow=1`).
 *
 * Traffic stays bounded whatever the job's output rate: at most one request
 * per `minInterval`, each for at most `followBytes`, the next one only once
 * the sink has shown what the last one brought (`ILogSink.shown`); and when
 * the log has grown more than twice `followBytes` past what was read, the
 * follower skips ahead to its last `followBytes` and tells the sink how much
 * it skipped. A `Poll` drives the requests: it backs off after errors and
 * stands by while the page is hidden.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';

import { ILogChunk, JobsApi, isFinished } from './api';

/** Bytes one follow request reads at most, unless told otherwise: 1 MiB. */
export const DEFAULT_FOLLOW_BYTES = 256 * 1024;

/** What the follower reports to its view. */
export interface ILogSink {
  /**
   * The output shown so far is to be discarded; what follows starts at byte
   * `offset` of the log (earlier bytes are not shown).
   */
  restart(offset: number): void;
  /** Decoded output to append. */
  append(text: string): void;
  /**
   * `bytes` of the log were skipped to keep up with the job: what follows
   * comes after them.
   */
  skipped(bytes: number): void;
  /**
   * Resolves once what was appended so far is shown; the follower asks for
   * more only then. A sink without it shows text as it is appended.
   */
  shown?(): Promise<void>;
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
  /** Bytes read at most from the end of the log when following starts. */
  windowBytes: number;
  /**
   * Bytes one follow request reads at most (`windowBytes` when it is
   * smaller); the default is 1 MiB.
   */
  followBytes?: number;
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
    this._followBytes = Math.min(
      this._window,
      Math.max(1024, options.followBytes ?? DEFAULT_FOLLOW_BYTES)
    );
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
    await this._sink.shown?.();
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
    const data = start > 0 ? fromLineStart(chunk.data) : chunk.data;
    this._decoder = new TextDecoder();
    this._sink.restart(start + chunk.data.length - data.length);
    this._offset = start + chunk.data.length;
    this._logSize = chunk.logSize;
    this._sink.append(this._decode(data));
    return this._isComplete(chunk);
  }

  /**
   * Wait for and read bytes past the offset, or, far behind a fast writer,
   * skip to the last `followBytes` the log had at the last answer. Returns
   * whether the log is complete.
   */
  private async _follow(signal: AbortSignal): Promise<boolean> {
    const read = this._offset ?? 0;
    const skip = this._logSize - read > 2 * this._followBytes;
    const offset = skip ? this._logSize - this._followBytes : read;
    const chunk = await this._api.readLog(this._jobId, {
      offset,
      length: this._followBytes,
      follow: !skip,
      signal
    });
    let data = chunk.data;
    if (skip) {
      data = fromLineStart(data);
      this._decoder = new TextDecoder();
      this._sink.skipped(offset + chunk.data.length - data.length - read);
    }
    this._offset = offset + chunk.data.length;
    this._logSize = chunk.logSize;
    if (data.length > 0) {
      this._sink.append(this._decode(data));
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
  private readonly _followBytes: number;
  /** The log's size in bytes at the last answer. */
  private _logSize = 0;
  private readonly _minInterval: number;
  private _decoder = new TextDecoder();
  /** The next byte to read; `null` until the tail was read (or after a skip). */
  private _offset: number | null = null;
  private readonly _poll: Poll<void>;
  private _paused = false;
  private _disposed = false;
  private _request: AbortController | null = null;
}

/**
 * `data` from the start of its first whole line: a read that starts in the
 * middle of the log starts at a line boundary rather than in the middle of a
 * line (or of a UTF-8 character). A single huge line is kept from where it
 * was cut.
 */
function fromLineStart(data: Uint8Array): Uint8Array {
  const newline = data.indexOf(0x0a);
  return newline >= 0 && newline < data.length - 1
    ? data.subarray(newline + 1)
    : data;
}
