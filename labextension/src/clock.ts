/**
 * The one timer the frontend keeps: a once-a-second tick for runtime clocks,
 * on only while something running is shown.
 */
import { IDisposable } from '@lumino/disposable';

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
