/**
 * A WebSocket's internal state that its parts share (websocket.ts, inbound.ts, outbound.ts,
 * closing.ts, taps.ts): the flag bits, what only some connections need (Extras), and the
 * values the Writable carries besides messages. Nothing here is public.
 */
import { Buffer } from 'node:buffer';
import type { Frame, Message } from '../protocol/frame';
import { MessageReadable } from '../stages/message-stream';
import type { TapPoint } from '../stages/tap';
import type { DuplexOptions } from '../stages/streams';
import type { Transport, TappedMessage, WebSocketOptions } from './websocket-types';
import type { WebSocket } from './websocket';

export type WriteCallback = (error?: Error | null) => void;

/** What a received value counts against the memory budget: bytes, or UTF-16 code units of text (a MessageReadable counts its own bytes). */
export function unreadSize(value: Buffer | string | MessageReadable): number {
  return value instanceof MessageReadable ? 0 : value.length;
}

export interface TapPoints {
  in: { bytes: TapPoint<Buffer>; frames: TapPoint<Frame>; messages: TapPoint<TappedMessage> };
  out: { bytes: TapPoint<Buffer>; frames: TapPoint<Frame>; messages: TapPoint<TappedMessage> };
}

/** The connection a transport is attached to (its listeners are shared functions, see attach()). */
export const kConnection = Symbol('wspipe.connection');
export type OwnedTransport = Transport & { [kConnection]?: WebSocket };

/** Bits of WebSocket.flags: the connection's small state in one number (see the accessors). */
export enum Flag {
  /** attach() ran: the connection is no longer CONNECTING (the core has the rest of the state). */
  Attached = 1 << 0,
  /** Heartbeat or idleTimeout is configured: the core is told the time of traffic. */
  Timed = 1 << 1,
  ClientRole = 1 << 2,
  /** write() returned false because of bufferedAmount; a 'drain' is owed. */
  NeedBytesDrain = 1 << 3,
  /**
   * A chunk from the peer is being parsed (its 'message' listeners run): sends made meanwhile
   * are reported to the memory budget once, when the chunk is through (inbound.ts, parse).
   */
  Parsing = 1 << 4,
  /** The readable side has been ended (push(null)). */
  ReadableDone = 1 << 6,
  /** wspipe:websocket:frame had subscribers when the connection opened: its frames are published. */
  FrameDiagnostics = 1 << 13,
}

/**
 * What only some connections ever need, in one object made on first use (an idle connection
 * holds none of it). Each field is null while unused.
 */
export class Extras {
  /** The one timer of the connection, armed at the core's deadline, and when it fires (ms). */
  timer: NodeJS.Timeout | null = null;
  timerAt = Infinity;
  /** Close arguments given to close() while writes were still queued (sent from _final). */
  closePending: { code?: number; reason?: string } | null = null;
  /** Answers the peer's close if the reader has not read up to it in half of closeTimeout. */
  answerTimer: NodeJS.Timeout | null = null;
  /** Callbacks of writes waiting for the transport to drain. */
  drainWaiters: WriteCallback[] | null = null;
  /** Work waiting for the opening handshake to finish (writes made while CONNECTING). */
  whenOpen: Array<() => void> | null = null;
  /** The incoming message being streamed (streamMessages option). */
  inboundStream: MessageReadable | null = null;
  /** Taps, created on the first call to tap(). */
  tapPoints: TapPoints | null = null;
  /**
   * Messages accepted by write() that could not be sent (the connection closed first). Their
   * stream callback is called without an error (an error there would be emitted as 'error'
   * and could crash a process that does not listen for it); the caller's own callback gets it.
   */
  unsent: WeakMap<Message, Error> | null = null;
  /** permessage-deflate: bytes read while frames are being inflated, parsed once the inflater is idle. */
  readAhead: Buffer[] | null = null;
  /** permessage-deflate: what to do once inflation is through (finish after the transport closed). */
  afterInflate: (() => void) | null = null;
}

/** The options of a connection's Duplex. */
export function streamOptions(options: WebSocketOptions): DuplexOptions {
  return {
    objectMode: true,
    readableHighWaterMark: options.readableHighWaterMark ?? 16,
    writableHighWaterMark: options.writableHighWaterMark ?? 16,
    allowHalfOpen: true,
    // 'close' is the connection's own, with (code, reason), emitted once the transport is gone.
    emitClose: false,
    // Messages received before the close stay readable.
    autoDestroy: false,
    decodeStrings: false,
  };
}

/**
 * The object EventEmitter keeps a connection's listeners in. EventEmitter's own is a dictionary
 * (256 B of hash table once it holds four event names); this one has the names a connection
 * usually listens to as fields without a listener yet, so it stays a small fast object, as
 * Node's own streams do. No prototype, so that no event name finds an inherited function.
 */
export function listenerTable(): object {
  return Object.setPrototypeOf({ newListener: undefined, data: undefined, message: undefined, error: undefined, close: undefined }, null);
}

export function ignore(): void {}

/** The callback of ping()/pong() in ws's forms. */
export type ControlCallback = (err?: Error | null) => void;

/**
 * `new WebSocket(url)` (the browser's and ws's form) is not this class's constructor: the
 * connection layer does not dial. A clear error at the call, rather than a connection that
 * never opens.
 */
export function roleError(role: unknown): TypeError {
  const shown = role instanceof URL ? role.href : JSON.stringify(role);
  const err = new TypeError(
    `new WebSocket(${shown}): the first argument is the role, 'client' or 'server'. ` +
      "To open a client connection use connect() from 'wspipe' (connect(url, options)), " +
      "or new WebSocket(url, protocols, options) from 'wspipe/ws'",
  );
  (err as TypeError & { code: string }).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/**
 * What write()'s fast path hands the Writable when the message it sent still has to settle
 * (see sendAtOnce): the Writable counts it as one write in progress, and _write()
 * waits, as for any message, without sending it again.
 */
export class SentAhead {
  constructor(readonly flowing: boolean) {}
}

/** Fan-out: frames encoded already, waiting in the Writable behind earlier writes (see sendFrameBytes). */
export class PreFramed {
  error: Error | null = null;
  constructor(
    readonly buffers: readonly Buffer[],
    readonly bytes: number,
    /** What taps see of these bytes (null when no tap watches). */
    readonly tapped: Array<{ frame: Frame; message: Message }> | null,
  ) {}
}
