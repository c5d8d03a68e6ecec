/**
 * A running job's CPU and memory use, read once a second while its log is
 * shown (the log view's status line).
 */
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';

import { IJobUsage, JobsApi } from './api';

/** How often a running job's usage is read while its log is shown, in ms. */
export const USAGE_INTERVAL = 1000;

/** Options for a `UsageFollower`. */
export interface IUsageFollowerOptions {
  api: Pick<JobsApi, 'getUsage'>;
  jobId: number;
  /** Called with each reading, and with null when there is none to show. */
  onUsage: (usage: IJobUsage | null) => void;
  /** Milliseconds between readings. */
  interval?: number;
}

/**
 * A running job's usage, read every `interval` ms while `enabled`. A `Poll`
 * drives it: it backs off after a failed request and stands by while the
 * page is hidden. It stops by itself once the server says the job is no
 * longer running.
 */
export class UsageFollower implements IDisposable {
  constructor(options: IUsageFollowerOptions) {
    this._api = options.api;
    this._jobId = options.jobId;
    this._onUsage = options.onUsage;
    this._poll = new Poll<IJobUsage | null>({
      name: `jobmagic:usage:${options.jobId}`,
      auto: false,
      factory: () => this._read(),
      frequency: {
        interval: options.interval ?? USAGE_INTERVAL,
        backoff: true,
        max: 30000
      },
      standby: 'when-hidden'
    });
  }

  /** Whether readings are taken; turning it off forgets the last one. */
  get enabled(): boolean {
    return this._enabled;
  }

  set enabled(value: boolean) {
    if (value === this._enabled || this.isDisposed) {
      return;
    }
    this._enabled = value;
    if (value) {
      void this._poll.start();
    } else {
      this._abort?.abort();
      this._abort = null;
      void this._poll.stop();
      this._onUsage(null);
    }
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    this._abort?.abort();
    this._poll.dispose();
  }

  private async _read(): Promise<IJobUsage | null> {
    const abort = new AbortController();
    this._abort = abort;
    let usage: IJobUsage;
    try {
      usage = await this._api.getUsage(this._jobId, abort.signal);
    } catch (reason) {
      if (!abort.signal.aborted) {
        this._onUsage(null);
      }
      throw reason; // the poll tries again later, backing off
    }
    if (abort.signal.aborted) {
      return null; // turned off meanwhile: the answer is stale
    }
    if (!usage.running) {
      this.enabled = false;
      return null;
    }
    this._onUsage(usage);
    return usage;
  }

  private readonly _api: Pick<JobsApi, 'getUsage'>;
  private readonly _jobId: number;
  private readonly _onUsage: (usage: IJobUsage | null) => void;
  private readonly _poll: Poll<IJobUsage | null>;
  private _abort: AbortController | null = null;
  private _enabled = false;
}
