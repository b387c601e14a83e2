/**
 * The proxy's listener: it accepts clients (standalone on its own port, on an http server's
 * 'upgrade' event, or by hand with relay()), relays the opening handshake to the upstream, and
 * hands each pair of sockets to a ProxyConnection (relay.ts).
 *
 * The opening handshake: the client's request is validated, then the same offers (subprotocols,
 * Sec-WebSocket-Extensions, unchanged) and the forwarded headers go to the upstream; the
 * upstream's 101 decides what the client gets. A refusal by the upstream reaches the client as
 * an HTTP error status (its own 4xx/5xx, else 502); an upstream that cannot be reached gives 502,
 * one that does not answer in time 504. Reading requests and refusing is the server's code
 * (lib/server/accept.ts); dialling the upstream is the client's (lib/client/dial.ts).
 */
import { Buffer } from 'node:buffer';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { WebSocketError, invalidArgument, isWebSocketError } from '../protocol/errors';
import type { Emitting } from '../protocol/events';
import {
  UpgradeInfo,
  UpgradeRequest,
  buildAcceptResponse,
  buildClientRequest,
  generateKey,
  headerValue,
  validateUpgradeRequest,
  validateUpgradeResponse,
} from '../handshake/handshake';
import { ListenOptions, UpgradeListener, onEarlyError } from '../server/accept';
import { MemoryBudget, defaultServerMemoryBudget } from '../server/memory-budget';
import { DialResult, dial, discard } from '../client/dial';
import { ProxyConnection, RelayOptions } from './relay';
import { resolveUpstream, UpstreamTarget } from './target';
import { ForwardedMode, forwardingHeaders, withoutDeflate } from './forwarded';

/** Request headers forwarded to the upstream by default (lower case). */
export const DEFAULT_FORWARD_HEADERS: readonly string[] = [
  'authorization',
  'cookie',
  'origin',
  'user-agent',
  'accept-language',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
];

/** Headers the handshake builds itself: never forwarded. */
const NOT_FORWARDED: ReadonlySet<string> = new Set([
  'host', 'upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol',
  'sec-websocket-extensions', 'sec-websocket-accept', 'content-length', 'transfer-encoding',
]);

/** Options of the proxy: where it takes clients from (ListenOptions: port, host, server, noServer: then call relay()), the upstream, and how it relays. */
export interface ProxyOptions extends RelayOptions, ListenOptions {
  /**
   * The upstream: a ws:// or wss:// URL, or a function of the client's request returning one.
   * With a URL whose path is '/' and has no query, the client's request-target (its path and query:
   * the client never chooses the scheme, host or port; a request-target that is not a path and
   * query is refused with 400) is used; otherwise the URL's own path and query. A function's URL is used as it is.
   */
  target: string | URL | ((req: UpgradeRequest) => string | URL);
  /** Names of request headers forwarded to the upstream. Default DEFAULT_FORWARD_HEADERS. */
  forwardHeaders?: readonly string[];
  /** TLS options for wss:// upstreams (ca, servername, rejectUnauthorized (default true) ...). */
  tls?: tls.ConnectionOptions;
  /** Largest handshake head (client's or upstream's), in bytes. Default 16 KiB. */
  maxHeaderSize?: number;
  /** Milliseconds allowed for the client's request (standalone mode) and for the upstream's answer. Default 10000. */
  handshakeTimeout?: number;
  /**
   * Which headers tell the upstream about the client: 'both' (default: X-Forwarded-For, -Proto,
   * -Host and RFC 7239 Forwarded), 'x-forwarded', 'forwarded' or 'none'. See lib/proxy/forwarded.ts.
   */
  forwarded?: ForwardedMode;
  /**
   * Keep the client's own forwarding headers and append this hop (only behind proxies you trust).
   * Default false: the client's values are dropped, since any client can write them.
   */
  trustForwarded?: boolean;
  /** Take permessage-deflate out of the client's offer, so the traffic is not compressed. Default false. */
  stripDeflate?: boolean;
  /**
   * One bound, in bytes, on what all relayed connections together hold (both sides: the sockets'
   * queued and unread bytes, partial frames), as the server's serverMemoryBudget: over 3/4 of it
   * the connections holding the most are no longer read from (both sides), over it one that
   * still grows is closed with 1008 (WS_ERR_SERVER_MEMORY) on both sides. Default: a quarter of
   * the machine's memory, at most 1 GiB (defaultServerMemoryBudget()). Infinity turns it off.
   */
  serverMemoryBudget?: number;
}



