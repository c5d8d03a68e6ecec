/**
 * The "Jobs" section of JupyterLab's Running sidebar.
 */
import { IRunningSessions } from '@jupyterlab/running';
import {
  LabIcon,
  checkIcon,
  closeIcon,
  historyIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { IJob, JobState, isFinished } from './api';
import { SecondTicker } from './clock';
import { briefState, formatDuration, jobLabel, jobTooltip } from './describe';
import { JobsModel } from './model';

/** Finished jobs stay listed for this long after they ended, in seconds. */
const RECENT_SECONDS = 3600;
/** At most this many finished jobs are listed. */
const RECENT_LIMIT = 10;

const STATE_ICONS: Record<JobState, LabIcon> = {
  queued: historyIcon,
  running: runIcon,
  succeeded: checkIcon,
  failed: closeIcon,
  stopped: stopIcon
};

/** Options for a `JobsRunningManager`. */
export interface IJobsRunningManagerOptions {
  model: JobsModel;
  /** Open a job's log in the main area. */
  openLog: (id: number) => void;
}

/**
 * Lists the jobs of the store in the Running sidebar: every queued or running
 * job, then the most recently finished ones.
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

  running(): IRunningSessions.IRunningItem[] {
    const now = Date.now() / 1000;
    const finished = this._model.jobs
      .filter(job => isFinished(job.state))
      .filter(
        job => job.ended_at === null || now - job.ended_at < RECENT_SECONDS
      )
      .sort((a, b) => (b.ended_at ?? 0) - (a.ended_at ?? 0))
      .slice(0, RECENT_LIMIT);
    const active = [...this._activeJobs()].reverse();
    return [...active, ...finished].map(job => this._item(job));
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

  private _item(job: IJob): IRunningSessions.IRunningItem {
    const active = !isFinished(job.state);
    return {
      className: `jp-JobmagicItem jp-mod-${job.state}`,
      context: `jobmagic-job-${job.id}`,
      icon: () => STATE_ICONS[job.state],
      label: () => jobLabel(job),
      labelTitle: () => jobTooltip(job),
      detail: () => {
        const runtime = formatDuration(this._model.runtime(job));
        return runtime ? `${briefState(job)} ${runtime}` : briefState(job);
      },
      open: () => this._openLog(job.id),
      shutdown: active ? () => this._stop(job.id) : undefined
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
  private readonly _runningChanged = new Signal<this, void>(this);
  // The sidebar ignores the signal while it is hidden, so a tick is cheap.
  private readonly _ticker = new SecondTicker(() =>
    this._runningChanged.emit()
  );
}
