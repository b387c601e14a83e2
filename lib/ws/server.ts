/**
 * wspipe/ws WebSocketServer: ws's server API over wspipe's WebSocketServer (in noServer mode:
 * it checks each request, answers, and starts the connection; this adapter does what ws does
 * around it: its own http server for `port`, shouldHandle, verifyClient's two forms,
 * handleProtocols, 'headers', 'wsClientError', clientTracking, and close() that leaves the open
 * connections alone).
 */
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import type * as https from 'node:https';
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { buildRejectResponse, validateUpgradeRequest, type UpgradeRequest } from '../handshake/handshake';
import { isWebSocketError } from '../protocol/errors';
import { ServerRequest, VerifyResult, WebSocketServer as Server } from '../server/server';
import type { WebSocket as Connection } from '../connection/websocket';
import { connectionOptions, deflateOptions, invalidArgument, WsCommonOptions, WsPerMessageDeflateOptions } from './options';
import { WebSocket } from './websocket';

/** What ws's verifyClient gets. */
export interface VerifyClientInfo {
  origin: string | undefined;
  secure: boolean;
  req: http.IncomingMessage;
}
export type VerifyClientCallback = (result: boolean, code?: number, message?: string, headers?: Record<string, string>) => void;

export interface WsServerOptions extends WsCommonOptions {
  host?: string;
  port?: number;
  backlog?: number;
  server?: http.Server | https.Server;
  noServer?: boolean;
  /** Accept only this path (others: 400). */
  path?: string;
  /** `(info) => boolean`, or `(info, cb) => void` calling cb(result, code?, message?, headers?). */
  verifyClient?: ((info: VerifyClientInfo) => boolean) | ((info: VerifyClientInfo, cb: VerifyClientCallback) => void);
  /** Picks the subprotocol among those offered; default: the first offered (as ws). */
  handleProtocols?: (protocols: Set<string>, req: http.IncomingMessage) => string | false;
  /** Keep the open connections in `clients`. Default true. */
  clientTracking?: boolean;
  /** permessage-deflate; default false, as ws. */
  perMessageDeflate?: boolean | WsPerMessageDeflateOptions;
  /** ws's class option: not supported (throws when given). */
  WebSocket?: unknown;
}

const enum State {
  Running,
  Closing,
  Closed,
}

/** ws's abortHandshake: a complete refusal, then the socket is closed. */
function abort(socket: Duplex, status: number, message?: string, headers?: Record<string, string>): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.once('finish', () => socket.destroy());
  socket.end(buildRejectResponse(status, { message: message ?? http.STATUS_CODES[status], headers }));
}

export class WebSocketServer extends EventEmitter {
  /** The open connections (undefined with clientTracking: false). */
  readonly clients: Set<WebSocket> | undefined;
  readonly options: WsServerOptions;
  /** The wspipe server underneath (noServer mode). */
  readonly server: Server;
  private http: http.Server | https.Server | null = null;
  private readonly ownHttp: boolean;
  private state = State.Running;
  /** close() waits for the tracked connections: called when the last one has closed. */
  private whenEmpty: (() => void) | null = null;

  constructor(options: WsServerOptions, callback?: () => void) {
    super();
    const { server, noServer } = options;
    // ws's test: `port` null or undefined counts as not given.
    const port = options.port ?? undefined;
    if ((port === undefined && server === undefined && noServer !== true) || (port !== undefined && (server !== undefined || noServer === true)) || (server !== undefined && noServer === true)) {
      throw invalidArgument('One and only one of the "port", "server", or "noServer" options must be specified');
    }
    if (options.WebSocket !== undefined) throw invalidArgument('the WebSocket option (a class to instantiate) is not supported by wspipe/ws');
    this.options = options;
    this.clients = options.clientTracking === false ? undefined : new Set();
    this.server = new Server({
      ...connectionOptions(options),
      noServer: true,
      perMessageDeflate: deflateOptions(options.perMessageDeflate) ?? false,
      protocols: (offered, req) => {
        if (offered.length === 0) return undefined;
        const pick = options.handleProtocols;
        return pick === undefined ? offered[0] : pick(new Set(offered), req as unknown as http.IncomingMessage);
      },
      verifyClient: options.verifyClient === undefined ? undefined : (req) => this.verify(req),
      onAcceptHeaders: (lines, req) => this.emit('headers', lines, req),
    });
    this.ownHttp = port !== undefined;
    if (port !== undefined) {
      const body = http.STATUS_CODES[426]!;
      this.http = http.createServer((_req, res) => {
        res.writeHead(426, { 'Content-Length': Buffer.byteLength(body), 'Content-Type': 'text/plain' });
        res.end(body);
      });
      this.http.listen(port, options.host, options.backlog, callback);
    } else if (server !== undefined) {
      this.http = server;
    }
    if (this.http !== null) {
      this.http.on('listening', this.onListening);
      this.http.on('error', this.onError);
      this.http.on('upgrade', this.onUpgrade);
    }
  }

