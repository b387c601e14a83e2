/**
 * A WebSocket's outbound path: write() and send() (a fast path straight to the Sender when the
 * Writable holds nothing, see sendableAtOnce), the Writable's _write/_writev (dispatch, in
 * order with pre-framed fan-out bytes), streamed messages (MessageWritable parts, one message
 * owning the data side at a time), control frames, 'drain' and write callbacks. Functions of the
 * connection, which keeps the state (see connection-state.ts).
 */
import { Buffer } from 'node:buffer';
import type { MessagePiece } from '../stages/fragment-assembler';
import type { MessageWritable, PartSink } from '../stages/message-stream';
import { writableIdle } from '../stages/stage';
import { writableState } from '../stages/stream-internals';
import { Opcode } from '../protocol/constants';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import { type OutboundMessage, toMessage } from '../stages/message-framer';
import { type Frame, type Message, makeFrame } from '../protocol/frame';
import { ReadyState } from './websocket-types';
import { CoreState, ReadHold } from './connection-core';
import { type ControlCallback, Flag, PreFramed, SentAhead, type WriteCallback } from './connection-state';
import { failConnection } from './closing';
import type { WebSocket } from './websocket';

export function sendControlForm(
  ws: WebSocket,
  opcode: Opcode,
  payload: string | Buffer | ControlCallback | undefined,
  mask: boolean | ControlCallback | undefined,
  callback: ControlCallback | undefined,
): void {
  const cb = typeof payload === 'function' ? payload : typeof mask === 'function' ? mask : callback;
  const data = typeof payload === 'function' || payload === undefined ? Buffer.alloc(0) : payload;
  if (cb === undefined) {
    sendControl(ws, opcode, data);
    return;
  }
  if ((typeof data === 'string' ? Buffer.byteLength(data) : data.length) > 125) {
    throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'control payload over 125 bytes');
  }
  let flowing: boolean;
  try {
    flowing = sendControl(ws, opcode, data);
  } catch (err) {
    process.nextTick(cb, err as Error);
    return;
  }
  afterSend(ws, flowing, (err) => process.nextTick(cb, err ?? null));
}

/** _writev of messages and pre-framed bytes mixed: each run in turn, the next once the one before is out. */
export function dispatchInOrder(ws: WebSocket, items: Array<Message | PreFramed>, from: number, callback: WriteCallback): void {
  if (from >= items.length) {
    callback();
    return;
  }
  const first = items[from]!;
  let to = from + 1;
  const next = (err?: Error | null): void => (err ? callback(err) : dispatchInOrder(ws, items, to, callback));
  if (first instanceof PreFramed) {
    whenSendable(ws, null, () => sendPreFramed(ws, first, next));
    return;
  }
  while (to < items.length && !(items[to] instanceof PreFramed)) to++;
  if (from === 0 && to === items.length) dispatch(ws, items as Message[], callback);
  else dispatch(ws, items.slice(from, to) as Message[], next);
}

/** Writes pre-framed bytes that waited in the Writable (see sendFrameBytes). */
export function sendPreFramed(ws: WebSocket, chunk: PreFramed, callback: WriteCallback): void {
  ws.queuedBytes -= chunk.bytes;
  const refused = cannotSend(ws);
  if (refused !== null) {
    chunk.error = refused;
    callback();
    maybeBytesDrain(ws);
    return;
  }
  const tapped = chunk.tapped;
  let flowing = takesMore(ws, ws.sender!.sendBytes(chunk.buffers, tapped === null ? null : tapped.map((t) => t.frame)));
  if (tapped !== null && ws.tapPoints !== null) for (const t of tapped) if (!ws.tapPoints.out.messages.offer(t.message)) flowing = false;
  afterSend(ws, flowing, callback);
}

/** Runs `send` once the connection is open and no streamed message holds the outbound side. */
export function whenSendable(ws: WebSocket, owner: MessageWritable | null, send: () => void): void {
  if (ws.state === ReadyState.CONNECTING) {
    (ws.more().whenOpen ??= []).push(() => whenSendable(ws, owner, send));
    return;
  }
  ws.core.whenSendable(owner, send);
}

/**
 * Whether a write without a callback may skip the Writable's machinery (the write request,
 * the dispatch closure, the callback's tick) and go to the sender at once: true when that
 * machinery would do the same at once. The writable side holds nothing and is not corked,
 * ending or failed, nor owes a 'drain' (and its mark is over one message, so that this write
 * alone would not make write() return false); the connection is open, no streamed message
 * holds the outbound side and no send waits for one; no tap watches (taps may hold the
 * writer); nothing waits to be compressed.
 */
