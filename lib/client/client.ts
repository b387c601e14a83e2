/**
 * connect(): opens a WebSocket client connection to a ws:// or wss:// URL. The returned
 * WebSocket is CONNECTING until the server's 101 is checked; messages written before then are
 * queued and sent once it opens.
 */
import type * as http2 from 'node:http2';
import type * as tls from 'node:tls';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import type { PerMessageDeflateOptions } from '../deflate/permessage-deflate';
import { type ClientOpening, openAsClient } from '../compose/opening';
import type { UpgradeResponse } from '../handshake/handshake-parser';
import { discard, dial } from './dial';
import { Transport, WebSocket, WebSocketOptions } from '../connection/websocket';
import { connectHttp2 } from './http2-client';

export interface ClientOptions extends WebSocketOptions {
  /** Subprotocols to offer, in order of preference. */
  protocols?: string[];
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
  /** The Origin header to send, if any. */
  origin?: string;
  /** Milliseconds allowed for the TCP/TLS connect and the opening handshake. Default 10000. */
  handshakeTimeout?: number;
  /** Largest response header block, in bytes. Default 16 KiB. */
  maxHeaderSize?: number;
  /** TLS options for wss:// (ca, cert, key, servername, rejectUnauthorized (default true) ...). */
  tls?: tls.ConnectionOptions;
  /**
   * permessage-deflate (RFC 7692): true (default options) or options to offer it, false not to.
   * Default true: as browsers do, we offer it and the server decides; a client pays for one
   * connection only. A server that asks us to compress with an 8-bit window (zlib cannot) gets
   * our messages uncompressed, which the extension allows.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /**
   * WebSocket over HTTP/2 (RFC 8441): true to open it as a stream of an HTTP/2 connection to
   * the origin, shared with the other `http2: true` WebSockets to that origin made with the same
   * `tls` object (and closed after the last of them), or a ClientHttp2Session of your own to
   * open it on. When the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (or, with
   * `true`, does not speak HTTP/2), the WebSocket is opened over HTTP/1.1 instead. Default false.
   */
  http2?: boolean | http2.ClientHttp2Session;
}

/** The parsed 101 answer, emitted as 'upgrade' on the WebSocket before 'open'. */
export type { UpgradeResponse };

/**
 * Opens a client connection to `url` (ws:// or wss://). Listen for 'open', 'message', 'close',
 * 'error'. Never throws: an invalid URL or option (a header value with CR or LF, a repeated
 * subprotocol ...) is reported as an 'error' (WS_ERR_INVALID_ARGUMENT) and 'close' (1006) on the
 * next tick, before anything is sent.
 */
export function connect(url: string | URL, options: ClientOptions = {}): WebSocket {
  const ws = new WebSocket('client', options);
  const refuse = (detail: string): WebSocket => {
    const err = new WebSocketError('WS_ERR_INVALID_ARGUMENT', detail);
    process.nextTick(() => ws.abortHandshake(err));
    return ws;
  };
  let target: URL;
  try {
    target = typeof url === 'string' ? new URL(url) : url;
    if (target.protocol !== 'ws:' && target.protocol !== 'wss:') throw new Error(`unsupported scheme ${target.protocol}`);
    if (target.hash !== '') throw new Error('a WebSocket URL has no fragment');
  } catch (cause) {
    return refuse(`invalid URL ${String(url)}: ${(cause as Error).message}`);
  }
  if (options.http2 !== undefined && options.http2 !== false) {
    connectHttp2(ws, target, options, options.http2, () => openHttp1(ws, target, options));
  } else {
    openHttp1(ws, target, options);
  }
  return ws;
}

/** The opening handshake over HTTP/1.1 (RFC 6455 §4.1) on a new TCP (or TLS) connection. */
function openHttp1(ws: WebSocket, target: URL, options: ClientOptions): void {
  const deflateOptions: PerMessageDeflateOptions | null =
    options.perMessageDeflate === false ? null : options.perMessageDeflate === true || options.perMessageDeflate === undefined ? {} : options.perMessageDeflate;
  let opening: ClientOpening;
  try {
    // Built before connecting: a value that cannot go in a header fails here, with nothing sent.
    opening = openAsClient({
      host: target.host,
      path: `${target.pathname}${target.search}`,
      protocols: options.protocols,
      origin: options.origin,
      headers: options.headers,
      perMessageDeflate: deflateOptions ?? false,
    });
  } catch (cause) {
    process.nextTick(() => ws.abortHandshake(cause as WebSocketError));
    return;
  }
  const handshake = dial(target, opening.request, options, (result) => {
    if (!result.ok) {
      const { reason, error } = result;
      if (reason === 'timeout') ws.abortHandshake(new WebSocketError('WS_ERR_HANDSHAKE_TIMEOUT'));
      else if (reason === 'closed') ws.abortHandshake(new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'connection closed during the opening handshake'));
      else ws.abortHandshake(error!);
      return;
    }
    const { socket, response, head } = result;
    const agreed = opening.check(response);
    if (isWebSocketError(agreed)) {
      discard(socket);
      ws.abortHandshake(agreed);
      return;
    }
    ws.emit('upgrade', response);
    ws.attach(socket as Transport, head, {
      protocol: agreed.protocol,
      extensions: agreed.extensions,
      deflate: agreed.deflate === null ? undefined : { sides: agreed.deflate, options: deflateOptions! },
    });
    socket.resume();
  });
  // ws.close() or terminate() while CONNECTING: drop the socket too.
  ws.once('close', () => handshake.cancel());
}
