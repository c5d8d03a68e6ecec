/**
 * The "Job log" main-area panel: a status line (with the job's CPU and memory
 * use while it runs) and the live tail of a job's log in a read-only
 * terminal, with Ctrl/Cmd-F to search it.
 *
 * The tail is bounded twice: the view reads at most the last `windowBytes`
 * of the log and the terminal keeps at most its last `scrollback` lines.
 * When earlier output is not shown, a notice says how much, with a link that
 * downloads the whole log.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import {
  ToolbarButton,
  stopIcon,
  terminalIcon
} from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import type { Terminal } from '@xterm/xterm';

import { IJob, isFinished } from './api';
import { SecondTicker, graceLeft, isStopping } from './clock';
import {
  briefState,
  describeUsage,
  formatDuration,
  jobTooltip,
  stoppingText
} from './describe';
import { ILogSink, LogFollower } from './logfollower';
import { LogSearchBox } from './logsearch';
import { logTabLabel, omittedNotice, skippedLine } from './logtext';
import { JobsModel } from './model';
import {
  bodyVariables,
  cssColourToHex,
  searchDecorations
} from './terminaltheme';
import { UsageFollower } from './usagefollower';
import { LogTerminal, SCROLLBACK_LINES } from './xtermview';

/** Bytes of log the view reads unless told otherwise: the last 8 MiB. */
export const DEFAULT_WINDOW_BYTES = 8 * 1024 * 1024;

/** The class of a log panel's tab (other parts select log tabs by it). */
export const LOG_TAB_CLASS = 'jp-JobmagicLogTab';

/** Options for a `JobLogView`. */
export interface IJobLogViewOptions {
  model: JobsModel;
  jobId: number;
  /** Bytes of log read at most, from its end. */
  windowBytes?: number;
  /** Lines the terminal keeps besides its screen. */
  scrollback?: number;
}

/**
 * The live tail of one job's log. It follows the log only while it is
 * visible.
 */
