/**
 * The commands on one job (stop, pause, resume, restart, copy its command or
 * log path, remove it), the context menu that offers them with "Show Log" on
 * a job's item in the Running sidebar and on a job's log tab, and the command
 * palette's "Jobs" commands: stop all running jobs, open the log of a job.
 *
 * Each job command acts on the job `args.id` or, from a context menu, on the
 * job whose item or tab was right-clicked (or had the keyboard's context menu
 * key), found the way JupyterLab's Kernels section finds its kernel:
 * `app.contextMenuHitTest` and the node's data attributes.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  ICommandPalette,
  InputDialog,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { IJob, isFinished } from './api';
import { describeState } from './describe';
import { LOG_TAB_CLASS } from './logview';
import { JobsModel } from './model';
import { noticeName } from './notify';
import { JOB_ITEM_CLASS, jobIdFromContext } from './running';

/** The commands this extension adds. */
export const CommandIDs = {
  /** Open (or reveal) the job's log panel. */
  openLog: 'jobmagic:open-log',
  /** Stop the job (SIGTERM, then SIGKILL). */
  stop: 'jobmagic:stop',
  /** Pause the running job (SIGSTOP). */
  pause: 'jobmagic:pause-job',
  /** Let the paused job go on (SIGCONT). */
  resume: 'jobmagic:resume-job',
  /** Start the ended job again as a new job. */
  restart: 'jobmagic:restart-job',
  /** Copy the job's command line to the clipboard. */
  copyCommand: 'jobmagic:copy-command',
  /** Copy the path of the job's log file (on the server) to the clipboard. */
  copyLogPath: 'jobmagic:copy-log-path',
  /** Delete the ended job's record and log, after asking. */
  remove: 'jobmagic:remove-job',
  /** Stop every job that has not ended, after asking. */
  stopAll: 'jobmagic:stop-all',
  /** Ask which job, then open its log. */
  openLogOf: 'jobmagic:open-log-of'
} as const;

/** The items whose context menu has the job commands. */
const JOB_ITEM_SELECTOR = `.jp-RunningSessions-item.${JOB_ITEM_CLASS}`;
/** The main area's tabs of job logs, whose context menu has them too. */
const LOG_TAB_SELECTOR = `.lm-TabBar-tab.${LOG_TAB_CLASS}`;

/** The category of the jobmagic commands in the command palette. */
const PALETTE_CATEGORY = 'Jobs';

/**
 * The id of the job a command acts on: `args.id`, else the job whose sidebar
 * item or log tab the context menu was opened on; undefined when there is
 * neither.
 */
export function jobIdOf(
  app: JupyterFrontEnd,
  args: ReadonlyPartialJSONObject
): number | undefined {
  if (args.id !== undefined) {
    return Number(args.id);
  }
  const node = app.contextMenuHitTest(
    candidate =>
      candidate.classList.contains(JOB_ITEM_CLASS) ||
      candidate.classList.contains(LOG_TAB_CLASS)
  );
  if (node?.classList.contains(LOG_TAB_CLASS)) {
    // The tab's `data-jobmagic-job`, from the panel's `title.dataset`.
    const id = Number(node.dataset['jobmagicJob']);
    return Number.isSafeInteger(id) && id > 0 ? id : undefined;
  }
  return jobIdFromContext(node?.dataset['context']);
}

/** One action on a job, as a command. */
interface IJobAction {
  id: string;
  /** The verb of its label: "Pause" makes "Pause Job" and "Pause Job 7". */
  verb: string;
  caption: string;
  /** Whether it applies to a job in this state (else it is disabled). */
  applies: (job: IJob) => boolean;
  act: (id: number) => Promise<unknown>;
}

/**
 * Add the stop, pause, resume and restart commands. A failed action shows an
 * error notification with the server's message (the command resolves).
 */
