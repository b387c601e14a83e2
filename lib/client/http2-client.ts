/**
 * connect(url, { http2 }): the opening handshake of a WebSocket over HTTP/2 (RFC 8441) on a
 * shared (or given) HTTP/2 connection; the stream then carries an ordinary WebSocket (same
 * limits, closing handshake, permessage-deflate; HTTP/2 flow control is the backpressure).
 * Falls back to HTTP/1.1 when the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL,
 * or (for a session we open) does not speak HTTP/2 at all.
 */
import type * as http2 from 'node:http2';
import { Defaults } from '../protocol/constants';
import { WebSocketError, abortError, isWebSocketError } from '../protocol/errors';
import { formatExtensions } from '../handshake/handshake';
import { acceptDeflateResponse, deflateSides } from '../deflate/permessage-deflate';
import type { WebSocket } from '../connection/websocket';
import { type SessionLease, borrowSession, cancelStream, leaseSession, openWebSocketStream, whenSettled } from '../http2/client';
import type { ClientOptions } from './client';
import { type ExtensionOffer } from '../handshake/handshake';
import { type PerMessageDeflateOptions, buildDeflateOffer, checkDeflateOptions } from '../deflate/permessage-deflate';

/** The offer both transports make: subprotocols and permessage-deflate. Throws for an invalid option. */
export function clientOffer(options: ClientOptions): { protocols: string[]; deflate: PerMessageDeflateOptions | null; offered: ExtensionOffer[] } {
  const protocols = options.protocols ?? [];
  const deflate: PerMessageDeflateOptions | null =
    options.perMessageDeflate === false ? null : options.perMessageDeflate === true || options.perMessageDeflate === undefined ? {} : options.perMessageDeflate;
  if (deflate !== null) checkDeflateOptions(deflate, 'client');
  return { protocols, deflate, offered: deflate === null ? [] : [buildDeflateOffer(deflate)] };
}

/**
 * Opens `ws` over HTTP/2 to `target` (a checked ws:// or wss:// URL); calls `fallback` (at most
 * once, nothing having been sent) to open it over HTTP/1.1 instead.
 */
export function connectHttp2(
  ws: WebSocket,
  target: URL,
  options: ClientOptions,
  http2Option: true | http2.ClientHttp2Session,
  fallback: () => void,
): void {
  let offer: ReturnType<typeof clientOffer>;
  try {
    offer = clientOffer(options);
  } catch (cause) {
    const err = new WebSocketError('WS_ERR_INVALID_ARGUMENT', (cause as Error).message);
    process.nextTick(() => ws.abortHandshake(err));
    return;
  }
  const secure = target.protocol === 'wss:';
  const scheme = secure ? 'https' : 'http';
  const port = target.port === '' ? (secure ? 443 : 80) : Number(target.port);
  const authority = target.port === '' ? target.host : `${target.hostname}:${port}`;
  const ownSession = http2Option === true;
  let lease: SessionLease | null = null;
  try {
    lease = ownSession ? leaseSession(`${scheme}://${authority}`, options.tls) : borrowSession(http2Option);
  } catch (cause) {
    const err = new WebSocketError('WS_ERR_INVALID_ARGUMENT', (cause as Error).message);
    process.nextTick(() => ws.abortHandshake(err));
    return;
  }
  const session = lease.session;
  let settled = false;
  let stream: http2.ClientHttp2Stream | null = null;
  const timer = setTimeout(() => fail(new WebSocketError('WS_ERR_HANDSHAKE_TIMEOUT')), options.handshakeTimeout ?? Defaults.handshakeTimeout);

  const onEarlyClose = (): void => fail(new WebSocketError('WS_ERR_INVALID_STATE', 'closed while connecting'));
  // As over HTTP/1.1: aborting before the 200 cancels our stream only (RST_STREAM CANCEL); the
  // session stays for the other WebSockets on it (and closes if it was ours and this its last).
  const signal = options.signal;
  const onAbort = (): void => fail(abortError(signal!));
  signal?.addEventListener('abort', onAbort, { once: true });
  function cleanup(): void {
    settled = true;
    clearTimeout(timer);
    cancelWait();
    ws.removeListener('close', onEarlyClose);
    signal?.removeEventListener('abort', onAbort);
  }
  function fail(err: Error): void {
    if (settled) return;
    cleanup();
    if (stream !== null) cancelStream(stream);
    lease!.release();
    ws.abortHandshake(err);
  }

  const cancelWait = whenSettled(session, (result) => {
    if (settled) return;
    if (result !== true) {
      // No extended CONNECT here: HTTP/1.1 (for a session we opened and that failed before its
      // SETTINGS, typically a server without HTTP/2, as for one that lacks the setting).
      if (result === false || ownSession) {
        cleanup();
        lease!.release();
        fallback();
      } else {
        fail(result);
      }
      return;
    }
    const opened = openWebSocketStream(
      session,
      {
        scheme,
        authority,
        path: `${target.pathname}${target.search}`,
        protocols: offer.protocols,
        extensions: offer.offered,
        extensionsHeader: offer.offered.length === 0 ? undefined : formatExtensions(offer.offered),
        origin: options.origin,
        headers: options.headers,
      },
      (answer) => {
        if (settled) return;
        if (answer instanceof Error) {
          fail(isWebSocketError(answer) ? answer : new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', answer.message));
          return;
        }
        const deflate = offer.deflate === null ? null : acceptDeflateResponse(answer.extensions, offer.deflate);
        if (isWebSocketError(deflate)) {
          fail(deflate);
          return;
        }
        cleanup();
        const release = lease!.release;
        answer.stream.once('close', release);
        ws.emit('upgrade', { statusCode: Number(answer.headers[':status']), statusMessage: '', httpVersion: '2.0', headers: answer.headers, rawHeaders: [] });
        ws.attach(answer.transport, null, {
          protocol: answer.protocol ?? '',
          extensions: deflate === null ? '' : formatExtensions([deflate.response]),
          deflate: deflate === null ? undefined : { sides: deflateSides(deflate, 'client'), options: offer.deflate! },
        });
        answer.stream.resume();
      },
    );
    if (opened instanceof Error) {
      fail(new WebSocketError('WS_ERR_INVALID_ARGUMENT', opened.message));
      return;
    }
    stream = opened;
  });
  // ws.close() or terminate() while CONNECTING: cancel the stream (and give the session back).
  ws.once('close', onEarlyClose);
}
