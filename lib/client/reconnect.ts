/**
 * reconnecting(url, options): a client that comes back. An async iterable of open WebSockets,
 * as python-websockets' `async for websocket in connect(uri)`:
 *
 *   for await (const ws of reconnecting('wss://example.com/feed')) {
 *     for await (const message of ws) handle(message);   // until this connection closes
 *   }
 *
 * Each turn of the loop gets a new open connection once the previous one has closed. A failed
 * attempt (refused, unreachable, handshake error) is retried after an exponential backoff with
 * jitter: attempt n waits min(maxDelay, minDelay * 2^(n-1)), of which a `jitter` fraction is
 * random (so that clients cut off together do not come back together). After `retries` failed
 * attempts in a row the iteration throws the last error. A connection that opened resets the
 * count; the next connection after a close is attempted at once.
 *
 * The iteration ends (no reconnection):
 * - after a deliberate close by us: `close()` of the Reconnecting, or `close()` / `terminate()`
 *   called on the WebSocket it gave;
 * - after the server closed with 1000 (normal closure: the server is done with us). A 1001
 *   (going away: a server restarting or shutting down), any other code, or a lost connection
 *   (1006) is reconnected.
 *
 * Every attempt is an event: 'attempt' (attempt number), 'open' (ws), 'retry' (error, attempt,
 * delay ms), 'close' (code, reason, reconnecting: boolean), 'giveup' (error). Time and
 * randomness are injectable (options.random, options.setTimer) for specs.
 */
import { EventEmitter } from 'node:events';
import { WebSocketError } from '../protocol/errors';
import { CloseCode } from '../protocol/constants';
import type { WebSocket } from '../connection/websocket';
import { type ClientOptions, connect as openWebSocket } from './client';

export interface ReconnectOptions {
  /** Failed attempts in a row before giving up. Default Infinity. */
  retries?: number;
  /** The first retry's delay, ms. Default 1000. */
  minDelay?: number;
  /** The longest delay, ms. Default 30000. */
  maxDelay?: number;
  /** The random fraction of each delay, 0 (none) to 1 (full jitter). Default 0.5. */
  jitter?: number;
  /** Random numbers in [0, 1). Default Math.random (jitter needs no cryptographic quality). */
  random?: () => number;
  /** Runs `callback` after `ms`; returns a function that cancels it. Default setTimeout. */
  setTimer?: (callback: () => void, ms: number) => () => void;
  /** Opens one connection. Default: connect() of this library. */
  connect?: (url: string | URL, options: ClientOptions) => WebSocket;
}

export const ReconnectDefaults = { retries: Infinity, minDelay: 1000, maxDelay: 30000, jitter: 0.5 } as const;

/** The delay before retry `attempt` (1 for the first retry): exponential, capped, with jitter. */
export function backoffDelay(attempt: number, options: ReconnectOptions = {}, random: () => number = Math.random): number {
  const min = options.minDelay ?? ReconnectDefaults.minDelay;
  const max = options.maxDelay ?? ReconnectDefaults.maxDelay;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? ReconnectDefaults.jitter));
  const base = Math.min(max, min * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (1 - jitter) + base * jitter * random());
}

function defaultTimer(callback: () => void, ms: number): () => void {
  const timer = setTimeout(callback, ms);
  return () => clearTimeout(timer);
}

function checkOptions(options: ReconnectOptions): void {
  for (const name of ['minDelay', 'maxDelay', 'jitter'] as const) {
    const value = options[name];
    if (value !== undefined && (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value))) {
      throw Object.assign(new RangeError(`reconnect option ${name} must be a finite number >= 0, not ${String(value)}`), { code: 'ERR_OUT_OF_RANGE' });
    }
  }
  if (options.retries !== undefined && !(options.retries >= 0)) {
    throw Object.assign(new RangeError(`reconnect option retries must be >= 0, not ${String(options.retries)}`), { code: 'ERR_OUT_OF_RANGE' });
  }
}

/** An async iterable of open connections to one URL; see the module comment. */
export class Reconnecting extends EventEmitter implements AsyncIterable<WebSocket> {
  private current: WebSocket | null = null;
  private stopped = false;
  /** The last connection's close ended the iteration (deliberate, or 1000 from the server). */
  private finished = false;
  private cancelWait: (() => void) | null = null;
  private wake: (() => void) | null = null;

