/**
 * WebSocketServer: accepts opening handshakes and hands out open WebSocket connections.
 *
 * Three ways to run it:
 * - standalone: `createServer({ port })` listens with node:net and parses each request with the
 *   HandshakeParser stage (bytes that follow the request in the same TCP chunk are kept);
 * - on an existing http/https server: `createServer({ server })` takes its 'upgrade' events;
 * - by hand: `createServer({ noServer: true })` and call `handleUpgrade(req, socket, head, cb)`.
 */
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Defaults } from '../protocol/constants';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import {
  UpgradeInfo,
  UpgradeRequest,
  buildAcceptResponse,
  buildRejectResponse,
  formatExtensions,
  selectProtocol,
  validateUpgradeRequest,
} from '../handshake/handshake';
import { HandshakeParserCore } from '../handshake/handshake-parser';
import { shutDown } from '../connection/shutdown';
import { PerMessageDeflateOptions, acceptDeflateOffer, checkDeflateOptions, deflateSides } from '../deflate/permessage-deflate';
import { Transport, WebSocket, WebSocketOptions } from '../connection/websocket';

/** What a verifyClient hook answers: accept, refuse with 401, or refuse with a status. */
export type VerifyResult = boolean | { status: number; message?: string; headers?: Record<string, string> };

export interface ServerOptions extends WebSocketOptions {
  /** Listen on this port (standalone mode). */
  port?: number;
  /** Address to listen on in standalone mode. Default: Node's default (all interfaces); pass '127.0.0.1' for local only. */
  host?: string;
  /** Attach to this http or https server's 'upgrade' event. */
  server?: http.Server;
  /** Neither listen nor attach: call handleUpgrade() yourself. */
  noServer?: boolean;
  /** Only accept requests for this path (e.g. '/ws'); others get 400. Default: any path. */
  path?: string;
  /** Decide whether to accept a request (check Origin, authenticate). May be async. Default: accept. */
  verifyClient?: (req: UpgradeRequest, info: UpgradeInfo) => VerifyResult | Promise<VerifyResult>;
  /**
   * Subprotocols this server speaks, in the server's order of preference: the first of this list
   * that the client offered is chosen, whatever the client's order (RFC 6455 §4.2.2 leaves the
   * choice to the server). Or a function that picks one of those the client offered (in the
   * client's order). A protocol the client did not offer is never chosen; with no match, the
   * answer has no Sec-WebSocket-Protocol header. Default: none.
   */
  protocols?: string[] | ((offered: string[], req: UpgradeRequest) => string | false | undefined);
  /** Largest handshake header block, in bytes (standalone mode). Default 16 KiB; over it: 431. */
  maxHeaderSize?: number;
  /**
   * Most connections at once, open ones plus handshakes in progress; a client over the limit
   * gets 503 and is closed. Default: Infinity. Set it on a public server.
   */
  maxConnections?: number;
  /** Milliseconds allowed for a client to send its whole request (standalone mode). Default 10000. */
  handshakeTimeout?: number;
  /**
   * permessage-deflate (RFC 7692): true (default options) or options to accept a client's offer,
   * false to decline every offer. Default false: compression costs each connection memory
   * (about 240 KiB per idle connection with context takeover, measured by bench/deflate.ts) and
   * the server CPU and thread-pool time, and pays off only for compressible traffic (JSON,
   * text), which the application knows and we do not.
   * Browsers offer it on every connection, so turning it on takes effect at once.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

export interface WebSocketServerEvents {
  connection: (ws: WebSocket, req: UpgradeRequest) => void;
  listening: () => void;
  error: (err: Error) => void;
  /**
   * A handshake was refused, for logs: the error, the request (null when it could not be
   * parsed) and the HTTP status answered.
   */
  rejected: (err: WebSocketError, req: UpgradeRequest | null, status: number) => void;
  close: () => void;
}

/**
 * Milliseconds a refused socket may stay half-closed (our answer sent, the peer's FIN not yet
 * received) before it is destroyed, so that a peer that never closes cannot hold it open.
 */
