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
import type { Emitting } from '../protocol/events';
import { WebSocketError, invalidArgument, isWebSocketError } from '../protocol/errors';
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
import { FanoutHub, type BroadcastOptions, type FanoutOptions, type HubCounters, type PublishOptions } from '../fanout/hub';
import type { AdapterEvent, FanoutAdapter } from '../fanout/adapter';
import { MemoryBudget, defaultServerMemoryBudget } from './memory-budget';

/**
 * The request of an accepted or pending handshake: the parsed head (or Node's IncomingMessage
 * on an http server), with the client's socket in every mode (`req.socket.remoteAddress`).
 */
export interface ServerRequest extends UpgradeRequest {
  socket: net.Socket;
}
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
  /**
   * Decide whether to accept a request (check Origin, authenticate). May be async. Default:
   * accept. (ws's `(info, cb)` form is not this one: use 'wspipe/ws' for it. A hook that
   * answers anything but a VerifyResult refuses the client with 500, says why in 'rejected',
   * and emits a process warning, WSPIPE_VERIFY_CLIENT_FORM, once per server.)
   */
  verifyClient?: (req: ServerRequest, info: UpgradeInfo) => VerifyResult | Promise<VerifyResult>;
  /**
   * Subprotocols this server speaks, in the server's order of preference: the first of this list
   * that the client offered is chosen, whatever the client's order (RFC 6455 §4.2.2 leaves the
   * choice to the server). Or a function that picks one of those the client offered (in the
   * client's order). A protocol the client did not offer is never chosen; with no match, the
   * answer has no Sec-WebSocket-Protocol header. Default: none (a server names only what it
   * speaks; RFC 6455 §4.2.2 allows answering without one). Mind that browsers and ws's client
   * then fail the connection if they offered any (WHATWG WebSockets, "establish a WebSocket
   * connection"); ws's server selects the first offered, which is `(offered) => offered[0]`.
   */
  protocols?: string[] | ((offered: string[], req: ServerRequest) => string | false | undefined);
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
   * Carries published messages to the servers of other processes through a broker (see
   * docs/fanout.md): `redisAdapter({ url })` from 'wspipe/redis', or `localAdapter(bus)` for
   * servers of one process. Default: a local adapter of its own (topics stay in this server).
   */
  adapter?: FanoutAdapter;
  /** Fan-out (topics, broadcast) settings: default subscription limit and policy; see FanoutOptions. */
  fanout?: FanoutOptions;
  /**
   * Called with the lines of the 101 answer (the status line and the header lines, without the
   * blank line that ends them) right before it is written: push lines to add headers (a
   * Set-Cookie ...). 'wspipe/ws' emits ws's 'headers' event from here. Default: none.
   */
  onAcceptHeaders?: (lines: string[], req: ServerRequest) => void;
  /**
   * One bound, in bytes, on what all connections together hold (unread received data, messages
   * being assembled or inflated, queued outbound bytes; each one's `heldBytes`). Over 3/4 of it,
   * the connections holding the most are no longer read from; over it, one that still grows is
   * closed with 1008 (WS_ERR_SERVER_MEMORY) while the others keep working. Each connection's
   * memoryBudget stays its own share. Default: a quarter of the machine's memory, at most 1 GiB
   * (defaultServerMemoryBudget()). Infinity turns it off.
   */
  serverMemoryBudget?: number;
  /**
   * WebSockets over HTTP/2 (RFC 8441) on the node:http2 server given as `server`: advertise
   * SETTINGS_ENABLE_CONNECT_PROTOCOL and accept extended CONNECT streams for "websocket", with
   * the same options, hooks and limits as HTTP/1.1 upgrades (which an allowHTTP1 server keeps
   * taking). Default false: a server must not advertise what nobody takes (see docs/http2.md).
   */
  http2?: boolean;
}

