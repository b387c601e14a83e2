/**
 * connect(): opens a WebSocket client connection to a ws:// or wss:// URL. The returned
 * WebSocket is CONNECTING until the server's 101 is checked; messages written before then are
 * queued and sent once it opens.
 */
import type * as http2 from 'node:http2';
import type * as tls from 'node:tls';
import { WebSocketError, abortError, isWebSocketError } from '../protocol/errors';
import type { PerMessageDeflateOptions } from '../deflate/permessage-deflate';
import { type ClientOpening, openAsClient } from '../compose/opening';
import type { UpgradeResponse } from '../handshake/handshake-parser';
import { RefusalBody } from '../handshake/refusal-body';
import type { Socket } from 'node:net';
import { Buffer } from 'node:buffer';
import { Defaults } from '../protocol/constants';
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
   * Aborts the opening handshake (DNS, TCP/TLS connect, the request and the 101): the socket is
   * destroyed, 'error' gets an AbortError (code ABORT_ERR, cause: the signal's reason) and
   * 'close' 1006. Over HTTP/2, the extended CONNECT's stream is cancelled and the shared
   * connection left to the others. Aborting after 'open' changes nothing (close() ends an
   * open connection).
   */
  signal?: AbortSignal;
  /**
   * Fail the handshake when `protocols` were offered and the server selected none, as browsers
   * and ws do (WHATWG WebSockets, "establish a WebSocket connection"). Default false: RFC 6455
   * §4.1 lets the server answer without one, and `ws.protocol` is then ''.
   */
  requireProtocol?: boolean;
  /**
   * WebSocket over HTTP/2 (RFC 8441): true to open it as a stream of an HTTP/2 connection to
   * the origin, shared with the other `http2: true` WebSockets to that origin made with the same
   * `tls` object (and closed after the last of them), or a ClientHttp2Session of your own to
   * open it on. When the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (or, with
   * `true`, does not speak HTTP/2), the WebSocket is opened over HTTP/1.1 instead. Default false.
   */
  http2?: boolean | http2.ClientHttp2Session;
}

/**
 * A refusal of our handshake (any status but 101), emitted as 'unexpected-response' before
 * the error: the response head and its body (at most MAX_REFUSAL_BODY bytes; read up to its
 * Content-Length, or until the server closes; a chunked body is kept as sent).
 */
export interface RefusedResponse extends UpgradeResponse {
  body: Buffer;
}

/** The error of a refused handshake: WS_ERR_HANDSHAKE_REJECTED with the response's status, headers and body. */
export interface HandshakeRefusedError extends WebSocketError {
  readonly status: number;
  readonly headers: UpgradeResponse['headers'];
  readonly body: Buffer;
}

/** Most bytes of a refusal's body kept for 'unexpected-response' and the error. */
export const MAX_REFUSAL_BODY = 64 * 1024;
/** RFC 6455 §4.1: the one status that opens the connection. */
const SWITCHING_PROTOCOLS = 101;

function refusedError(head: UpgradeResponse, body: Buffer): HandshakeRefusedError {
  const reason = head.statusMessage === '' ? '' : ` ${head.statusMessage}`;
  const err = new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `unexpected status ${head.statusCode}${reason}`);
  Object.defineProperty(err, 'status', { value: head.statusCode, enumerable: true });
  return Object.assign(err, { headers: head.headers, body }) as HandshakeRefusedError;
}

/**
 * Reads the body of a refusal from `socket` (paused, as dial() hands it over): the bytes that
 * came with the head, then the body as HTTP frames it (RefusalBody: chunked, Content-Length, or
 * until the server closes), at most
 * MAX_REFUSAL_BODY, within `timeout` ms. Calls `done` once with the body; the socket is then
 * destroyed. Returns a function that gives up (destroys the socket, calls nothing).
 */
function readRefusalBody(socket: Socket, response: UpgradeResponse, early: Buffer | null, timeout: number, done: (body: Buffer) => void): () => void {
  const reader = new RefusalBody(response.headers, MAX_REFUSAL_BODY);
  let settled = false;
  const finish = (report: boolean): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onEnd);
    discard(socket);
    if (report) done(reader.body);
  };
  const onData = (chunk: Buffer): void => {
    if (reader.write(chunk)) finish(true);
  };
  const onEnd = (): void => finish(true);
  const timer = setTimeout(onEnd, timeout);
  socket.on('error', () => {});
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  if (early !== null) reader.write(early);
  if (reader.done) finish(true);
  else socket.resume();
  return () => finish(false);
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
  const refuse = (detail: string | Error): WebSocket => {
    const err = typeof detail === 'string' ? new WebSocketError('WS_ERR_INVALID_ARGUMENT', detail) : detail;
    process.nextTick(() => ws.abortHandshake(err));
    return ws;
  };
  const signal = options.signal;
  if (signal?.aborted === true) return refuse(abortError(signal));
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
  const signal = options.signal;
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
    if (response.statusCode !== SWITCHING_PROTOCOLS) {
      // RFC 6455 §4.1: any other status is handled "per HTTP procedures": the body says why.
      stopBody = readRefusalBody(socket, response, head, options.handshakeTimeout ?? Defaults.handshakeTimeout, (body) => {
        ws.emit('unexpected-response', { ...response, body } satisfies RefusedResponse);
        ws.abortHandshake(refusedError(response, body));
      });
      return;
    }
    const agreed = opening.check(response);
    if (isWebSocketError(agreed)) {
      discard(socket);
      ws.abortHandshake(agreed);
      return;
    }
    if (options.requireProtocol === true && (options.protocols ?? []).length > 0 && agreed.protocol === '') {
      discard(socket);
      ws.abortHandshake(new WebSocketError('WS_ERR_INVALID_SUBPROTOCOL', 'it chose none of those offered (requireProtocol)'));
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
  /** Gives up reading a refusal's body, once that has started. */
  let stopBody: (() => void) | null = null;
  const onAbort = (): void => {
    handshake.cancel();
    stopBody?.();
    ws.abortHandshake(abortError(signal!));
  };
  if (signal !== undefined) {
    signal.addEventListener('abort', onAbort, { once: true });
    ws.once('open', () => signal.removeEventListener('abort', onAbort));
  }
  // ws.close() or terminate() while CONNECTING: drop the socket too.
  ws.once('close', () => {
    signal?.removeEventListener('abort', onAbort);
    handshake.cancel();
    stopBody?.();
  });
}
