/**
 * Which jobs ended while the page was open, whether the user wants to hear of
 * each, and what to tell them: the part of "job finished" notifications that
 * touches no browser API (the `jobmagic:notifications` plugin shows them).
 *
 * The ends come from the job list model, which holds every job of the store:
 * a job of a kernel that died is reported as well as one of a live kernel.
 */
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { IJob, isFinished } from './api';
import { formatDuration, shorten } from './describe';
import { JobsModel } from './model';

/** What a `JobEndWatcher` reads of the job list model: its public API. */
export type IJobSource = Pick<JobsModel, 'changed' | 'jobs' | 'loaded'>;

/**
 * Tells when a job ends: a job the model showed queued, running or paused
 * that it now shows finished, or a new job (an id above every id seen
 * before: the store never reuses one) that first appears already finished,
 * having started and ended between two reports.
 *
 * Jobs already finished when the model first loads ended before the page
 * knew of them, and an older job that comes into the list later (a longer
 * history) is not new: neither is reported. No job is reported twice.
 */
export class JobEndWatcher implements IDisposable {
  constructor(source: IJobSource) {
    this._source = source;
    source.changed.connect(this._onChanged);
    this._onChanged();
  }

  /** Emitted once per job that ended, with the job as the model has it then. */
  get ended(): ISignal<this, IJob> {
    return this._ended;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._source.changed.disconnect(this._onChanged);
    Signal.clearData(this);
  }

  private readonly _onChanged = (): void => {
    if (!this._source.loaded) {
      return;
    }
    const first = this._maxId === null;
    const ends: IJob[] = [];
    let maxId = this._maxId ?? 0;
    for (const job of this._source.jobs) {
      const active = !isFinished(job.state);
      const wasActive = this._active.has(job.id);
      const isNew = !first && job.id > (this._maxId ?? 0);
      if (active) {
        this._active.add(job.id);
      } else if (wasActive || isNew) {
        this._active.delete(job.id);
        ends.push(job);
      }
      maxId = Math.max(maxId, job.id);
    }
    this._maxId = maxId;
    for (const job of ends) {
      this._ended.emit(job);
    }
  };

  private readonly _source: IJobSource;
  private readonly _ended = new Signal<this, IJob>(this);
  /** The jobs last seen queued, running or paused. */
  private readonly _active = new Set<number>();
  /** The highest job id seen so far; null before the first load. */
  private _maxId: number | null = null;
  private _isDisposed = false;
}

/** Which ended jobs to notify of. */
export type NotifyOn = 'none' | 'failures' | 'all';

/** The settings of the `jobmagic:notifications` plugin (schema/notifications.json). */
export interface INotifySettings {
  /** Which ended jobs to notify of. */
  notifyOn: NotifyOn;
  /** Only jobs that ran at least this many seconds; 0: every job. */
  minRuntime: number;
  /** Also show a desktop notification while the page is hidden. */
  desktop: boolean;
}

/** The settings before (or without) the settings registry's. */
export const DEFAULT_NOTIFY_SETTINGS: Readonly<INotifySettings> = {
  notifyOn: 'all',
  minRuntime: 10,
  desktop: false
};

/**
 * The settings in a settings object (the registry's `composite`); a value
 * that is missing or not valid is the default.
 */
export function notifySettings(
  values: ReadonlyPartialJSONObject
): INotifySettings {
  const notifyOn = values.notifyOn;
  const minRuntime = values.minRuntime;
  return {
    notifyOn:
      notifyOn === 'none' || notifyOn === 'failures' || notifyOn === 'all'
        ? notifyOn
        : DEFAULT_NOTIFY_SETTINGS.notifyOn,
    minRuntime:
      typeof minRuntime === 'number' && minRuntime >= 0
        ? minRuntime
        : DEFAULT_NOTIFY_SETTINGS.minRuntime,
    desktop:
      typeof values.desktop === 'boolean'
        ? values.desktop
        : DEFAULT_NOTIFY_SETTINGS.desktop
  };
}

/**
 * Whether an ended job went wrong: it failed, or its time limit stopped it.
 * A job someone stopped did what they asked.
 */
export function isFailure(job: IJob): boolean {
  return (
    job.state === 'failed' ||
    (job.state === 'stopped' && job.stop_requested_by === 'timeout')
  );
}

/** Whether the settings ask to hear of this ended job. */
export function wantsNotice(job: IJob, settings: INotifySettings): boolean {
  if (settings.notifyOn === 'none') {
    return false;
  }
  if (settings.notifyOn === 'failures' && !isFailure(job)) {
    return false;
  }
  // A job that never started (stopped while queued) has no runtime.
  return settings.minRuntime <= 0 || (job.runtime ?? 0) >= settings.minRuntime;
}

/** The longest job name or command a notice shows, in characters. */
export const NOTICE_LABEL_WIDTH = 40;

/** The job as a notice names it: `train (#12)`, `python train.py --… (#12)`. */
export function noticeName(job: IJob): string {
  return `${shorten(job.name || job.command, NOTICE_LABEL_WIDTH)} (#${job.id})`;
}

/**
 * How an ended job ended: `succeeded`, `failed: exit code 3`,
 * `stopped`, `stopped: timed out`.
 */
export function outcome(job: IJob): string {
  switch (job.state) {
    case 'failed': {
      const why = job.exit_text ?? job.error;
      return why ? `failed: ${why}` : 'failed';
    }
    case 'stopped':
      return job.stop_requested_by === 'timeout'
        ? 'stopped: timed out'
        : 'stopped';
    default:
      return job.state;
  }
}

/**
 * What a notice says: `train (#12) failed: exit code 3 after 12.3s`
 * (without "after ..." when the job never ran).
 */
export function noticeText(job: IJob): string {
  const ran = formatDuration(job.runtime);
  const text = `${noticeName(job)} ${outcome(job)}`;
  return ran ? `${text} after ${ran}` : text;
}

/** The kind of toast for an ended job, as `Notification.emit` takes it. */
export function noticeType(
  job: IJob
): 'success' | 'error' | 'warning' | 'info' {
  if (job.state === 'succeeded') {
    return 'success';
  }
  if (job.state === 'failed') {
    return 'error';
  }
  return isFailure(job) ? 'warning' : 'info';
}
