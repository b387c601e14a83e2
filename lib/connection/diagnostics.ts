/**
 * node:diagnostics_channel publication: what happens to every connection, for tracing and
 * metrics tools, without listeners on each WebSocket. The names and payloads follow undici's
 * `undici:websocket:*` channels where the events are the same (open, close, ping, pong), under
 * `wspipe:`; docs/diagnostics.md lists them all.
 *
 * Cost when nobody subscribes: each publication point reads one `hasSubscribers` boolean and
 * builds nothing. Message events cost a boolean per message; frame events are hooked onto a
 * connection only if `wspipe:websocket:frame` has a subscriber when the connection opens
 * (bench/diagnostics.ts measures the three cases).
 */
import * as dc from 'node:diagnostics_channel';
import type { Frame } from '../protocol/frame';

/** The channels, by event. */
export const channels = {
  /** A connection opened: `{ websocket, role, address, protocol, extensions }`. */
  open: dc.channel('wspipe:websocket:open'),
  /** A connection closed: `{ websocket, code, reason }` (the code and reason of its 'close'). */
  close: dc.channel('wspipe:websocket:close'),
  /** An error on a connection (protocol, transport, handshake): `{ websocket, error }`. */
  error: dc.channel('wspipe:websocket:error'),
  /** A ping received: `{ websocket, payload }`. */
  ping: dc.channel('wspipe:websocket:ping'),
  /** A pong received: `{ websocket, payload }`. */
  pong: dc.channel('wspipe:websocket:pong'),
  /** A whole data message received: `{ websocket, data, binary }` (data: string for text, Buffer for binary). */
  message: dc.channel('wspipe:websocket:message'),
  /** Every frame, both ways (unmasked): `{ websocket, direction: 'in' | 'out', frame }`. */
  frame: dc.channel('wspipe:websocket:frame'),
  /**
   * An opening handshake refused: by a server `{ side: 'server', error, request, status }` (request
   * null when it could not be parsed), by a client `{ side: 'client', error, websocket }`.
   */
  handshakeRejected: dc.channel('wspipe:handshake:rejected'),
} as const;

/** The remote address of a transport, when it has one (a net.Socket, or an HTTP/2 stream's session socket). */
export interface PeerAddress {
  address: string;
  family: string;
  port: number;
}

interface AddressSource {
  remoteAddress?: string | undefined;
  remoteFamily?: string | undefined;
  remotePort?: number | undefined;
  session?: { socket?: AddressSource | undefined } | undefined;
}

/** The peer's address, or null (a transport without one, e.g. a duplex pair in tests). */
export function peerAddress(transport: unknown): PeerAddress | null {
  let source = transport as AddressSource | null;
  if (source !== null && source.remoteAddress === undefined && source.session?.socket !== undefined) source = source.session.socket;
  if (source === null || typeof source.remoteAddress !== 'string') return null;
  return { address: source.remoteAddress, family: source.remoteFamily ?? '', port: source.remotePort ?? 0 };
}

/** The payload of a frame event. */
export interface FrameEvent {
  websocket: unknown;
  direction: 'in' | 'out';
  frame: Frame;
}

/** Publishes a frame (called only on connections hooked while the frame channel had subscribers). */
export function publishFrame(websocket: unknown, direction: 'in' | 'out', frame: Frame): void {
  if (channels.frame.hasSubscribers) channels.frame.publish({ websocket, direction, frame } satisfies FrameEvent);
}
