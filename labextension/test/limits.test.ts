/**
 * How limits and usage read: sizes as the Python side's `format_size` writes
 * them, the tooltip's `Limits:` and `Used:` lines, the log view's usage.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  describeLimits,
  describeUsage,
  describeUsed,
  formatSize,
  jobTooltip
} from '../src/describe';
import { makeJob } from './fakes';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

describe('formatSize', () => {
  // Each case is what `jobmagic.core.limits.format_size` answers.
  const cases: [number, string][] = [
    [0, '0 B'],
    [12, '12 B'],
    [1023, '1023 B'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB'],
    [4300, '4.2 KiB'],
    [10 * KiB - 1, '10.0 KiB'],
    [10 * KiB, '10 KiB'],
    [20 * KiB, '20 KiB'],
    [1023.9 * KiB, '1024 KiB'],
    [100 * MiB, '100 MiB'],
    [512 * MiB, '512 MiB'],
    [1288490189, '1.2 GiB'],
    [9.96 * GiB, '10.0 GiB'],
    [TiB, '1 TiB'],
    [5.5 * TiB, '5.5 TiB'],
    [2048 * TiB, '2048 TiB']
  ];
  for (const [bytes, shown] of cases) {
    it(`${bytes} bytes is "${shown}"`, () => {
      assert.equal(formatSize(bytes), shown);
    });
  }

  it('rounds a value exactly halfway to even, as Python does', () => {
    assert.equal(formatSize(1.25 * GiB), '1.2 GiB');
    assert.equal(formatSize(1.75 * GiB), '1.8 GiB');
    assert.equal(formatSize(12.5 * MiB), '12 MiB');
    assert.equal(formatSize(13.5 * MiB), '14 MiB');
  });
});

describe('describeLimits', () => {
  it('words the limits as Limits.describe does', () => {
    assert.equal(
      describeLimits({ memory: 100 * MiB, cpus: 0.5, pids: null }),
      'memory 100 MiB, cpus 0.5'
    );
    assert.equal(
      describeLimits({ memory: null, cpus: 1, pids: 100 }),
      'cpus 1, pids 100'
    );
    assert.equal(
      describeLimits({ memory: 4 * GiB, cpus: 1 / 3, pids: 2 }),
      'memory 4 GiB, cpus 0.333333, pids 2'
    );
  });

  it('says nothing without limits, or without the field', () => {
    assert.equal(describeLimits({ memory: null, cpus: null, pids: null }), '');
    assert.equal(describeLimits(undefined), '');
  });
});

describe('describeUsed', () => {
  it('gives the peak memory and the CPU time an ended job used', () => {
    const job = makeJob({
      state: 'succeeded',
      peak_memory: 1288490189,
      cpu_seconds: 12.34
    });
    assert.equal(describeUsed(job), 'peak 1.2 GiB, CPU time 12.3s');
  });

  it('leaves out what is not known', () => {
    assert.equal(describeUsed(makeJob({ cpu_seconds: 200 })), 'CPU time 3m20s');
    assert.equal(describeUsed(makeJob()), '');
  });
});

describe('describeUsage', () => {
  it('is compact: CPU percent, then memory in use', () => {
    const usage = {
      memory: 1288490189,
      peak_memory: null,
      cpu_seconds: 30,
      cpu_percent: 85.4,
      running: true
    };
    assert.equal(describeUsage(usage), 'CPU 85% · 1.2 GiB');
    assert.equal(describeUsage({ ...usage, cpu_percent: null }), '1.2 GiB');
    assert.equal(describeUsage({ ...usage, memory: null }), 'CPU 85%');
    // Halfway rounds to even, as Python's `:.0f` does.
    assert.equal(
      describeUsage({ ...usage, memory: null, cpu_percent: 50.5 }),
      'CPU 50%'
    );
    assert.equal(
      describeUsage({ ...usage, memory: null, cpu_percent: null }),
      ''
    );
  });
});

describe('jobTooltip with limits and usage', () => {
  it('lists the limits and what holds the job to them', () => {
    const tooltip = jobTooltip(
      makeJob({
        limits: { memory: 100 * MiB, cpus: 0.5, pids: null },
        containment: 'cgroup v1'
      })
    );
    assert.match(tooltip, /^Limits: memory 100 MiB, cpus 0\.5$/m);
    assert.match(tooltip, /^Held by: cgroup v1$/m);
    assert.doesNotMatch(tooltip, /^Used:/m);
  });

  it('has no limits line for a job without limits', () => {
    const tooltip = jobTooltip(makeJob({ containment: 'cgroup v1' }));
    assert.doesNotMatch(tooltip, /^Limits:/m);
    assert.doesNotMatch(tooltip, /^Held by:/m);
  });

  it('says what an ended job used, after its limits', () => {
    const tooltip = jobTooltip(
      makeJob({
        state: 'failed',
        exit_code: 1,
        exit_text: 'exit code 1',
        ended_at: 1700000100,
        limits: { memory: 2 * GiB, cpus: null, pids: null },
        peak_memory: 1288490189,
        cpu_seconds: 12.34
      })
    );
    const lines = tooltip.split('\n');
    const limits = lines.indexOf('Limits: memory 2 GiB');
    const used = lines.indexOf('Used: peak 1.2 GiB, CPU time 12.3s');
    assert.ok(limits > 0, tooltip);
    assert.equal(used, limits + 2, tooltip); // after "Held by: none"
  });

  it('gives no Used line while the job runs, nor when nothing is known', () => {
    assert.doesNotMatch(jobTooltip(makeJob({ cpu_seconds: 3 })), /^Used:/m);
    const ended = makeJob({ state: 'succeeded', ended_at: 1700000100 });
    assert.doesNotMatch(jobTooltip(ended), /^Used:/m);
  });

  it('copes with a server that sends none of these fields', () => {
    const old: Partial<ReturnType<typeof makeJob>> = makeJob({
      state: 'succeeded'
    });
    delete old.limits;
    delete old.containment;
    delete old.peak_memory;
    delete old.cpu_seconds;
    const tooltip = jobTooltip(old as ReturnType<typeof makeJob>);
    assert.doesNotMatch(tooltip, /^(Limits|Used|Held by):/m);
  });
});
