/**
 * `JobsModel`: the first load, job-change events applied in place, catching
 * up after a gap or a reconnection, the bounded finished jobs; against a fake
 * job store that answers and pushes as the server does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { JobsModel } from '../src/model';
import {
  FakeEventSource,
  FakeJobServer,
  FakeListApi,
  endedJob,
  httpError,
  makeJob,
  makeList,
  sleep,
  untilAborted,
  waitFor
} from './fakes';

/** How `FakeJobServer.asked` shows a catch-up from `revision`. */
function catchUp(revision: number): string {
  return `newest limit=200 since=${revision} store=store-1`;
}

/** A model over `server`'s store and a fake event socket, started. */
function follow(
  server: FakeJobServer,
  finishedLimit?: number
): { model: JobsModel; events: FakeEventSource; changes: () => number } {
  const events = new FakeEventSource();
  const model = new JobsModel({ api: server.api, events, finishedLimit });
  let changes = 0;
  model.changed.connect(() => changes++);
  model.start();
  return { model, events, changes: () => changes };
}

describe('JobsModel', () => {
  it('loads once the event socket is open: the unfinished jobs and the newest finished', async () => {
    const server = new FakeJobServer();
    for (let id = 1; id <= 8; id++) {
      server.set(endedJob(id));
    }
    server.set(makeJob({ id: 9 }));
    server.set(makeJob({ id: 10, state: 'queued', runtime: null }));
    const { model, events } = follow(server, 3);
    assert.equal(events.started, true);
    await sleep(20);
    assert.deepEqual(server.asked, [], 'nothing before the socket opens');
    assert.equal(model.loaded, false);

    events.open();
    await waitFor(() => model.loaded, 3000, 'the first load');

    assert.deepEqual(server.asked, [
      'states=queued,running,paused',
      'states=succeeded,failed,stopped newest limit=3'
    ]);
    assert.deepEqual(
      model.jobs.map(job => job.id),
      [6, 7, 8, 9, 10]
    );
    assert.equal(model.runningCount, 1);
    assert.equal(model.finishedTotal, 8);
    assert.equal(model.counts.queued, 1);
    model.dispose();
    assert.equal(events.isDisposed, true, 'the model owns its socket');
  });

  it('applies each event in place, with no request', async () => {
    const server = new FakeJobServer();
    server.set(makeJob({ id: 1 }));
    server.set(makeJob({ id: 2 }));
    const { model, events, changes } = follow(server);
    events.open();
    await waitFor(() => model.loaded);
    const asked = server.fake.calls.length;
    const before = server.revision;

    server.set(endedJob(1, { exit_code: 3, state: 'failed' }));
    server.remove(2);
    server.set(makeJob({ id: 3, state: 'queued', runtime: null }));
    events.push(server.event(before));

    assert.equal(server.fake.calls.length, asked, 'an event costs no request');
    assert.deepEqual(
      model.jobs.map(job => [job.id, job.state]),
      [
        [1, 'failed'],
        [3, 'queued']
      ]
    );
    assert.equal(model.runningCount, 0);
    assert.equal(model.finishedTotal, 1);
    assert.equal(changes(), 2, 'the load, then the event');
    // The same event again (or an older one) changes nothing.
    events.push(server.event(before));
    assert.equal(changes(), 2);
    model.dispose();
  });

  it('asks once for what it missed when an event does not follow its revision', async () => {
    const server = new FakeJobServer();
    server.set(makeJob({ id: 1 }));
    const { model, events } = follow(server);
    events.open();
    await waitFor(() => model.loaded);
    const held = server.revision;

    server.set(endedJob(1));
    const missed = server.revision; // this event never arrives
    server.set(makeJob({ id: 2 }));
    events.push(server.event(missed));
    await waitFor(() => server.fake.calls.length === 3, 3000, 'the catch-up');

    assert.equal(server.asked[2], catchUp(held));
    assert.deepEqual(
      model.jobs.map(job => [job.id, job.state]),
      [
        [1, 'succeeded'],
        [2, 'running']
      ]
    );
    model.dispose();
  });

  it('asks with since= for a reload event, and starts afresh for another store', async () => {
    let server = new FakeJobServer('store-1');
    const api = new FakeListApi(call =>
      Promise.resolve(server.answer(call.query))
    );
    const events = new FakeEventSource();
    const model = new JobsModel({ api: api.api, events });
    model.start();
    server.set(makeJob({ id: 1 }));
    server.set(endedJob(2));
    events.open();
    await waitFor(() => model.loaded);
    const held = server.revision;
    server.set(endedJob(1));
    events.push(server.event(held, true));
    await waitFor(
      () => model.job(1)?.state === 'succeeded',
      3000,
      'the reload'
    );
    assert.deepEqual(api.calls[2].query, {
      since: held,
      store: 'store-1',
      order: 'newest',
      limit: 200
    });

    // The store was reset: another store, other jobs under the same ids.
    server = new FakeJobServer('store-2');
    server.set(makeJob({ id: 1, command: 'echo new' }));
    events.push(server.event(0));
    await waitFor(
      () => model.job(1)?.command === 'echo new',
      3000,
      'the new store'
    );

    // The catch-up from the old store's revision is answered in full: the
    // model loads the new store as at first.
    assert.equal(api.calls[3].query.since, held + 1);
    assert.deepEqual(
      api.calls.slice(4).map(call => call.query.states?.length),
      [3, 3]
    );
    assert.deepEqual(
      model.jobs.map(job => [job.id, job.state]),
      [[1, 'running']]
    );
    assert.equal(model.finishedTotal, 0);
    model.dispose();
  });

  it('recovers from a reconnection with exactly one request', async () => {
    const server = new FakeJobServer();
    server.set(makeJob({ id: 1 }));
    server.set(makeJob({ id: 2 }));
    const { model, events } = follow(server);
    events.open();
    await waitFor(() => model.loaded);
    const held = server.revision;

    events.close(); // the server restarts; meanwhile job 1 ends
    server.set(endedJob(1, { state: 'failed', exit_code: 1 }));
    await sleep(20);
    assert.equal(
      server.fake.calls.length,
      2,
      'nothing while the socket is down'
    );
    events.open();
    await waitFor(() => model.job(1)?.state === 'failed', 3000, 'the catch-up');

    assert.deepEqual(server.asked.slice(2), [catchUp(held)]);
    await sleep(20);
    assert.equal(server.fake.calls.length, 3);
    model.dispose();
  });

  it('loads afresh rather than download a flood of changes', async () => {
    const server = new FakeJobServer();
    server.set(makeJob({ id: 1 }));
    const { model, events } = follow(server, 5);
    events.open();
    await waitFor(() => model.loaded);
    const held = server.revision;
    for (let id = 2; id <= 1001; id++) {
      server.set(endedJob(id));
    }
    server.set(endedJob(1)); // an old job ends: not one of the newest any more
    events.push(server.event(held, true));
    await waitFor(() => server.fake.calls.length === 5, 3000, 'the load');
    await waitFor(() => model.jobs.length === 5, 3000, 'the answers');

    assert.deepEqual(server.asked.slice(2), [
      catchUp(held),
      'states=queued,running,paused',
      'states=succeeded,failed,stopped newest limit=5'
    ]);
    assert.equal(server.fake.calls[2].query.limit, 200, 'a bounded catch-up');
    assert.deepEqual(
      model.jobs.map(job => job.id),
      [997, 998, 999, 1000, 1001]
    );
    assert.equal(model.finishedTotal, 1001);
    model.dispose();
  });

  it('holds back events that come during a request and applies them after', async () => {
    const server = new FakeJobServer();
    server.set(makeJob({ id: 1 }));
    let release: () => void = () => undefined;
    const gate = new Promise<void>(resolve => (release = resolve));
    const answer = server.answer.bind(server);
    const slow = new FakeListApi(async call => {
      const list = answer(call.query);
      await gate;
      return list;
    });
    const events = new FakeEventSource();
    const model = new JobsModel({ api: slow.api, events });
    model.start();
    events.open();
    await waitFor(() => slow.calls.length === 2);
    const loadedAt = server.revision;
    server.set(endedJob(1));
    events.push(server.event(loadedAt)); // before the load's answer

    release();
    await waitFor(() => model.job(1)?.state === 'succeeded', 3000, 'the event');
    assert.equal(slow.calls.length, 2, 'the event was applied, not asked for');
    model.dispose();
  });

  it('loads anyway when the socket cannot open, and catches up once it does', async () => {
    const server = new FakeJobServer();
    server.set(makeJob({ id: 1 }));
    const { model, events } = follow(server);
    events.close(); // the first attempt failed
    await waitFor(() => model.loaded);
    server.set(endedJob(1));
    events.open();
    await waitFor(
      () => model.job(1)?.state === 'succeeded',
      3000,
      'the catch-up'
    );
    assert.deepEqual(server.asked.slice(2), [catchUp(1)]);
    model.dispose();
  });

  it('holds the finished jobs it learned of last, and any opened one', async () => {
    const server = new FakeJobServer();
    for (let id = 1; id <= 10; id++) {
      server.set(endedJob(id));
    }
    for (let id = 11; id <= 15; id++) {
      server.set(makeJob({ id }));
    }
    const { model, events } = follow(server, 3);
    events.open();
    await waitFor(() => model.loaded);
    assert.deepEqual(
      model.jobs.map(job => job.id),
      [8, 9, 10, 11, 12, 13, 14, 15]
    );

    // Job 11, the oldest running one, ends last: it is news, and stays.
    for (const id of [12, 13, 14, 11]) {
      const before = server.revision;
      server.set(endedJob(id));
      events.push(server.event(before));
    }
    assert.deepEqual(
      model.jobs.map(job => job.id),
      [11, 13, 14, 15]
    );
    assert.equal(model.finishedTotal, 14);

    // An old job whose log the page opens is asked for once, then held.
    server.fake.single.set(2, endedJob(2));
    assert.equal(model.job(2), undefined);
    await waitFor(() => model.job(2) !== undefined, 3000, 'job 2');
    assert.deepEqual(server.fake.gets, [2]);
    const before = server.revision;
    server.set(makeJob({ id: 16 }));
    server.set(endedJob(15));
    events.push(server.event(before));
    // 13, learned of first, went; the opened job 2 stays.
    assert.deepEqual(
      model.jobs.map(job => job.id),
      [2, 11, 14, 15, 16]
    );
    assert.equal(model.job(99), undefined);
    await waitFor(() => server.fake.gets.length === 2, 3000, 'job 99');
    await sleep(10);
    assert.equal(model.job(99), undefined, 'a job the server lacks');
    assert.deepEqual(server.fake.gets, [2, 99], 'asked for once');
    model.dispose();
  });

  it('refresh() loads without an event source, then asks since its revision', async () => {
    const server = new FakeJobServer();
    server.set(makeJob({ id: 2 }));
    server.set(endedJob(1));
    const model = new JobsModel({ api: server.api });
    await model.refresh();
    assert.deepEqual(
      model.jobs.map(job => job.id),
      [1, 2]
    );
    server.set(endedJob(2));
    await model.refresh();
    assert.equal(model.job(2)?.state, 'succeeded');
    assert.equal(server.asked[2], catchUp(2));
    model.dispose();
  });

  it('passes a failed load on to refresh(), and loads at the next try', async () => {
    const fake = new FakeListApi((_call, index) =>
      index < 2
        ? Promise.reject(httpError(503))
        : Promise.resolve(makeList(4, [makeJob({ id: 3 })]))
    );
    const warn = console.warn;
    console.warn = () => undefined;
    const model = new JobsModel({ api: fake.api });
    try {
      await assert.rejects(model.refresh(), /status 503/);
      assert.equal(model.loaded, false);
      await model.refresh();
    } finally {
      console.warn = warn;
    }
    assert.equal(model.job(3)?.id, 3);
    model.dispose();
  });

  it('drops its requests when disposed', async () => {
    const fake = new FakeListApi(call => untilAborted(call.signal));
    const events = new FakeEventSource();
    const model = new JobsModel({ api: fake.api, events });
    model.start();
    model.start(); // once is enough
    events.open();
    await waitFor(() => fake.calls.length === 2);
    model.dispose();
    assert.equal(model.isDisposed, true);
    assert.ok(fake.calls.every(call => call.signal?.aborted));
    events.open();
    await sleep(50);
    assert.equal(fake.calls.length, 2);
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
