/**
 * jupyter_server's event bus (`api/events/subscribe`), on a websocket of our
 * own that says when it (re)connects.
 *
 * Why not `app.serviceManager.events`: its `EventManager` (in
 * @jupyterlab/services 7, `lib/event/index.js`) reconnects by itself, on a
 * private `Poll`, but tells nobody that it did: its socket's `onopen` is not
 * even set, and its stream only carries events. The events the server sent
 * while the socket was closed (a server restart, a network blip) are lost,
 * and a client that cannot tell that it reconnected never learns that it
 * missed them. This socket emits `connected` each time it opens, so the job
 * model can ask once for what it missed. It is made the way `EventManager`
 * makes its own (same URL, token and `WebSocket` from the server settings,
 * reconnecting on a `Poll` with back-off, standing by while the page is
 * hidden), and its `stream` emits the same `Event.Emission`s.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { Event, ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

/** A source of the server's events that says when it (re)connects. */
export interface IEventSource extends IDisposable {
  /** Every event of the bus, as `Event.IManager.stream` emits them. */
  readonly stream: ISignal<IEventSource, Event.Emission>;
  /**
   * Emitted each time the subscription opens. Events sent before it (while
   * it was closed) may have been missed.
   */
  readonly connected: ISignal<IEventSource, void>;
  /** Emitted each time the subscription closes, or fails to open. */
  readonly disconnected: ISignal<IEventSource, void>;
  /** Subscribe (once); until then nothing connects. */
  start(): void;
}

/** Options for an `EventBusSocket`. */
export interface IEventBusSocketOptions {
  serverSettings?: ServerConnection.ISettings;
  /**
   * Milliseconds before reconnecting after the socket closed, and the first
   * delay after a failed attempt (default 1000).
   */
  interval?: number;
  /** The longest delay between attempts, in milliseconds (default 10000). */
  maxInterval?: number;
}

/** The server's event bus on a websocket that reconnects and says so. */
export class EventBusSocket implements IEventSource {
  constructor(options: IEventBusSocketOptions = {}) {
    this.serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
    const interval = options.interval ?? 1000;
    this._poll = new Poll({
      name: 'jobmagic:events',
      auto: false,
      factory: () => this._subscribe(),
      standby: 'when-hidden'
    });
    // A socket that closed after it had opened resolves its tick: the next
    // attempt comes after `interval`. One that never opened rejects it: the
    // attempts back off, up to `maxInterval`. (Set after construction: the
    // constructor raises `max` to at least 30 s.)
    this._poll.frequency = {
      interval,
      backoff: true,
      max: Math.max(interval, options.maxInterval ?? 10000)
    };
  }

  readonly serverSettings: ServerConnection.ISettings;

  get stream(): ISignal<this, Event.Emission> {
    return this._stream;
  }

  get connected(): ISignal<this, void> {
    return this._connected;
  }

  get disconnected(): ISignal<this, void> {
    return this._disconnected;
  }

  /** Whether the socket is open now. */
  get isOpen(): boolean {
    return this._open;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  start(): void {
    if (!this._started && !this.isDisposed) {
      this._started = true;
      void this._poll.start();
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onopen = socket.onclose = socket.onmessage = null;
      socket.close();
    }
    Signal.clearData(this);
  }

  /**
   * One subscription: resolves when a socket that opened closes, rejects
   * when it closes without having opened.
   */
  private _subscribe(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.isDisposed) {
        return;
      }
      const { appendToken, token, WebSocket, wsUrl } = this.serverSettings;
      let url = URLExt.join(wsUrl, 'api/events/subscribe');
      if (appendToken && token !== '') {
        url += `?token=${encodeURIComponent(token)}`;
      }
      const socket = new WebSocket(url);
      this._socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = this._open = true;
        this._connected.emit();
      };
      socket.onmessage = message => this._receive(message);
      socket.onclose = () => {
        if (this._socket === socket) {
          this._socket = null;
        }
        this._open = false;
        this._disconnected.emit();
        if (opened) {
          resolve();
        } else {
          reject(new Error('the event bus socket closed before it opened'));
        }
      };
    });
  }

  private _receive(message: MessageEvent): void {
    if (typeof message.data !== 'string' || !message.data) {
      return;
    }
    let emission: Event.Emission;
    try {
      emission = JSON.parse(message.data) as Event.Emission;
    } catch (reason) {
      console.warn('jobmagic: an event that is not JSON', reason);
      return;
    }
    this._stream.emit(emission);
  }

  private readonly _poll: Poll;
  private readonly _stream = new Signal<this, Event.Emission>(this);
  private readonly _connected = new Signal<this, void>(this);
  private readonly _disconnected = new Signal<this, void>(this);
  private _socket: WebSocket | null = null;
  private _started = false;
  private _open = false;
}
