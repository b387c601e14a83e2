/**
 * The client side's I/O for WebSockets over HTTP/2 (RFC 8441): HTTP/2 connections (sessions)
 * shared by the WebSockets to one origin, the extended CONNECT request on one of them, and the
 * check of the server's answer. `connect(url, { http2 })` (lib/client) drives it.
 *
 * A session is opened on the first `connect(url, { http2: true })` to an origin and shared by
 * later ones to the same origin made with the same `tls` options object; it is closed when its
 * last WebSocket has closed. A session passed as `{ http2: session }` is used as it is and never
 * closed here.
 *
 * RFC 8441 §3: "A client MUST NOT send a :protocol pseudo-header field unless it has received
 * [SETTINGS_ENABLE_CONNECT_PROTOCOL] with a value of 1": we wait for the server's SETTINGS and,
 * without the setting, report `fallback` (lib/client then opens an HTTP/1.1 connection).
 */
import * as http2 from 'node:http2';
import type * as tls from 'node:tls';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import type { HeaderMap } from '../handshake/handshake-parser';
import type { Transport } from '../connection/websocket';
import { type ExtensionOffer } from '../handshake/handshake';
import { type Http2ExtraHeaders, buildConnectRequest, validateConnectResponse } from './handshake';

/**
 * HTTP/2 flow-control windows of the sessions we open (RFC 9113 §6.9.2: 64 KiB each by default,
 * per stream and for the whole connection). A WebSocket echoing 16 KiB messages with a few in
 * flight fills 64 KiB at once, and all the WebSockets of a session share its connection window:
 * the sender then waits a round trip for each WINDOW_UPDATE. Node sends WINDOW_UPDATEs as the
 * application reads, so a paused WebSocket still stops its stream, after at most this window
 * (within the default memoryBudget of 16 MiB). See docs/http2.md, "Flow control".
 */
export const Http2Windows = {
  /** SETTINGS_INITIAL_WINDOW_SIZE we announce: what the server may send on each stream unread. */
  stream: 1024 * 1024,
  /** Our connection-level window (session.setLocalWindowSize): shared by the session's streams. */
  session: 16 * 1024 * 1024,
} as const;

/** A session's users: the WebSockets opened on it (a pooled session closes at 0). */
interface PoolEntry {
  readonly session: http2.ClientHttp2Session;
  users: number;
}

/** Pooled sessions by origin, one pool per `tls` options object (undefined: the default pool). */
const pools = new WeakMap<object, Map<string, PoolEntry>>();
const DEFAULT_POOL_KEY = {};
function poolFor(tlsOptions: object | undefined): Map<string, PoolEntry> {
  const key = tlsOptions ?? DEFAULT_POOL_KEY;
  let pool = pools.get(key);
  if (pool === undefined) {
    pool = new Map();
    pools.set(key, pool);
  }
  return pool;
}

function usable(session: http2.ClientHttp2Session): boolean {
  return !session.closed && !session.destroyed;
}

/** A session to `origin` (pooled) and the function that gives it back. */
export interface SessionLease {
  readonly session: http2.ClientHttp2Session;
  /** Gives the session back; a pooled one is closed when nobody else holds it. Idempotent. */
  release(): void;
}

/** Takes a pooled session to `origin` (https://host:port or http://host:port), opening one if needed. */
export function leaseSession(origin: string, tlsOptions: tls.ConnectionOptions | undefined): SessionLease {
  const pool = poolFor(tlsOptions);
  let entry = pool.get(origin);
  if (entry === undefined || !usable(entry.session)) {
    const session = http2.connect(origin, { ...tlsOptions, settings: { initialWindowSize: Http2Windows.stream } });
    // 'connect' may come after a close (an aborted first WebSocket released the session).
    session.once('connect', () => usable(session) && session.setLocalWindowSize(Http2Windows.session));
    // Errors of a shared session reach each of its WebSockets through their streams.
    session.on('error', () => {});
    settingsOf(session);
    const created: PoolEntry = { session, users: 0 };
    session.once('close', () => {
      if (pool.get(origin) === created) pool.delete(origin);
    });
    pool.set(origin, created);
    entry = created;
  }
  const held = entry;
  held.users++;
  let released = false;
  return {
    session: held.session,
    release: () => {
      if (released) return;
      released = true;
      held.users--;
      if (held.users === 0) {
        if (pool.get(origin) === held) pool.delete(origin);
        if (usable(held.session)) held.session.close();
      }
    },
  };
}

/** A session the caller owns: never closed here. */
export function borrowSession(session: http2.ClientHttp2Session): SessionLease {
  return { session, release: () => {} };
}

/** Per session: whether the server allows extended CONNECT, once its SETTINGS are known, or the session's error. */
const settings = new WeakMap<http2.ClientHttp2Session, Promise<boolean | Error>>();