  /** The address of the http server (null before it listens); throws in noServer mode. */
  address(): net.AddressInfo | string | null {
    if (this.options.noServer === true) throw new Error('The server is operating in "noServer" mode');
    return this.http === null ? null : this.http.address();
  }

  /**
   * Stops accepting connections (a handshake after this gets 503) and closes the http server
   * if it made it; 'close' follows once that server and every tracked connection are closed.
   * Open connections are not closed (as in ws 8: close them, or terminate them, yourself).
   */
  close(cb?: (err?: Error) => void): void {
    if (this.state === State.Closed) {
      if (cb !== undefined) this.once('close', () => cb(new Error('The server is not running')));
      process.nextTick(() => this.emit('close'));
      return;
    }
    if (cb !== undefined) this.once('close', cb);
    if (this.state === State.Closing) return;
    this.state = State.Closing;
    const httpServer = this.http;
    this.http = null;
    if (httpServer !== null) {
      httpServer.removeListener('listening', this.onListening);
      httpServer.removeListener('error', this.onError);
      httpServer.removeListener('upgrade', this.onUpgrade);
    }
    // 'close' once the http server we made has closed and the tracked connections too.
    let waiting = 1;
    const settled = (): void => {
      if (--waiting === 0) this.emitClose();
    };
    if (httpServer !== null && this.ownHttp) {
      waiting++;
      httpServer.close(settled);
    }
    if (this.clients !== undefined && this.clients.size > 0) {
      waiting++;
      this.whenEmpty = settled;
    }
    process.nextTick(settled);
  }

  /** Whether this server takes the request: its path matches `options.path` (when set). */
  shouldHandle(req: http.IncomingMessage | UpgradeRequest): boolean {
    const path = this.options.path;
    if (path === undefined) return true;
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    return (query === -1 ? url : url.slice(0, query)) === path;
  }

  /**
   * Completes (or refuses) the opening handshake of `req` on `socket`; `cb(ws, req)` once open.
   * An invalid request goes to 'wsClientError' (err, socket, req) when it has listeners,
   * otherwise it is answered (400, 405, 426 ...) and the socket closed.
   */
  handleUpgrade(req: http.IncomingMessage | UpgradeRequest, socket: Duplex, head: Buffer, cb: (ws: WebSocket, req: http.IncomingMessage) => void): void {
    if (this.state !== State.Running) {
      abort(socket, 503);
      return;
    }
    if (this.listenerCount('wsClientError') > 0) {
      const invalid = validateUpgradeRequest(req as UpgradeRequest);
      if (isWebSocketError(invalid)) {
        socket.on('error', () => socket.destroy());
        this.emit('wsClientError', invalid, socket, req);
        return;
      }
    }
    if (!this.shouldHandle(req)) {
      abort(socket, 400);
      return;
    }
    this.server.handleUpgrade(req as UpgradeRequest, socket as net.Socket, head, (connection: Connection, accepted: ServerRequest) => {
      const ws = new WebSocket(null, connection);
      const clients = this.clients;
      if (clients !== undefined) {
        clients.add(ws);
        ws.on('close', () => {
          clients.delete(ws);
          if (clients.size === 0 && this.whenEmpty !== null) {
            const done = this.whenEmpty;
            this.whenEmpty = null;
            done();
          }
        });
      }
      cb(ws, accepted as unknown as http.IncomingMessage);
    });
  }

  private verify(req: ServerRequest): VerifyResult | Promise<VerifyResult> {
    const verifyClient = this.options.verifyClient!;
    const incoming = req as unknown as http.IncomingMessage;
    const origin = incoming.headers.origin;
    const tlsSocket = req.socket as net.Socket & { encrypted?: boolean; authorized?: boolean };
    const info: VerifyClientInfo = { origin, secure: tlsSocket.authorized === true || tlsSocket.encrypted === true, req: incoming };
    if (verifyClient.length >= 2) {
      return new Promise<VerifyResult>((resolve) => {
        (verifyClient as (info: VerifyClientInfo, cb: VerifyClientCallback) => void)(info, (result, code, message, headers) => {
          resolve(result ? true : { status: code ?? 401, message, headers });
        });
      });
    }
    return (verifyClient as (info: VerifyClientInfo) => boolean)(info) ? true : { status: 401 };
  }

  private emitClose(): void {
    if (this.state === State.Closed) return;
    this.state = State.Closed;
    this.emit('close');
  }

  private readonly onListening = (): void => {
    this.emit('listening');
  };

  private readonly onError = (err: Error): void => {
    this.emit('error', err);
  };

  private readonly onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    this.handleUpgrade(req, socket, head, (ws, accepted) => this.emit('connection', ws, accepted));
  };
}