/** Events of WebSocketProxy. */
export interface WebSocketProxyEvents {
  connection: (conn: ProxyConnection, req: UpgradeRequest) => void;
  /** A client's handshake was refused (by us or by the upstream), with the HTTP status answered. */
  rejected: (err: WebSocketError, req: UpgradeRequest | null, status: number) => void;
  listening: () => void;
  error: (err: Error) => void;
  close: () => void;
}

const BAD_GATEWAY = 502;
const GATEWAY_TIMEOUT = 504;
const SERVICE_UNAVAILABLE = 503;
const INTERNAL_SERVER_ERROR = 500;
const FIRST_ERROR_STATUS = 400;

/** A dial that failed, as the client hears of it: the error and the HTTP status (502, or 504 for a timeout). */
function upstreamFailure(target: URL, result: Extract<DialResult, { ok: false }>): { err: WebSocketError; status: number } {
  const host = target.host;
  switch (result.reason) {
    case 'timeout':
      return { err: new WebSocketError('WS_ERR_HANDSHAKE_TIMEOUT', `the upstream ${host} did not answer`), status: GATEWAY_TIMEOUT };
    case 'unreachable':
      return { err: new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `the upstream ${host} cannot be reached: ${result.error!.message}`), status: BAD_GATEWAY };
    case 'closed':
      return { err: new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `the upstream ${host} closed during the handshake`), status: BAD_GATEWAY };
    case 'invalid':
      return { err: new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `invalid answer from the upstream: ${result.error!.message}`), status: BAD_GATEWAY };
  }
}

export class WebSocketProxy extends (UpgradeListener as Emitting<typeof UpgradeListener, WebSocketProxyEvents>) {
  /** The open connections. */
  readonly connections = new Set<ProxyConnection>();
  /** The proxy-wide memory budget (serverMemoryBudget), or null when it is off. */
  readonly memoryBudget: MemoryBudget<ProxyConnection> | null;
  private readonly options: ProxyOptions;
  /** Client sockets whose upstream is being dialled. */
  private readonly dialling = new Set<net.Socket>();

  constructor(options: ProxyOptions, onListening?: () => void) {
    const budget = options.serverMemoryBudget ?? defaultServerMemoryBudget();
    if (!(budget > 0)) throw invalidArgument(`serverMemoryBudget must be a positive number of bytes, got ${budget}`, RangeError);
    super(options, 'proxy shutting down', onListening);
    this.options = options;
    this.memoryBudget = Number.isFinite(budget) ? new MemoryBudget<ProxyConnection>(budget, 'proxy') : null;
  }

  /**
   * Relays one client whose upgrade request has been parsed (Node's http 'upgrade' event has
   * this shape): validates it, opens the upstream, and answers the client with the upstream's
   * decision. Emits 'connection' once both handshakes are done.
   */
  relay(req: UpgradeRequest, socket: net.Socket, head: Buffer = Buffer.alloc(0)): void {
    socket.on('error', onEarlyError);
    this.onRequest(req, socket, head);
  }

  /** relay() for a socket that has its onEarlyError listener already (from our reader or the http server). */
  protected override onRequest(req: UpgradeRequest, socket: net.Socket, head: Buffer): void {
    socket.pause();
    if (this.closed) {
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the proxy is closing'), req, SERVICE_UNAVAILABLE);
      return;
    }
    const info = validateUpgradeRequest(req);
    if (isWebSocketError(info)) {
      this.refuse(socket, info, req, info.status ?? FIRST_ERROR_STATUS);
      return;
    }
    let configured: URL;
    try {
      const chosen = typeof this.options.target === 'function' ? this.options.target(req) : this.options.target;
      configured = new URL(String(chosen));
    } catch (cause) {
      const err = new WebSocketError('WS_ERR_INVALID_ARGUMENT', `no valid upstream: ${(cause as Error).message}`);
      this.refuse(socket, err, req, INTERNAL_SERVER_ERROR);
      return;
    }
    // The client's request-target contributes a path and query only, never scheme, host or port.
    const usePath = typeof this.options.target !== 'function' && configured.pathname === '/' && configured.search === '';
    const target = resolveUpstream(configured, req.url ?? '', usePath);
    if (isWebSocketError(target)) {
      this.refuse(socket, target, req, target.status ?? INTERNAL_SERVER_ERROR);
      return;
    }
    this.openUpstream(req, info, socket, head, target);
  }

  protected override openConnections(): Iterable<ProxyConnection> {
    return this.connections;
  }

  /** The clients whose request is being read, and those whose upstream is being dialled. */
  protected override pendingSockets(): { keys(): Iterable<net.Socket>; clear(): void } {
    const { handshaking, dialling } = this;
    return {
      keys: () => [...handshaking.keys(), ...dialling],
      clear: () => {
        handshaking.clear();
        dialling.clear();
      },
    };
  }