export function addJobActions(app: JupyterFrontEnd, model: JobsModel): void {
  const actions: IJobAction[] = [
    {
      id: CommandIDs.stop,
      verb: 'Stop',
      caption: 'Stop a jobmagic job (SIGTERM, then SIGKILL)',
      applies: job => !isFinished(job.state),
      act: id => model.stop(id)
    },
    {
      id: CommandIDs.pause,
      verb: 'Pause',
      caption:
        'Pause a running jobmagic job: its processes stop where they are (SIGSTOP)',
      applies: job => job.state === 'running',
      act: id => model.pause(id)
    },
    {
      id: CommandIDs.resume,
      verb: 'Resume',
      caption: 'Let a paused jobmagic job go on (SIGCONT)',
      applies: job => job.state === 'paused',
      act: id => model.resume(id)
    },
    {
      id: CommandIDs.restart,
      verb: 'Restart',
      caption:
        'Start an ended jobmagic job again as a new job, with the same command and options',
      applies: job => isFinished(job.state),
      act: id => model.restart(id)
    }
  ];
  for (const action of actions) {
    app.commands.addCommand(action.id, {
      label: args =>
        args.id === undefined
          ? `${action.verb} Job`
          : `${action.verb} Job ${Number(args.id)}`,
      caption: action.caption,
      isEnabled: args => {
        const id = jobIdOf(app, args);
        const job = id === undefined ? undefined : model.job(id);
        return job !== undefined && action.applies(job);
      },
      execute: async args => {
        const id = jobIdOf(app, args);
        if (id === undefined) {
          return undefined;
        }
        try {
          return await action.act(id);
        } catch (reason) {
          Notification.error(
            `Could not ${action.verb.toLowerCase()} job ${id}: ${messageOf(reason)}`,
            { autoClose: false }
          );
          return undefined;
        }
      }
    });
  }
}

/**
 * Add the commands that copy a job's command or log path, and the one that
 * removes an ended job (after a dialog that asks).
 */
export function addCopyAndRemoveCommands(
  app: JupyterFrontEnd,
  model: JobsModel
): void {
  const jobOf = (args: ReadonlyPartialJSONObject): IJob | undefined => {
    const id = jobIdOf(app, args);
    return id === undefined ? undefined : model.job(id);
  };
  const labelOf =
    (what: string) =>
    (args: ReadonlyPartialJSONObject): string =>
      args.id === undefined ? what : `${what} of Job ${Number(args.id)}`;
  // The clipboard takes text only during the user's click or key press: the
  // copy must happen before the command's first await.
  app.commands.addCommand(CommandIDs.copyCommand, {
    label: labelOf('Copy Command'),
    caption: "Copy the job's command line to the clipboard",
    isEnabled: args => jobOf(args) !== undefined,
    execute: args => {
      const job = jobOf(args);
      if (job) {
        Clipboard.copyToSystem(job.command);
      }
    }
  });
  app.commands.addCommand(CommandIDs.copyLogPath, {
    label: labelOf('Copy Log Path'),
    caption:
      "Copy the path of the job's log file on the server to the clipboard",
    isEnabled: args => !!jobOf(args)?.log_path,
    execute: args => {
      const path = jobOf(args)?.log_path;
      if (path) {
        Clipboard.copyToSystem(path);
      }
    }
  });
  app.commands.addCommand(CommandIDs.remove, {
    label: args =>
      args.id === undefined ? 'Remove Job' : `Remove Job ${Number(args.id)}`,
    caption: "Delete an ended job's record and its log",
    isEnabled: args => {
      const job = jobOf(args);
      return job !== undefined && isFinished(job.state);
    },
    execute: async args => {
      const job = jobOf(args);
      if (!job) {
        return;
      }
      const answer = await showDialog({
        title: `Remove job ${noticeName(job)}?`,
        body: 'Its record and its log are deleted. This cannot be undone.',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
      });
      if (!answer.button.accept) {
        return;
      }
      try {
        await model.api.removeJob(job.id);
      } catch (reason) {
        Notification.error(
          `Could not remove job ${job.id}: ${messageOf(reason)}`,
          { autoClose: false }
        );
        return;
      }
      // Its log is gone: so is its log panel (whose tab carries its id).
      for (const widget of app.shell.widgets('main')) {
        if (widget.title.dataset['jobmagic-job'] === String(job.id)) {
          widget.close();
        }
      }
    }
  });
}

