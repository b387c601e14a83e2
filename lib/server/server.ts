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
import * as http from 'node:http';
import type * as http2 from 'node:http2';
import type * as net from 'node:net';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import {
  UpgradeInfo,
  UpgradeRequest,
  buildAcceptResponse,
  formatExtensions,
  selectProtocol,
  validateUpgradeRequest,
} from '../handshake/handshake';
import { ListenOptions, UpgradeListener, onEarlyError } from './accept';
import { PerMessageDeflateOptions, acceptDeflateOffer, checkDeflateOptions, deflateSides } from '../deflate/permessage-deflate';
import { Transport, WebSocket, WebSocketOptions } from '../connection/websocket';
import { channels as diagnostics } from '../connection/diagnostics';
import { acceptStream, bindHttp2Server, isHttp2Server, refuseStream, streamOpen } from '../http2/binding';
import { toUpgradeRequest, validateConnectRequest } from '../http2/handshake';
import type { HeaderMap } from '../handshake/handshake-parser';

/** What a verifyClient hook answers: accept, refuse with 401, or refuse with a status. */
export type VerifyResult = boolean | { status: number; message?: string; headers?: Record<string, string> };

/** Options of the server: where it takes clients from (ListenOptions: port, host, server, noServer), and how it accepts them. */
export interface ServerOptions extends WebSocketOptions, ListenOptions {
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
  /**
   * WebSockets over HTTP/2 (RFC 8441) on the node:http2 server given as `server`: advertise
   * SETTINGS_ENABLE_CONNECT_PROTOCOL and accept extended CONNECT streams for "websocket", with
   * the same options, hooks and limits as HTTP/1.1 upgrades (which an allowHTTP1 server keeps
   * taking). Default false: a server must not advertise what nobody takes (see docs/http2.md).
   */
  http2?: boolean;
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

/** RFC 9110 §15.6.4: the server is shutting down (close() was called). */
const SERVICE_UNAVAILABLE = 503;
const INTERNAL_SERVER_ERROR = 500;
/** What follows a request on an HTTP/2 stream: nothing (the stream's data comes after the answer). */
const NO_BYTES = Buffer.alloc(0);

/** Where a handshake is answered: an HTTP/1.1 socket (101) or an HTTP/2 stream (RFC 8441: 200). */
type Channel = net.Socket | http2.ServerHttp2Stream;

function isStream(channel: Channel): channel is http2.ServerHttp2Stream {
  return 'respond' in channel;
}

export class WebSocketServer extends UpgradeListener {
  /** The open connections. */
  readonly clients = new Set<WebSocket>();
  private readonly options: ServerOptions;
  /** Detaches from the HTTP/2 server's streams (with the http2 option). */
  private readonly unbindHttp2: (() => void) | null = null;

  constructor(options: ServerOptions = {}, onListening?: () => void) {
    // An invalid permessage-deflate option is a programming error: thrown here, not per connection.
    if (typeof options.perMessageDeflate === 'object') checkDeflateOptions(options.perMessageDeflate, 'server');
    if (options.http2 === true && !isHttp2Server(options.server)) {
      throw Object.assign(new TypeError('the http2 option needs a node:http2 server as `server`'), { code: 'ERR_INVALID_ARG_VALUE' });
    }
    super(options, 'server shutting down', onListening);
    this.options = options;
    if (options.http2 === true && isHttp2Server(options.server)) this.unbindHttp2 = bindHttp2Server(options.server, this.onHttp2Stream);
  }

  /** See UpgradeListener.close; with the http2 option, the setting is no longer advertised. */
  override close(callback?: () => void): void {
    this.unbindHttp2?.();
    super.close(callback);
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
    socket: Channel,
    head: Buffer,
    callback: (ws: WebSocket, req: UpgradeRequest) => void,
  ): void {
    if (this.closed) {
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the server is closing'), req, SERVICE_UNAVAILABLE);
      return;
    }
    // A handshake read by our own parser has left `handshaking` when it gets here.
    if (this.full()) {
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'too many connections'), req, SERVICE_UNAVAILABLE);
      return;
    }
    const info = isStream(socket) ? validateConnectRequest(req.headers) : validateUpgradeRequest(req);
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

