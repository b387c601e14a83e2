/**
 * The public types of a WebSocket connection: its transport, options, ready states and what
 * the opening handshake settled, and its events (typed on the class in websocket.ts).
 */
import type { Buffer } from 'node:buffer';
import type { MessagePiece } from '../stages/fragment-assembler';
import type { Message } from '../protocol/frame';
import type { DeflateSides, PerMessageDeflateOptions } from '../deflate/permessage-deflate';
import type { ReceiverOptions } from './receiver';
import type { ByteSink, SenderOptions } from './sender';
import type { TopicHost } from './topics';
import type { UpgradeResponse } from '../handshake/handshake-parser';
import type { WebSocket } from './websocket';

/** The underlying transport: a net.Socket, a tls.TLSSocket, or any Duplex of bytes. */
export interface Transport extends ByteSink {
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'end' | 'close' | 'drain', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  removeListener(event: string, listener: (...args: never[]) => void): this;
  pause(): this;
  resume(): this;
  end(): this;
  destroy(err?: Error): this;
  readonly destroyed: boolean;
  setNoDelay?(noDelay?: boolean): this;
  setTimeout?(ms: number): this;
}

export enum ReadyState {
  CONNECTING = 0,
  OPEN = 1,
  CLOSING = 2,
  CLOSED = 3,
}

export interface WebSocketOptions extends ReceiverOptions, SenderOptions {
  /** Milliseconds to wait for the closing handshake (and then the TCP close) before destroying the socket. Default 5000. */
  closeTimeout?: number;
  /**
   * The readable side's highWaterMark, in messages (what pipe() and read() go by). Default 16.
   * A full reader does not stop reading from the socket by itself: pings and the peer's close
   * must still be read and answered; the memoryBudget stops it.
   */
  readableHighWaterMark?: number;
  /**
   * Bytes waiting to be sent (bufferedAmount) at which write() and send() return false, until
   * 'drain'. Default 1 MiB. (writableHighWaterMark counts messages; this counts bytes, so that a
   * writer of large messages is held back before it queues hundreds of MiB.)
   */
  writableHighWaterMarkBytes?: number;
  /** How many messages the writable side buffers before write() returns false. Default 16. */
  writableHighWaterMark?: number;
  /**
   * One memory budget for the connection, in bytes: the received data the application has not
   * read yet (messages in the readable buffer, bytes in MessageReadables), the fragments of the
   * message being assembled, and what waits to be sent (bufferedAmount); see `heldBytes`. At
   * the budget the connection stops reading from the socket, so TCP slows the peer down (it is
   * not disconnected), and reads again once the application has read or the peer has taken
   * enough. write() and send() return false once bufferedAmount reaches the smaller of this and
   * writableHighWaterMarkBytes. A message delivered whole can only be delivered once complete:
   * its fragments may take it past the budget (maxMessageSize bounds it), and reading never
   * waits for it alone. Default 16 MiB (Defaults.memoryBudget).
   */
  memoryBudget?: number;
  /**
   * Heartbeat: when nothing came from the peer for `interval` ms, send a ping; if nothing (a
   * pong or any other frame) comes within `timeout` ms more, the peer is taken for dead
   * (half-open TCP): the socket is destroyed, 'error' reports WS_ERR_PEER_UNRESPONSIVE and
   * 'close' 1006. Default: off.
   */
  heartbeat?: { interval: number; timeout: number };
  /** Close with 1001 after this many ms without any traffic in either direction. Default: off. */
  idleTimeout?: number;
  /**
   * Most bytes that may wait to be sent (bufferedAmount) before outboundOverflow applies.
   * Default: Infinity (write() returning false is the only brake).
   */
  maxBufferedAmount?: number;
  /**
   * What a write beyond maxBufferedAmount does: 'error' (default) fails the connection with
   * WS_ERR_BUFFER_FULL (close 1008; the peer that does not read is cut off); 'drop' discards
   * that message, its callback gets WS_ERR_BUFFER_FULL, and the connection stays open.
   */
  outboundOverflow?: 'error' | 'drop';
  /** @internal Set by the server: the fan-out hub that keeps this connection's topics (lib/fanout/). */
  topicHost?: TopicHost;
  /**
   * Told whenever what the connection holds (heldBytes) may have changed: set by the server for
   * its server-wide memory budget (serverMemoryBudget), which may then hold reading from the
   * connection (holdForServer) or cut it (failForServer). Default: none.
   */
  heldBytesObserver?: HeldBytesObserver;
}

/** Watches connections' heldBytes (the server's memory budget). */
export interface HeldBytesObserver {
  heldBytesChanged(connection: WebSocket): void;
}

/** What the opening handshake settled. */
export interface HandshakeResult {
  /** The subprotocol both sides agreed on, or '' for none. */
  protocol: string;
  /** The Sec-WebSocket-Extensions value agreed on, or '' for none. */
  extensions: string;
  /** permessage-deflate, when negotiated: how each side compresses, and the options (RFC 7692). */
  deflate?: { sides: DeflateSides; options: PerMessageDeflateOptions } | undefined;
}

/** Where a tap observes a connection: raw bytes, frames (unmasked), or data messages. */
export type TapLayer = 'bytes' | 'frames' | 'messages';
/** 'in': from the peer; 'out': to the peer. */
export type TapDirection = 'in' | 'out';
/** What a messages tap yields: whole messages, or pieces of streamed ones. */
export type TappedMessage = Message | MessagePiece;

/** Events of a WebSocket, with their arguments (besides a Duplex's own: 'data', 'end', 'finish' ...). */
export interface WebSocketEvents {
  /** The opening handshake is done: the connection is OPEN. */
  open: () => void;
  /**
   * A data message: text as a string, binary as a Buffer; `isBinary` says which. With the
   * `streamMessages` option each message is a MessageReadable instead (annotate the parameter:
   * `(stream: MessageReadable) => ...`).
   */
  message: (data: string | Buffer, isBinary: boolean) => void;
  /** The peer pinged (the pong is sent automatically unless `autoPong: false`). */
  ping: (payload: Buffer) => void;
  pong: (payload: Buffer) => void;
  /** The connection has ended: the close code and reason (1006 and '' without a close frame). */
  close: (code: number, reason: string) => void;
  /** A protocol error (a WebSocketError, with its `code` and `closeCode`) or a socket error; emitted once. */
  error: (err: Error) => void;
  /** `send()`/`write()` returned false and the connection can take more now. */
  drain: () => void;
  /** Client: the server's 101 response was received and checked (before 'open'). */
  upgrade: (response: UpgradeResponse) => void;
}
