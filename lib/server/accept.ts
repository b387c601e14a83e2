/**
 * The accepting side of the opening handshake on a raw socket, shared by the WebSocket server
 * (lib/server/server.ts) and the proxy's listener (lib/proxy/listener.ts):
 *
 * - `RequestReader` reads each client's request with the HandshakeParser core and keeps the
 *   bytes that follow it, under one deadline per socket (handshakeTimeout) checked by a single
 *   sweep timer for all of them;
 * - `refuseSocket` answers a refusal and closes the socket, lingering a bounded time;
 * - `onEarlyError` is the 'error' listener of a socket whose handshake is not done;
 * - `UpgradeListener`, the base of WebSocketServer and WebSocketProxy: the three modes
 *   (standalone, on an http server, by hand), refusing, and close().
 */
import type { Http2ServerLike } from '../http2/binding';
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import type * as http from 'node:http';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Defaults } from '../protocol/constants';
import type { WebSocketError } from '../protocol/errors';
import { UpgradeRequest, buildRejectResponse } from '../handshake/handshake';
import { HandshakeParserCore } from '../handshake/handshake-parser';
import { GoingAway, shutDown } from '../connection/shutdown';

/**
 * Milliseconds a refused socket may stay half-closed (our answer sent, the peer's FIN not yet
 * received) before it is destroyed, so that a peer that never closes cannot hold it open.
 */
export const REFUSED_LINGER_MS = 1000;
/**
 * Bytes a refused socket may send after our answer (they are read and dropped, so that its FIN
 * can be seen) before it is destroyed: a peer still sending that much after a refusal (a header
 * flood) is not reading our answer, and dropping its flood for REFUSED_LINGER_MS costs CPU.
 */
export const REFUSED_LINGER_BYTES = 64 * 1024;
/** Longest time between two checks of the handshake deadlines (ms). */
const MAX_SWEEP_PERIOD_MS = 1000;
/** The status of a request that cannot be parsed or is not a valid upgrade. */
const BAD_REQUEST = 400;
/** What follows a request when nothing came after it in its chunk. */
const NO_BYTES = Buffer.alloc(0);

/**
 * Writes a refusal (a complete HTTP response with `Connection: close`) and closes the socket:
 * our side ends at once; the socket is read (and the bytes dropped) until the peer's FIN, or
 * destroyed after REFUSED_LINGER_MS or once REFUSED_LINGER_BYTES were dropped. Destroying at
 * once could reset the connection and lose the answer when the peer's unread bytes are still
 * in flight.
 */
export function refuseSocket(socket: net.Socket, status: number, message: string, headers?: Record<string, string>): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(buildRejectResponse(status, { message, headers }));
  const linger = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
  let dropped = 0;
  socket.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > REFUSED_LINGER_BYTES) socket.destroy();
  });
  socket.resume();
}

/** Errors of a socket whose handshake is not done belong to nobody: it is simply closed. */
export function onEarlyError(this: net.Socket): void {
  this.destroy();
}

export interface RequestReaderOptions {
  /** Largest request head, in bytes. Default 16 KiB; over it: 431. */
  maxHeaderSize?: number;
  /** Milliseconds a client has to send its whole request. Default 10000. */
  handshakeTimeout?: number;
}

/**
 * Reads opening handshakes from raw sockets. A socket is counted in `size` (and listed by
 * `keys()`, for shutDown) from `read()` until its request is whole, it fails, it closes, or its
 * deadline passes (then it is destroyed).
 */
