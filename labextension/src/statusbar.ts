/**
 * The status bar item "N jobs running" ("3 jobs running, 1 stopping").
 */
import { Widget } from '@lumino/widgets';

import { isStopping } from './clock';
import { JobsModel } from './model';

/**
 * Shows how many jobs are running, and how many of those are being stopped;
 * clicking it calls `onClick` (which opens the Running sidebar). The status
 * bar hides it while no job runs.
 */
export class RunningJobsStatus extends Widget {
  constructor(model: JobsModel, onClick: () => void) {
    super();
    this._model = model;
    this.addClass('jp-JobmagicStatus');
    this.addClass('jp-mod-highlighted');
    this._text.className = 'jp-StatusBar-TextItem';
    this.node.appendChild(this._text);
    this.node.title = 'Show jobs in the Running sidebar';
    this.node.addEventListener('click', onClick);
    model.changed.connect(this._update);
    this._update();
  }

  /** The number of running jobs shown. */
  get count(): number {
    return this._count;
  }

  override dispose(): void {
    this._model.changed.disconnect(this._update);
    super.dispose();
  }

  private readonly _update = (): void => {
    this._count = this._model.runningCount;
    const stopping = this._model.jobs.filter(
      job => job.state === 'running' && isStopping(job)
    ).length;
    const jobs = this._count === 1 ? 'job' : 'jobs';
    this._text.textContent =
      stopping > 0
        ? `${this._count} ${jobs} running, ${stopping} stopping`
        : `${this._count} ${jobs} running`;
    this.node.dataset.count = String(this._count);
    this.node.dataset.stopping = String(stopping);
  };

  private readonly _model: JobsModel;
  private readonly _text = document.createElement('span');
  private _count = 0;
}