export function sendableAtOnce(ws: WebSocket): boolean {
  // (The core is OPEN before attach() too: no sender yet then.)
  const core = ws.core;
  if (core.state !== CoreState.Open || core.closeSent || ws.sender === null || !writableIdle(ws)) return false;
  const w = writableState(ws);
  if (w.needDrain || w.highWaterMark <= 1) return false;
  if (core.outboundOwner !== null || core.sendsWaiting) return false;
  const extras = ws.extras;
  if (extras !== null && (extras.whenOpen !== null || extras.tapPoints !== null)) return false;
  return !ws.sender.pending;
}

/**
 * The fast path of write() (see sendableAtOnce): sends `message` now. Most often the socket
 * took it with room to spare, and the write is done: nothing is left to call back. When the
 * socket is full, or zlib still has the message, the usual path would keep the write in
 * progress until 'drain' (or until the message is out), and later writes queue behind it; so
 * the Writable is handed a write that only waits for that (SentAhead), and counts it as the
 * usual path would. A message the sender refuses is dropped and its error reported as 'error'
 * (its writer gave no callback to hear why). Returns what the usual path's super.write() would
 * (write() then applies the byte mark to either).
 */
export function sendAtOnce(ws: WebSocket, message: Message): boolean {
  const sender = ws.sender!;
  let flowing = false;
  let refused = false;
  try {
    flowing = takesMore(ws, sender.sendMessage(message));
  } catch (err) {
    // Its writer gave no callback to hear why: 'error' does (as for the usual path, see refuse()).
    refused = true;
    ws.reportError(err as Error);
  }
  // (writableIdle again: whatever the transport ran while writing may have corked or ended this stream.)
  if (!refused && (!flowing || sender.pending) && writableIdle(ws)) return ws.queue(new SentAhead(flowing));
  maybeBytesDrain(ws);
  return true;
}

/**
 * Whether the transport takes more now, after a write to it that returned `wrote`. Its write()
 * returns false at its own highWaterMark, 16 KiB for a net.Socket or a tls.TLSSocket: less than
 * one message of that size, so waiting for its 'drain' each time held every such message for a
 * turn and sent it through the Writable's queue (an echo of 16 KiB messages on 16 connections
 * at half of ws's rate). The connection goes by its own mark in bytes instead: sends go on while
 * bufferedAmount (the transport's bytes included) is under writableBytesMark (1 MiB by default),
 * and wait for the transport's 'drain' from there.
 */
function takesMore(ws: WebSocket, wrote: boolean): boolean {
  return wrote || ws.bufferedAmount < ws.writableBytesMark;
}

export function dispatch(ws: WebSocket, messages: Message[], callback: WriteCallback): void {
  whenSendable(ws, null, () => sendNow(ws, messages, callback));
}