export interface WebSocketServerEvents {
  connection: (ws: WebSocket, req: ServerRequest) => void;
  listening: () => void;
  error: (err: Error) => void;
  /**
   * A handshake was refused, for logs: the error, the request (null when it could not be
   * parsed) and the HTTP status answered.
   */
  rejected: (err: WebSocketError, req: UpgradeRequest | null, status: number) => void;
  close: () => void;
  /** Messages another node published never arrived (at-most-once delivery through the adapter). */
  lost: (info: { origin: string; topic: string; count: number }) => void;
  /** The adapter's broker connection went down ('down'), came back ('up'), or failed ('error'). */
  adapter: (event: AdapterEvent) => void;
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

export class WebSocketServer extends (UpgradeListener as Emitting<typeof UpgradeListener, WebSocketServerEvents>) {
  /** The open connections. */
  readonly clients = new Set<WebSocket>();
  private readonly options: ServerOptions;
  /** Topics: subscriptions, bounded delivery, and the adapter to other nodes. */
  private readonly hub: FanoutHub;
  /** The server-wide memory budget (null when turned off). */
  readonly memoryBudget: MemoryBudget | null;
  /** What each connection is made with: the options, the hub that keeps its topics, and the memory budget as its observer. */
  private readonly connectionOptions: WebSocketOptions;
  /** The WSPIPE_VERIFY_CLIENT_FORM warning was emitted (see refuseVerifyForm). */
  private warnedVerifyForm = false;
  /** Detaches from the HTTP/2 server's streams (with the http2 option). */
  private readonly unbindHttp2: (() => void) | null = null;

  constructor(options: ServerOptions = {}, onListening?: () => void) {
    const budget = options.serverMemoryBudget ?? defaultServerMemoryBudget();
    if (!(budget > 0)) throw invalidArgument(`serverMemoryBudget must be a positive number of bytes, got ${budget}`, RangeError);
    // An invalid permessage-deflate option is a programming error: thrown here, not per connection.
    if (typeof options.perMessageDeflate === 'object') checkDeflateOptions(options.perMessageDeflate, 'server');
    if (options.http2 === true && !isHttp2Server(options.server)) {
      throw Object.assign(new TypeError('the http2 option needs a node:http2 server as `server`'), { code: 'ERR_INVALID_ARG_VALUE' });
    }
    super(options, 'server shutting down', onListening);
    this.options = options;
    this.hub = new FanoutHub(options.adapter, options.fanout, {
      lost: (info) => this.emit('lost', info),
      adapter: (event) => this.emit('adapter', event),
    });
    this.memoryBudget = Number.isFinite(budget) ? new MemoryBudget(budget) : null;
    this.connectionOptions = this.memoryBudget === null ? { ...options, topicHost: this.hub } : { ...options, topicHost: this.hub, heldBytesObserver: this.memoryBudget };
    if (options.http2 === true && isHttp2Server(options.server)) this.unbindHttp2 = bindHttp2Server(options.server, this.onHttp2Stream);
  }

  /**
   * Sends `data` to every connection subscribed to `topic` (ws.subscribe), here and, through the
   * adapter, on the other nodes: framed once for all of them; each subscriber's queue is bounded
   * by its subscription's limit and policy, so the call never waits for a slow one. `except`
   * skips connections of this server (e.g. the sender). Returns the number of local subscribers.
   */
  publish(topic: string, data: string | Buffer | Uint8Array, options?: PublishOptions): number {
    return this.hub.publish(topic, data, options);
  }

  /** Sends `data` to every open connection of this server (those `filter` accepts), framed once. Returns how many. */
  broadcast(data: string | Buffer | Uint8Array, options?: BroadcastOptions): number {
    return this.hub.broadcast(this.clients, data, options);
  }

  /** Fan-out counters summed over this server's connections, plus published, received and lost. */
  get fanoutCounters(): HubCounters {
    return this.hub.hubCounters();
  }

  /** How many connections of this server subscribe to `topic`. */
  subscriberCount(topic: string): number {
    return this.hub.subscriberCount(topic);
  }

  /** This server's id as a fan-out node (the origin of what it publishes through the adapter). */
  get nodeId(): string {
    return this.hub.id;
  }

  /** Every connection has closed: the adapter's broker connection goes last, before 'close'. */
  protected override afterShutdown(done: () => void): void {
    this.hub.close().then(done, (err: unknown) => {
      this.emit('adapter', { event: 'error', error: err instanceof Error ? err : new Error(String(err)) });
      done();
    });
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
    callback: (ws: WebSocket, req: ServerRequest) => void,
  ): void {
    socket.on('error', onEarlyError);
    this.upgrade(req, socket, head, callback);
  }

