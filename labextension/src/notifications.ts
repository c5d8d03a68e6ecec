/**
 * The `jobmagic:notifications` plugin: when a job ends while the page is
 * open, a JupyterLab notification (with "Open log" and "Re-run") and, if the
 * user turned them on, a desktop notification while the page is hidden.
 *
 * The toasts go through `Notification.emit`, so JupyterLab's own "do not
 * disturb" mode (which keeps them in the notification centre) applies to them
 * as to any other.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { IJob } from './api';
import { CommandIDs } from './commands';
import {
  DEFAULT_NOTIFY_SETTINGS,
  INotifySettings,
  JobEndWatcher,
  noticeText,
  noticeType,
  notifySettings,
  wantsNotice
} from './notify';
import { IJobmagic } from './tokens';

/** The id of this plugin, and of its settings. */
const PLUGIN_ID = 'jobmagic:notifications';

/** How long a toast of a job that went well stays, in milliseconds. */
const SUCCESS_TOAST_MS = 8000;

/**
 * Shows the notices of ended jobs the settings ask for. Settings may change at
 * any time; until the registry's arrive, the defaults hold.
 */
class JobEndNotifier {
  constructor(app: JupyterFrontEnd, jobmagic: IJobmagic) {
    this._app = app;
    this._jobmagic = jobmagic;
    this._watcher = new JobEndWatcher(jobmagic.model);
    this._watcher.ended.connect((_, job) => this._notify(job));
  }

  /** Take new settings; turning desktop notifications on asks permission once. */
  set settings(settings: INotifySettings) {
    this._settings = settings;
    const desktop = desktopNotifications();
    if (
      settings.desktop &&
      desktop?.permission === 'default' &&
      !this._askedPermission
    ) {
      this._askedPermission = true;
      desktop.requestPermission().catch(reason => {
        console.warn('jobmagic: desktop notifications not allowed', reason);
      });
    }
  }

  private _notify(job: IJob): void {
    if (!wantsNotice(job, this._settings)) {
      return;
    }
    const text = noticeText(job);
    const type = noticeType(job);
    const actions: Notification.IAction[] = [
      {
        label: 'Open log',
        caption: `Open the log of job ${job.id}`,
        callback: () => this._jobmagic.openLog(job.id)
      },
      {
        label: 'Re-run',
        caption: `Start job ${job.id} again as a new job`,
        callback: () => {
          void this._app.commands.execute(CommandIDs.restart, { id: job.id });
        }
      }
    ];
    Notification.emit(text, type, {
      // A job that went wrong stays until dismissed; autoClose 0 would show
      // no toast at all, only an entry in the notification centre.
      autoClose:
        type === 'success' || type === 'info' ? SUCCESS_TOAST_MS : false,
      actions
    });
    this._desktopNotice(job, text);
  }

  /** The desktop notification of an ended job, when one is wanted and allowed. */
  private _desktopNotice(job: IJob, text: string): void {
    const desktop = desktopNotifications();
    if (
      !this._settings.desktop ||
      !document.hidden ||
      desktop?.permission !== 'granted'
    ) {
      return;
    }
    const notice = new desktop('JupyterLab job ended', {
      body: text,
      // A second notice of the same job replaces the first rather than pile up.
      tag: `jobmagic-job-${job.id}`
    });
    notice.onclick = () => {
      window.focus();
      this._jobmagic.openLog(job.id);
      notice.close();
    };
  }

  private readonly _app: JupyterFrontEnd;
  private readonly _jobmagic: IJobmagic;
  private readonly _watcher: JobEndWatcher;
  private _settings: INotifySettings = { ...DEFAULT_NOTIFY_SETTINGS };
  private _askedPermission = false;
}

/** The browser's desktop notifications (`window.Notification`), if it has them. */
function desktopNotifications(): typeof window.Notification | undefined {
  return 'Notification' in window ? window.Notification : undefined;
}

export const notificationsPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Notifies when a jobmagic job ends (a toast with "Open log" and "Re-run", optionally a desktop notification), as its settings say.',
  autoStart: true,
  requires: [IJobmagic, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    jobmagic: IJobmagic,
    registry: ISettingRegistry
  ): void => {
    const notifier = new JobEndNotifier(app, jobmagic);
    registry
      .load(PLUGIN_ID)
      .then(settings => {
        const apply = (): void => {
          notifier.settings = notifySettings(settings.composite);
        };
        settings.changed.connect(apply);
        apply();
      })
      .catch(reason => {
        console.warn(
          'jobmagic: notification settings unavailable; using the defaults',
          reason
        );
      });
  }
};
