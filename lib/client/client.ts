/**
 * connect(): opens a WebSocket client connection to a ws:// or wss:// URL. The returned
 * WebSocket is CONNECTING until the server's 101 is checked; messages written before then are
 * queued and sent once it opens.
 */
import { Buffer } from 'node:buffer';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Defaults } from '../protocol/constants';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import { type ExtensionOffer, buildClientRequest, formatExtensions, generateKey, validateUpgradeResponse } from '../handshake/handshake';
import { PerMessageDeflateOptions, acceptDeflateResponse, buildDeflateOffer, checkDeflateOptions, deflateSides } from '../deflate/permessage-deflate';
import type { UpgradeResponse } from '../handshake/handshake-parser';
import { HandshakeParserCore } from '../handshake/handshake-parser';
import { Transport, WebSocket, WebSocketOptions } from '../connection/websocket';

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
  const secure = target.protocol === 'wss:';
  const port = target.port === '' ? (secure ? 443 : 80) : Number(target.port);
  const hostname = target.hostname.startsWith('[') ? target.hostname.slice(1, -1) : target.hostname;

  const key = generateKey();
  const protocols = options.protocols ?? [];
  const deflateOptions: PerMessageDeflateOptions | null =
    options.perMessageDeflate === false ? null : options.perMessageDeflate === true || options.perMessageDeflate === undefined ? {} : options.perMessageDeflate;
  let offered: ExtensionOffer[] = [];
  let request: string;
  try {
    if (deflateOptions !== null) {
      checkDeflateOptions(deflateOptions, 'client');
      offered = [buildDeflateOffer(deflateOptions)];
    }
    // Built before connecting: a value that cannot go in a header fails here, with nothing sent.
    request = buildClientRequest({
      host: target.port === '' ? target.host : `${target.hostname}:${port}`,
      path: `${target.pathname}${target.search}`,
      key,
      protocols,
      origin: options.origin,
      headers: options.headers,
      extensions: offered.length === 0 ? undefined : formatExtensions(offered),
    });
  } catch (cause) {
    return refuse((cause as Error).message);
  }
  // SNI carries host names only (RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not
  // permitted"); options.tls may override servername and anything else but host and port.
  const socket: net.Socket = secure
    ? tls.connect({ servername: net.isIP(hostname) === 0 ? hostname : undefined, ...options.tls, host: hostname, port })
    : net.connect({ host: hostname, port });

  let settled = false;
  const timer = setTimeout(
    () => fail(new WebSocketError('WS_ERR_HANDSHAKE_TIMEOUT')),
    options.handshakeTimeout ?? Defaults.handshakeTimeout,
  );
  const parser = new HandshakeParserCore(
    { role: 'client', maxHeaderSize: options.maxHeaderSize },
    {
      onHead: (head) => onResponse(head as UpgradeResponse),
      onData: (bytes: Buffer) => rest.push(bytes),
    },
  );
  const rest: Buffer[] = [];
  let response: UpgradeResponse | null = null;

  function onResponse(head: UpgradeResponse): void {
    response = head;
  }

  function cleanup(): void {
    settled = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('error', fail);
    socket.removeListener('close', onEarlyClose);
  }

  function fail(err: Error): void {
    if (settled) return;
    cleanup();
    socket.on('error', () => {});
    socket.destroy();
    ws.abortHandshake(err);
  }

  function onEarlyClose(): void {
    fail(new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'connection closed during the opening handshake'));
  }

  function onData(chunk: Buffer): void {
    const err = parser.write(chunk);
    if (err !== null) {
      fail(err);
      return;
    }
    if (response === null) return;
    const result = validateUpgradeResponse(response, { key, protocols, extensions: offered });
    if (isWebSocketError(result)) {
      fail(result);
      return;
    }
    // permessage-deflate: an answer we cannot accept fails the connection (RFC 7692 §5, §7.1).
    const deflateAgreement = deflateOptions === null ? null : acceptDeflateResponse(result.extensions, deflateOptions);
    if (isWebSocketError(deflateAgreement)) {
      fail(deflateAgreement);
      return;
    }
    cleanup();
    socket.pause();
    ws.emit('upgrade', response);
    const head = rest.length === 0 ? null : rest.length === 1 ? rest[0]! : Buffer.concat(rest);
    // Only permessage-deflate is ever offered, so validateUpgradeResponse has refused any other.
    ws.attach(socket as Transport, head, {
      protocol: result.protocol ?? '',
      extensions: deflateAgreement === null ? '' : formatExtensions([deflateAgreement.response]),
      deflate: deflateAgreement === null ? undefined : { sides: deflateSides(deflateAgreement, 'client'), options: deflateOptions! },
    });
    socket.resume();
  }

  socket.on(secure ? 'secureConnect' : 'connect', () => {
    if (!settled) socket.write(request);
  });
  socket.on('data', onData);
  socket.on('error', fail);
  socket.on('close', onEarlyClose);
  // ws.close() or terminate() while CONNECTING: drop the socket too.
  ws.once('close', () => fail(new WebSocketError('WS_ERR_INVALID_STATE', 'closed while connecting')));
  return ws;
}
