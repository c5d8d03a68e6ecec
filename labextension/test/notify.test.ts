/**
 * `JobEndWatcher` over a real `JobsModel` fed by a scripted server, and what a
 * notice of an ended job says and to whom the settings send it.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { IJob } from '../src/api';
import { JobsModel } from '../src/model';
import {
  DEFAULT_NOTIFY_SETTINGS,
  INotifySettings,
  JobEndWatcher,
  isFailure,
  noticeName,
  noticeText,
  noticeType,
  notifySettings,
  outcome,
  wantsNotice
} from '../src/notify';
import {
  FakeEventSource,
  FakeJobServer,
  makeJob,
  sleep,
  waitFor
} from './fakes';

const models: JobsModel[] = [];
const watchers: JobEndWatcher[] = [];

afterEach(() => {
  watchers.splice(0).forEach(watcher => watcher.dispose());
  models.splice(0).forEach(model => model.dispose());
});

/**
 * A model over a fake store whose jobs become those of `reports`, one report
 * per `next()`: the first is the model's first load, each later one reaches
 * it as the server's event of what changed. A watcher over the model records
 * the ids of the jobs it reports ended.
 */
function watched(
  reports: IJob[][],
  { loadFirst = false } = {}
): Promise<{ model: JobsModel; ended: number[]; next: () => Promise<void> }> {
  const server = new FakeJobServer();
  const events = new FakeEventSource();
  const model = new JobsModel({ api: server.api, events });
  models.push(model);
  const ended: number[] = [];
  const watch = (): void => {
    const watcher = new JobEndWatcher(model);
    watcher.ended.connect((_, job) => ended.push(job.id));
    watchers.push(watcher);
  };
  let index = 0;
  const next = async (): Promise<void> => {
    const previous = server.revision;
    const report = reports[index++];
    const kept = new Set(report.map(job => job.id));
    for (const job of server.jobs) {
      if (!kept.has(job.id)) {
        server.remove(job.id);
      }
    }
    report.forEach(job => server.set(job));
    if (!model.loaded) {
      model.start();
      events.open();
      await waitFor(() => model.loaded, 3000, 'the first load');
      return;
    }
    events.push(server.event(previous));
    await sleep(0);
  };
  if (loadFirst) {
    return next().then(() => {
      watch();
      return { model, ended, next };
    });
  }
  watch();
  return Promise.resolve({ model, ended, next });
}

const running = (id: number): IJob => makeJob({ id, state: 'running' });
const failed = (id: number, runtime = 12.3): IJob =>
  makeJob({
    id,
    state: 'failed',
    exit_code: 3,
    exit_text: 'exit code 3',
    runtime
  });
const succeeded = (id: number, runtime = 12.3): IJob =>
  makeJob({ id, state: 'succeeded', exit_code: 0, runtime });

describe('JobEndWatcher', () => {
  it('reports a job seen active that is now finished, once', async () => {
    const { ended, next } = await watched([
      [running(1), running(2)],
      [failed(1), running(2)],
      [failed(1), succeeded(2)],
      [failed(1), succeeded(2), running(3)]
    ]);
    await next();
    assert.deepEqual(ended, [], 'nothing has ended yet');
    await next();
    assert.deepEqual(ended, [1]);
    await next();
    assert.deepEqual(ended, [1, 2]);
    await next();
    assert.deepEqual(ended, [1, 2], 'no job is reported twice');
  });

  it('never reports jobs that had finished at the first load', async () => {
    const { ended, next } = await watched([
      [failed(1), succeeded(2), running(3)],
      [failed(1), succeeded(2), failed(3)]
    ]);
    await next();
    assert.deepEqual(ended, []);
    await next();
    assert.deepEqual(ended, [3]);
  });

  it('takes the jobs of an already loaded model as the first load', async () => {
    const { ended, next } = await watched(
      [
        [failed(1), running(2)],
        [failed(1), succeeded(2)]
      ],
      { loadFirst: true }
    );
    assert.deepEqual(ended, []);
    await next();
    assert.deepEqual(ended, [2]);
  });

  it('reports a new job that first appears finished, not an older one', async () => {
    const { ended, next } = await watched([
      [failed(5), running(6)],
      // Job 7 started and ended between two reports; job 2 is older history
      // that came into the list.
      [succeeded(2), failed(5), running(6), failed(7)],
      [succeeded(2), failed(5), running(6), failed(7)]
    ]);
    await next();
    await next();
    assert.deepEqual(ended, [7]);
    await next();
    assert.deepEqual(ended, [7]);
  });

  it('reports a queued job that was stopped before it ran', async () => {
    const { ended, next } = await watched([
      [makeJob({ id: 1, state: 'queued', runtime: null })],
      [makeJob({ id: 1, state: 'stopped', runtime: null })]
    ]);
    await next();
    await next();
    assert.deepEqual(ended, [1]);
  });

  it('reports a job removed and gone no more, and nothing after dispose', async () => {
    const { ended, next } = await watched([
      [running(1), running(2)],
      [running(2)],
      [failed(1), running(2)],
      [failed(1), failed(2)]
    ]);
    await next();
    await next();
    // Job 1 was out of the list for one report (a shorter page of history);
    // seen active before, it is reported when it comes back finished.
    await next();
    assert.deepEqual(ended, [1]);
    watchers[0].dispose();
    await next();
    assert.deepEqual(ended, [1]);
  });
});

