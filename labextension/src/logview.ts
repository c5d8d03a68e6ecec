/**
 * The "Job log" main-area panel: a status line (with the job's CPU and memory
 * use while it runs) and the live tail of a job's log, drawn as a terminal
 * would show it.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import {
  ToolbarButton,
  stopIcon,
  terminalIcon
} from '@jupyterlab/ui-components';
import { IDisposable } from '@lumino/disposable';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { IJob, IJobUsage, JobsApi, isFinished } from './api';
import { SecondTicker } from './clock';
import {
  briefState,
  describeUsage,
  formatBytes,
  formatDuration,
  jobLabel,
  jobTooltip
} from './describe';
import { ILogSink, LogFollower } from './logfollower';
import { JobsModel } from './model';
import { TerminalText } from './terminal';
import { TerminalRenderer } from './terminaldom';

/** Bytes of log kept in view unless told otherwise: 256 KiB. */
export const DEFAULT_WINDOW_BYTES = 256 * 1024;

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

/** Options for a `JobLogView`. */
export interface IJobLogViewOptions {
  model: JobsModel;
  jobId: number;
  /** Bytes of log read first and kept in the DOM. */
  windowBytes?: number;
}

/**
 * The live tail of one job's log. It follows the log only while it is
 * visible, and keeps at most `windowBytes` characters in the DOM.
 */
export class JobLogView extends Widget implements ILogSink {
  constructor(options: IJobLogViewOptions) {
    super();
    this.model = options.model;
    this.jobId = options.jobId;
    const windowBytes = options.windowBytes ?? DEFAULT_WINDOW_BYTES;
    this.addClass('jp-JobLog');
    this.node.dataset.jobId = String(this.jobId);

    this._status.className = 'jp-JobLog-status';
    this._state.className = 'jp-JobLog-state';
    this._details.className = 'jp-JobLog-details';
    this._usage.className = 'jp-JobLog-usage';
    this._usage.hidden = true;
    this._problem.className = 'jp-JobLog-problem';
    this._status.append(this._state, this._details, this._usage, this._problem);
    this._output.className = 'jp-JobLog-output';
    this._omitted.className = 'jp-JobLog-omitted';
    this._terminal = new TerminalText({ maxChars: windowBytes });
    this._renderer = new TerminalRenderer(this._terminal);
    this._output.append(this._omitted, this._renderer.node);
    this.node.append(this._status, this._output);
    this._output.addEventListener('scroll', () => {
      const { scrollHeight, scrollTop, clientHeight } = this._output;
      this._stickToEnd = scrollHeight - scrollTop - clientHeight < 8;
    });

    this._usageFollower = new UsageFollower({
      api: this.model.api,
      jobId: this.jobId,
      onUsage: usage => {
        const text = usage ? describeUsage(usage) : '';
        this._usage.textContent = text;
        this._usage.hidden = !text;
      }
    });
    this.model.changed.connect(this._updateStatus);
    this._updateStatus();
    this._follower = new LogFollower({
      api: this.model.api,
      jobId: this.jobId,
      sink: this,
      windowBytes
    });
    this._follower.paused = true;
  }

  readonly model: JobsModel;
  readonly jobId: number;

  /** The job as last reported, if the store has it. */
  get job(): IJob | undefined {
    return this.model.job(this.jobId);
  }

  restart(offset: number): void {
    this._terminal.reset();
    this._renderer.clear();
    this._omitted.textContent =
      offset > 0 ? `… ${formatBytes(offset)} of earlier output not shown` : '';
    delete this.node.dataset.complete;
    this._scheduleRender();
  }

  append(text: string): void {
    this._terminal.write(text);
    this._scheduleRender();
  }

  end(): void {
    // Marks the view for anyone (tests, styles) who asks whether the log is whole.
    this.node.dataset.complete = 'true';
  }

  problem(message: string | null): void {
    this._problem.textContent = message ?? '';
  }