  constructor(
    readonly url: string | URL,
    private readonly clientOptions: ClientOptions = {},
    private readonly options: ReconnectOptions = {},
  ) {
    super();
    checkOptions(options);
  }

  /** Ends the iteration: closes the current connection (1000) and stops any pending retry. */
  close(code: number = CloseCode.Normal, reason = ''): void {
    this.stopped = true;
    this.cancelWait?.();
    this.wake?.();
    if (this.current !== null && this.current.readyState < 2) this.current.close(code, reason);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<WebSocket, void, undefined> {
    while (!this.stopped && !this.finished) {
      const ws = await this.open();
      if (ws === null) return;
      yield ws;
      await this.closedOf(ws);
    }
  }

  /** Attempts until one opens (null: stopped); throws the last error after `retries` failures. */
  private async open(): Promise<WebSocket | null> {
    const retries = this.options.retries ?? ReconnectDefaults.retries;
    const random = this.options.random ?? Math.random;
    for (let failures = 0; ; ) {
      if (this.stopped) return null;
      this.emit('attempt', failures + 1);
      const result = await this.attempt();
      if (this.stopped) {
        if (!(result instanceof Error)) result.terminate();
        return null;
      }
      if (!(result instanceof Error)) return result;
      failures++;
      if (failures > retries) {
        this.emit('giveup', result);
        throw result;
      }
      const delay = backoffDelay(failures, this.options, random);
      this.emit('retry', result, failures, delay);
      await this.wait(delay);
    }
  }

  /** One connection attempt: the open WebSocket, or the error it failed with. */
  private attempt(): Promise<WebSocket | Error> {
    const open = this.options.connect ?? openWebSocket;
    return new Promise((resolve) => {
      const ws = open(this.url, this.clientOptions);
      let error: Error = new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'connection failed');
      const onError = (err: Error): void => {
        error = err;
      };
      const onOpen = (): void => {
        ws.removeListener('error', onError);
        ws.removeListener('close', onClose);
        this.adopt(ws);
        resolve(ws);
      };
      const onClose = (): void => {
        ws.removeListener('error', onError);
        ws.removeListener('open', onOpen);
        resolve(error);
      };
      ws.on('error', onError);
      ws.once('open', onOpen);
      ws.once('close', onClose);
    });
  }

  /** Watches an open connection: a deliberate close by us, or the server's 1000, ends the iteration. */
  private adopt(ws: WebSocket): void {
    this.current = ws;
    this.emit('open', ws);
    let deliberate = false;
    const close = ws.close.bind(ws);
    const terminate = ws.terminate.bind(ws);
    ws.close = (code?: number, reason?: string): void => {
      deliberate = true;
      close(code, reason);
    };
    ws.terminate = (): void => {
      deliberate = true;
      terminate();
    };
    ws.once('close', (code: number, reason: string) => {
      this.current = null;
      if (deliberate || code === CloseCode.Normal) this.finished = true;
      this.emit('close', code, reason, !this.finished && !this.stopped);
    });
  }

  private closedOf(ws: WebSocket): Promise<void> {
    if (ws.readyState === 3) return Promise.resolve();
    return new Promise((resolve) => ws.once('close', () => resolve()));
  }

  private wait(ms: number): Promise<void> {
    const setTimer = this.options.setTimer ?? defaultTimer;
    // close() from a 'retry' listener comes before the wait starts: no wait then.
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.cancelWait = null;
        this.wake = null;
        resolve();
      };
      this.cancelWait = setTimer(done, ms);
      this.wake = done;
    });
  }
}

/**
 * Connections to `url` that come back after failures (see the module comment): iterate with
 * `for await`. `options` are connect()'s, plus `reconnect` for the backoff.
 */
export function reconnecting(url: string | URL, options: ClientOptions & { reconnect?: ReconnectOptions } = {}): Reconnecting {
  const { reconnect, ...clientOptions } = options;
  return new Reconnecting(url, clientOptions, reconnect ?? {});
}