/**
 * Learns whether the server of `session` allows extended CONNECT. A session still connecting
 * waits for its first SETTINGS ('remoteSettings'). On a session already connected (perhaps
 * given by the caller after its SETTINGS came) a PING answers: the server's SETTINGS frame is
 * the first frame it sends (RFC 9113 §3.4), so once the PING's ACK is back, remoteSettings
 * holds the server's values.
 */
function settingsOf(session: http2.ClientHttp2Session): Promise<boolean | Error> {
  let known = settings.get(session);
  if (known !== undefined) return known;
  known = new Promise<boolean | Error>((resolve) => {
    const allowed = (): boolean => session.remoteSettings.enableConnectProtocol === true;
    const done = (result: boolean | Error): void => {
      session.removeListener('remoteSettings', onSettings);
      session.removeListener('error', done);
      session.removeListener('close', onClose);
      resolve(result);
    };
    const onSettings = (): void => done(allowed());
    const onClose = (): void => done(new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the HTTP/2 connection closed before its SETTINGS'));
    if (session.closed || session.destroyed) {
      onClose();
      return;
    }
    session.once('remoteSettings', onSettings);
    session.once('error', done);
    session.once('close', onClose);
    if (!session.connecting) session.ping((err) => done(err ?? allowed()));
  });
  settings.set(session, known);
  return known;
}

/**
 * Calls back (never synchronously) with whether the server of `session` allows extended
 * CONNECT (RFC 8441 §3), or with the session's error (or closing) before its SETTINGS came.
 * Returns a function that cancels the call.
 */
export function whenSettled(session: http2.ClientHttp2Session, callback: (result: boolean | Error) => void): () => void {
  let cancelled = false;
  void settingsOf(session).then((result) => {
    if (!cancelled) callback(result);
  });
  return () => {
    cancelled = true;
  };
}

/** What openWebSocketStream needs to send and to check. */
export interface ConnectRequest {
  scheme: 'https' | 'http';
  authority: string;
  path: string;
  protocols: readonly string[];
  /** The extensions offered (checked against the answer) and their header value. */
  extensions: readonly ExtensionOffer[];
  extensionsHeader: string | undefined;
  origin?: string | undefined;
  headers?: Http2ExtraHeaders | undefined;
}

/** The checked answer: the stream to use as the transport and what was agreed. */
export interface ConnectAnswer {
  transport: Transport;
  stream: http2.ClientHttp2Stream;
  headers: HeaderMap;
  protocol: string | undefined;
  extensions: ExtensionOffer[];
}

/**
 * Sends the extended CONNECT on `session` and calls back with the checked answer or the error
 * (the stream is then closed). Returns the stream (to cancel it) or an error thrown by the
 * request's validation (nothing was sent).
 */
export function openWebSocketStream(
  session: http2.ClientHttp2Session,
  request: ConnectRequest,
  callback: (result: ConnectAnswer | WebSocketError | Error) => void,
): http2.ClientHttp2Stream | Error {
  let stream: http2.ClientHttp2Stream;
  try {
    stream = session.request(
      buildConnectRequest({
        scheme: request.scheme,
        authority: request.authority,
        path: request.path,
        protocols: request.protocols,
        extensions: request.extensionsHeader,
        origin: request.origin,
        headers: request.headers,
      }),
      { endStream: false },
    );
  } catch (cause) {
    return cause as Error;
  }
  let done = false;
  const finish = (result: ConnectAnswer | Error): void => {
    if (done) return;
    done = true;
    stream.removeListener('response', onResponse);
    stream.removeListener('error', finish);
    stream.removeListener('close', onClose);
    if (!('transport' in result)) cancelStream(stream);
    callback(result);
  };
  const onResponse = (headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void => {
    const result = validateConnectResponse(headers as HeaderMap, { protocols: request.protocols, extensions: request.extensions });
    if (isWebSocketError(result)) {
      finish(result);
      return;
    }
    // Nothing is read until the WebSocket attaches (its 'data' listener starts the flow).
    stream.pause();
    finish({ transport: stream as unknown as Transport, stream, headers: headers as HeaderMap, ...result });
  };
  const onClose = (): void =>
    finish(new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `the stream closed during the opening handshake (RST_STREAM code ${stream.rstCode ?? 0})`));
  stream.on('response', onResponse);
  stream.on('error', finish);
  stream.on('close', onClose);
  return stream;
}

/**
 * Cancels a stream (RST_STREAM CANCEL) and discards what it still holds: a stream whose received
 * bytes (a refusal's body) are never read would not close, and its session with it.
 */
export function cancelStream(stream: http2.ClientHttp2Stream): void {
  stream.on('error', () => {});
  if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  stream.resume();
}
