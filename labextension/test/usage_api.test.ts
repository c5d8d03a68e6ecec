/**
 * `JobsApi.getUsage`: the URL it asks and what it reads, against a fake fetch.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ServerConnection } from '@jupyterlab/services';

import { IJobUsage, JobsApi } from '../src/api';

/** A client whose every request gets `status` with `body`; `urls` records them. */
function clientAnswering(
  status: number,
  body: unknown
): { api: JobsApi; urls: string[] } {
  const urls: string[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://localhost:8888/',
    wsUrl: 'ws://localhost:8888/',
    token: '',
    appendToken: false,
    fetch: (input: RequestInfo | URL): Promise<Response> => {
      urls.push(input instanceof Request ? input.url : String(input));
      return Promise.resolve(new Response(JSON.stringify(body), { status }));
    }
  });
  return { api: new JobsApi(settings), urls };
}

describe('JobsApi.getUsage', () => {
  it("asks for the job's usage and returns the answer", async () => {
    const usage: IJobUsage = {
      memory: 2048,
      peak_memory: null,
      cpu_seconds: 1.5,
      cpu_percent: 99.5,
      running: true
    };
    const { api, urls } = clientAnswering(200, usage);
    assert.deepEqual(await api.getUsage(7), usage);
    assert.equal(urls.length, 1);
    assert.match(urls[0], /\/jobmagic\/api\/jobs\/7\/usage(\?[0-9]+)?$/);
  });

  it('rejects with the HTTP error of an unknown job', async () => {
    const { api } = clientAnswering(404, { message: 'no job 7' });
    await assert.rejects(
      api.getUsage(7),
      (error: unknown) =>
        error instanceof ServerConnection.ResponseError &&
        error.response.status === 404
    );
  });
});
