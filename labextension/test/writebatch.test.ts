/**
 * `FrameWriter`: text reaches the terminal at most once per animation frame,
 * in bounded batches and slices, and only after the last batch was parsed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { FrameWriter } from '../src/writebatch';

/** A fake terminal, frame clock and timers: each runs when told to. */
class Harness {
  constructor(frameChars = 1000, sliceChars = 1000, minInterval = 0) {
    this.writer = new FrameWriter({
      write: (text, done) => {
        this.writes.push(text);
        this.parsing.push(done);
      },
      requestFrame: callback => {
        this.frames.push(callback);
        return this.frames.length;
      },
      cancelFrame: () => {
        this.cancelled++;
        this.frames = [];
      },
      now: () => this.now,
      setTimer: (callback, ms) => {
        this.timers.push({ at: this.now + ms, callback });
        return this.timers.length;
      },
      clearTimer: () => {
        this.timers = [];
      },
      frameChars,
      sliceChars,
      minInterval
    });
  }

  readonly writer: FrameWriter;
  /** Each `write()` call's text. */
  readonly writes: string[] = [];
  /** Frames requested and not yet run. */
  frames: (() => void)[] = [];
  /** `done` callbacks of writes the terminal has not parsed yet. */
  parsing: (() => void)[] = [];
  cancelled = 0;
  /** The clock, in ms. */
  now = 0;
  /** Timers set and not yet run. */
  timers: { at: number; callback: () => void }[] = [];

  /** Let `ms` pass, running the timers that fall due. */
  advance(ms: number): void {
    this.now += ms;
    const due = this.timers.filter(timer => timer.at <= this.now);
    this.timers = this.timers.filter(timer => timer.at > this.now);
    due.forEach(timer => timer.callback());
  }

  /** Run the requested frames. */
  frame(): void {
    const frames = this.frames;
    this.frames = [];
    frames.forEach(callback => callback());
  }

  /** The terminal parses everything it was given. */
  parse(): void {
    const parsing = this.parsing;
    this.parsing = [];
    parsing.forEach(done => done());
  }
}

describe('FrameWriter', () => {
  it('writes what arrives between two frames in one write', () => {
    const h = new Harness();
    h.writer.add('one ');
    h.writer.add('two ');
    h.writer.add('three');
    assert.equal(h.frames.length, 1, 'one frame for all three');
    assert.deepEqual(h.writes, [], 'nothing before the frame');
    h.frame();
    assert.deepEqual(h.writes, ['one two three']);
    assert.equal(h.writer.queued, 0);
  });

  it('waits for the terminal to parse a batch before the next frame', () => {
    const h = new Harness();
    h.writer.add('first');
    h.frame();
    h.writer.add('second');
    h.writer.add('third');
    assert.equal(h.frames.length, 0, 'no frame while the terminal parses');
    h.parse();
    assert.equal(h.frames.length, 1);
    h.frame();
    assert.deepEqual(h.writes, ['first', 'secondthird']);
  });

  it('hands over at most frameChars a frame, in slices of sliceChars', () => {
    const h = new Harness(10, 4);
    h.writer.add('abcdefgh');
    h.writer.add('ijklmnopqrstuvwxy');
    h.frame();
    assert.deepEqual(h.writes, ['abcd', 'efgh', 'ij']);
    assert.equal(h.writer.queued, 15);
    h.parse();
    h.frame();
    h.parse();
    h.frame();
    assert.deepEqual(h.writes.join(''), 'abcdefghijklmnopqrstuvwxy');
    assert.ok(h.writes.every(text => text.length <= 4));
    h.parse();
    assert.equal(h.frames.length, 0, 'nothing left, no frame');
  });

  it('hands over at most one batch per minInterval', () => {
    const h = new Harness(1000, 1000, 100);
    h.writer.add('first');
    h.frame();
    h.parse();
    h.now += 30;
    h.writer.add('second');
    h.writer.add('third');
    assert.equal(h.frames.length, 0, 'no frame before the interval has passed');
    assert.equal(h.timers.length, 1);
    h.advance(69);
    assert.equal(h.frames.length, 0);
    h.advance(1);
    assert.equal(h.frames.length, 1, 'a frame once 100 ms have passed');
    h.frame();
    assert.deepEqual(h.writes, ['first', 'secondthird']);
  });

  it('resolves written() once the terminal has parsed all that came before', async () => {
    const h = new Harness();
    let resolved = false;
    h.writer.add('text');
    const written = h.writer.written().then(() => {
      resolved = true;
    });
    h.frame();
    await Promise.resolve();
    assert.equal(resolved, false, 'handed over is not parsed');
    h.parse();
    await written;
    assert.equal(resolved, true);
    await h.writer.written(); // nothing pending: resolves at once
  });

  it('drops what is queued on clear(), and counts it as done', async () => {
    const h = new Harness(3, 3);
    h.writer.add('parsing');
    h.frame(); // 'par' is with the terminal; 'sing' waits
    const written = h.writer.written();
    h.writer.clear();
    assert.equal(h.writer.queued, 0);
    h.writer.add('new');
    h.parse(); // 'par' parsed: the next frame carries only the new text
    h.frame();
    assert.deepEqual(h.writes, ['par', 'new']);
    h.parse();
    await written;
  });

  it('stops and lets every waiter go when disposed', async () => {
    const h = new Harness();
    h.writer.add('never');
    const written = h.writer.written();
    h.writer.dispose();
    assert.equal(h.cancelled, 1, 'the frame is cancelled');
    assert.equal(h.timers.length, 0);
    await written;
    h.writer.add('late');
    assert.equal(h.frames.length, 0);
    assert.deepEqual(h.writes, []);
  });
});