  /** Our reader or the http server parsed a request. */
  protected override onRequest(req: UpgradeRequest, socket: net.Socket, head: Buffer): void {
    // Without verifyClient, the connection is accepted (or refused) before this returns,
    // with nothing read in between; verifyClient may take its time: no byte may be lost.
    if (this.options.verifyClient !== undefined) socket.pause();
    this.upgrade(req, socket, head, this.emitConnection);
  }

  protected override openConnections(): Iterable<WebSocket> {
    return this.clients;
  }

  /** Over maxConnections: answered 503 at once, without reading the request. */
  protected override refuseEarly(): { err: WebSocketError; status: number } | null {
    return this.full() ? { err: new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'too many connections'), status: SERVICE_UNAVAILABLE } : null;
  }

  /** An extended CONNECT stream for a WebSocket (RFC 8441), from bindHttp2Server. */
  private readonly onHttp2Stream = (stream: http2.ServerHttp2Stream, headers: HeaderMap, rawHeaders: string[]): void => {
    stream.on('error', onEarlyError);
    this.upgrade(toUpgradeRequest(headers, rawHeaders), stream, NO_BYTES, this.emitConnection);
  };

  /**
   * UpgradeListener.refuse, and on an HTTP/2 stream: the status (HTTP/2 has no Upgrade header
   * field, hence no 426: a version error is a 400 with Sec-WebSocket-Version: 13, RFC 6455
   * §4.4), a text body, END_STREAM.
   */
  protected override refuse(
    socket: Channel,
    err: WebSocketError,
    req: UpgradeRequest | null,
    status = err.status ?? 400,
    headers?: Record<string, string>,
    message = err.message,
  ): void {
    const versionError = isStream(socket) && err.code === 'WS_ERR_UNSUPPORTED_VERSION';
    const answered = versionError && status === 426 ? 400 : status;
    if (diagnostics.handshakeRejected.hasSubscribers) diagnostics.handshakeRejected.publish({ side: 'server', error: err, request: req, status: answered });
    if (!isStream(socket)) {
      super.refuse(socket, err, req, status, headers, message);
      return;
    }
    refuseStream(socket, answered, message, headers, versionError);
    this.emit('rejected', err, req, answered);
  }

  private readonly emitConnection = (ws: WebSocket, req: UpgradeRequest): void => {
    this.emit('connection', ws, req);
  };

  /** Forgets an open connection once it has closed ('close' listener: `this` is the WebSocket). */
  private readonly forget = ((clients: Set<WebSocket>) =>
    function (this: WebSocket): void {
      clients.delete(this);
    })(this.clients);

  /** True when one more connection would go over maxConnections. */
  private full(): boolean {
    const max = this.options.maxConnections;
    return max !== undefined && this.clients.size + this.handshaking.size >= max;
  }

  private accept(
    req: UpgradeRequest,
    info: UpgradeInfo,
    socket: Channel,
    head: Buffer,
    callback: (ws: WebSocket, req: UpgradeRequest) => void,
  ): void {
    if (isStream(socket) ? !streamOpen(socket) : socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    if (this.closed) {
      // close() was called while verifyClient was deciding.
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the server is closing'), req, SERVICE_UNAVAILABLE);
      return;
    }
    if (this.full()) {
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
    let transport: Transport;
    if (isStream(socket)) {
      transport = acceptStream(socket, { protocol, extensions });
    } else {
      socket.write(buildAcceptResponse({ key: info.key, protocol, extensions }));
      transport = socket as Transport;
    }
    socket.removeListener('error', onEarlyError);
    const ws = new WebSocket('server', this.options);
    ws.attach(transport, head, {
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
}

/** Creates a WebSocketServer; see ServerOptions for the three modes. */
export function createServer(options: ServerOptions = {}, onListening?: () => void): WebSocketServer {
  return new WebSocketServer(options, onListening);
}