/**
 * Add the commands on every job, for the command palette (under "Jobs" when
 * there is one): stop all running jobs (after a dialog that asks), and open
 * the log of a job chosen from a list, newest first.
 */
export function addJobsCommands(
  app: JupyterFrontEnd,
  model: JobsModel,
  palette: ICommandPalette | null
): void {
  const activeJobs = (): IJob[] =>
    model.jobs.filter(job => !isFinished(job.state));
  app.commands.addCommand(CommandIDs.stopAll, {
    label: 'Stop all running',
    caption:
      'Stop every job that has not ended (SIGTERM, then SIGKILL), after asking',
    isEnabled: () => activeJobs().length > 0,
    execute: async () => {
      const jobs = activeJobs();
      if (jobs.length === 0) {
        return;
      }
      const n = jobs.length;
      // What the Running sidebar's "Shut Down All" asks.
      const answer = await showDialog({
        title: 'Stop all running jobs',
        body: `Stop ${n} job${n === 1 ? '' : 's'}? Each job's processes get SIGTERM, then SIGKILL if they do not exit.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
      });
      if (!answer.button.accept) {
        return;
      }
      const results = await Promise.allSettled(
        jobs.map(job => model.stop(job.id))
      );
      const failed = results.filter(result => result.status === 'rejected');
      if (failed.length > 0) {
        Notification.error(
          `Could not stop ${failed.length} of ${n} jobs: ${messageOf(failed[0].reason)}`,
          { autoClose: false }
        );
      }
    }
  });
  app.commands.addCommand(CommandIDs.openLogOf, {
    label: 'Open log of…',
    caption: 'Choose a job, then open its log',
    isEnabled: () => model.jobs.length > 0,
    execute: async () => {
      // Newest first; each label names the job's id, so the labels differ.
      const jobs = [...model.jobs].reverse();
      const labels = jobs.map(
        job => `${noticeName(job)} ${describeState(job)}`
      );
      const answer = await InputDialog.getItem({
        title: 'Open the log of a job',
        label: 'Job',
        items: labels,
        current: 0,
        okLabel: 'Open'
      });
      const index = answer.value === null ? -1 : labels.indexOf(answer.value);
      if (answer.button.accept && index >= 0) {
        await app.commands.execute(CommandIDs.openLog, { id: jobs[index].id });
      }
    }
  });
  if (palette) {
    for (const command of [CommandIDs.stopAll, CommandIDs.openLogOf]) {
      palette.addItem({ command, category: PALETTE_CATEGORY });
    }
  }
}

/**
 * Offer the job commands in the context menu of a job's sidebar item and of a
 * job's log tab. Keyboard users open it with the context menu key or
 * Shift+F10 on the focused item or tab.
 */
export function addJobContextMenu(app: JupyterFrontEnd): void {
  // The package's schema directory has no `jupyter.lab.menus.context`
  // entries; adding the items here has the same effect. JupyterLab orders a
  // menu by rank alone, whatever the selector: the ranks stay below 4, where
  // its own tab entries ("Close Tab", ...) begin.
  const groups = [
    [
      CommandIDs.openLog,
      CommandIDs.stop,
      CommandIDs.pause,
      CommandIDs.resume,
      CommandIDs.restart
    ],
    [CommandIDs.copyCommand, CommandIDs.copyLogPath],
    [CommandIDs.remove]
  ];
  for (const selector of [JOB_ITEM_SELECTOR, LOG_TAB_SELECTOR]) {
    groups.forEach((commands, group) => {
      // Group g takes ranks g + 1 to g + 1.5, its separator g + 0.5.
      if (group > 0) {
        app.contextMenu.addItem({
          type: 'separator',
          selector,
          rank: group + 0.5
        });
      }
      commands.forEach((command, i) => {
        app.contextMenu.addItem({
          command,
          selector,
          rank: group + 1 + i / 10
        });
      });
    });
  }
  app.contextMenu.addItem({
    type: 'separator',
    selector: LOG_TAB_SELECTOR,
    rank: 3.9
  });
}

/** The message of an error, for a person. */
function messageOf(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