export class RequestReader {
  /** Sockets still sending their request, in order of arrival, each with its deadline (performance.now() ms). */
  private readonly deadlines = new Map<net.Socket, number>();
  /**
   * Checks the deadlines every quarter of handshakeTimeout (at most every MAX_SWEEP_PERIOD_MS),
   * while handshakes are pending: one timer for all of them, rather than one each.
   */
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: RequestReaderOptions) {}

  /** Sockets whose request is being read. */
  get size(): number {
    return this.deadlines.size;
  }

  keys(): IterableIterator<net.Socket> {
    return this.deadlines.keys();
  }

  /** Forgets every socket (shutDown destroys them) and stops the sweep. */
  clear(): void {
    this.deadlines.clear();
    this.stopSweep();
  }

  /**
   * Reads the request of `socket`. `onRequest` gets it with the bytes that followed it (called
   * from the socket's 'data' listener: pausing the socket there loses nothing); `onError` gets
   * a request that cannot be parsed (WS_ERR_HEADER_TOO_LARGE, WS_ERR_INVALID_HANDSHAKE, ...).
   * Either way the socket is no longer read by us.
   */
  read(socket: net.Socket, onRequest: (req: UpgradeRequest, head: Buffer) => void, onError: (err: WebSocketError) => void): void {
    this.startDeadline(socket);
    let rest: Buffer[] | null = null;
    const parser = new HandshakeParserCore(
      { role: 'server', maxHeaderSize: this.options.maxHeaderSize },
      {
        onHead: () => {},
        onData: (bytes: Buffer) => {
          (rest ??= []).push(bytes);
        },
      },
    );
    const cleanup = (): void => {
      this.forget(socket);
      socket.removeListener('data', onData);
      socket.removeListener('close', cleanup);
    };
    const onData = (chunk: Buffer): void => {
      const err = parser.write(chunk);
      if (err !== null) {
        cleanup();
        onError(err);
        return;
      }
      const request = parser.head as UpgradeRequest | null;
      if (request === null) return;
      cleanup();
      onRequest(request, rest === null ? NO_BYTES : rest.length === 1 ? rest[0]! : Buffer.concat(rest));
    };
    socket.on('data', onData);
    socket.on('close', cleanup);
  }

  private startDeadline(socket: net.Socket): void {
    const timeout = this.options.handshakeTimeout ?? Defaults.handshakeTimeout;
    this.deadlines.set(socket, performance.now() + timeout);
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(this.sweep, Math.max(1, Math.min(timeout / 4, MAX_SWEEP_PERIOD_MS)));
      this.sweepTimer.unref();
    }
  }

  private forget(socket: net.Socket): void {
    this.deadlines.delete(socket);
    if (this.deadlines.size === 0) this.stopSweep();
  }

  private stopSweep(): void {
    if (this.sweepTimer === null) return;
    clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /**
   * Destroys the sockets whose handshake is past its deadline (a slow-loris client is cut off
   * between handshakeTimeout and handshakeTimeout plus one sweep period after it connected).
   * The deadlines grow in the order of the map, so the first one still ahead ends the sweep.
   */
  private readonly sweep = (): void => {
    const now = performance.now();
    for (const [socket, deadline] of this.deadlines) {
      if (deadline > now) break;
      this.deadlines.delete(socket);
      socket.destroy();
    }
    if (this.deadlines.size === 0) this.stopSweep();
  };
}

/** Where a server or a proxy takes its clients from. */
export interface ListenOptions extends RequestReaderOptions {
  /** Listen on this port (standalone mode; 0 picks one). */
  port?: number;
  /** Address to listen on in standalone mode. Default: Node's default (all interfaces); pass '127.0.0.1' for local only. */
  host?: string;
  /**
   * Attach to this http or https server's 'upgrade' event instead of listening (a node:http2
   * server with allowHTTP1 has them too, for its HTTP/1.1 clients).
   */
  server?: http.Server | Http2ServerLike;
  /** Neither listen nor attach: hand each upgrade over yourself (WebSocketServer.handleUpgrade, WebSocketProxy.relay). */
  noServer?: boolean;
}

/**
 * What the WebSocket server and the proxy's listener share: the three modes (standalone with
 * our own request reader, an http server's 'upgrade' events, by hand), refusing with an HTTP
 * status and a 'rejected' event, and close() (shutDown: 1001 to the open connections).
 * A subclass decides what to do with a parsed request (`onRequest`).
 */
