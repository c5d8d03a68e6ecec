/**
 * `LogFollower`: tail first, then long-polls, on a `Poll`, against a fake log.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { LogFollower } from '../src/logfollower';
import { FakeLogApi, RecordingSink, httpError, sleep, waitFor } from './fakes';

/** A follower of the fake log with a 1 KiB window. */
function follow(
  fake: FakeLogApi,
  sink: RecordingSink,
  minInterval = 20
): LogFollower {
  return new LogFollower({
    api: fake.api,
    jobId: 1,
    sink,
    windowBytes: 1024,
    minInterval
  });
}

describe('LogFollower', () => {
  it('reads the tail, follows new output and ends with the job', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    fake.write('hello\n');
    const follower = follow(fake, sink);
    await waitFor(() => fake.waiting === 1, 3000, 'a follow request');
    assert.deepEqual(sink.events, ['restart 0', 'append "hello\\n"']);
    fake.write('world\n');
    await waitFor(() => sink.text === 'hello\nworld\n');
    fake.write('bye');
    fake.finish();
    await waitFor(() => sink.ended, 3000, 'the end');
    assert.equal(sink.text, 'hello\nworld\nbye');
    const requests = fake.calls.length;
    await sleep(100);
    assert.equal(fake.calls.length, requests, 'no request after the end');
    assert.deepEqual(
      fake.calls.map(call => [call.offset, call.follow ?? false]),
      [
        [0, false],
        [0, false],
        [6, true],
        [12, true]
      ]
    );
    follower.dispose();
  });

  it('starts a long log at a line boundary of its last window', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    for (let i = 0; i < 300; i++) {
      fake.write(`line ${i}\n`);
    }
    const follower = follow(fake, sink);
    await waitFor(() => fake.waiting === 1);
    assert.ok(sink.text.endsWith('line 299\n'));
    assert.match(sink.text, /^line \d+\n/, 'starts with a whole line');
    assert.ok(sink.text.length < 1024);
    // The restart names the first byte shown: all before it is left out.
    assert.equal(sink.events[0], `restart ${fake.size - sink.text.length}`);
    follower.dispose();
  });

  it('does nothing while paused, and goes on from the last byte read', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    fake.write('one\n');
    const follower = follow(fake, sink);
    await waitFor(() => fake.waiting === 1);
    const open = fake.calls[fake.calls.length - 1];
    follower.paused = true;
    assert.equal(follower.paused, true);
    assert.equal(open.signal?.aborted, true, 'a pause aborts the request');
    assert.equal(fake.waiting, 0);
    fake.write('two\n');
    const requests = fake.calls.length;
    await sleep(100);
    assert.equal(fake.calls.length, requests, 'no request while paused');
    assert.equal(sink.text, 'one\n');
    assert.equal(sink.problemText, null, 'an abort is not a problem');
    follower.paused = false;
    await waitFor(() => sink.text === 'one\ntwo\n');
    assert.equal(fake.calls[requests].offset, 4);
    assert.equal(fake.calls[requests].follow, true);
    assert.equal(
      sink.events.filter(event => event.startsWith('restart')).length,
      1,
      'resuming does not start over'
    );
    follower.dispose();
  });

  it('reads nothing when created and paused at once', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    const follower = follow(fake, sink);
    follower.paused = true;
    await sleep(50);
    assert.equal(fake.calls.length, 0);
    follower.dispose();
  });

  it('sends at most one request per minInterval', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    const timer = setInterval(() => fake.write('x\n'), 2);
    const follower = follow(fake, sink, 50);
    try {
      await sleep(520);
    } finally {
      clearInterval(timer);
      follower.dispose();
    }
    const follows = fake.calls.filter(call => call.follow);
    assert.ok(follows.length >= 5, `${follows.length} follow requests`);
    assert.ok(follows.length <= 11, `${follows.length} follow requests`);
  });

  it('skips ahead, and says how much, when far behind a fast writer', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    fake.write('start\n');
    const follower = follow(fake, sink, 50);
    await waitFor(() => fake.waiting === 1);
    // Far more than twice a follow request's 1 KiB arrives at once: 60
    // lines of 100 bytes.
    const line = (i: number): string =>
      `${String(i).padStart(2, '0')}${'b'.repeat(97)}\n`;
    fake.write(Array.from({ length: 60 }, (_, i) => line(i)).join(''));
    await waitFor(() => sink.text.endsWith(line(59)), 3000, 'the last line');
    const skips = sink.events.filter(e => e.startsWith('skipped'));
    assert.equal(skips.length, 1);
    assert.equal(
      sink.events.filter(e => e.startsWith('restart')).length,
      1,
      'a skip does not start over'
    );
    assert.ok(sink.text.startsWith('start\n'));
    // What was shown and what was skipped make the whole log, and what
    // follows the skip starts with a whole line.
    const skipped = Number(skips[0].split(' ')[1]);
    assert.equal(sink.text.length + skipped, fake.size);
    const after = sink.events.slice(sink.events.indexOf(skips[0]) + 1);
    assert.match(after[0], /^append "\d\db{97}\\n/);
    const requests = fake.calls.length;
    assert.equal(fake.calls.filter(call => !call.follow).length, 3);
    assert.ok(requests <= 6, `${requests} requests`);
    follower.dispose();
  });

  it('asks for more only once the sink has shown what it has', async () => {
    let release = (): void => {};
    class SlowSink extends RecordingSink {
      shown(): Promise<void> {
        return new Promise(resolve => {
          release = resolve;
        });
      }
    }
    const fake = new FakeLogApi();
    const sink = new SlowSink();
    fake.write('one\n');
    const follower = follow(fake, sink);
    await waitFor(() => sink.text === 'one\n');
    fake.write('two\n');
    await sleep(100);
    assert.equal(fake.calls.length, 2, 'the tail (two reads), nothing more');
    release();
    await waitFor(() => sink.text === 'one\ntwo\n');
    assert.deepEqual(
      fake.calls.slice(2, 3).map(call => [call.offset, call.follow]),
      [[4, true]]
    );
    follower.dispose();
  });

  it('stops when the job is gone (404)', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    fake.failures.push(httpError(404));
    const follower = follow(fake, sink);
    await waitFor(() => sink.problemText !== null);
    assert.equal(sink.problemText, 'This job is no longer in the job store.');
    await sleep(100);
    assert.equal(fake.calls.length, 1);
    follower.paused = true;
    follower.paused = false;
    await sleep(50);
    assert.equal(fake.calls.length, 1, 'resuming does not start again');
    follower.dispose();
  });

  it('starts over at the tail when the offset is past the end (400)', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    fake.write('old log\n');
    const follower = follow(fake, sink);
    await waitFor(() => fake.waiting === 1);
    fake.failures.push(httpError(400));
    fake.write('more\n'); // wakes the open request; the next one fails
    await waitFor(
      () => sink.events.filter(e => e.startsWith('restart')).length === 2,
      3000,
      'a second restart'
    );
    assert.equal(sink.problemText, null);
    follower.dispose();
  });

  it('reports a failed read and retries it', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    fake.write('ok\n');
    fake.failures.push(new Error('network down'));
    const follower = follow(fake, sink);
    await waitFor(() => sink.problemText !== null);
    assert.equal(
      sink.problemText,
      'Cannot read the log (Error: network down); retrying.'
    );
    await waitFor(() => sink.text === 'ok\n', 3000, 'the retry');
    assert.equal(sink.problemText, null);
    follower.dispose();
  });

  it('stops everything when disposed', async () => {
    const fake = new FakeLogApi();
    const sink = new RecordingSink();
    const follower = follow(fake, sink);
    await waitFor(() => fake.waiting === 1);
    const open = fake.calls[fake.calls.length - 1];
    follower.dispose();
    assert.equal(follower.isDisposed, true);
    assert.equal(open.signal?.aborted, true);
    follower.paused = true;
    follower.paused = false;
    fake.write('late\n');
    const requests = fake.calls.length;
    await sleep(100);
    assert.equal(fake.calls.length, requests);
    assert.equal(sink.text, '');
  });
});