/** Why nothing more can be sent, or null. */
export function cannotSend(ws: WebSocket): WebSocketError | null {
  if (ws.core.closeSent || ws.sender === null || ws.state === ReadyState.CLOSED) {
    return new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[ws.state]}`);
  }
  return null;
}

export function sendNow(ws: WebSocket, messages: Message[], callback: WriteCallback): void {
  let bytes = 0;
  for (const m of messages) bytes += m.data.length;
  ws.queuedBytes -= bytes;
  const refused = cannotSend(ws);
  if (refused !== null) {
    refuse(ws, messages, refused, callback);
    return;
  }
  let flowing: boolean;
  try {
    flowing = takesMore(ws, messages.length === 1 ? ws.sender!.sendMessage(messages[0]!) : ws.sender!.sendMessages(messages));
  } catch (err) {
    // The sender refused (not the connection's state): a writer's callback hears of it through
    // `unsent`, and 'error' too, as a Writable reports a failed write both ways.
    ws.reportError(err as Error);
    refuse(ws, messages, err as Error, callback);
    return;
  }
  if (ws.tapPoints !== null) {
    for (const m of messages) if (!ws.tapPoints.out.messages.offer(m)) flowing = false;
  }
  // permessage-deflate: the write is done once its compressed frames are on the socket.
  if (ws.sender!.pending) {
    ws.sender!.whenSent((err, nowFlowing) =>
      err !== null ? refuse(ws, messages, err, callback) : afterSend(ws, flowing && takesMore(ws, nowFlowing), callback),
    );
  } else {
    afterSend(ws, flowing, callback);
  }
}

/**
 * A write whose message sendAtOnce() sent already: done once it is out of zlib and the socket
 * has room, as for sendNow(). (Its writer gave no callback, so an error of zlib's is the
 * connection's to report, as it is for the usual path; refuse() only records it.)
 */
export function settle(ws: WebSocket, flowing: boolean, callback: WriteCallback): void {
  if (ws.sender!.pending) {
    ws.sender!.whenSent((err, nowFlowing) => (err !== null ? refuse(ws, [], err, callback) : afterSend(ws, flowing && takesMore(ws, nowFlowing), callback)));
  } else {
    afterSend(ws, flowing, callback);
  }
}

/** Records why `messages` were not sent (for their writers' callbacks), and lets the stream go on. */
export function refuse(ws: WebSocket, messages: Message[], err: Error, callback: WriteCallback): void {
  const unsent = (ws.more().unsent ??= new WeakMap());
  for (const m of messages) unsent.set(m, err);
  callback();
  maybeBytesDrain(ws);
}

/** Emits 'drain' once bytes held back a writer (see write()) and bufferedAmount is under the mark again. */
export function maybeBytesDrain(ws: WebSocket): void {
  if (!ws.has(Flag.NeedBytesDrain) || ws.bufferedAmount >= ws.writableBytesMark) return;
  ws.setFlag(Flag.NeedBytesDrain, false);
  process.nextTick(() => ws.emit('drain'));
}

/** Calls back now, or once the transport has drained. */
export function afterSend(ws: WebSocket, flowing: boolean, callback: WriteCallback): void {
  if (flowing) callback();
  else (ws.more().drainWaiters ??= []).push(callback);
  maybeBytesDrain(ws);
}

/** The MessageWritable side (made per message stream): one part of a streamed message. */
export function partSink(ws: WebSocket): PartSink {
  return {
    sendPart: (owner, data, fin, callback) => sendPart(ws, owner, data, fin, callback),
    abortPart: (owner, cause) => abortPart(ws, owner, cause),
  };
}

/**
 * A MessageWritable destroyed before its end. Begun on the wire, its message can only end by
 * failing the connection (RFC 6455 §7.1.7): close 1011, one 'error' whose cause is the
 * stream's. Not begun: the outbound side is simply given back.
 */
export function abortPart(ws: WebSocket, owner: MessageWritable, cause: Error | null): void {
  const open = ws.core.outboundOwner === owner;
  releaseOutbound(ws, owner);
  if (!open || !owner.started || ws.state === ReadyState.CLOSED) return;
  const detail = cause === null ? 'the message stream was destroyed' : cause.message;
  failConnection(ws, new WebSocketError('WS_ERR_MESSAGE_ABORTED', detail, { cause }));
}

export function sendPart(ws: WebSocket, owner: MessageWritable, data: Buffer, fin: boolean, callback: WriteCallback): void {
  if (!owner.started) ws.options.topicHost?.beforeSend(ws);
  whenSendable(ws, owner, () => {
    const refused = cannotSend(ws);
    if (refused !== null) {
      releaseOutbound(ws, owner);
      callback(refused);
      return;
    }
    ws.core.claim(owner);
    let flowing: boolean;
    try {
      flowing = takesMore(ws, ws.sender!.sendPart(data, owner.binary, fin));
    } catch (err) {
      releaseOutbound(ws, owner);
      callback(err as Error);
      return;
    }
    if (fin) releaseOutbound(ws, owner);
    if (ws.tapPoints !== null) {
      const piece: MessagePiece = { binary: owner.binary, data, first: !owner.started, last: fin };
      if (!ws.tapPoints.out.messages.offer(piece)) flowing = false;
    }
    owner.started = true;
    if (ws.sender!.pending) {
      ws.sender!.whenSent((err, nowFlowing) => (err !== null ? callback(err) : afterSend(ws, flowing && takesMore(ws, nowFlowing), callback)));
    } else {
      afterSend(ws, flowing, callback);
    }
  });
}

/** The streamed message of `owner` has ended (or failed): let waiting sends go. */
export function releaseOutbound(ws: WebSocket, owner: MessageWritable): void {
  ws.core.finish(owner);
}

export function onDrain(ws: WebSocket): void {
  ws.core.release(ReadHold.Replies);
  if ((ws.core.holds & ReadHold.Budget) !== 0) ws.core.checkBudget();
  const waiters = ws.extras?.drainWaiters ?? null;
  if (waiters !== null) {
    ws.extras!.drainWaiters = null;
    for (const callback of waiters) callback();
  }
  maybeBytesDrain(ws);
}

/** Sends a control frame now; returns whether the transport still has room. */
export function sendControl(ws: WebSocket, opcode: Opcode, payload: string | Buffer): boolean {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  if (data.length > 125) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'control payload over 125 bytes');
  if (ws.state !== ReadyState.OPEN || ws.sender === null) {
    throw new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[ws.state]}`);
  }
  return ws.sender.sendFrame(makeFrame(opcode, data));
}