export abstract class UpgradeListener extends EventEmitter {
  protected readonly netServer: net.Server | null = null;
  protected readonly httpServer: http.Server | Http2ServerLike | null = null;
  /** Standalone mode: the requests still being read (dropped by close()), with their deadlines. */
  protected readonly handshaking: RequestReader;
  protected closed = false;
  private readonly onHttpUpgrade: (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => void;

  constructor(
    options: ListenOptions,
    /** The reason of the 1001 close frames that close() sends. */
    private readonly closeReason: string,
    onListening?: () => void,
  ) {
    super();
    this.handshaking = new RequestReader(options);
    this.onHttpUpgrade = (req, socket, head) => {
      socket.on('error', onEarlyError);
      this.onRequest(req as UpgradeRequest, socket, head);
    };
    if (options.server !== undefined) {
      this.httpServer = options.server;
      this.httpServer.on('upgrade', this.onHttpUpgrade);
    } else if (options.noServer !== true) {
      const server = net.createServer((socket) => this.onRawSocket(socket));
      server.on('error', (err) => this.emit('error', err));
      server.on('listening', () => this.emit('listening'));
      server.listen(options.port ?? 0, options.host);
      this.netServer = server;
    }
    if (onListening !== undefined) this.once('listening', onListening);
  }

  /** The address the standalone mode listens on (null in the other modes). */
  address(): net.AddressInfo | null {
    const addr = this.netServer?.address() ?? this.httpServer?.address();
    return addr !== null && typeof addr === 'object' ? addr : null;
  }

  /**
   * Stops accepting (a listening one stops listening; requests still being read are dropped),
   * closes the open connections with 1001 (going away, RFC 6455 §7.4.1), and calls back (and
   * emits 'close') once all of them are closed. An http/https server given as `server` is left
   * running.
   */
  close(callback?: () => void): void {
    if (this.closed) {
      if (callback !== undefined) process.nextTick(callback);
      return;
    }
    this.closed = true;
    this.httpServer?.removeListener('upgrade', this.onHttpUpgrade);
    const parts = { handshaking: this.pendingSockets(), open: this.openConnections(), reason: this.closeReason, listener: this.netServer };
    shutDown(parts, () =>
      this.afterShutdown(() => {
        this.emit('close');
        callback?.();
      }),
    );
  }

  /** Called once every connection has closed, before 'close': a subclass releases what it still holds, then calls `done`. */
  protected afterShutdown(done: () => void): void {
    done();
  }

  /**
   * A parsed upgrade request, from our reader or an http server; `socket` has the onEarlyError
   * listener (to remove once the socket has an owner).
   */
  protected abstract onRequest(req: UpgradeRequest, socket: net.Socket, head: Buffer): void;

  /** The open connections, for close(). */
  protected abstract openConnections(): Iterable<GoingAway>;

  /** The sockets still in their opening handshake, for close() to drop. */
  protected pendingSockets(): { keys(): Iterable<net.Socket>; clear(): void } {
    return this.handshaking;
  }

  /** A refusal before the request is read (e.g. too many connections), or null to read it. */
  protected refuseEarly(): { err: WebSocketError; status: number } | null {
    return null;
  }

  /**
   * Answers `status` (default: the error's own, else 400) and closes the socket, then emits
   * 'rejected'. The body is `message` (default: the error's message).
   */
  protected refuse(
    socket: net.Socket,
    err: WebSocketError,
    req: UpgradeRequest | null,
    status = err.status ?? BAD_REQUEST,
    headers?: Record<string, string>,
    message = err.message,
  ): void {
    refuseSocket(socket, status, message, headers);
    this.emit('rejected', err, req, status);
  }

  /** Standalone mode: parse the request from the raw socket with the HandshakeParser core. */
  private onRawSocket(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.on('error', onEarlyError);
    const early = this.refuseEarly();
    if (early !== null) {
      // Answered at once, without reading the request.
      this.refuse(socket, early.err, null, early.status);
      return;
    }
    this.handshaking.read(
      socket,
      (request, head) => this.onRequest(request, socket, head),
      (err) => this.refuse(socket, err, null),
    );
  }
}
