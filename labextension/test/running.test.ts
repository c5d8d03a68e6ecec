/**
 * `JobsRunningManager`: the items of the Running sidebar's Jobs section, in
 * the flat list and in the tree by queue group.
 */
import './uistub';

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { IRunningSessions } from '@jupyterlab/running';
import {
  historyIcon,
  listIcon,
  pauseIcon,
  runIcon,
  stopIcon
} from '@jupyterlab/ui-components';

import { IJob, JobState } from '../src/api';
import { JobsModel } from '../src/model';
import {
  JobsRunningManager,
  jobContext,
  jobIdFromContext
} from '../src/running';
import { FakeListApi, makeJob, makeList } from './fakes';

type Item = IRunningSessions.IRunningItem;

const managers: JobsRunningManager[] = [];
const models: JobsModel[] = [];

afterEach(() => {
  managers.splice(0).forEach(manager => manager.dispose());
  models.splice(0).forEach(model => model.dispose());
});

/** A manager over a model that holds `jobs`; `fake` records the API calls. */
async function managerOf(
  jobs: IJob[]
): Promise<{ manager: JobsRunningManager; fake: FakeListApi }> {
  const fake = new FakeListApi(() => Promise.resolve(makeList(1, jobs)));
  const model = new JobsModel({ api: fake.api });
  models.push(model);
  await model.refresh();
  const manager = new JobsRunningManager({ model, openLog: () => undefined });
  managers.push(manager);
  return { manager, fake };
}

/** What a person reads on an item: its label and its detail. */
function shown(item: Item): string {
  const label = item.label();
  assert.equal(typeof label, 'string', 'the labels are plain text');
  const detail = item.detail?.();
  return detail ? `${label as string} | ${detail}` : (label as string);
}

/** Jobs of two groups, as the server would send them. */
function twoGroups(): IJob[] {
  const now = Date.now() / 1000;
  return [
    makeJob({ id: 1, name: 'prep', runtime: 30 }),
    makeJob({ id: 2, name: 'train-a', group: 'gpu' }),
    makeJob({
      id: 3,
      name: 'train-b',
      group: 'gpu',
      state: 'paused',
      runtime: 12,
      paused_at: now - 60
    }),
    makeJob({
      id: 4,
      name: 'train-c',
      group: 'gpu',
      state: 'queued',
      started_at: null,
      runtime: null,
      queue_reason: '1st in group gpu (2/2 running)'
    }),
    makeJob({
      id: 5,
      name: 'fetch',
      state: 'succeeded',
      exit_code: 0,
      ended_at: now - 5,
      runtime: 2
    })
  ];
}