export class JobLogView extends Widget implements ILogSink {
  constructor(options: IJobLogViewOptions) {
    super();
    this.model = options.model;
    this.jobId = options.jobId;
    this.addClass('jp-JobLog');
    this.node.dataset.jobId = String(this.jobId);

    this._status.className = 'jp-JobLog-status';
    this._state.className = 'jp-JobLog-state';
    this._details.className = 'jp-JobLog-details';
    this._usage.className = 'jp-JobLog-usage';
    this._usage.hidden = true;
    this._problem.className = 'jp-JobLog-problem';
    this._status.append(this._state, this._details, this._usage, this._problem);

    this._omitted.className = 'jp-JobLog-omitted';
    this._omitted.hidden = true;
    this._omittedText.className = 'jp-JobLog-omittedText';
    const download = document.createElement('a');
    download.className = 'jp-JobLog-download';
    download.textContent = 'Download the full log';
    // A plain link: the browser sends the page's Jupyter cookie with a GET.
    download.href = URLExt.join(
      this.model.api.serverSettings.baseUrl,
      'jobmagic/api/jobs',
      String(this.jobId),
      'log/download'
    );
    download.download = '';
    this._omitted.append(this._omittedText, ' ', download);

    this._terminal = new LogTerminal({
      scrollback: options.scrollback ?? SCROLLBACK_LINES,
      onWritten: () => this._updateNotice(),
      onThemeChanged: () => this._search.refresh()
    });
    this._search = new LogSearchBox({
      search: this._terminal.search,
      decorations: () => searchDecorations(bodyVariables(), cssColourToHex),
      onClose: () => this._terminal.focus()
    });
    this._output.className = 'jp-JobLog-output';
    this._output.append(this._terminal.node, this._search.node);
    this.node.append(this._status, this._omitted, this._output);
    this.node.tabIndex = -1;
    // In the capture phase: before xterm's own key handling in its textarea.
    this.node.addEventListener('keydown', this._onKeyDown, true);

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
      windowBytes: options.windowBytes ?? DEFAULT_WINDOW_BYTES
    });
    this._follower.paused = true;
  }

  readonly model: JobsModel;
  readonly jobId: number;

  /** The job as last reported, if the store has it. */
  get job(): IJob | undefined {
    return this.model.job(this.jobId);
  }

  /** The terminal that shows the log (for reading it: the view writes to it). */
  get terminal(): Terminal {
    return this._terminal.terminal;
  }

  /** The text the terminal holds, line by line (see `LogTerminal.bufferLines`). */
  bufferLines(): string[] {
    return this._terminal.bufferLines();
  }

  /** Show the search box (what Ctrl/Cmd-F does). */
  openSearch(): void {
    this._search.open();
  }

  restart(offset: number): void {
    this._omittedBytes = offset;
    this._terminal.reset();
    delete this.node.dataset.complete;
  }

  append(text: string): void {
    this._terminal.write(text);
  }

  skipped(bytes: number): void {
    this._terminal.write(skippedLine(bytes));
  }

  shown(): Promise<void> {
    return this._terminal.written();
  }

  end(): void {
    // Marks the view for anyone (tests, styles) who asks whether the log is
    // whole, once the terminal holds all of it.
    void this._terminal.written().then(() => {
      if (!this.isDisposed) {
        this.node.dataset.complete = 'true';
      }
    });
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
    this._search.dispose();
    this._terminal.dispose();
    this.model.changed.disconnect(this._updateStatus);
    super.dispose();
  }

  protected override onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    if (this._search.isOpen) {
      this._search.input.focus();
    } else {
      this._terminal.focus();
    }
    if (!this.node.contains(document.activeElement)) {
      this.node.focus();
    }
  }

  protected override onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this._terminal.open();
  }

  protected override onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._terminal.open();
    this._setVisible(true);
  }

  protected override onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._terminal.open();
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
  }

  /** Ctrl/Cmd-F anywhere in the view opens its search box. */
  private readonly _onKeyDown = (event: KeyboardEvent): void => {
    const accel = event.ctrlKey || event.metaKey;
    if (accel && !event.altKey && event.key.toLowerCase() === 'f') {
      event.preventDefault();
      event.stopPropagation();
      this._search.open();
    }
  };

  /** Say what is not shown: bytes never read, lines the terminal dropped. */
  private _updateNotice(): void {
    const trimmed = this._terminal.isTrimmed;
    const key = `${this._omittedBytes} ${trimmed}`;
    if (key === this._noticeKey) {
      return; // the common case: called after each batch, and nothing changed
    }
    this._noticeKey = key;
    const text = omittedNotice({
      bytes: this._omittedBytes,
      trimmed,
      maxLines: this._terminal.scrollback
    });
    this._omittedText.textContent = text;
    this._omitted.hidden = !text;
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
    // A stop under way: "stopping (4s left)", counted down by the ticker.
    const stopping = isStopping(job);
    const grace = graceLeft(job);
    this._state.textContent = stopping ? stoppingText(grace) : briefState(job);
    this._state.dataset.state = job.state;
    this._state.className = `jp-JobLog-state jp-mod-${stopping ? 'stopping' : job.state}`;
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
    this._status.title = jobTooltip(job, grace);
  };

  private readonly _status = document.createElement('div');
  private readonly _state = document.createElement('span');
  private readonly _details = document.createElement('span');
  private readonly _usage = document.createElement('span');
  private readonly _problem = document.createElement('span');
  private readonly _omitted = document.createElement('div');
  private readonly _omittedText = document.createElement('span');
  private readonly _output = document.createElement('div');
  private readonly _terminal: LogTerminal;
  private readonly _search: LogSearchBox;
  private readonly _follower: LogFollower;
  private readonly _usageFollower: UsageFollower;
  private readonly _ticker = new SecondTicker(() => this._updateStatus());
  /** Bytes at the start of the log the view did not read. */
  private _omittedBytes = 0;
  /** What the notice says now, as its inputs: bytes and trimmed. */
  private _noticeKey = '';
  private _visible = false;
}

/**
 * A main-area panel around a `JobLogView`, with a toolbar button that stops
 * the job while it runs. Its tab has the class `LOG_TAB_CLASS` and the job's
 * id as `data-jobmagic-job`.
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
  panel.title.className = `${panel.title.className} ${LOG_TAB_CLASS}`.trim();
  // Lumino writes each key as is into `data-KEY`, and HTML lowercases it: the
  // key is spelled as the attribute, which reads back as `dataset.jobmagicJob`.
  panel.title.dataset = { 'jobmagic-job': String(options.jobId) };
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
    panel.title.label = logTabLabel(options.jobId, job);
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
