/**
 * A WebSocket's inbound path: bytes from the transport into the Receiver (onData), the
 * messages it delivers into the readable side (pushOrPause, or a MessageReadable per streamed
 * message), and reading from the transport held and released (the memory budget, replies
 * waiting, inflation, full readers: the core's ReadHold bits; while inflating, a bounded
 * read-ahead, so that a peer leaving is seen). Functions of the connection, which
 * keeps the state (see connection-state.ts).
 */
import { Buffer } from 'node:buffer';
import { Duplex, type Readable } from '../stages/streams';
import type { MessagePiece } from '../stages/fragment-assembler';
import { MessageReadable } from '../stages/message-stream';
import { emitIfFlowing } from '../stages/stage';
import { Defaults } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import type { Message } from '../protocol/frame';
import type { Receiver } from './receiver';
import { channels as diagnostics } from './diagnostics';
import { Flag, unreadSize } from './connection-state';
import { CoreState, ReadHold } from './connection-core';
import { TURN_FRAMES, framesSpent, insidePayload, readTooMuch, renewsFrameBudget, turnClock, turnTookLong } from './turn';
import { arm, clearAnswerTimer, failConnection } from './closing';
import { offerInbound, inboundTapsBlocked } from './taps';
import type { WebSocket } from './websocket';

export function onData(ws: WebSocket, chunk: Buffer): void {
  const receiver = ws.receiver!;
  if (receiver.error !== null) return;
  if (ws.has(Flag.Timed)) ws.core.received(Date.now());
  // permessage-deflate: while frames are being inflated, what comes is kept aside, unparsed
  // (a bounded read-ahead, see ConnectionCore.readAhead), so that a peer leaving right behind
  // them is seen (abandonInflation).
  if (ws.core.readingAhead) {
    keepAside(ws, chunk);
    return;
  }
  parse(ws, receiver, chunk);
}

/** Parses `chunk`, or (null) what the splitter held back at the end of the last turn (see yieldTurn). */
function parse(ws: WebSocket, receiver: Receiver, chunk: Buffer | null): void {
  // Server role: the unmasker works in place, so a bytes tap gets a copy of the wire bytes.
  if (chunk !== null && ws.tapPoints !== null && ws.tapPoints.in.bytes.active) {
    offerInbound(ws, ws.tapPoints.in.bytes, ws.role === 'server' ? Buffer.from(chunk) : chunk);
  }
  // Everything sent while this chunk is processed (pongs, close echoes, and the messages that
  // synchronous 'message' listeners send back) leaves in one writev instead of one write each.
  const transport = ws.transport!;
  // A chunk that lies inside the payload of the frame under way (the reads of a large message)
  // ends no frame: it is neither timed nor corked (see insidePayload).
  const inside = chunk !== null && insidePayload(receiver.splitter, chunk.length);
  // A large chunk is timed: one that kept the event loop long (thousands of tiny frames) ends
  // this connection's turn (see yieldTurn and turn.ts). A small one cannot hold many frames: not timed.
  const started = chunk === null || inside ? 0 : turnClock(chunk.length);
  // The frame budget is per turn (renewed in a later turn once half spent, see turn.ts). A chunk
  // that comes while reading is held (from a transport that does not honor pause(), or kept
  // aside while inflating) with the budget spent renews it too: what the splitter holds back
  // stays bounded.
  if (chunk !== null && (renewsFrameBudget(ws.core) || receiver.splitter.budget <= 0)) receiver.splitter.budget = TURN_FRAMES;
  // Counted before parsing: what the 'message' listeners do with this chunk is not its size.
  const tooMuch = chunk !== null && readTooMuch(ws.core, chunk.length);
  if (!inside) transport.cork();
  ws.setFlag(Flag.Parsing, true);
  let err: WebSocketError | null;
  try {
    err = chunk === null ? receiver.resumeParsing() : receiver.write(chunk);
  } finally {
    // Also when a listener threw (its exception goes on to whoever emitted the chunk): a
    // transport left corked would hold every later write of this connection.
    ws.setFlag(Flag.Parsing, false);
    if (!inside) transport.uncork();
  }
  if (err !== null) {
    failConnection(ws, err);
    return;
  }
  framesSpent(receiver.splitter.budget);
  if (
    tooMuch ||
    receiver.splitter.budget <= 0 ||
    turnTookLong(ws.core, started)
  ) {
    yieldTurn(ws);
  }
  // permessage-deflate: frames still being inflated; read nothing more until they are through.
  if (receiver.busy) ws.core.hold(ReadHold.Inflate);
  ws.core.checkBudget();
  ws.options.heldBytesObserver?.heldBytesChanged(ws);
}

