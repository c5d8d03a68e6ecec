/**
 * `JobsApi`: what it reads from the server's answers, against a fake fetch.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ServerConnection } from '@jupyterlab/services';

import { JobsApi } from '../src/api';

/** A client whose requests all get `response`; `urls` records them. */
function clientAnswering(response: () => Response): {
  api: JobsApi;
  urls: string[];
} {
  const urls: string[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/',
    wsUrl: 'ws://localhost:8888/',
    token: '',
    appendToken: false,
    fetch: (input: RequestInfo | URL): Promise<Response> => {
      urls.push(input instanceof Request ? input.url : String(input));
      return Promise.resolve(response());
    }
  });
  return { api: new JobsApi(settings), urls };
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
  it('long-polls with wait_for', async () => {
    const { api, urls } = clientAnswering(
      () =>
        new Response(
          JSON.stringify({ schema_version: 1, version: 3, jobs: [] })
        )
    );
    const list = await api.listJobs(2);
    assert.equal(list.version, 3);
    assert.match(urls[0], /\/jobmagic\/api\/jobs\?wait_for=2/);
  });
});
