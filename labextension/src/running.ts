/**
 * The "Jobs" section of JupyterLab's Running sidebar: a flat list of jobs or,
 * with the section's view switch (JupyterLab 4.3 and later), a tree with one
 * item per queue group.
 */
import { IRunningSessions } from '@jupyterlab/running';
import {
  LabIcon,
  caretDownIcon,
  caretUpIcon,
  checkIcon,
  closeIcon,
  historyIcon,
  listIcon,
  pauseIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { DEFAULT_GROUP, IJob, JobState, isFinished } from './api';
import { SecondTicker, graceLeft, isStopping } from './clock';
import {
  groupLabel,
  isGroupPaused,
  jobDetail,
  jobLabel,
  jobTooltip
} from './describe';
import { JobsModel } from './model';

/** At most this many finished jobs are listed before "N more finished". */
export const RECENT_LIMIT = 10;

/** The class of a job's item; the item context menu's entries select it. */
export const JOB_ITEM_CLASS = 'jp-JobmagicItem';
/** The class of a queue group's item in the tree view. */
export const GROUP_ITEM_CLASS = 'jp-JobmagicGroup';
/** The class of the "N more finished" item, which shows or hides the rest. */
export const MORE_ITEM_CLASS = 'jp-JobmagicMore';

const STATE_ICONS: Record<JobState, LabIcon> = {
  queued: historyIcon,
  running: runIcon,
  paused: pauseIcon,
  succeeded: checkIcon,
  failed: closeIcon,
  stopped: stopIcon
};

/** The `data-context` attribute of job `id`'s item. */
export function jobContext(id: number): string {
  return `jobmagic-job-${id}`;
}

/** The id of the job whose item has this `data-context`, else undefined. */
export function jobIdFromContext(
  context: string | undefined
): number | undefined {
  const match = /^jobmagic-job-([0-9]+)$/.exec(context ?? '');
  return match ? Number(match[1]) : undefined;
}

/** Options for a `JobsRunningManager`. */
export interface IJobsRunningManagerOptions {
  model: JobsModel;
  /** Open a job's log in the main area. */
  openLog: (id: number) => void;
}

/**
 * Lists the jobs of the store in the Running sidebar: every queued, running or
 * paused job, then the most recently finished ones; in the tree view, under
 * one item per queue group.
 */
export class JobsRunningManager
  implements IRunningSessions.IManager, IDisposable
{
  constructor(options: IJobsRunningManagerOptions) {
    this._model = options.model;
    this._openLog = options.openLog;
    this._model.changed.connect(this._onModelChanged);
    this._onModelChanged();
  }

  readonly name = 'Jobs';
  readonly shutdownLabel = 'Stop Job';
  readonly shutdownAllLabel = 'Shut Down All';
  readonly shutdownItemIcon = stopIcon;
  /** The section offers the tree by queue group besides the flat list. */
  readonly supportsMultipleViews = true;

  shutdownAllConfirmationText = (): string => {
    const n = this._activeJobs().length;
    if (n === 0) {
      return 'No job is running.';
    }
    return `Stop ${n} job${n === 1 ? '' : 's'}? Each job's processes get SIGTERM, then SIGKILL if they do not exit.`;
  };

  /** Emitted when the listed jobs or their runtimes changed. */
  get runningChanged(): ISignal<this, void> {
    return this._runningChanged;
  }

  get isDisposed(): boolean {
    return this._ticker.isDisposed;
  }

  /**
   * The items the section shows. In `tree` mode (JupyterLab's default view),
   * the jobs of the "default" group as in the list, then one item per named
   * queue group (by name) whose children are its jobs: a user who never names
   * a group sees the list unchanged. In `list` mode, and when no mode is given
   * (JupyterLab before 4.3), the jobs alone. Either way the jobs come newest
   * first, the active ones before the ended.
   */
  running(options?: {
    mode: 'tree' | 'list';
  }): IRunningSessions.IRunningItem[] {
    const jobs = this._listedJobs();
    const more = this._moreItem();
    const tail = more ? [more] : [];
    if (options?.mode !== 'tree') {
      return [...jobs.map(job => this._item(job)), ...tail];
    }
    const groups = new Map<string, IJob[]>();
    const ungrouped: IJob[] = [];
    for (const job of jobs) {
      if (job.group === DEFAULT_GROUP) {
        ungrouped.push(job);
        continue;
      }
      const members = groups.get(job.group);
      if (members) {
        members.push(job);
      } else {
        groups.set(job.group, [job]);
      }
    }
    const named = [...groups.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, members]) => this._groupItem(name, members));
    return [...ungrouped.map(job => this._item(job)), ...named, ...tail];
  }

  shutdownAll(): void {
    for (const job of this._activeJobs()) {
      this._stop(job.id);
    }
  }

  refreshRunning(): void {
    this._model.refresh().catch(reason => {
      console.warn('jobmagic: could not refresh the job list', reason);
    });
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._ticker.dispose();
    this._model.changed.disconnect(this._onModelChanged);
    Signal.clearData(this);
  }

  /**
   * Every active job, newest first, then the most recently ended ones: the
   * latest `RECENT_LIMIT`, or all the page holds while "N more finished" is
   * open.
   */
  private _listedJobs(): IJob[] {
    const finished = this._finishedJobs();
    const active = [...this._activeJobs()].reverse();
    return [
      ...active,
      ...(this._showAllFinished ? finished : finished.slice(0, RECENT_LIMIT))
    ];
  }

  /** The finished jobs the page holds, the latest to end first. */
  private _finishedJobs(): IJob[] {
    return this._model.jobs
      .filter(job => isFinished(job.state))
      .sort((a, b) => (b.ended_at ?? 0) - (a.ended_at ?? 0) || b.id - a.id);
  }

  /**
   * The item after the listed jobs that says how many finished jobs are not
   * listed ("12 more finished"); opening it lists them, and opening it again
   * ("Show fewer finished") hides them. None while all of them fit.
   */
  private _moreItem(): IRunningSessions.IRunningItem | null {
    const held = this._finishedJobs().length;
    // The store may hold more finished jobs than the page does.
    const total = Math.max(held, this._model.finishedTotal ?? held);
    if (total <= RECENT_LIMIT) {
      return null;
    }
    const hidden = this._showAllFinished ? total - held : total - RECENT_LIMIT;
    const label = this._showAllFinished
      ? hidden > 0
        ? `Show fewer finished (${hidden} older not loaded)`
        : 'Show fewer finished'
      : `${hidden} more finished`;
    return {
      className: MORE_ITEM_CLASS,
      context: 'jobmagic-more-finished',
      icon: () => (this._showAllFinished ? caretUpIcon : caretDownIcon),
      label: () => label,
      labelTitle: () =>
        this._showAllFinished
          ? 'List only the latest finished jobs'
          : `List every finished job this page holds (${held})`,
      open: () => {
        this._showAllFinished = !this._showAllFinished;
        this._runningChanged.emit();
      }
    };
  }

  private _item(job: IJob): IRunningSessions.IRunningItem {
    const active = !isFinished(job.state);
    const stopping = isStopping(job);
    const shown = stopping ? 'stopping' : job.state;
    return {
      className: `${JOB_ITEM_CLASS} jp-mod-${shown}`,
      context: jobContext(job.id),
      icon: () => (stopping ? stopIcon : STATE_ICONS[job.state]),
      label: () => jobLabel(job),
      labelTitle: () => jobTooltip(job, graceLeft(job)),
      detail: () => jobDetail(job, this._model.runtime(job), graceLeft(job)),
      open: () => this._openLog(job.id),
      // A second stop of a job that is stopping shortens nothing: no button.
      shutdown: active && !stopping ? () => this._stop(job.id) : undefined
    };
  }

  /**
   * A queue group's item: its jobs as children. It has no stop button: one
   * click would stop every job of the group unasked, where "Shut Down All"
   * asks first.
   */
  private _groupItem(
    name: string,
    jobs: IJob[]
  ): IRunningSessions.IRunningItem {
    const paused = isGroupPaused(name, jobs);
    return {
      className: `${GROUP_ITEM_CLASS}${paused ? ' jp-mod-paused' : ''}`,
      context: `jobmagic-group-${name}`,
      icon: () => (paused ? pauseIcon : listIcon),
      label: () => groupLabel(name, jobs),
      labelTitle: () =>
        paused
          ? `Queue group ${groupLabel(name, jobs)}\nPaused: its queued jobs wait until it is resumed`
          : `Queue group ${groupLabel(name, jobs)}`,
      children: jobs.map(job => this._item(job))
    };
  }

  private _activeJobs(): IJob[] {
    return this._model.jobs.filter(job => !isFinished(job.state));
  }

  private _stop(id: number): void {
    this._model.stop(id).catch(reason => {
      console.error(`jobmagic: could not stop job ${id}`, reason);
    });
  }

  private readonly _onModelChanged = (): void => {
    this._ticker.enabled = this._model.jobs.some(
      job => job.state === 'running'
    );
    this._runningChanged.emit();
  };

  private readonly _model: JobsModel;
  private readonly _openLog: (id: number) => void;
  /** Whether "N more finished" is open: every finished job the page holds is listed. */
  private _showAllFinished = false;
  private readonly _runningChanged = new Signal<this, void>(this);
  // The sidebar ignores the signal while it is hidden, so a tick is cheap.
  private readonly _ticker = new SecondTicker(() =>
    this._runningChanged.emit()
  );
}