  override dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._follower.dispose();
    this._usageFollower.dispose();
    this._ticker.dispose();
    cancelAnimationFrame(this._frame);
    this.model.changed.disconnect(this._updateStatus);
    super.dispose();
  }

  protected override onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._setVisible(true);
  }

  protected override onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._setVisible(this.isVisible);
  }

  protected override onBeforeHide(msg: Message): void {
    super.onBeforeHide(msg);
    this._setVisible(false);
  }

  protected override onBeforeDetach(msg: Message): void {
    this._setVisible(false);
    super.onBeforeDetach(msg);
  }

  private _setVisible(visible: boolean): void {
    this._visible = visible;
    this._follower.paused = !visible;
    this._updateStatus();
    if (visible) {
      this._scheduleRender();
    }
  }

  private readonly _updateStatus = (): void => {
    const job = this.job;
    this._ticker.enabled = this._visible && job?.state === 'running';
    this._usageFollower.enabled = this._ticker.enabled;
    if (!job) {
      this._state.textContent = this.model.loaded ? 'unknown job' : 'loading';
      this._state.dataset.state = '';
      this._details.textContent = '';
      return;
    }
    this._state.textContent = briefState(job);
    this._state.dataset.state = job.state;
    this._state.className = `jp-JobLog-state jp-mod-${job.state}`;
    const details: string[] = [];
    if (job.pid !== null && !isFinished(job.state)) {
      details.push(`pid ${job.pid}`);
    }
    const runtime = formatDuration(this.model.runtime(job));
    if (runtime) {
      details.push(runtime);
    }
    if (job.exit_text) {
      // The server's words: "exit code 0", "killed by SIGKILL".
      details.push(job.exit_text);
    }
    if (job.error) {
      details.push(job.error);
    }
    this._details.textContent = details.join(' · ');
    this._status.title = jobTooltip(job);
  };

  /** Draw at most once per animation frame, whatever the rate of output. */
  private _scheduleRender(): void {
    if (this._frame || !this._visible) {
      return;
    }
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this._render();
    });
  }

  private _render(): void {
    this._renderer.render();
    if (this._stickToEnd) {
      this._output.scrollTop = this._output.scrollHeight;
    }
  }

  private readonly _status = document.createElement('div');
  private readonly _state = document.createElement('span');
  private readonly _details = document.createElement('span');
  private readonly _usage = document.createElement('span');
  private readonly _problem = document.createElement('span');
  private readonly _output = document.createElement('div');
  private readonly _omitted = document.createElement('div');
  private readonly _terminal: TerminalText;
  private readonly _renderer: TerminalRenderer;
  private readonly _follower: LogFollower;
  private readonly _usageFollower: UsageFollower;
  private readonly _ticker = new SecondTicker(() => this._updateStatus());
  private _frame = 0;
  private _visible = false;
  private _stickToEnd = true;
}

/**
 * A main-area panel around a `JobLogView`, with a toolbar button that stops
 * the job while it runs.
 */
export function createLogPanel(
  options: IJobLogViewOptions
): MainAreaWidget<JobLogView> {
  const content = new JobLogView(options);
  const panel = new MainAreaWidget({ content });
  panel.id = `jobmagic-log-${options.jobId}`;
  panel.addClass('jp-JobLogPanel');
  panel.title.icon = terminalIcon;
  panel.title.closable = true;
  panel.title.className += ' jp-JobmagicLogTab';
  // Lumino writes each key as is into `data-KEY`, and HTML lowercases it: the
  // key is spelled as the attribute, which reads back as `dataset.jobmagicJob`.
  panel.title.dataset = {
    ...panel.title.dataset,
    'jobmagic-job': String(options.jobId)
  };
  const stop = new ToolbarButton({
    icon: stopIcon,
    label: 'Stop',
    tooltip: 'Stop this job (SIGTERM, then SIGKILL)',
    className: 'jp-JobLog-stop',
    onClick: () => {
      content.model.stop(options.jobId).catch(reason => {
        content.problem(`Could not stop the job: ${String(reason)}`);
      });
    }
  });
  panel.toolbar.addItem('stop', stop);
  const update = (job: IJob | undefined): void => {
    const label = job ? jobLabel(job) : `job ${options.jobId}`;
    panel.title.label = `Log: ${truncate(label, 40)}`;
    panel.title.caption = job ? jobTooltip(job) : `Job ${options.jobId}`;
    stop.enabled = !!job && !isFinished(job.state);
  };
  const onModelChanged = (): void => update(content.job);
  content.model.changed.connect(onModelChanged);
  panel.disposed.connect(() =>
    content.model.changed.disconnect(onModelChanged)
  );
  update(content.job);
  return panel;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