describe('JobsRunningManager in list mode', () => {
  it('lists the active jobs newest first, then the ended ones', async () => {
    const { manager } = await managerOf(twoGroups());
    const items = manager.running({ mode: 'list' });
    assert.deepEqual(
      items.map(item => item.context),
      [4, 3, 2, 1, 5].map(jobContext)
    );
    assert.ok(items.every(item => item.children === undefined));
    // Before JupyterLab 4.3 the sidebar passes no mode: the same flat list.
    assert.deepEqual(manager.running().map(shown), items.map(shown));
  });

  it('shows a paused job with the pause icon and its frozen runtime', async () => {
    const { manager } = await managerOf(twoGroups());
    const paused = manager
      .running({ mode: 'list' })
      .find(item => item.context === jobContext(3));
    assert.ok(paused);
    assert.equal(paused.icon(), pauseIcon);
    assert.equal(paused.detail?.(), 'paused 12.0s');
    assert.match(paused.className ?? '', /\bjp-mod-paused\b/);
    assert.ok(paused.shutdown, 'a paused job can be stopped');
  });

  it("shows why a queued job waits, the whole reason in the label's title", async () => {
    const { manager } = await managerOf(twoGroups());
    const queued = manager
      .running({ mode: 'list' })
      .find(item => item.context === jobContext(4));
    assert.ok(queued);
    assert.equal(queued.icon(), historyIcon);
    assert.equal(queued.detail?.(), '1st in group gpu (2/2 r…');
    assert.match(
      queued.labelTitle?.() ?? '',
      /^Waiting: 1st in group gpu \(2\/2 running\)$/m
    );
  });

  it('has an icon for every state, a different one each', async () => {
    const states: JobState[] = [
      'queued',
      'running',
      'paused',
      'succeeded',
      'failed',
      'stopped'
    ];
    const { manager } = await managerOf(
      states.map((state, i) => makeJob({ id: i + 1, state }))
    );
    const icons = manager.running({ mode: 'list' }).map(item => item.icon());
    assert.equal(icons.length, states.length);
    assert.ok(icons.every(icon => icon !== undefined));
    assert.equal(new Set(icons).size, states.length);
  });

  it('shows a job being stopped as stopping, with the grace left, and no stop button', async () => {
    const { manager } = await managerOf([
      makeJob({ id: 1, stop_requested_by: 'ui', stop_grace_left: 4.2 }),
      makeJob({ id: 2, stop_requested_by: 'kernel', stop_grace_left: 0 }),
      makeJob({ id: 3, stop_requested_by: 'cli', stop_grace_left: null })
    ]);
    const items = manager.running({ mode: 'list' });
    assert.deepEqual(items.map(shown), [
      'sleep 10 | stopping',
      'sleep 10 | stopping: killing',
      'sleep 10 | stopping 5s left'
    ]);
    for (const item of items) {
      assert.match(item.className ?? '', /\bjp-mod-stopping\b/);
      assert.equal(item.icon(), stopIcon);
      assert.equal(item.shutdown, undefined);
    }
    assert.match(
      items[2].labelTitle?.() ?? '',
      /^State: stopping \(5s left\)$/m
    );
    assert.match(items[2].labelTitle?.() ?? '', /^Stop asked by: ui$/m);
  });

  it('collapses finished jobs beyond the latest ten into "N more finished"', async () => {
    const now = Date.now() / 1000;
    const ended = Array.from({ length: 14 }, (_, i) =>
      makeJob({
        id: i + 1,
        name: `done-${i + 1}`,
        state: 'succeeded',
        exit_code: 0,
        ended_at: now - 100 + i,
        runtime: 1
      })
    );
    const { manager } = await managerOf([
      ...ended,
      makeJob({ id: 15, name: 'live' })
    ]);
    const names = (items: Item[]): string[] =>
      items.map(item => item.label() as string);
    const items = manager.running({ mode: 'list' });
    assert.deepEqual(names(items), [
      'live',
      ...[14, 13, 12, 11, 10, 9, 8, 7, 6, 5].map(i => `done-${i}`),
      '4 more finished'
    ]);
    const more = items[items.length - 1];
    assert.match(more.className ?? '', /\bjp-JobmagicMore\b/);
    assert.equal(more.shutdown, undefined);
    let changes = 0;
    manager.runningChanged.connect(() => changes++);
    more.open?.();
    assert.equal(changes, 1);
    const all = manager.running({ mode: 'list' });
    assert.equal(all.length, 1 + 14 + 1);
    assert.equal(all[all.length - 1].label(), 'Show fewer finished');
    assert.deepEqual(names(all).slice(-5, -1), [
      'done-4',
      'done-3',
      'done-2',
      'done-1'
    ]);
    all[all.length - 1].open?.();
    assert.equal(manager.running({ mode: 'list' }).length, 12);
    // In the tree the item comes last too.
    const tree = manager.running({ mode: 'tree' });
    assert.equal(tree[tree.length - 1].label(), '4 more finished');
  });

  it('has no "more finished" item while every finished job is listed', async () => {
    const { manager } = await managerOf([
      makeJob({ id: 1, state: 'failed', exit_code: 1, ended_at: 1 })
    ]);
    assert.deepEqual(
      manager.running({ mode: 'list' }).map(item => item.context),
      [jobContext(1)]
    );
  });

  it('stops every active job, paused and queued ones too, on "Shut Down All"', async () => {
    const { manager, fake } = await managerOf(twoGroups());
    assert.match(manager.shutdownAllConfirmationText(), /^Stop 4 jobs\?/);
    manager.shutdownAll();
    assert.deepEqual(
      fake.stopped.sort((a, b) => a - b),
      [1, 2, 3, 4]
    );
  });
});

