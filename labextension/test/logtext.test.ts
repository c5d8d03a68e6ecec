/**
 * The log view's own words: its tab title and the notice of output it does
 * not show.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { logTabLabel, omittedNotice, skippedLine } from '../src/logtext';
import { makeJob } from './fakes';

describe('logTabLabel', () => {
  it('names the job and its id, or the id alone', () => {
    assert.equal(
      logTabLabel(12, makeJob({ id: 12, name: 'train' })),
      'Log: train (#12)'
    );
    assert.equal(logTabLabel(7, makeJob({ id: 7, name: null })), 'Log: job 7');
    assert.equal(logTabLabel(7, undefined), 'Log: job 7');
  });

  it('tells two jobs of one name apart', () => {
    const first = logTabLabel(3, makeJob({ id: 3, name: 'train' }));
    const second = logTabLabel(4, makeJob({ id: 4, name: 'train' }));
    assert.notEqual(first, second);
  });

  it('cuts a long name, never the id', () => {
    const label = logTabLabel(99, makeJob({ id: 99, name: 'x'.repeat(100) }));
    assert.equal(label, `Log: ${'x'.repeat(39)}… (#99)`);
  });
});

describe('omittedNotice', () => {
  it('is empty when the whole log is shown', () => {
    assert.equal(
      omittedNotice({ bytes: 0, trimmed: false, maxLines: 5000 }),
      ''
    );
  });

  it('says how many bytes were not read', () => {
    assert.equal(
      omittedNotice({ bytes: 1.25 * 2 ** 30, trimmed: false, maxLines: 5000 }),
      'Earlier output not shown: 1.2 GiB.'
    );
  });

  it('writes a line count with thousands separators', () => {
    assert.equal(
      omittedNotice({ bytes: 0, trimmed: true, maxLines: 1234567 }),
      'Earlier output not shown: all but the last 1,234,567 lines.'
    );
    assert.equal(
      omittedNotice({ bytes: 0, trimmed: true, maxLines: 999 }),
      'Earlier output not shown: all but the last 999 lines.'
    );
  });

  it('says when the terminal dropped lines, alone or as well', () => {
    assert.equal(
      omittedNotice({ bytes: 0, trimmed: true, maxLines: 5000 }),
      'Earlier output not shown: all but the last 5,000 lines.'
    );
    assert.equal(
      omittedNotice({ bytes: 3 * 2 ** 20, trimmed: true, maxLines: 5000 }),
      'Earlier output not shown: 3 MiB, and all but the last 5,000 lines of the rest.'
    );
  });
});

describe('skippedLine', () => {
  it('is a dim line of its own that says how much was skipped', () => {
    const line = skippedLine(40 * 2 ** 20);
    assert.ok(
      line.endsWith(
        '\r\n\x1b[2m[… 40 MiB skipped to keep up with the job …]\x1b[0m\r\n'
      )
    );
    assert.ok(line.startsWith('\x18'), 'ends an escape sequence left open');
  });
});
