/**
 * The shared terminal-text cases (`tests/cases/terminal_text.json` at the
 * repository root), run against `TerminalText`; the Python tests run the same
 * file against `TailBuffer`, so the two views of a log agree.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { TerminalText } from '../src/terminal';
import { findUp } from './fakes';

/** One case of the shared file. */
interface ITerminalCase {
  name: string;
  /** Decoded text, fed one after another. */
  chunks: string[];
  /** How many finished lines are kept; all of them when omitted. */
  max_lines?: number;
  /** Finished lines each followed by "\n", then the line in progress. */
  visible: string;
}

/** What a terminal shows after `chunks`, without styles. */
function visibleText(chunks: string[], maxLines?: number): string {
  const terminal = new TerminalText({
    maxChars: 1 << 30,
    // `maxLines` counts the line in progress too.
    maxLines: maxLines === undefined ? 1 << 30 : maxLines + 1
  });
  for (const chunk of chunks) {
    terminal.write(chunk);
  }
  return terminal.lines
    .map(line => line.segments.map(segment => segment.text).join(''))
    .join('\n');
}

const file = JSON.parse(
  readFileSync(findUp(join('tests', 'cases', 'terminal_text.json')), 'utf8')
) as {
  cases: ITerminalCase[];
};

describe('shared terminal-text cases', () => {
  it('has cases with unique names', () => {
    assert.ok(file.cases.length > 0);
    const names = file.cases.map(c => c.name);
    assert.equal(new Set(names).size, names.length);
  });

  for (const c of file.cases) {
    it(c.name, () => {
      assert.equal(visibleText(c.chunks, c.max_lines), c.visible);
    });
  }
});
