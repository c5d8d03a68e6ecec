/**
 * The one timer the frontend keeps: a once-a-second tick for runtime clocks,
 * on only while something running is shown; and the clock of a stop's grace
 * period.
 */
import { IDisposable } from '@lumino/disposable';

import { IJob, isFinished } from './api';

/**
 * When this page first held each report of a job. A job's report is replaced
 * (a new object) whenever the server sends it anew, so the time a report was
 * first seen is when its figures were made, give or take the trip.
 */
const firstSeen = new WeakMap<IJob, number>();

/**
 * Whether a stop of the job is under way: someone asked, and it has not
 * ended. (A queued job that is stopped ends at once.)
 */
export function isStopping(job: IJob): boolean {
  return !isFinished(job.state) && job.stop_requested_by !== null;
}

/**
 * Seconds until a stop under way kills what is left of the job, counted down
 * from the server's `stop_grace_left` by this page's clock (so the two
 * clocks need not agree); null when no stop is under way or the server did
 * not say.
 *
 * @param now - Milliseconds since the epoch (`Date.now()`).
 */
export function graceLeft(job: IJob, now = Date.now()): number | null {
  const left = job.stop_grace_left;
  if (!isStopping(job) || left === null || left === undefined) {
    return null;
  }
  let seen = firstSeen.get(job);
  if (seen === undefined) {
    seen = now;
    firstSeen.set(job, seen);
  }
  return Math.max(0, left - Math.max(0, now - seen) / 1000);
}

/**
 * Calls `onTick` once a second while `enabled`, skipping ticks while the
 * browser tab is hidden.
 */
export class SecondTicker implements IDisposable {
  constructor(onTick: () => void) {
    this._onTick = onTick;
  }

  get enabled(): boolean {
    return this._timer !== null;
  }

  set enabled(value: boolean) {
    if (value === this.enabled || this._disposed) {
      return;
    }
    if (value) {
      this._timer = setInterval(() => {
        if (!document.hidden) {
          this._onTick();
        }
      }, 1000);
    } else {
      clearInterval(this._timer ?? undefined);
      this._timer = null;
    }
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  dispose(): void {
    this.enabled = false;
    this._disposed = true;
  }

  private readonly _onTick: () => void;
  private _timer: ReturnType<typeof setInterval> | null = null;
  private _disposed = false;
}
