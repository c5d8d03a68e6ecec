/**
 * The jobmagic JupyterLab extension: jobs in the Running sidebar (with a
 * context menu to pause, resume, restart, stop, copy or remove one, also on
 * log tabs), a live log panel per job, a "N jobs running" status bar item,
 * "Jobs" commands in the palette, and notifications when a job ends (the
 * second plugin, `jobmagic:notifications`).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  WidgetTracker
} from '@jupyterlab/apputils';
import { IRunningSessionManagers } from '@jupyterlab/running';
import { IStatusBar } from '@jupyterlab/statusbar';

import { JobsApi } from './api';
import { EventBusSocket } from './eventbus';
import {
  CommandIDs,
  addJobActions,
  addJobContextMenu,
  addCopyAndRemoveCommands,
  addJobsCommands,
  jobIdOf
} from './commands';
import { JobLogView, createLogPanel } from './logview';
import { JobsModel } from './model';
import { INotebookTree, mainArea } from './notebook7';
import { notificationsPlugin } from './notifications';
import { JobsRunningManager } from './running';
import { RUNNING_SIDEBAR_ID, giveJobsSectionRoom } from './sidebarlayout';
import { RunningJobsStatus } from './statusbar';
import { IJobmagic } from './tokens';

const plugin: JupyterFrontEndPlugin<IJobmagic> = {
  id: 'jobmagic:plugin',
  description:
    'Shows jobmagic jobs in the Running sidebar, with live logs and a status bar count.',
  autoStart: true,
  provides: IJobmagic,
  optional: [
    IRunningSessionManagers,
    IStatusBar,
    ILayoutRestorer,
    INotebookTree,
    ICommandPalette
  ],
  activate: (
    app: JupyterFrontEnd,
    runningManagers: IRunningSessionManagers | null,
    statusBar: IStatusBar | null,
    restorer: ILayoutRestorer | null,
    notebookTree: INotebookTree | null,
    palette: ICommandPalette | null
  ): IJobmagic => {
    const serverSettings = app.serviceManager.serverSettings;
    // Not app.serviceManager.events: it cannot say when it reconnects (see
    // eventbus.ts), and the model must then ask for what it missed.
    const model = new JobsModel({
      api: new JobsApi(serverSettings),
      events: new EventBusSocket({ serverSettings })
    });
    const tracker = new WidgetTracker<MainAreaWidget<JobLogView>>({
      namespace: 'jobmagic-log'
    });
    const logArea = mainArea(app, notebookTree);

    app.commands.addCommand(CommandIDs.openLog, {
      label: args =>
        args.id === undefined
          ? 'Show Job Log'
          : `Show Log of Job ${Number(args.id)}`,
      caption: 'Open the live log of a jobmagic job',
      isEnabled: args => jobIdOf(app, args) !== undefined,
      execute: args => {
        const id = jobIdOf(app, args);
        if (id === undefined) {
          return;
        }
        const open = tracker.find(panel => panel.content.jobId === id);
        if (open) {
          logArea.activate(open);
          return open;
        }
        const panel = createLogPanel({ model, jobId: id });
        void tracker.add(panel);
        logArea.add(panel);
        return panel;
      }
    });
    addJobActions(app, model);
    addCopyAndRemoveCommands(app, model);
    addJobsCommands(app, model, palette);
    addJobContextMenu(app);

    if (restorer) {
      void restorer.restore(tracker, {
        command: CommandIDs.openLog,
        args: panel => ({ id: panel.content.jobId }),
        name: panel => String(panel.content.jobId)
      });
    }

    if (runningManagers) {
      const manager = new JobsRunningManager({
        model,
        openLog: id => {
          void app.commands.execute(CommandIDs.openLog, { id });
        }
      });
      // The sidebar's section shows the items it has when it is made, and
      // misses a change that comes before its list has mounted (an empty
      // Jobs section after about one page load in four with the sidebar
      // open): it is made once the model holds the jobs.
      onceLoaded(model, () => {
        runningManagers.add(manager);
        void app.restored.then(() => giveJobsSectionRoom(app, manager.name));
      });
    }

    if (statusBar) {
      const item = new RunningJobsStatus(model, () => {
        app.shell.activateById(RUNNING_SIDEBAR_ID);
      });
      statusBar.registerStatusItem('jobmagic:running-jobs', {
        item,
        align: 'left',
        rank: 5,
        isActive: () => model.runningCount > 0,
        activeStateChanged: model.changed
      });
    }

    model.start();
    // Closing or reloading the page ends the model and its event socket; a
    // page kept in the back/forward cache keeps them, to go on where it left
    // off.
    window.addEventListener('pagehide', event => {
      if (!event.persisted) {
        model.dispose();
      }
    });
    return {
      model,
      openLog: id => {
        void app.commands.execute(CommandIDs.openLog, { id });
      }
    };
  }
};

/** Call `then` once `model` has loaded (at once if it has). */
function onceLoaded(model: JobsModel, then: () => void): void {
  if (model.loaded) {
    then();
    return;
  }
  const check = (): void => {
    if (model.loaded) {
      model.changed.disconnect(check);
      then();
    }
  };
  model.changed.connect(check);
}

export default [plugin, notificationsPlugin];