const REFUSED_LINGER_MS = 1000;
/** RFC 9110 §15.6.4: the server is shutting down (close() was called). */
const SERVICE_UNAVAILABLE = 503;
const INTERNAL_SERVER_ERROR = 500;
/** Longest time between two checks of the handshake deadlines (ms). */
const MAX_SWEEP_PERIOD_MS = 1000;
/** What follows a request when nothing came after it in its chunk. */
const NO_BYTES = Buffer.alloc(0);

/**
 * Writes a refusal (a complete HTTP response with `Connection: close`) and closes the socket:
 * our side ends at once; the socket is read (and the bytes dropped) until the peer's FIN, or
 * destroyed after REFUSED_LINGER_MS. Destroying at once could reset the connection and lose
 * the answer when the peer's unread bytes are still in flight.
 */
function reject(
  socket: net.Socket,
  status: number,
  message: string,
  headers?: Record<string, string>,
): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(buildRejectResponse(status, { message, headers }));
  const linger = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
  socket.resume();
}

export class WebSocketServer extends EventEmitter {
  /** The open connections. */
  readonly clients = new Set<WebSocket>();
  private readonly options: ServerOptions;
  private readonly netServer: net.Server | null = null;
  private readonly httpServer: http.Server | null = null;
  /**
   * Standalone mode: sockets still sending their request (dropped by close()), in order of
   * arrival, each with its deadline (performance.now() ms; see handshakeTimeout).
   */
  private readonly handshaking = new Map<net.Socket, number>();
  /**
   * Checks the deadlines every quarter of handshakeTimeout (at most every MAX_SWEEP_PERIOD_MS),
   * while handshakes are pending: one timer for all of them, rather than one each.
   */
  private sweepTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(options: ServerOptions = {}, onListening?: () => void) {
    super();
    this.options = options;
    // An invalid permessage-deflate option is a programming error: thrown here, not per connection.
    if (typeof options.perMessageDeflate === 'object') checkDeflateOptions(options.perMessageDeflate, 'server');
    if (options.server !== undefined) {
      this.httpServer = options.server;
      this.httpServer.on('upgrade', this.onHttpUpgrade);
    } else if (options.noServer !== true) {
      const server = net.createServer({ pauseOnConnect: false }, (socket) => this.onRawSocket(socket));
      server.on('error', (err) => this.emit('error', err));
      server.on('listening', () => this.emit('listening'));
      server.listen(options.port ?? 0, options.host);
      this.netServer = server;
    }
    if (onListening !== undefined) this.once('listening', onListening);
  }

  /** The address the standalone server listens on (null in the other modes). */
  address(): net.AddressInfo | null {
    const addr = this.netServer?.address() ?? this.httpServer?.address();
    return addr !== null && typeof addr === 'object' ? addr : null;
  }

  /**
   * Completes an upgrade request that Node's http server (or anything else) has parsed:
   * validates it, runs the hooks, answers 101 and calls `callback` with the open connection,
   * or answers with an error status and closes the socket.
   */
  handleUpgrade(
    req: UpgradeRequest,
    socket: net.Socket,
    head: Buffer,
    callback: (ws: WebSocket, req: UpgradeRequest) => void,
  ): void {
    socket.on('error', onEarlyError);
    this.upgrade(req, socket, head, callback);
  }

