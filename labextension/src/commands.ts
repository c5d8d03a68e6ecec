/**
 * The commands on one job (stop, pause, resume, restart) and the context menu
 * of a job's item in the Running sidebar, which offers them and "Show Log".
 *
 * Each command acts on the job `args.id` or, from that context menu, on the
 * job whose item was right-clicked, found the way JupyterLab's Kernels section
 * finds its kernel: `app.contextMenuHitTest` and the item's `data-context`.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { IJob, isFinished } from './api';
import { JobsModel } from './model';
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
  restart: 'jobmagic:restart-job'
} as const;

/** The items whose context menu has the job commands. */
const JOB_ITEM_SELECTOR = `.jp-RunningSessions-item.${JOB_ITEM_CLASS}`;

/**
 * The id of the job a command acts on: `args.id`, else the job whose sidebar
 * item the context menu was opened on; undefined when there is neither.
 */
export function jobIdOf(
  app: JupyterFrontEnd,
  args: ReadonlyPartialJSONObject
): number | undefined {
  if (args.id !== undefined) {
    return Number(args.id);
  }
  const node = app.contextMenuHitTest(candidate =>
    candidate.classList.contains(JOB_ITEM_CLASS)
  );
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
          const message =
            reason instanceof Error ? reason.message : String(reason);
          Notification.error(
            `Could not ${action.verb.toLowerCase()} job ${id}: ${message}`,
            { autoClose: false }
          );
          return undefined;
        }
      }
    });
  }
}

/** Offer the job commands in the context menu of a job's sidebar item. */
export function addJobContextMenu(app: JupyterFrontEnd): void {
  // The package has no schema directory for `jupyter.lab.menus.context`
  // entries; adding the items here has the same effect.
  const commands = [
    CommandIDs.openLog,
    CommandIDs.pause,
    CommandIDs.resume,
    CommandIDs.restart,
    CommandIDs.stop
  ];
  commands.forEach((command, rank) => {
    app.contextMenu.addItem({ command, selector: JOB_ITEM_SELECTOR, rank });
  });
}