describe('JobsRunningManager in tree mode', () => {
  it('offers both views', async () => {
    const { manager } = await managerOf([]);
    assert.equal(manager.supportsMultipleViews, true);
    assert.deepEqual(manager.running({ mode: 'tree' }), []);
  });

  it('lists "default" jobs as in the list, then one item per named group', async () => {
    const { manager } = await managerOf(twoGroups());
    const items = manager.running({ mode: 'tree' });
    const list = manager.running({ mode: 'list' });
    const defaults = list.filter(item =>
      [1, 5].map(jobContext).includes(item.context ?? '')
    );
    assert.deepEqual(
      items.slice(0, 2).map(item => item.context),
      defaults.map(item => item.context)
    );
    assert.equal(items[0].children, undefined);
    const groups = items.slice(2);
    assert.deepEqual(groups.map(shown), [
      'gpu — 1 running, 1 paused, 1 queued'
    ]);
    assert.deepEqual(
      groups.map(group => group.children?.map(child => child.context)),
      [[4, 3, 2].map(jobContext)]
    );
    const [gpu] = groups;
    assert.equal(gpu.icon(), listIcon);
    assert.match(gpu.className ?? '', /\bjp-JobmagicGroup\b/);
    assert.doesNotMatch(gpu.className ?? '', /\bjp-JobmagicItem\b/);
    // Stopping a whole group takes "Shut Down All", which asks first.
    assert.equal(gpu.shutdown, undefined);
    // The children are the list's items: same text, icons and stop buttons.
    for (const child of groups.flatMap(group => group.children ?? [])) {
      const same = list.find(item => item.context === child.context);
      assert.ok(same);
      assert.equal(shown(child), shown(same));
      assert.equal(child.icon(), same.icon());
      assert.equal(child.shutdown === undefined, same.shutdown === undefined);
    }
    assert.equal(gpu.children?.[2].icon(), runIcon);
  });

  it('says a group is paused when its queued jobs wait for that', async () => {
    const { manager } = await managerOf([
      makeJob({ id: 1, group: 'gpu', state: 'paused', paused_at: 1 }),
      makeJob({
        id: 2,
        group: 'gpu',
        state: 'queued',
        queue_reason: 'group gpu is paused'
      }),
      makeJob({ id: 3, group: 'cpu' })
    ]);
    const [cpu, gpu] = manager.running({ mode: 'tree' });
    assert.equal(shown(cpu), 'cpu — 1 running');
    assert.equal(shown(gpu), 'gpu (paused) — 1 paused, 1 queued');
    assert.equal(gpu.icon(), pauseIcon);
    assert.match(gpu.className ?? '', /\bjp-mod-paused\b/);
    // The sidebar may cut the label; its title has it whole.
    assert.equal(
      gpu.labelTitle?.(),
      'Queue group gpu (paused) — 1 paused, 1 queued\n' +
        'Paused: its queued jobs wait until it is resumed'
    );
  });
});

describe('jobContext and jobIdFromContext', () => {
  it('name a job in data-context and read it back', () => {
    assert.equal(jobIdFromContext(jobContext(42)), 42);
    assert.equal(jobIdFromContext('jobmagic-group-gpu'), undefined);
    assert.equal(jobIdFromContext(undefined), undefined);
    assert.equal(jobIdFromContext('jobmagic-job-4x'), undefined);
  });
});