  /** Sends the client's offers to the upstream; its answer decides what the client gets. */
  private openUpstream(req: UpgradeRequest, info: UpgradeInfo, client: net.Socket, head: Buffer, resolved: UpstreamTarget): void {
    const target = resolved.url;
    const key = generateKey();
    const forwarded: Record<string, string> = {};
    let origin: string | undefined;
    for (const name of this.options.forwardHeaders ?? DEFAULT_FORWARD_HEADERS) {
      const lower = name.toLowerCase();
      if (NOT_FORWARDED.has(lower)) continue;
      const value = headerValue(req.headers, lower);
      if (value === undefined) continue;
      if (lower === 'origin') origin = value;
      else forwarded[lower] = value;
    }
    const hop = { address: client.remoteAddress, secure: (client as tls.TLSSocket).encrypted === true };
    for (const [name, value] of Object.entries(forwardingHeaders(req.headers, hop, { mode: this.options.forwarded, trust: this.options.trustForwarded }))) {
      if (value === '') delete forwarded[name];
      else forwarded[name] = value;
    }
    const offer = headerValue(req.headers, 'sec-websocket-extensions');
    let request: string;
    try {
      request = buildClientRequest({
        host: target.host,
        path: resolved.path,
        key,
        protocols: info.protocols,
        extensions: this.options.stripDeflate === true ? withoutDeflate(offer) : offer,
        origin,
        headers: forwarded,
      });
    } catch (cause) {
      this.refuse(client, new WebSocketError('WS_ERR_INVALID_ARGUMENT', (cause as Error).message), req, BAD_GATEWAY);
      return;
    }
    this.dialling.add(client);
    const onClientClose = (): void => {
      this.dialling.delete(client);
      upstream.cancel();
    };
    const upstream = dial(target, request, this.options, (result) => {
      this.dialling.delete(client);
      client.removeListener('close', onClientClose);
      if (!result.ok) {
        const { err, status } = upstreamFailure(target, result);
        this.refuse(client, err, req, status);
        return;
      }
      this.onUpstreamAnswer(req, info, client, head, target, key, result);
    });
    client.on('close', onClientClose);
  }

  /** The upstream answered: relay its refusal, or accept the client and start relaying. */
  private onUpstreamAnswer(
    req: UpgradeRequest,
    info: UpgradeInfo,
    client: net.Socket,
    head: Buffer,
    target: URL,
    key: string,
    answer: Extract<DialResult, { ok: true }>,
  ): void {
    const { socket: upstream, response: res } = answer;
    const fail = (status: number, err: WebSocketError): void => {
      discard(upstream);
      this.refuse(client, err, req, status);
    };
    if (res.statusCode !== 101) {
      // The upstream's refusal reaches the client as an HTTP error status.
      const status = res.statusCode >= FIRST_ERROR_STATUS && res.statusCode <= 599 ? res.statusCode : BAD_GATEWAY;
      fail(status, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `the upstream answered ${res.statusCode} ${res.statusMessage}`.trim()));
      return;
    }
    const offered = validateUpgradeResponse(res, {
      key,
      protocols: info.protocols,
      extensions: this.options.stripDeflate === true ? info.extensions.filter((e) => e.name.toLowerCase() !== 'permessage-deflate') : info.extensions,
    });
    if (isWebSocketError(offered)) {
      fail(BAD_GATEWAY, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `invalid answer from the upstream: ${offered.message}`));
      return;
    }
    if (this.closed || client.destroyed || !client.writable) {
      fail(SERVICE_UNAVAILABLE, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the proxy is closing'));
      return;
    }
    const extensions = headerValue(res.headers, 'sec-websocket-extensions') ?? '';
    client.write(buildAcceptResponse({ key: info.key, protocol: offered.protocol, extensions }));
    const conn = new ProxyConnection(
      { request: req, response: res, target, clientSocket: client, upstreamSocket: upstream, protocol: offered.protocol ?? '', extensions },
      this.options,
      this.memoryBudget,
    );
    client.removeListener('error', onEarlyError);
    this.connections.add(conn);
    conn.once('close', () => {
      this.connections.delete(conn);
      this.memoryBudget?.remove(conn);
    });
    conn.start(head, answer.head);
    this.emit('connection', conn, req);
  }
}

/**
 * Creates a proxy: standalone (`{ target, port }`), on an http server (`{ target, server }`), or
 * by hand (`{ target, noServer: true }` and `proxy.relay(req, socket, head)`).
 */
export function createProxy(options: ProxyOptions, onListening?: () => void): WebSocketProxy {
  return new WebSocketProxy(options, onListening);
}