/** Frames (or pieces of frames) a connection parses per turn (turn.ts); the rest of its input waits for the next (see yieldTurn). */
export { TURN_FRAMES };

/**
 * Fairness: libuv hands a readable socket up to 32 reads (64 KiB each) in one go, so a peer
 * sending thousands of tiny frames per read (a flood of 1-byte fragments) would hold the event
 * loop for tens of milliseconds per turn, and every other connection would wait. Once its reads
 * took longer than TURN_MS within one turn (turn.ts, the rule the proxy's sides follow too),
 * reading from this connection pauses until the next turn (setImmediate): each connection gets
 * about one read per turn while it is expensive.
 *
 * Cheap chunks add up too: 100 peers sending large messages (to an echo nobody reads) have
 * libuv read 32 x 64 KiB from each in one turn, hundreds of milliseconds before the event loop
 * comes back to a timer or to a connection that just became readable. So once the turn's reads
 * (all connections') reached LOOP_BYTES (turn.ts, 4 MiB), a connection also yields when it has
 * read TURN_BYTES (turn.ts) since its last turn ended: a busy turn reads at most about TURN_BYTES (and
 * the one read that comes as reading pauses) from each connection. A lone bulk transfer never yields: libuv
 * reads at most 2 MiB from one socket in a turn, half of LOOP_BYTES.
 *
 * And one read is not cut short by the time rule: 64 KiB of 1-byte fragments are 9 000 frames,
 * milliseconds each read, and 50 such peers make turns of hundreds of ms. So the receiver's
 * splitter hands on at most TURN_FRAMES frames per turn (its budget): it stops in the middle of
 * a chunk, holds the rest, and the connection yields; the next turn renews the budget and parses
 * what was held (before anything read later: reading stays held until it is through).
 */
function yieldTurn(ws: WebSocket): void {
  if ((ws.core.holds & ReadHold.Turn) !== 0) return;
  ws.core.hold(ReadHold.Turn);
  setImmediate(endTurn, ws);
}

function endTurn(ws: WebSocket): void {
  ws.core.turnBytes = 0;
  const receiver = ws.receiver;
  if (receiver !== null) {
    const stalled = receiver.splitter.stalled;
    receiver.splitter.budget = TURN_FRAMES;
    if (stalled && receiver.error === null && ws.transport !== null && ws.core.state !== CoreState.Closed) {
      // What the splitter held back goes first, reading still held; if it uses up the budget
      // again, the turn ends again.
      parse(ws, receiver, null);
      if (receiver.splitter.budget <= 0 && receiver.error === null) {
        setImmediate(endTurn, ws);
        return;
      }
    }
  }
  ws.core.release(ReadHold.Turn);
}

/** Received bytes left a buffer (the application read them). */
export function consumed(ws: WebSocket, bytes: number): void {
  ws.core.unread(-bytes);
  ws.options.heldBytesObserver?.heldBytesChanged(ws);
}

/**
 * Pushes into a readable. What stays buffered counts as unread (a value handed to a 'data'
 * listener at once does not), against the memory budget. A full reader does not pause the
 * transport by itself: reading goes on, so that pings and the peer's close are still read and
 * answered, until the unread data reach the memory budget (see ConnectionCore.checkBudget). That bounds
 * what a connection holds for a reader that does not read; TCP slows the peer from there.
 * Once our close is sent, data that would take the connection past its budget are discarded:
 * the application chose to close, and only the peer's close is still awaited.
 */
