/**
 * `EventBusSocket`: the event bus websocket that says when it (re)connects,
 * against a fake `WebSocket` class in the server settings.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { Event, ServerConnection } from '@jupyterlab/services';

import { EventBusSocket } from '../src/eventbus';
import { sleep, waitFor } from './fakes';

/** A `WebSocket` the test opens, closes and sends messages on. */
class FakeSocket {
  static made: FakeSocket[] = [];

  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }

  onopen: (() => void) | null = null;
  onclose: (() => void) | null = null;
  onmessage: ((message: { data: unknown }) => void) | null = null;
  closed = false;

  open(): void {
    this.onopen?.();
  }

  send(data: unknown): void {
    this.onmessage?.({ data });
  }

  /** The server goes away (or refuses the connection). */
  drop(): void {
    this.onclose?.();
  }

  close(): void {
    this.closed = true;
  }
}

const sockets: EventBusSocket[] = [];

afterEach(() => {
  sockets.splice(0).forEach(socket => socket.dispose());
  FakeSocket.made = [];
});

function socketOf(interval = 20, maxInterval = 80): EventBusSocket {
  const socket = new EventBusSocket({
    serverSettings: ServerConnection.makeSettings({
      baseUrl: 'http://localhost:8888/lab-base/',
      wsUrl: 'ws://localhost:8888/lab-base/',
      token: 's3cret',
      appendToken: true,
      WebSocket: FakeSocket as unknown as typeof WebSocket
    }),
    interval,
    maxInterval
  });
  sockets.push(socket);
  return socket;
}

describe('EventBusSocket', () => {
  it('subscribes once started, and passes every event on', async () => {
    const socket = socketOf();
    const seen: Event.Emission[] = [];
    let connected = 0;
    socket.stream.connect((_, emission) => seen.push(emission));
    socket.connected.connect(() => connected++);
    await sleep(30);
    assert.equal(FakeSocket.made.length, 0, 'nothing before start()');

    socket.start();
    await waitFor(() => FakeSocket.made.length === 1, 3000, 'the socket');
    const [fake] = FakeSocket.made;
    assert.equal(
      fake.url,
      'ws://localhost:8888/lab-base/api/events/subscribe?token=s3cret'
    );
    fake.open();
    fake.send(JSON.stringify({ schema_id: 'https://x/y', n: 1 }));
    const warn = console.warn;
    console.warn = () => undefined;
    try {
      fake.send('not json');
    } finally {
      console.warn = warn;
    }
    fake.send('');

    assert.equal(connected, 1);
    assert.equal(socket.isOpen, true);
    assert.deepEqual(seen, [{ schema_id: 'https://x/y', n: 1 }]);
  });

  it('says when it reconnects after the server went away', async () => {
    const socket = socketOf();
    const said: string[] = [];
    socket.connected.connect(() => said.push('connected'));
    socket.disconnected.connect(() => said.push('disconnected'));
    socket.start();
    await waitFor(() => FakeSocket.made.length === 1);
    FakeSocket.made[0].open();

    FakeSocket.made[0].drop(); // the server restarts
    await waitFor(() => FakeSocket.made.length === 2, 3000, 'a new attempt');
    FakeSocket.made[1].drop(); // refused: not up yet
    await waitFor(() => FakeSocket.made.length === 3, 3000, 'another one');
    FakeSocket.made[2].open();

    assert.deepEqual(said, [
      'connected',
      'disconnected',
      'disconnected',
      'connected'
    ]);
  });

  it('backs off while it cannot connect, up to its longest interval', async t => {
    // Lumino's back-off draws each wait at random between the interval and three
    // times the last one: at the top of that range here, so that the waits grow as
    // they may (10, 30, 60 ms) on every run, not only on lucky ones.
    t.mock.method(Math, 'random', () => 0.999999);
    const socket = socketOf(10, 60);
    socket.start();
    const at: number[] = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      await waitFor(
        () => FakeSocket.made.length === attempt + 1,
        3000,
        `attempt ${attempt + 1}`
      );
      at.push(Date.now());
      FakeSocket.made[attempt].drop();
    }
    const gaps = at.slice(1).map((time, i) => time - at[i]);
    assert.ok(
      gaps.every(gap => gap <= 60 + 40),
      `at most the longest interval: ${gaps.join(', ')} ms`
    );
    assert.ok(
      gaps.slice(2).some(gap => gap >= 25),
      `the attempts back off: ${gaps.join(', ')} ms`
    );
  });

  it('closes its socket and stops reconnecting when disposed', async () => {
    const socket = socketOf();
    socket.start();
    await waitFor(() => FakeSocket.made.length === 1);
    FakeSocket.made[0].open();
    socket.dispose();
    assert.equal(FakeSocket.made[0].closed, true);
    assert.equal(socket.isDisposed, true);
    await sleep(60);
    assert.equal(FakeSocket.made.length, 1);
  });
});
