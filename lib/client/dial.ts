/**
 * The dialling side of the opening handshake, shared by the client (lib/client/client.ts) and
 * the proxy's upstream connections (lib/proxy/listener.ts): connect over TCP or TLS, send the
 * request once connected, read the answer's head with the HandshakeParser core under one
 * deadline, and hand back the socket (paused, our listeners removed) with the answer and the
 * bytes that followed it. What the answer means (101 or a refusal, the accept key, the
 * subprotocol, the extensions) is the caller's to check.
 */
import { Buffer } from 'node:buffer';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Defaults } from '../protocol/constants';
import type { WebSocketError } from '../protocol/errors';
import { HandshakeParserCore, UpgradeResponse } from '../handshake/handshake-parser';

export interface DialOptions {
  /** TLS options for wss:// (ca, servername, rejectUnauthorized (default true) ...). */
  tls?: tls.ConnectionOptions;
  /** Milliseconds allowed for the TCP/TLS connect and the answer's head. Default 10000. */
  handshakeTimeout?: number;
  /** Largest answer head, in bytes. Default 16 KiB. */
  maxHeaderSize?: number;
}

/** Why a dial failed, for the caller to word (and, in the proxy, to pick an HTTP status). */
export type DialFailure =
  /** No whole answer within handshakeTimeout. */
  | 'timeout'
  /** The connect (or TLS) failed, or the socket failed before the answer: `error` is the socket's. */
  | 'unreachable'
  /** The peer closed before its answer was whole. */
  | 'closed'
  /** The answer is not an HTTP response head we accept: `error` is the parser's WebSocketError. */
  | 'invalid';

export type DialResult =
  | { ok: true; socket: net.Socket; response: UpgradeResponse; head: Buffer | null }
  | { ok: false; reason: DialFailure; error: Error | null };

/** A dial under way. */
export interface Dial {
  /** Gives up (nothing more is reported) and destroys the socket. */
  cancel(): void;
}

/** Destroys a socket whose errors nobody wants any more. */
export function discard(socket: net.Socket): void {
  socket.on('error', () => {});
  socket.destroy();
}

/**
 * Connects to `target` (ws: plain TCP, wss: TLS with SNI for host names), writes `request`
 * and calls `done` once, with the answer or the failure. On failure the socket is destroyed.
 */
export function dial(target: URL, request: string, options: DialOptions, done: (result: DialResult) => void): Dial {
  const secure = target.protocol === 'wss:';
  const port = target.port === '' ? (secure ? 443 : 80) : Number(target.port);
  const hostname = target.hostname.startsWith('[') ? target.hostname.slice(1, -1) : target.hostname;
  // SNI carries host names only (RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not
  // permitted"); options.tls may override servername and anything else but host and port.
  const socket: net.Socket = secure
    ? tls.connect({ servername: net.isIP(hostname) === 0 ? hostname : undefined, ...options.tls, host: hostname, port })
    : net.connect({ host: hostname, port });
  let settled = false;
  const rest: Buffer[] = [];
  const parser = new HandshakeParserCore(
    { role: 'client', maxHeaderSize: options.maxHeaderSize },
    { onHead: () => {}, onData: (bytes: Buffer) => rest.push(bytes) },
  );
  const cleanup = (): void => {
    settled = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('error', onError);
    socket.removeListener('close', onClose);
  };
  const fail = (reason: DialFailure, error: Error | null): void => {
    if (settled) return;
    cleanup();
    discard(socket);
    done({ ok: false, reason, error });
  };
  const onError = (err: Error): void => fail('unreachable', err);
  const onClose = (): void => fail('closed', null);
  const onData = (chunk: Buffer): void => {
    const err: WebSocketError | null = parser.write(chunk);
    if (err !== null) {
      fail('invalid', err);
      return;
    }
    const response = parser.head as UpgradeResponse | null;
    if (response === null) return;
    cleanup();
    socket.pause();
    done({ ok: true, socket, response, head: rest.length === 0 ? null : rest.length === 1 ? rest[0]! : Buffer.concat(rest) });
  };
  const timer = setTimeout(() => fail('timeout', null), options.handshakeTimeout ?? Defaults.handshakeTimeout);
  socket.on(secure ? 'secureConnect' : 'connect', () => {
    if (!settled) socket.write(request);
  });
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('close', onClose);
  return {
    cancel: () => {
      if (settled) return;
      cleanup();
      discard(socket);
    },
  };
}
