import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import { ProxyConnection, type RelayOptions } from '../../lib/proxy/relay';
import type { UpgradeRequest } from '../../lib/handshake/handshake';
import type { UpgradeResponse } from '../../lib/handshake/handshake-parser';

/**
 * A transport (what WebSocket.attach() takes) that does nothing: every write is accepted and
 * dropped, nothing is ever emitted. Specs extend it for what they need to see.
 */
export class NullTransport extends EventEmitter {
  destroyed = false;
  writableLength = 0;
  write(_chunk: Buffer, _callback?: (err?: Error | null) => void): boolean {
    return true;
  }
  cork(): void {}
  uncork(): void {}
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  end(): this {
    return this;
  }
  destroy(): this {
    return this;
  }
}

/**
 * A socket as far as the proxy's relay uses one (a ProxyConnection takes two): every write is
 * accepted and counted (bytes, calls), pause() and resume() are recorded, destroy() emits
 * 'close' on the next tick. Used by spec/proxy/turns.spec.ts (which also keeps what is written)
 * and bench/relay-frames.ts.
 */
export class StandInSocket extends EventEmitter {
  /** Bytes and calls of write(). */
  written = 0;
  writes = 0;
  /** Whether the relay reads from it (resume() since the last pause()), and how often it paused it. */
  reading = false;
  pauses = 0;
  destroyed = false;
  writable = true;
  writableEnded = false;
  writableLength = 0;
  readableLength = 0;
  remoteAddress = '127.0.0.1';
  remotePort = 1;
  setNoDelay(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
  pause(): this {
    if (this.reading) this.pauses++;
    this.reading = false;
    return this;
  }
  resume(): this {
    this.reading = true;
    return this;
  }
  write(chunk: Buffer): boolean {
    this.written += chunk.length;
    this.writes++;
    return true;
  }
  end(): this {
    this.writableEnded = true;
    return this;
  }
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.writable = false;
    process.nextTick(() => this.emit('close'));
    return this;
  }
}

/** A ProxyConnection relaying between two stand-in sockets (no handshake: both sides open), started. */
export function relayBetween(client: StandInSocket, upstream: StandInSocket, options: RelayOptions = {}): ProxyConnection {
  const conn = new ProxyConnection(
    {
      request: {} as UpgradeRequest,
      response: {} as UpgradeResponse,
      target: new URL('ws://127.0.0.1:1/'),
      clientSocket: client as unknown as net.Socket,
      upstreamSocket: upstream as unknown as net.Socket,
      protocol: '',
      extensions: '',
    },
    options,
  );
  conn.start(null, null);
  return conn;
}
