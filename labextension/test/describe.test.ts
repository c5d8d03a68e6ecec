/**
 * How jobs are described to people: the exit is the server's `exit_text`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  REASON_WIDTH,
  briefState,
  describeState,
  formatBytes,
  formatDuration,
  groupLabel,
  isGroupPaused,
  jobDetail,
  jobLabel,
  jobTooltip,
  shorten
} from '../src/describe';
import { findUp, makeJob } from './fakes';

describe('describeState', () => {
  it('names a running job by its state', () => {
    assert.equal(describeState(makeJob()), 'running');
    assert.equal(
      describeState(makeJob({ orphaned: true })),
      'running (orphaned)'
    );
    assert.equal(
      describeState(makeJob({ state: 'queued', orphaned: true })),
      'queued (orphaned)'
    );
  });

  it('adds what the backend says of a running job', () => {
    const waiting = makeJob({
      backend: 'ray',
      detail: 'waiting for the Ray cluster'
    });
    assert.equal(
      describeState(waiting),
      'running (waiting for the Ray cluster)'
    );
    assert.equal(jobDetail(waiting, 5), 'waiting for the Ray clu…');
    assert.equal(
      describeState({ ...waiting, orphaned: true }),
      'running (waiting for the Ray cluster) (orphaned)'
    );
    assert.equal(
      describeState({ ...waiting, state: 'failed', exit_text: 'exit code 1' }),
      'failed (exit code 1)'
    );
  });

  it("shows the server's exit_text for failed and stopped jobs", () => {
    const failed = makeJob({
      state: 'failed',
      exit_code: 3,
      exit_text: 'exit code 3'
    });
    assert.equal(describeState(failed), 'failed (exit code 3)');
    const killed = makeJob({
      state: 'stopped',
      exit_code: -9,
      exit_text: 'killed by SIGKILL'
    });
    assert.equal(describeState(killed), 'stopped (killed by SIGKILL)');
  });

  it('uses exit_text as sent, whatever the exit code', () => {
    const job = makeJob({
      state: 'stopped',
      exit_code: -64,
      exit_text: 'killed by signal 64'
    });
    assert.equal(describeState(job), 'stopped (killed by signal 64)');
  });

  it('says no more than the state without an exit_text', () => {
    assert.equal(describeState(makeJob({ state: 'failed' })), 'failed');
    const succeeded = makeJob({
      state: 'succeeded',
      exit_code: 0,
      exit_text: 'exit code 0'
    });
    assert.equal(describeState(succeeded), 'succeeded');
  });
});

describe('briefState and jobLabel', () => {
  it('says orphaned in one word', () => {
    assert.equal(briefState(makeJob({ orphaned: true })), 'orphaned');
    assert.equal(briefState(makeJob({ state: 'queued' })), 'queued');
    assert.equal(
      briefState(makeJob({ state: 'queued', orphaned: true })),
      'orphaned'
    );
  });

  it('labels a job by its name, else its command', () => {
    assert.equal(jobLabel(makeJob({ name: 'train' })), 'train');
    assert.equal(jobLabel(makeJob()), 'sleep 10');
  });
});

describe('jobTooltip', () => {
  it('names the notebook that started the job, then its kernel', () => {
    const tooltip = jobTooltip(
      makeJob({ notebook: 'work/train.ipynb', owner: 'vm:19036' })
    );
    assert.match(tooltip, /^Notebook: work\/train\.ipynb$/m);
    assert.match(tooltip, /^Kernel: vm:19036$/m);
    assert.ok(
      tooltip.indexOf('Notebook:') < tooltip.indexOf('Kernel:'),
      'the notebook comes first'
    );
    const orphan = jobTooltip(makeJob({ orphaned: true }));
    assert.doesNotMatch(orphan, /^Notebook:/m);
    assert.match(orphan, /^Kernel: host:99 \(gone\)$/m);
  });

  it('says a stop is under way and how long until the kill', () => {
    const job = makeJob({ stop_requested_by: 'ui', stop_grace_left: 3 });
    assert.match(jobTooltip(job, 2.5), /^State: stopping \(3s left\)$/m);
    assert.match(jobTooltip(job, 0), /^State: stopping \(killing\)$/m);
    assert.match(jobTooltip(job), /^State: stopping$/m);
    const ended = {
      ...job,
      state: 'stopped' as const,
      exit_text: 'killed by SIGTERM'
    };
    assert.match(jobTooltip(ended), /^State: stopped \(killed by SIGTERM\)$/m);
  });

  it('describes the state with exit_text and the error', () => {
    const tooltip = jobTooltip(
      makeJob({
        state: 'failed',
        exit_code: 2,
        exit_text: 'exit code 2',
        error: 'no such file'
      })
    );
    assert.match(tooltip, /^Job 1: sleep 10$/m);
    assert.match(tooltip, /^State: failed \(exit code 2\)$/m);
    assert.match(tooltip, /^Error: no such file$/m);
  });

  it('gives the whole queue reason, the group and the job restarted', () => {
    const reason = '12th in group preprocessing (4/4 running)';
    const tooltip = jobTooltip(
      makeJob({
        state: 'queued',
        queue_reason: reason,
        group: 'preprocessing',
        restarted_from: 3
      })
    );
    assert.match(
      tooltip,
      /^Waiting: 12th in group preprocessing \(4\/4 running\)$/m
    );
    assert.match(tooltip, /^Group: preprocessing$/m);
    assert.match(tooltip, /^Restart of: job 3$/m);
    assert.doesNotMatch(jobTooltip(makeJob()), /^Group:/m);
  });

  it('says where a job on a cluster runs, and nothing for a local one', () => {
    const tooltip = jobTooltip(
      makeJob({
        backend: 'ray',
        address: 'http://10.0.0.5:8265',
        where: 'ray http://10.0.0.5:8265',
        pid: null
      })
    );
    assert.match(tooltip, /^Runs on: ray http:\/\/10\.0\.0\.5:8265$/m);
    assert.doesNotMatch(tooltip, /^PID:/m);
    assert.doesNotMatch(jobTooltip(makeJob()), /^Runs on:/m);
  });
});

describe('jobDetail', () => {
  it('gives the state and the runtime', () => {
    assert.equal(jobDetail(makeJob(), 65), 'running 1m05s');
    assert.equal(jobDetail(makeJob({ state: 'failed' }), 1.2), 'failed 1.2s');
    assert.equal(jobDetail(makeJob({ state: 'queued' }), null), 'queued');
  });

  it('gives a paused job the runtime it was given, and says paused', () => {
    const paused = makeJob({ state: 'paused', runtime: 12, paused_at: 1 });
    assert.equal(jobDetail(paused, 12), 'paused 12.0s');
  });

  it('says why a queued job waits, cut to REASON_WIDTH', () => {
    const waiting = makeJob({
      state: 'queued',
      queue_reason: 'waiting for job 7'
    });
    assert.equal(jobDetail(waiting, null), 'waiting for job 7');
    const reason = '12th in group preprocessing (4/4 running)';
    const detail = jobDetail(
      makeJob({ state: 'queued', queue_reason: reason }),
      null
    );
    assert.equal(detail.length, REASON_WIDTH);
    assert.equal(detail, '12th in group preproces…');
  });

  it('says orphaned before any queue reason', () => {
    const orphan = makeJob({
      state: 'queued',
      orphaned: true,
      queue_reason: 'waiting for job 7'
    });
    assert.equal(jobDetail(orphan, null), 'orphaned');
  });
});

describe('shorten', () => {
  it('keeps short text and marks a cut with an ellipsis', () => {
    assert.equal(shorten('abc', 3), 'abc');
    assert.equal(shorten('abcd', 3), 'ab…');
  });
});

describe('groupLabel and isGroupPaused', () => {
  it('counts the jobs of each state', () => {
    const jobs = [
      makeJob({ id: 1 }),
      makeJob({ id: 2 }),
      makeJob({ id: 3, state: 'queued' }),
      makeJob({ id: 4, state: 'queued' }),
      makeJob({ id: 5, state: 'queued' })
    ];
    assert.equal(groupLabel('gpu', jobs), 'gpu — 2 running, 3 queued');
    assert.equal(
      groupLabel('cpu', [
        makeJob({ state: 'paused' }),
        makeJob({ state: 'succeeded' }),
        makeJob({ state: 'failed' })
      ]),
      'cpu — 1 paused, 2 finished'
    );
  });

  it("tells a paused group by its queued jobs' reason", () => {
    const jobs = [
      makeJob({ id: 1, state: 'paused' }),
      makeJob({ id: 2, state: 'queued', queue_reason: 'group gpu is paused' })
    ];
    assert.equal(isGroupPaused('gpu', jobs), true);
    assert.equal(groupLabel('gpu', jobs), 'gpu (paused) — 1 paused, 1 queued');
    // Another group's pause, or jobs paused one by one, is not this group's.
    assert.equal(isGroupPaused('cpu', jobs), false);
    assert.equal(isGroupPaused('gpu', [makeJob({ state: 'paused' })]), false);
  });
});

describe('formatDuration', () => {
  it('shows nothing for an unknown runtime', () => {
    for (const seconds of [null, -1, NaN, Infinity]) {
      assert.equal(formatDuration(seconds), '');
    }
  });

  // The cases the Python formatter runs too.
  const shared = JSON.parse(
    readFileSync(findUp(join('tests', 'cases', 'runtime.json')), 'utf8')
  ) as { cases: { seconds: number; shown: string }[] };
  for (const { seconds, shown } of shared.cases) {
    it(`${seconds} s is "${shown}"`, () => {
      assert.equal(formatDuration(seconds), shown);
    });
  }
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    assert.equal(formatBytes(812), '812 B');
    assert.equal(formatBytes(1024), '1.0 KiB');
    assert.equal(formatBytes(4300), '4.2 KiB');
    assert.equal(formatBytes(20 * 1024), '20 KiB');
    assert.equal(formatBytes(1.3 * 1024 * 1024), '1.3 MiB');
  });
});