export function pushOrPause(ws: WebSocket, readable: Readable | Duplex, value: Buffer | string | MessageReadable): void {
  if (emitIfFlowing(readable, value)) return;
  const size = unreadSize(value);
  if (ws.core.discards(size)) return;
  const before = readable.readableLength;
  readable.push(value);
  if (readable.readableLength > before) ws.core.unread(size);
}

/** A reader asks for more (_read, a MessageReadable, a tap): a full reader no longer holds reading. */
export function resumeTransport(ws: WebSocket): void {
  if (ws.tapPoints !== null && inboundTapsBlocked(ws)) return;
  const core = ws.core;
  if ((core.holds & ReadHold.Replies) !== 0 || (core.holds & ReadHold.Reader) === 0 || ws.transport === null) return;
  // Released first: what resumeInflate() delivers may fill the reader and hold it again.
  core.release(ReadHold.Reader);
  ws.receiver?.resumeInflate();
}

/** Ends the writable side: _final answers the peer's close after the writes queued (or sends the application's close). */
export function answerPeerClose(ws: WebSocket): void {
  clearAnswerTimer(ws);
  if (!ws.writableEnded) ws.end();
}

/**
 * Ends a message being streamed in with an error. Destroyed with the error when someone
 * listens for it (pipeline(), for await, an 'error' listener); otherwise destroyed without
 * one (its consumer sees 'close' without 'end'), so that the process never crashes on it.
 */
export function abortInboundStream(ws: WebSocket, err: WebSocketError): void {
  const stream = ws.extras?.inboundStream ?? null;
  if (stream === null) return;
  ws.extras!.inboundStream = null;
  stream.destroy(stream.listenerCount('error') > 0 ? err : undefined);
}

export function endReadable(ws: WebSocket): void {
  if (ws.has(Flag.ReadableDone)) return;
  ws.setFlag(Flag.ReadableDone, true);
  ws.push(null);
}

/** permessage-deflate: bytes read while frames are being inflated wait here, in order. */
function keepAside(ws: WebSocket, chunk: Buffer): void {
  (ws.more().readAhead ??= []).push(chunk);
  ws.core.readAhead(chunk.length);
  ws.options.heldBytesObserver?.heldBytesChanged(ws);
}

/** Takes what was kept aside (null for nothing); it no longer counts as read ahead. */
function takeKeptAside(ws: WebSocket): Buffer[] | null {
  const kept = ws.extras?.readAhead ?? null;
  if (kept === null) return null;
  ws.extras!.readAhead = null;
  let bytes = 0;
  for (const chunk of kept) bytes += chunk.length;
  ws.core.readAhead(-bytes);
  return kept;
}

/**
 * permessage-deflate: everything received has been inflated and delivered. What was read
 * meanwhile is parsed now, in order (a chunk that starts inflating again has the rest kept
 * aside again); after the transport closed, the connection finishes.
 */
export function inflateIdle(ws: WebSocket): void {
  const then = ws.extras?.afterInflate ?? null;
  if (then !== null) {
    ws.extras!.afterInflate = null;
    then();
    return;
  }
  const kept = takeKeptAside(ws);
  ws.core.release(ReadHold.Inflate);
  if (kept !== null) for (const chunk of kept) onData(ws, chunk);
}

/**
 * The peer has left (FIN, reset, the transport closed) while its frames wait to be inflated;
 * what was kept aside is parsed now (nothing more will come). If the peer's close frame waits
 * behind them, it closed properly: they are inflated and delivered as usual (returns true
 * while that goes on). If not, it left without closing (a bomb's sender that left): nobody is
 * there to answer them, so the inflation stops at once, zlib and the inflated part are freed,
 * and 'close' reports 1006 without an error, as for a peer that leaves in the middle of a message.
 */
export function peerLeft(ws: WebSocket): boolean {
  const receiver = ws.receiver;
  if (receiver === null || !ws.core.readingAhead || receiver.error !== null) return false;
  const kept = takeKeptAside(ws);
  // Nothing more will come: all of it is parsed now, whatever the turn's budget (TURN_FRAMES).
  receiver.splitter.budget = Infinity;
  if (kept !== null) for (const chunk of kept) if (receiver.error === null) parse(ws, receiver, chunk);
  if (receiver.error !== null) return false;
  if (!ws.core.closeReceived && receiver.inflater!.closeQueued) return true;
  receiver.abort(new WebSocketError('WS_ERR_CONNECTION_LOST', 'the peer left while its messages were being inflated'));
  ws.core.release(ReadHold.Inflate);
  ws.options.heldBytesObserver?.heldBytesChanged(ws);
  return false;
}