  /** handleUpgrade for a socket that has its onEarlyError listener already. */
  private upgrade(
    req: UpgradeRequest,
    socket: Channel,
    head: Buffer,
    callback: (ws: WebSocket, req: ServerRequest) => void,
  ): void {
    // Every mode hands out a request with its socket (an IncomingMessage has it already).
    if ((req as Partial<ServerRequest>).socket === undefined) {
      // An HTTP/2 stream's client is its session's socket (RFC 8441: one connection, many streams).
      (req as ServerRequest).socket = isStream(socket) ? (socket.session?.socket as net.Socket) : socket;
    }
    // (A handshake read by our own parser has left `handshaking` when it gets here.)
    if (this.unavailable(socket, req)) return;
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
      .then(() => verify(req as ServerRequest, info))
      .then(
        (result) => {
          if (!isVerifyResult(result)) {
            this.refuseVerifyForm(socket, req, result);
            return;
          }
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

  /**
   * verifyClient answered something that is not a VerifyResult: most likely ws's `(info, cb)`
   * form, which returns nothing. Refused with 500 (never accepted by mistake), said in
   * 'rejected', and once per server in a process warning, so that it is seen in development.
   */
  private refuseVerifyForm(socket: Channel, req: UpgradeRequest, result: unknown): void {
    const detail =
      `verifyClient returned ${result === undefined ? 'undefined' : typeof result}, not true, false, { status } or a Promise of one. ` +
      "wspipe's form is (req, info) => result; ws's (info, cb) form works with 'wspipe/ws'";
    const err = new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', detail);
    if (!this.warnedVerifyForm) {
      this.warnedVerifyForm = true;
      process.emitWarning(err.message, { code: 'WSPIPE_VERIFY_CLIENT_FORM' });
    }
    this.refuse(socket, err, req, INTERNAL_SERVER_ERROR, undefined, http.STATUS_CODES[INTERNAL_SERVER_ERROR]);
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

  private readonly emitConnection = (ws: WebSocket, req: ServerRequest): void => {
    this.emit('connection', ws, req);
  };

  /** Forgets an open connection once it has closed ('close' listener: `this` is the WebSocket). */
  private readonly forget = ((server: WebSocketServer) =>
    function (this: WebSocket): void {
      server.clients.delete(this);
      server.memoryBudget?.remove(this);
    })(this);

  /** True when one more connection would go over maxConnections. */
  private full(): boolean {
    const max = this.options.maxConnections;
    return max !== undefined && this.clients.size + this.handshaking.size >= max;
  }

  /** Refuses with 503 while the server is closing or full (maxConnections); true when it did. */
  private unavailable(socket: Channel, req: UpgradeRequest): boolean {
    const reason = this.closed ? 'the server is closing' : this.full() ? 'too many connections' : null;
    if (reason === null) return false;
    this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', reason), req, SERVICE_UNAVAILABLE);
    return true;
  }

  private accept(
    req: UpgradeRequest,
    info: UpgradeInfo,
    socket: Channel,
    head: Buffer,
    callback: (ws: WebSocket, req: ServerRequest) => void,
  ): void {
    if (isStream(socket) ? !streamOpen(socket) : socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    // Again: close() may have been called, or others got in, while verifyClient was deciding.
    if (this.unavailable(socket, req)) return;
    const supported = this.options.protocols;
    const protocol =
      supported === undefined
        ? undefined
        : selectProtocol(
            info.protocols,
            typeof supported === 'function'
              ? (offered) => supported(offered, req as ServerRequest)
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
      let answer = buildAcceptResponse({ key: info.key, protocol, extensions });
      const onHeaders = this.options.onAcceptHeaders;
      if (onHeaders !== undefined) {
        const lines = answer.slice(0, -4).split('\r\n');
        onHeaders(lines, req as ServerRequest);
        answer = `${lines.join('\r\n')}\r\n\r\n`;
      }
      socket.write(answer);
      transport = socket as Transport;
    }
    socket.removeListener('error', onEarlyError);
    const ws = new WebSocket('server', this.connectionOptions);
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
    callback(ws, req as ServerRequest);
  }
}

/** True for what verifyClient may answer: true, false, or { status: number, ... }. */
function isVerifyResult(value: unknown): value is VerifyResult {
  return typeof value === 'boolean' || (typeof value === 'object' && value !== null && typeof (value as { status?: unknown }).status === 'number');
}

/** Creates a WebSocketServer; see ServerOptions for the three modes. */
export function createServer(options: ServerOptions = {}, onListening?: () => void): WebSocketServer {
  return new WebSocketServer(options, onListening);
}
