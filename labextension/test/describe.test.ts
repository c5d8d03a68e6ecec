/**
 * How jobs are described to people: the exit is the server's `exit_text`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  briefState,
  describeState,
  formatBytes,
  formatDuration,
  jobLabel,
  jobTooltip
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