/** A whole data message: to taps and diagnostics, then to the readable side. */
export function deliverMessage(ws: WebSocket, message: Message): void {
  if (ws.tapPoints !== null) offerInbound(ws, ws.tapPoints.in.messages, message);
  const value = message.binary ? message.data : message.data.toString('utf8');
  if (diagnostics.message.hasSubscribers) diagnostics.message.publish({ websocket: ws, data: value, binary: message.binary });
  pushOrPause(ws, ws, value);
}

/** A piece of a streamed message: the first makes its MessageReadable, pushed to the readable side. */
export function deliverPiece(ws: WebSocket, piece: MessagePiece): void {
  if (ws.core.closeReceived) return;
  if (ws.tapPoints !== null) offerInbound(ws, ws.tapPoints.in.messages, piece);
  const extras = ws.more();
  if (piece.first) {
    extras.inboundStream = new MessageReadable(
      piece.binary,
      () => resumeTransport(ws),
      undefined,
      (bytes: number) => consumed(ws, bytes),
    );
    pushOrPause(ws, ws, extras.inboundStream);
  }
  const stream = extras.inboundStream!;
  if (piece.data.length > 0) pushOrPause(ws, stream, piece.data);
  if (piece.last) {
    stream.push(null);
    extras.inboundStream = null;
  }
}

/** The peer's close: the readable side ends; returns true when the answer waits (see the comments). */
export function peerClosed(ws: WebSocket): boolean {
  // The close timeout runs from now (also when the close comes later, from the inflater).
  arm(ws);
  endReadable(ws);
  if (ws.core.closeSent) return false;
  // Writes accepted before the peer's close still go out, then our close: _final sends it
  // (the application's own close if it called close(), else the echo of the peer's code).
  // RFC 6455 §5.5.1 lets an endpoint send what it has before its close. So do the replies to
  // messages the peer sent before its close that a reader (pipe(), a paused 'data' listener,
  // for await) has not read yet: the answer waits for the reader's 'end' (closeTimeout still
  // bounds the wait). Not behind a message streamed out, which may never end: the core
  // echoes at once, cutting it off. A connection nobody reads is answered at once.
  if (ws.core.outboundOwner === null) {
    if (ws.readableLength > 0 && ws.readableFlowing !== null && !ws.writableEnded) {
      ws.once('end', () => answerPeerClose(ws));
      // A reader that stopped for good must not hang the handshake: half of closeTimeout
      // later the close is answered anyway (what it has not read stays readable).
      const extras = ws.more();
      extras.answerTimer = setTimeout(() => answerPeerClose(ws), (ws.options.closeTimeout ?? Defaults.closeTimeout) / 2);
      extras.answerTimer.unref?.();
      return true;
    }
    if (ws.writableLength > 0) {
      answerPeerClose(ws);
      return true;
    }
  }
  // The core echoes the close right after this call.
  return false;
}

// ----- The 'message' event: fed by a 'data' listener while anyone listens for it -----

/** The connection's 'newListener' listener: a 'message' listener puts the stream in flowing mode, as a 'data' listener does. */
export function onNewListener(this: WebSocket, event: string | symbol): void {
  if (event === 'message' && this.listenerCount('message') === 0) this.on('data', emitMessage);
}

/**
 * Listeners were removed: with the last 'message' listener goes the 'data' listener that fed
 * it, so that a 'message' listener added later is not fed twice.
 */
export function messageListenersGone(ws: WebSocket): void {
  if (ws.listenerCount('message') === 0) Duplex.prototype.removeListener.call(ws, 'data', emitMessage);
}

function emitMessage(this: WebSocket, value: string | Buffer | MessageReadable): void {
  if (value instanceof MessageReadable) this.emit('message', value, value.binary);
  else this.emit('message', value, typeof value !== 'string');
}