describe('wantsNotice', () => {
  const settings = (fields: Partial<INotifySettings>): INotifySettings => ({
    ...DEFAULT_NOTIFY_SETTINGS,
    ...fields
  });

  it('by default: every outcome, for jobs that ran at least 10 s', () => {
    assert.equal(wantsNotice(succeeded(1, 10), DEFAULT_NOTIFY_SETTINGS), true);
    assert.equal(wantsNotice(failed(1, 60), DEFAULT_NOTIFY_SETTINGS), true);
    assert.equal(wantsNotice(failed(1, 9.9), DEFAULT_NOTIFY_SETTINGS), false);
    assert.equal(wantsNotice(failed(1, 0.1), DEFAULT_NOTIFY_SETTINGS), false);
  });

  it('with a minimum of 0: every job, one that never ran too', () => {
    const every = settings({ minRuntime: 0 });
    assert.equal(wantsNotice(failed(1, 0.1), every), true);
    const neverRan = makeJob({ state: 'stopped', runtime: null });
    assert.equal(wantsNotice(neverRan, every), true);
    assert.equal(wantsNotice(neverRan, DEFAULT_NOTIFY_SETTINGS), false);
  });

  it('"failures": failed jobs and time limits, not successes or stops', () => {
    const failures = settings({ notifyOn: 'failures' });
    assert.equal(wantsNotice(failed(1), failures), true);
    assert.equal(wantsNotice(succeeded(1), failures), false);
    const stopped = makeJob({
      state: 'stopped',
      runtime: 30,
      stop_requested_by: 'ui'
    });
    assert.equal(wantsNotice(stopped, failures), false);
    const timedOut = { ...stopped, stop_requested_by: 'timeout' };
    assert.equal(wantsNotice(timedOut, failures), true);
    assert.equal(isFailure(timedOut), true);
    assert.equal(isFailure(stopped), false);
  });

  it('"none": nothing', () => {
    const none = settings({ notifyOn: 'none', minRuntime: 0 });
    assert.equal(wantsNotice(failed(1), none), false);
  });
});

describe('notifySettings', () => {
  it('reads the settings and keeps the defaults for bad values', () => {
    assert.deepEqual(notifySettings({}), DEFAULT_NOTIFY_SETTINGS);
    assert.deepEqual(
      notifySettings({ notifyOn: 'failures', minRuntime: 0, desktop: true }),
      { notifyOn: 'failures', minRuntime: 0, desktop: true }
    );
    assert.deepEqual(
      notifySettings({ notifyOn: 'some', minRuntime: -1, desktop: 'yes' }),
      DEFAULT_NOTIFY_SETTINGS
    );
  });
});

describe('notice text', () => {
  it('names the job, its outcome and its runtime', () => {
    assert.equal(
      noticeText(failed(12, 12.3)),
      'sleep 10 (#12) failed: exit code 3 after 12.3s'
    );
    const train = { ...failed(12, 64), name: 'train' };
    assert.equal(
      noticeText(train),
      'train (#12) failed: exit code 3 after 1m04s'
    );
    assert.equal(
      noticeText({ ...succeeded(3, 5), name: 'prep' }),
      'prep (#3) succeeded after 5.0s'
    );
    const neverRan = makeJob({ id: 4, state: 'stopped', runtime: null });
    assert.equal(noticeText(neverRan), 'sleep 10 (#4) stopped');
  });

  it('shortens a long command', () => {
    const job = makeJob({
      id: 9,
      command: `python train.py ${'x'.repeat(80)}`
    });
    const name = noticeName(job);
    assert.equal(name.length, 40 + ' (#9)'.length);
    assert.ok(name.startsWith('python train.py xxx'));
    assert.ok(name.endsWith('… (#9)'));
  });

  it('says how it ended', () => {
    assert.equal(outcome(succeeded(1)), 'succeeded');
    assert.equal(outcome(failed(1)), 'failed: exit code 3');
    assert.equal(
      outcome(
        makeJob({
          state: 'failed',
          exit_text: null,
          error: 'command not found: pyhton'
        })
      ),
      'failed: command not found: pyhton'
    );
    assert.equal(outcome(makeJob({ state: 'failed' })), 'failed');
    const stopped = makeJob({
      state: 'stopped',
      exit_text: 'killed by SIGTERM',
      stop_requested_by: 'ui'
    });
    assert.equal(outcome(stopped), 'stopped');
    assert.equal(
      outcome({ ...stopped, stop_requested_by: 'timeout' }),
      'stopped: timed out'
    );
  });

  it('picks the toast type from the outcome', () => {
    assert.equal(noticeType(succeeded(1)), 'success');
    assert.equal(noticeType(failed(1)), 'error');
    const stopped = makeJob({ state: 'stopped', stop_requested_by: 'ui' });
    assert.equal(noticeType(stopped), 'info');
    assert.equal(
      noticeType({ ...stopped, stop_requested_by: 'timeout' }),
      'warning'
    );
  });
});
