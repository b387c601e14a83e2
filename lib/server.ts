/**
 * WebSocketServer: accepts opening handshakes and hands out open WebSocket connections.
 *
 * Three ways to run it:
 * - standalone: `createServer({ port })` listens with node:net and parses each request with the
 *   HandshakeParser stage (bytes that follow the request in the same TCP chunk are kept);
 * - on an existing http/https server: `createServer({ server })` takes its 'upgrade' events;
 * - by hand: `createServer({ noServer: true })` and call `handleUpgrade(req, socket, head, cb)`.
 */
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { Defaults } from './constants';
import { WebSocketError, isWebSocketError } from './errors';
import {
  UpgradeInfo,
  UpgradeRequest,
  buildAcceptResponse,
  buildRejectResponse,
  selectProtocol,
  validateUpgradeRequest,
} from './handshake';
import { HandshakeParserCore } from './handshake-parser';
import { Transport, WebSocket, WebSocketOptions } from './websocket';

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
   * Subprotocols this server speaks, in order of preference, or a function that picks one of
   * those the client offered. A protocol the client did not offer is never chosen.
   */
  protocols?: string[] | ((offered: string[], req: UpgradeRequest) => string | false | undefined);
  /** Largest handshake header block, in bytes (standalone mode). Default 16 KiB; over it: 431. */
  maxHeaderSize?: number;
  /** Milliseconds allowed for a client to send its whole request (standalone mode). Default 10000. */
  handshakeTimeout?: number;
}

export interface WebSocketServerEvents {
  connection: (ws: WebSocket, req: UpgradeRequest) => void;
  listening: () => void;
  error: (err: Error) => void;
  /** A handshake was refused (status and error), for logs. */
  rejected: (err: WebSocketError, req: UpgradeRequest | null) => void;
  close: () => void;
}

/** Bytes of a rejected handshake's response, then the socket is closed. */
function reject(socket: net.Socket, err: WebSocketError, headers?: Record<string, string>): void {
  if (!socket.destroyed && socket.writable) {
    socket.end(buildRejectResponse(err.status ?? 400, { message: err.message, headers }));
  } else {
    socket.destroy();
  }
}

export class WebSocketServer extends EventEmitter {
  /** The open connections. */
  readonly clients = new Set<WebSocket>();
  private readonly options: ServerOptions;
  private readonly netServer: net.Server | null = null;
  private readonly httpServer: http.Server | null = null;
  private closed = false;

  constructor(options: ServerOptions = {}, onListening?: () => void) {
    super();
    this.options = options;
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
          const err = new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', message);
          socket.end(buildRejectResponse(status, { message, headers: result === false ? undefined : result.headers }));
          this.emit('rejected', err, req);
        },
        (cause: unknown) => {
          socket.end(buildRejectResponse(500, { message: 'Internal Server Error' }));
          this.emit('error', cause instanceof Error ? cause : new Error(String(cause)));
        },
      );
  }

  /** Stops accepting connections and closes the open ones with 1001 (going away). */
  close(callback?: () => void): void {
    if (this.closed) {
      if (callback !== undefined) process.nextTick(callback);
      return;
    }
    this.closed = true;
    this.httpServer?.removeListener('upgrade', this.onHttpUpgrade);
    for (const ws of this.clients) ws.close(1001, 'server shutting down');
    const done = (): void => {
      this.emit('close');
      callback?.();
    };
    if (this.netServer !== null) this.netServer.close(() => done());
    else process.nextTick(done);
  }

  private readonly onHttpUpgrade = (req: http.IncomingMessage, socket: net.Socket, head: Buffer): void => {
    this.handleUpgrade(req as UpgradeRequest, socket, head, (ws) => this.emit('connection', ws, req));
  };

  /** Standalone mode: parse the request from the raw socket with the HandshakeParser core. */
  private onRawSocket(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.on('error', onEarlyError);
    const timeout = this.options.handshakeTimeout ?? Defaults.handshakeTimeout;
    const timer = setTimeout(() => socket.destroy(), timeout);
    let request: UpgradeRequest | null = null;
    const rest: Buffer[] = [];
    const parser = new HandshakeParserCore(
      { role: 'server', maxHeaderSize: this.options.maxHeaderSize },
      {
        onHead: (head) => {
          request = head as UpgradeRequest;
        },
        onData: (bytes: Buffer) => {
          rest.push(bytes);
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
      if (request !== null) {
        cleanup();
        socket.pause();
        const head = rest.length === 1 ? rest[0]! : Buffer.concat(rest);
        this.handleUpgrade(request, socket, head, (ws) => this.emit('connection', ws, request!));
      }
    };
    const cleanup = (): void => {
      clearTimeout(timer);
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
    const supported = this.options.protocols;
    const protocol =
      supported === undefined
        ? undefined
        : selectProtocol(info.protocols, typeof supported === 'function' ? (offered) => supported(offered, req) : supported);
    socket.write(buildAcceptResponse({ key: info.key, protocol }));
    socket.removeListener('error', onEarlyError);
    const ws = new WebSocket('server', this.options);
    ws.attach(socket as Transport, head, { protocol: protocol ?? '', extensions: '' });
    socket.resume();
    this.clients.add(ws);
    ws.once('close', () => this.clients.delete(ws));
    callback(ws, req);
  }

  private refuse(socket: net.Socket, err: WebSocketError, req: UpgradeRequest | null): void {
    reject(socket, err);
    this.emit('rejected', err, req);
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
