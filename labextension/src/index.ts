/**
 * The jobmagic JupyterLab extension: jobs in the Running sidebar (with a
 * context menu to pause, resume, restart or stop one), a live log panel per
 * job, and a "N jobs running" status bar item.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { IRunningSessionManagers } from '@jupyterlab/running';
import { IStatusBar } from '@jupyterlab/statusbar';

import { JobsApi } from './api';
import { EventBusSocket } from './eventbus';
import {
  CommandIDs,
  addJobActions,
  addJobContextMenu,
  jobIdOf
} from './commands';
import { JobLogView, createLogPanel } from './logview';
import { JobsModel } from './model';
import { JobsRunningManager } from './running';
import { RunningJobsStatus } from './statusbar';

/** The id of JupyterLab's Running sidebar. */
const RUNNING_SIDEBAR_ID = 'jp-running-sessions';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jobmagic:plugin',
  description:
    'Shows jobmagic jobs in the Running sidebar, with live logs and a status bar count.',
  autoStart: true,
  optional: [IRunningSessionManagers, IStatusBar, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    runningManagers: IRunningSessionManagers | null,
    statusBar: IStatusBar | null,
    restorer: ILayoutRestorer | null
  ): void => {
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
          app.shell.activateById(open.id);
          return open;
        }
        const panel = createLogPanel({ model, jobId: id });
        void tracker.add(panel);
        app.shell.add(panel, 'main');
        app.shell.activateById(panel.id);
        return panel;
      }
    });
    addJobActions(app, model);
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
      runningManagers.add(manager);
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
  }
};

export default plugin;
