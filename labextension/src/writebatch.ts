/**
 * Batches log text for a terminal: whatever arrives meanwhile is handed
 * over in one go at an animation frame, at most once per frame and once per
 * `minInterval`, and never while the terminal still parses the last batch.
 *
 * Each batch costs the page a parse and a redraw of the terminal's screen;
 * the redraw costs the same for one line as for a screenful, so fewer,
 * larger batches cost less: ten a second read as live. xterm parses each
 * `write()` call whole, on the main thread; it spreads a queue of calls over
 * 12 ms time slices, but not a single large one. So a batch goes over as
 * slices of `sliceChars`, and takes at most `frameChars`: a 50 MB/s job then
 * costs the page short tasks, however much text is waiting, and the rest
 * waits for the next batches.
 */
import { IDisposable } from '@lumino/disposable';

/** Characters handed to the terminal per batch, at most. */
export const FRAME_CHARS = 1024 * 1024;

/** Milliseconds between two batches, at least. */
export const MIN_INTERVAL = 100;

/** Characters per `write()` call, at most. */
export const SLICE_CHARS = 32 * 1024;

/** Options for a `FrameWriter`. */
export interface IFrameWriterOptions {
  /** Hands text to the terminal; calls `done` once the terminal has parsed it. */
  write: (text: string, done: () => void) => void;
  /** `requestAnimationFrame` unless told otherwise (tests). */
  requestFrame?: (callback: () => void) => number;
  /** `cancelAnimationFrame` unless told otherwise (tests). */
  cancelFrame?: (handle: number) => void;
  /** `performance.now` unless told otherwise (tests). */
  now?: () => number;
  /** `setTimeout` unless told otherwise (tests). */
  setTimer?: (callback: () => void, ms: number) => number;
  /** `clearTimeout` unless told otherwise (tests). */
  clearTimer?: (handle: number) => void;
  frameChars?: number;
  sliceChars?: number;
  minInterval?: number;
}

/** Queues text and writes it to a terminal at most once per animation frame. */
export class FrameWriter implements IDisposable {
  constructor(options: IFrameWriterOptions) {
    this._write = options.write;
    this._requestFrame =
      options.requestFrame ?? (callback => requestAnimationFrame(callback));
    this._cancelFrame =
      options.cancelFrame ?? (handle => cancelAnimationFrame(handle));
    this._now = options.now ?? (() => performance.now());
    this._setTimer =
      options.setTimer ?? ((callback, ms) => window.setTimeout(callback, ms));
    this._clearTimer =
      options.clearTimer ?? (handle => window.clearTimeout(handle));
    this._frameChars = options.frameChars ?? FRAME_CHARS;
    this._sliceChars = options.sliceChars ?? SLICE_CHARS;
    this._minInterval = options.minInterval ?? MIN_INTERVAL;
  }

  /** Characters queued and not yet handed to the terminal. */
  get queued(): number {
    return this._added - this._handed;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Queue `text`; it reaches the terminal at a coming frame. */
  add(text: string): void {
    if (!text || this._disposed) {
      return;
    }
    this._queue.push(text);
    this._added += text.length;
    this._schedule();
  }

  /**
   * Drop what is queued and not yet handed over (the terminal is about to
   * start over); what the terminal is parsing still completes.
   */
  clear(): void {
    const dropped = this.queued;
    this._queue = [];
    this._handed += dropped;
    this._settle(dropped);
  }

  /**
   * Resolves once everything queued so far has been parsed by the terminal
   * (or dropped by `clear`, or the writer disposed).
   */
  written(): Promise<void> {
    if (this._done >= this._added || this._disposed) {
      return Promise.resolve();
    }
    return new Promise(resolve => {
      this._waiters.push({ mark: this._added, resolve });
    });
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    if (this._frame !== null) {
      this._cancelFrame(this._frame);
      this._frame = null;
    }
    if (this._timer !== null) {
      this._clearTimer(this._timer);
      this._timer = null;
    }
    this._queue = [];
    for (const waiter of this._waiters) {
      waiter.resolve();
    }
    this._waiters = [];
  }

  /** Ask for a frame, once `minInterval` has passed since the last batch. */
  private _schedule(): void {
    if (
      this._frame !== null ||
      this._timer !== null ||
      this._inFlight ||
      this._disposed
    ) {
      return;
    }
    const wait = this._lastBatch + this._minInterval - this._now();
    if (wait > 0) {
      this._timer = this._setTimer(() => {
        this._timer = null;
        this._schedule();
      }, wait);
      return;
    }
    this._frame = this._requestFrame(() => {
      this._frame = null;
      this._flush();
    });
  }

  /** Hand over up to `frameChars`, in slices; the last slice's parse ends the batch. */
  private _flush(): void {
    if (this._disposed || this._inFlight || this._queue.length === 0) {
      return;
    }
    const batch = this._take(this._frameChars);
    this._lastBatch = this._now();
    this._handed += batch.length;
    this._inFlight = true;
    for (let start = 0; start < batch.length; start += this._sliceChars) {
      const slice = batch.slice(start, start + this._sliceChars);
      const last = start + this._sliceChars >= batch.length;
      this._write(slice, () => {
        this._settle(slice.length);
        if (last) {
          this._inFlight = false;
          if (this._queue.length > 0) {
            this._schedule();
          }
        }
      });
    }
  }

  /** Take up to `limit` characters off the front of the queue, as one string. */
  private _take(limit: number): string {
    const parts: string[] = [];
    let size = 0;
    while (this._queue.length > 0 && size < limit) {
      const head = this._queue[0];
      if (size + head.length <= limit) {
        parts.push(head);
        size += head.length;
        this._queue.shift();
      } else {
        const cut = limit - size;
        parts.push(head.slice(0, cut));
        this._queue[0] = head.slice(cut);
        size += cut;
      }
    }
    return parts.join('');
  }

  /** Count `chars` as parsed; resolve the waiters that were waiting for them. */
  private _settle(chars: number): void {
    this._done += chars;
    const waiting: IWaiter[] = [];
    for (const waiter of this._waiters) {
      if (waiter.mark <= this._done) {
        waiter.resolve();
      } else {
        waiting.push(waiter);
      }
    }
    this._waiters = waiting;
  }

  private readonly _write: (text: string, done: () => void) => void;
  private readonly _requestFrame: (callback: () => void) => number;
  private readonly _cancelFrame: (handle: number) => void;
  private readonly _now: () => number;
  private readonly _setTimer: (callback: () => void, ms: number) => number;
  private readonly _clearTimer: (handle: number) => void;
  private readonly _frameChars: number;
  private readonly _sliceChars: number;
  private readonly _minInterval: number;
  private _queue: string[] = [];
  /** Characters ever added, handed to the terminal, and parsed (or dropped). */
  private _added = 0;
  private _handed = 0;
  private _done = 0;
  private _inFlight = false;
  private _frame: number | null = null;
  private _timer: number | null = null;
  /** When the last batch was handed over (`now()`, ms). */
  private _lastBatch = -Infinity;
  private _waiters: IWaiter[] = [];
  private _disposed = false;
}

interface IWaiter {
  /** Resolve once this many characters are done. */
  mark: number;
  resolve: () => void;
}