/** WebSocket.write(): refused (closing, over maxBufferedAmount), sent at once (sendAtOnce), or queued in the Writable. */
export function writeMessage(ws: WebSocket, chunk: OutboundMessage, a: BufferEncoding | WriteCallback | undefined, b: WriteCallback | undefined): boolean {
  const message = toMessage(chunk);
  const callback = typeof a === 'function' ? a : b;
  if (isWebSocketError(message)) {
    process.nextTick(() => {
      callback?.(message);
      ws.reportError(message);
    });
    return false;
  }
  // After the peer's close, writes are still taken while its answer waits for the reader (see onPeerClose).
  const core = ws.core;
  if (core.closeSent || (core.state >= CoreState.Closing && (!core.answerPending || ws.writableEnded))) {
    const err = new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[ws.state]}`);
    process.nextTick(() => callback?.(err));
    return false;
  }
  const limit = ws.options.maxBufferedAmount;
  if (limit !== undefined && ws.bufferedAmount + message.data.length > limit) {
    const err = new WebSocketError('WS_ERR_BUFFER_FULL', `bufferedAmount would exceed ${limit} bytes`);
    process.nextTick(() => callback?.(err));
    if (ws.options.outboundOverflow !== 'drop') {
      // The peer does not read: a close frame would not get through either.
      failConnection(ws, err);
      ws.transport?.destroy();
    }
    return false;
  }
  if (ws.has(Flag.Timed)) ws.core.sent(Date.now());
  // Fan-out: frames published to this connection earlier in this turn go first.
  ws.options.topicHost?.beforeSend(ws);
  let flowing: boolean;
  if (a === undefined && b === undefined && sendableAtOnce(ws)) {
    flowing = sendAtOnce(ws, message);
  } else {
    ws.queuedBytes += message.data.length;
    flowing =
      callback === undefined
        ? ws.queue(message)
        : ws.queue(message, (err?: Error | null) => callback(err ?? ws.extras?.unsent?.get(message) ?? null));
  }
  // Sent from a 'message' listener: reported with the rest of the chunk, once it is parsed.
  if (!ws.has(Flag.Parsing)) ws.options.heldBytesObserver?.heldBytesChanged(ws);
  if (flowing && ws.bufferedAmount >= ws.writableBytesMark) {
    // Held back by bytes, not by message count: our own 'drain' follows (maybeBytesDrain).
    ws.setFlag(Flag.NeedBytesDrain, true);
    return false;
  }
  return flowing;
}

/** WebSocket.sendFrameBytes() (fan-out): at once when nothing waits, else behind the queued writes (PreFramed). */
export function sendFrameBytes(
  ws: WebSocket,
  buffers: readonly Buffer[],
  bytes: number,
  onRoom: WriteCallback,
  tapped?: () => Array<{ frame: Frame; message: Message }>,
): boolean {
  if (ws.core.closeSent || ws.state !== ReadyState.OPEN) {
    const err = new WebSocketError('WS_ERR_INVALID_STATE', `readyState is ${ReadyState[ws.state]}`);
    process.nextTick(onRoom, err);
    return false;
  }
  if (sendableAtOnce(ws)) {
    const flowing = ws.sender!.sendBytes(buffers);
    if (!flowing) (ws.more().drainWaiters ??= []).push(onRoom);
    return flowing;
  }
  const chunk = new PreFramed(buffers, bytes, ws.tapPoints === null || tapped === undefined ? null : tapped());
  ws.queuedBytes += bytes;
  ws.queue(chunk, (err?: Error | null) => onRoom(err ?? chunk.error));
  return false;
}

/** The Writable's _write(): a queued message, pre-framed bytes, or a fast-path write settling. */
export function writeOne(ws: WebSocket, message: Message | SentAhead | PreFramed, callback: WriteCallback): void {
  if (message instanceof SentAhead) settle(ws, message.flowing, callback);
  else if (message instanceof PreFramed) whenSendable(ws, null, () => sendPreFramed(ws, message, callback));
  else dispatch(ws, [message], callback);
}

/** The Writable's _writev(): the queued messages in one batch (pre-framed bytes in their place). */
export function writeMany(ws: WebSocket, chunks: Array<{ chunk: Message | PreFramed }>, callback: WriteCallback): void {
  dispatchInOrder(ws, 
    chunks.map((c) => c.chunk),
    0,
    callback,
  );
}

/** The core's frame (pong, close, heartbeat ping) to the Sender now. */
export function sendReply(ws: WebSocket, frame: Frame): void {
  // A peer that sends pings (or anything that needs an answer) but does not read would have
  // us queue answers without end: stop reading from it until the answers have drained.
  const flowing = ws.sender === null || ws.sender.sendFrame(frame);
  if (!flowing && frame.opcode !== Opcode.Ping) ws.core.hold(ReadHold.Replies);
}
