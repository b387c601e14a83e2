/**
 * The connection as the handler of its Receiver (what it delivers), of its ConnectionCore (the
 * I/O the core asks for) and of the server's MemoryBudget. The connection is itself these
 * handlers, with no object of its own for them (see websocket.ts on memory per connection):
 * the methods are defined here, on a class that is never instantiated, and installed on
 * WebSocket.prototype by installHandlers() when websocket.ts loads, as if they were written in
 * its class body (the same functions, non-enumerable, on the same prototype). Most are a line
 * into inbound.ts, outbound.ts or closing.ts.
 */
import type { Buffer } from 'node:buffer';
import type { MessagePiece } from '../stages/fragment-assembler';
import type { WebSocketError } from '../protocol/errors';
import type { Frame, Message } from '../protocol/frame';
import { ReadHold } from './connection-core';
import { channels as diagnostics } from './diagnostics';
import { ReadyState } from './websocket-types';
import { deliverMessage, deliverPiece, inflateIdle, peerClosed } from './inbound';
import { sendReply } from './outbound';
import { closed, failConnection } from './closing';
import type { WebSocket } from './websocket';

/** @internal The handler methods of every WebSocket (merged into its type in websocket.ts). */
export abstract class ConnectionHandlers {
  // ----- Inbound -----

  /** @internal permessage-deflate: an inflated chunk reached the assembler (heldBytes grew). */
  onInflatedFrame(this: WebSocket): void {
    this.options.heldBytesObserver?.heldBytesChanged(this);
  }

  /** @internal The server's memory budget holds (true) or releases (false) reading from the peer. */
  holdForServer(this: WebSocket, hold: boolean): void {
    if (hold) this.core.hold(ReadHold.External);
    else this.core.release(ReadHold.External);
  }

  /**
   * @internal The server's memory budget cuts this connection: what it assembles or inflates is
   * dropped, it fails with `err`'s code, and a peer that does not read (bytes still queued for
   * it) has its transport destroyed at once.
   */
  failForServer(this: WebSocket, err: WebSocketError): void {
    if (this.state === ReadyState.CLOSED) return;
    this.receiver?.abort(err);
    failConnection(this, err);
    if (this.bufferedAmount > 0) this.transport?.destroy();
  }

  // ----- ReceiverHandler: what the receiver delivers -----

  /** @internal permessage-deflate: everything received has been inflated and delivered. */
  onInflateIdle(this: WebSocket): void {
    inflateIdle(this);
  }

  /** @internal permessage-deflate: an error met while inflating, after onData returned. */
  onAsyncError(this: WebSocket, err: WebSocketError): void {
    failConnection(this, err);
  }

  /** @internal The peer pinged. */
  onPing(this: WebSocket, payload: Buffer): void {
    if (diagnostics.ping.hasSubscribers) diagnostics.ping.publish({ websocket: this, payload });
    this.emit('ping', payload);
  }

  /** @internal The peer ponged. */
  onPong(this: WebSocket, payload: Buffer): void {
    if (diagnostics.pong.hasSubscribers) diagnostics.pong.publish({ websocket: this, payload });
    this.emit('pong', payload);
  }

  /** @internal A whole data message. */
  onMessage(this: WebSocket, message: Message): void {
    // Straight from the receiver (the core sees control frames only): nothing after the peer's close.
    if (!this.core.closeReceived) deliverMessage(this, message);
  }

  /** @internal A piece of a streamed message. */
  onMessagePiece(this: WebSocket, piece: MessagePiece): void {
    deliverPiece(this, piece);
  }

  /** @internal The peer's close frame (the core keeps its code and reason; the close timeout runs). */
  onPeerClose(this: WebSocket): boolean {
    return peerClosed(this);
  }

  // ----- ConnectionCoreHandler: what the core asks of its adapter -----

  /** @internal The core's frame to send now (pong, close, heartbeat ping). */
  sendFrame(this: WebSocket, frame: Frame): void {
    sendReply(this, frame);
  }

  /** @internal The core's error (it keeps the first in `error`): published, and emitted when listened for. */
  onError(this: WebSocket, err: Error): void {
    if (diagnostics.error.hasSubscribers) diagnostics.error.publish({ websocket: this, error: err });
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** @internal The core closes our side: the closing handshake completed (server), or we failed. */
  endTransport(this: WebSocket): void {
    this.transport?.end();
  }

  /** @internal The core gives up on the transport (close timeout, a dead peer): 'close' follows. */
  destroyTransport(this: WebSocket): void {
    this.terminate();
  }

  /** @internal Nothing holds reading any more (true), or something does (false): see the core's ReadHold. */
  setReading(this: WebSocket, on: boolean): void {
    if (on) this.transport?.resume();
    else this.transport?.pause();
  }

  /** @internal For the core's memory budget: bytes waiting to be sent. */
  unsentBytes(this: WebSocket): number {
    return this.bufferedAmount;
  }

  /** @internal For the core's memory budget: bytes of the message being assembled. */
  assemblingBytes(this: WebSocket): number {
    return this.receiver === null ? 0 : this.receiver.assembler.heldBytes;
  }

  /** @internal An error of the connection that does not fail it: the core keeps the first, onError emits it. */
  reportError(this: WebSocket, err: Error): void {
    this.core.reportError(err);
  }

  /** @internal The transport is gone: the core reports it once (onClosed). */
  finish(this: WebSocket): void {
    this.core.transportClosed();
  }

  /** @internal The transport is gone (the core is CLOSED): settle every pending callback and emit 'close'. */
  onClosed(this: WebSocket, code: number, reason: string): void {
    closed(this, code, reason);
  }
}

/** @internal Puts ConnectionHandlers' methods on `target`'s prototype, as class methods are (non-enumerable). */
export function installHandlers(target: abstract new (...args: never[]) => ConnectionHandlers): void {
  const { constructor: _, ...methods } = Object.getOwnPropertyDescriptors(ConnectionHandlers.prototype);
  Object.defineProperties(target.prototype, methods);
}
