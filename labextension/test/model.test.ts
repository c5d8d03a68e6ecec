/**
 * `JobsModel`: the long-poll change feed on a `Poll`, against a fake server.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { JobsModel } from '../src/model';
import {
  FakeListApi,
  httpError,
  makeJob,
  makeList,
  sleep,
  untilAborted,
  waitFor
} from './fakes';

describe('JobsModel', () => {
  it('asks again at once after a change, and keeps the minimum interval after none', async () => {
    const fake = new FakeListApi((call, index) => {
      if (index === 0) {
        return Promise.resolve(makeList(1, [makeJob()]));
      }
      if (index === 1 || index === 2) {
        // The second answer is a server that does not long-poll: the same
        // version at once.
        return Promise.resolve(
          makeList(2, [makeJob({ state: 'succeeded', runtime: 7 })])
        );
      }
      return untilAborted(call.signal);
    });
    const model = new JobsModel({ api: fake.api, minBackoff: 300 });
    let changes = 0;
    model.changed.connect(() => changes++);
    assert.equal(model.loaded, false);
    model.start();
    await waitFor(() => fake.calls.length === 4, 3000, 'the fourth request');
    const [first, second, third, fourth] = fake.calls;
    assert.deepEqual(
      fake.calls.map(call => call.waitFor),
      [undefined, 1, 2, 2]
    );
    assert.ok(second.at - first.at < 150, 'a change is followed at once');
    assert.ok(third.at - second.at < 150, 'a change is followed at once');
    assert.ok(fourth.at - third.at >= 280, 'no change: wait the minimum');
    assert.equal(model.loaded, true);
    assert.equal(model.jobs.length, 1);
    assert.equal(model.job(1)?.state, 'succeeded');
    assert.equal(model.runningCount, 0);
    assert.equal(changes, 2);
    model.dispose();
    assert.equal(fourth.signal?.aborted, true, 'dispose aborts the request');
  });

  it('backs off after errors, then recovers', async () => {
    const fake = new FakeListApi((call, index) =>
      index < 5
        ? Promise.reject(httpError(503))
        : index === 5
          ? Promise.resolve(makeList(9, [makeJob({ id: 3 })]))
          : untilAborted(call.signal)
    );
    const warn = console.warn;
    console.warn = () => undefined;
    const model = new JobsModel({
      api: fake.api,
      minBackoff: 40,
      maxBackoff: 160
    });
    try {
      model.start();
      await waitFor(() => model.loaded, 5000, 'the model to load');
    } finally {
      console.warn = warn;
      model.dispose();
    }
    const gaps = fake.calls
      .slice(1, 6)
      .map((call, i) => call.at - fake.calls[i].at);
    assert.ok(
      gaps.every(gap => gap > 0 && gap <= 160 + 60),
      `retries within the limits: ${gaps.join(', ')} ms`
    );
    const total = fake.calls[5].at - fake.calls[0].at;
    assert.ok(total >= 100, `the retries back off: ${total} ms in all`);
    assert.equal(model.job(3)?.id, 3);
  });

  it('stops asking when disposed', async () => {
    const fake = new FakeListApi((call, index) =>
      index === 0
        ? Promise.resolve(makeList(1))
        : untilAborted<never>(call.signal)
    );
    const model = new JobsModel({ api: fake.api, minBackoff: 20 });
    model.start();
    model.start(); // once is enough
    await waitFor(() => fake.calls.length === 2);
    model.dispose();
    assert.equal(model.isDisposed, true);
    assert.equal(fake.calls[1].signal?.aborted, true);
    await sleep(150);
    assert.equal(fake.calls.length, 2);
  });

  it('refresh() fetches the list without waiting for a change', async () => {
    const fake = new FakeListApi(() =>
      Promise.resolve(makeList(4, [makeJob({ id: 2 }), makeJob({ id: 1 })]))
    );
    const model = new JobsModel({ api: fake.api });
    await model.refresh();
    assert.deepEqual(
      fake.calls.map(call => call.waitFor),
      [undefined]
    );
    assert.deepEqual(
      model.jobs.map(job => job.id),
      [1, 2]
    );
    model.dispose();
  });

  it('runtime() adds the time since the answer to a running job', async () => {
    const fake = new FakeListApi(() =>
      Promise.resolve(
        makeList(1, [
          makeJob({ id: 1, runtime: 10 }),
          makeJob({ id: 2, state: 'failed', runtime: 4 }),
          makeJob({ id: 3, state: 'queued', runtime: null }),
          makeJob({ id: 4, state: 'paused', runtime: 7, paused_at: 1 })
        ])
      )
    );
    const model = new JobsModel({ api: fake.api });
    await model.refresh();
    const later = Date.now() + 2500;
    assert.ok((model.runtime(model.job(1)!, later) ?? 0) >= 12.5);
    assert.equal(model.runtime(model.job(2)!, later), 4);
    assert.equal(model.runtime(model.job(3)!, later), null);
    // A paused job's clock stands still: the server's figure, as sent.
    assert.equal(model.runtime(model.job(4)!, later), 7);
    model.dispose();
  });

  it('stop() takes a job that already finished (409) for success', async () => {
    const fake = new FakeListApi(() => Promise.resolve(makeList(1)));
    const model = new JobsModel({ api: fake.api });
    fake.stopError = httpError(409);
    await model.stop(5);
    fake.stopError = httpError(500);
    await assert.rejects(model.stop(6));
    assert.deepEqual(fake.stopped, [5, 6]);
    model.dispose();
  });

  it('pause() and resume() take a job that ended meanwhile (409) for success', async () => {
    const fake = new FakeListApi(() => Promise.resolve(makeList(1)));
    const model = new JobsModel({ api: fake.api });
    await model.pause(5);
    fake.actionError = httpError(409);
    await model.resume(5);
    fake.actionError = httpError(403);
    await assert.rejects(model.pause(6), /status 403/);
    assert.deepEqual(fake.actions, ['pause 5', 'resume 5', 'pause 6']);
    model.dispose();
  });

  it('restart() resolves with the new job and passes on every error', async () => {
    const fake = new FakeListApi(() => Promise.resolve(makeList(1)));
    const model = new JobsModel({ api: fake.api });
    const job = await model.restart(5);
    assert.equal(job.restarted_from, 5);
    fake.actionError = httpError(409);
    await assert.rejects(model.restart(5), /status 409/);
    assert.deepEqual(fake.actions, ['restart 5', 'restart 5']);
    model.dispose();
  });
});
