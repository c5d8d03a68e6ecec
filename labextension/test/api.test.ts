/**
 * `JobsApi`: what it reads from the server's answers, against a fake fetch.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ServerConnection } from '@jupyterlab/services';

import { IJob, JobsApi } from '../src/api';
import { makeJob } from './fakes';

/**
 * A client whose requests all get `response`; `urls` records them, and
 * `methods` their HTTP methods.
 */
function clientAnswering(response: () => Response): {
  api: JobsApi;
  urls: string[];
  methods: string[];
} {
  const urls: string[] = [];
  const methods: string[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/',
    wsUrl: 'ws://localhost:8888/',
    token: '',
    appendToken: false,
    fetch: (input: RequestInfo | URL): Promise<Response> => {
      urls.push(input instanceof Request ? input.url : String(input));
      methods.push(input instanceof Request ? input.method : 'GET');
      return Promise.resolve(response());
    }
  });
  return { api: new JobsApi(settings), urls, methods };
}

/** An answer with `job` as its JSON body. */
function jobAnswer(job: IJob, status = 200): Response {
  return new Response(JSON.stringify(job), { status });
}

describe('JobsApi.readLog', () => {
  it('reads the bytes, X-Log-Size and X-Job-State', async () => {
    const { api, urls } = clientAnswering(
      () =>
        new Response('hello', {
          headers: { 'X-Log-Size': '42', 'X-Job-State': 'running' }
        })
    );
    const chunk = await api.readLog(7, { offset: 37, follow: true });
    assert.equal(new TextDecoder().decode(chunk.data), 'hello');
    assert.equal(chunk.logSize, 42);
    assert.equal(chunk.state, 'running');
    assert.match(urls[0], /\/jobmagic\/api\/jobs\/7\/log\?offset=37&follow=1/);
  });

  it('rejects an answer without X-Log-Size', async () => {
    const { api } = clientAnswering(
      () => new Response('hello', { headers: { 'X-Job-State': 'running' } })
    );
    await assert.rejects(api.readLog(7, { offset: 0 }), /X-Log-Size/);
  });

  it('rejects an HTTP error with a ResponseError', async () => {
    const { api } = clientAnswering(
      () => new Response('{"message": "no job 7"}', { status: 404 })
    );
    await assert.rejects(
      api.readLog(7, { offset: 0 }),
      (reason: unknown) =>
        reason instanceof ServerConnection.ResponseError &&
        reason.response.status === 404
    );
  });
});

describe('JobsApi.listJobs', () => {
  const answer = (): Response =>
    new Response(
      JSON.stringify({
        schema_version: 1,
        version: 3,
        store: 'ab12cd34',
        total: 0,
        counts: {},
        jobs: []
      })
    );

  it('asks for every job when the query is empty', async () => {
    const { api, urls } = clientAnswering(answer);
    const list = await api.listJobs();
    assert.equal(list.version, 3);
    assert.equal(list.store, 'ab12cd34');
    const url = new URL(urls[0]);
    assert.equal(url.pathname, '/jobmagic/api/jobs');
    // (ServerConnection adds a number against caches; nothing else.)
    assert.match(url.search, /^(\?[0-9]+)?$/);
  });

  it('puts every part of the query in the URL', async () => {
    const { api, urls } = clientAnswering(answer);
    await api.listJobs({
      states: ['succeeded', 'failed'],
      since: 41,
      store: 'ab12cd34',
      limit: 50,
      offset: 5,
      order: 'newest'
    });
    const query = new URL(urls[0]).searchParams;
    assert.deepEqual(query.getAll('state'), ['succeeded', 'failed']);
    assert.equal(query.get('since'), '41');
    assert.equal(query.get('store'), 'ab12cd34');
    assert.equal(query.get('limit'), '50');
    assert.equal(query.get('offset'), '5');
    assert.equal(query.get('order'), 'newest');
    assert.equal(query.get('wait_for'), null);
  });

  it('long-polls with wait_for', async () => {
    const { api, urls } = clientAnswering(answer);
    await api.listJobs({ waitFor: 2 });
    const url = new URL(urls[0]);
    assert.equal(url.pathname, '/jobmagic/api/jobs');
    assert.equal(url.searchParams.get('wait_for'), '2');
  });
});

describe('JobsApi.pauseJob and resumeJob', () => {
  it('POSTs jobs/{id}/pause and resolves with the paused job', async () => {
    const paused = makeJob({ id: 7, state: 'paused', paused_at: 1700000009 });
    const { api, urls, methods } = clientAnswering(() => jobAnswer(paused));
    const job = await api.pauseJob(7);
    assert.deepEqual(job, paused);
    assert.deepEqual(methods, ['POST']);
    assert.match(urls[0], /\/jobmagic\/api\/jobs\/7\/pause(\?|$)/);
  });

  it('POSTs jobs/{id}/resume and resolves with the running job', async () => {
    const running = makeJob({ id: 7 });
    const { api, urls, methods } = clientAnswering(() => jobAnswer(running));
    const job = await api.resumeJob(7);
    assert.equal(job.state, 'running');
    assert.deepEqual(methods, ['POST']);
    assert.match(urls[0], /\/jobmagic\/api\/jobs\/7\/resume(\?|$)/);
  });

  it('rejects a 409 (the job is queued or ended) with a ResponseError', async () => {
    const { api } = clientAnswering(
      () =>
        new Response('{"message": "job 7 has ended"}', {
          status: 409
        })
    );
    await assert.rejects(
      api.pauseJob(7),
      (reason: unknown) =>
        reason instanceof ServerConnection.ResponseError &&
        reason.response.status === 409 &&
        reason.message === 'job 7 has ended'
    );
  });
});

describe('JobsApi.restartJob', () => {
  it('POSTs jobs/{id}/restart and resolves with the new job', async () => {
    const created = makeJob({ id: 8, state: 'queued', restarted_from: 7 });
    const { api, urls, methods } = clientAnswering(() =>
      jobAnswer(created, 201)
    );
    const job = await api.restartJob(7);
    assert.equal(job.id, 8);
    assert.equal(job.restarted_from, 7);
    assert.deepEqual(methods, ['POST']);
    assert.match(urls[0], /\/jobmagic\/api\/jobs\/7\/restart(\?|$)/);
  });
});