  /** handleUpgrade for a socket that has its onEarlyError listener already. */
  private upgrade(
    req: UpgradeRequest,
    socket: net.Socket,
    head: Buffer,
    callback: (ws: WebSocket, req: UpgradeRequest) => void,
  ): void {
    if (this.closed) {
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the server is closing'), req, SERVICE_UNAVAILABLE);
      return;
    }
    // Handshakes read by our own parser are counted in `handshaking` until they get here.
    if (this.full(this.handshaking.has(socket) ? 1 : 0)) {
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'too many connections'), req, SERVICE_UNAVAILABLE);
      return;
    }
    const info = validateUpgradeRequest(req);
    if (isWebSocketError(info)) {
      this.refuse(socket, info, req);
      return;
    }
    if (this.options.path !== undefined && (req.url ?? '/').split('?')[0] !== this.options.path) {
      this.refuse(socket, new WebSocketError('WS_ERR_INVALID_HANDSHAKE', `unknown path ${req.url}`), req);
      return;
    }
    const verify = this.options.verifyClient;
    if (verify === undefined) {
      this.accept(req, info, socket, head, callback);
      return;
    }
    Promise.resolve()
      .then(() => verify(req, info))
      .then(
        (result) => {
          if (result === true) {
            this.accept(req, info, socket, head, callback);
            return;
          }
          const status = result === false ? 401 : result.status;
          const message = result === false ? 'Unauthorized' : (result.message ?? http.STATUS_CODES[status] ?? 'Refused');
          const headers = result === false ? undefined : result.headers;
          this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', message), req, status, headers, message);
        },
        (cause: unknown) => {
          // A hook that throws (or rejects) is a bug of the application, but a client must not
          // be able to crash the server with it: 500, and the cause goes to 'rejected' (not to
          // 'error', which would throw without a listener).
          const detail = cause instanceof Error ? cause.message : String(cause);
          const err = new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `verifyClient failed: ${detail}`);
          Object.defineProperty(err, 'cause', { value: cause, enumerable: false });
          this.refuse(socket, err, req, INTERNAL_SERVER_ERROR, undefined, http.STATUS_CODES[INTERNAL_SERVER_ERROR]);
        },
      );
  }

  /**
   * Stops accepting connections (a listening server stops listening; handleUpgrade answers 503;
   * requests still being read are dropped), closes the open connections with 1001 (going away,
   * RFC 6455 §7.4.1), and calls back (and emits 'close') once all of them are closed. An
   * http/https server given as `server` is left running.
   */
  close(callback?: () => void): void {
    if (this.closed) {
      if (callback !== undefined) process.nextTick(callback);
      return;
    }
    this.closed = true;
    this.httpServer?.removeListener('upgrade', this.onHttpUpgrade);
    const parts = { handshaking: this.handshaking, open: this.clients, reason: 'server shutting down', listener: this.netServer };
    shutDown(parts, () => {
      this.emit('close');
      callback?.();
    });
  }

  private readonly onHttpUpgrade = (req: http.IncomingMessage, socket: net.Socket, head: Buffer): void => {
    this.handleUpgrade(req as UpgradeRequest, socket, head, this.emitConnection);
  };

  private readonly emitConnection = (ws: WebSocket, req: UpgradeRequest): void => {
    this.emit('connection', ws, req);
  };

  /** Forgets an open connection once it has closed ('close' listener: `this` is the WebSocket). */
  private readonly forget = ((clients: Set<WebSocket>) =>
    function (this: WebSocket): void {
      clients.delete(this);
    })(this.clients);

  /** Starts the handshake deadline of `socket`. */
  private startHandshake(socket: net.Socket): void {
    const timeout = this.options.handshakeTimeout ?? Defaults.handshakeTimeout;
    this.handshaking.set(socket, performance.now() + timeout);
    if (this.sweepTimer === null) {
      this.sweepTimer = setInterval(this.sweep, Math.max(1, Math.min(timeout / 4, MAX_SWEEP_PERIOD_MS)));
      this.sweepTimer.unref();
    }
  }

  /**
   * Destroys the sockets whose handshake is past its deadline (a slow-loris client is cut off
   * between handshakeTimeout and handshakeTimeout plus one sweep period after it connected).
   * The deadlines grow in the order of the map, so the first one still ahead ends the sweep.
   */
  private readonly sweep = (): void => {
    const now = performance.now();
    for (const [socket, deadline] of this.handshaking) {
      if (deadline > now) break;
      this.handshaking.delete(socket);
      socket.destroy();
    }
    if (this.handshaking.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  };

  /** True when `extra` more connections would go over maxConnections. */
  private full(alreadyCounted = 0): boolean {
    const max = this.options.maxConnections;
    return max !== undefined && this.clients.size + this.handshaking.size - alreadyCounted >= max;
  }

  /** Standalone mode: parse the request from the raw socket with the HandshakeParser core. */
  private onRawSocket(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.on('error', onEarlyError);
    if (this.full()) {
      // Over the limit: answered at once, without reading the request.
      const err = new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'too many connections');
      this.refuse(socket, err, null, SERVICE_UNAVAILABLE);
      return;
    }
    this.startHandshake(socket);
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
    const onData = (chunk: Buffer): void => {
      const err = parser.write(chunk);
      if (err !== null) {
        cleanup();
        this.refuse(socket, err, null);
        return;
      }
      const request = parser.head as UpgradeRequest | null;
      if (request !== null) {
        cleanup();
        // Without verifyClient, the connection is accepted (or refused) before this returns,
        // with nothing read in between; verifyClient may take its time: no byte may be lost.
        if (this.options.verifyClient !== undefined) socket.pause();
        const head = rest === null ? NO_BYTES : rest.length === 1 ? rest[0]! : Buffer.concat(rest);
        this.upgrade(request, socket, head, this.emitConnection);
      }
    };
    const cleanup = (): void => {
      this.handshaking.delete(socket);
      socket.removeListener('data', onData);
      socket.removeListener('close', cleanup);
    };
    socket.on('data', onData);
    socket.on('close', cleanup);
  }

  private accept(
    req: UpgradeRequest,
    info: UpgradeInfo,
    socket: net.Socket,
    head: Buffer,
    callback: (ws: WebSocket, req: UpgradeRequest) => void,
  ): void {
    if (socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    if (this.closed) {
      // close() was called while verifyClient was deciding.
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the server is closing'), req, SERVICE_UNAVAILABLE);
      return;
    }
    if (this.full(this.handshaking.has(socket) ? 1 : 0)) {
      // Others got in while verifyClient was deciding.
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'too many connections'), req, SERVICE_UNAVAILABLE);
      return;
    }
    const supported = this.options.protocols;
    const protocol =
      supported === undefined
        ? undefined
        : selectProtocol(
            info.protocols,
            typeof supported === 'function'
              ? (offered) => supported(offered, req)
              : // The server's order of preference (see ServerOptions.protocols).
                (offered) => supported.find((p) => offered.includes(p)),
          );
    // permessage-deflate: the first acceptable offer, in the client's order (RFC 7692 §5).
    const deflateOptions = this.options.perMessageDeflate;
    const deflateAgreement =
      deflateOptions === undefined || deflateOptions === false
        ? null
        : acceptDeflateOffer(info.extensions, deflateOptions === true ? {} : deflateOptions);
    const extensions = deflateAgreement === null ? '' : formatExtensions([deflateAgreement.response]);
    socket.write(buildAcceptResponse({ key: info.key, protocol, extensions }));
    socket.removeListener('error', onEarlyError);
    const ws = new WebSocket('server', this.options);
    ws.attach(socket as Transport, head, {
      protocol: protocol ?? '',
      extensions,
      deflate:
        deflateAgreement === null
          ? undefined
          : { sides: deflateSides(deflateAgreement, 'server'), options: deflateOptions === true ? {} : (deflateOptions as PerMessageDeflateOptions) },
    });
    socket.resume();
    this.clients.add(ws);
    ws.on('close', this.forget);
    callback(ws, req);
  }

  /**
   * Answers `status` (default: the error's own, else 400) and closes the socket, then emits
   * 'rejected'. The body is `message` (default: the error's message).
   */
  private refuse(
    socket: net.Socket,
    err: WebSocketError,
    req: UpgradeRequest | null,
    status = err.status ?? 400,
    headers?: Record<string, string>,
    message = err.message,
  ): void {
    reject(socket, status, message, headers);
    this.emit('rejected', err, req, status);
  }
}

/** Errors of a socket whose handshake is not done belong to nobody: it is simply closed. */
function onEarlyError(this: net.Socket): void {
  this.destroy();
}

/** Creates a WebSocketServer; see ServerOptions for the three modes. */
export function createServer(options: ServerOptions = {}, onListening?: () => void): WebSocketServer {
  return new WebSocketServer(options, onListening);
}
