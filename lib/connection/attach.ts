/**
 * A WebSocket on its transport: attach() makes the Receiver (over the connection's core) and
 * the Sender, and listens to the transport with one set of functions for all connections (they
 * find the connection through the transport); the transport's end, error and close.
 */
import type { Buffer } from 'node:buffer';
import { WebSocketError } from '../protocol/errors';
import { Receiver } from './receiver';
import { Sender } from './sender';
import { Flag, type OwnedTransport, ignore, kConnection } from './connection-state';
import { channels as diagnostics, peerAddress } from './diagnostics';
import type { HandshakeResult, Transport } from './websocket-types';
import { arm } from './closing';
import { TURN_FRAMES, onData, peerLeft } from './inbound';
import { onDrain } from './outbound';
import { hookFrameDiagnostics, hookTaps } from './taps';
import type { WebSocket } from './websocket';

/** WebSocket.attach(): starts the connection on a transport whose opening handshake is done. */
export function attachTransport(ws: WebSocket, transport: Transport, head: Buffer | null, handshake: HandshakeResult): void {
  if (ws.transport !== null) throw new WebSocketError('WS_ERR_INVALID_STATE', 'already attached');
  ws.transport = transport;
  ws.protocol = handshake.protocol;
  ws.extensions = handshake.extensions;
  transport.setNoDelay?.(true);
  transport.setTimeout?.(0);
  const deflate = handshake.deflate;
  ws.receiver = new Receiver(
    ws.role,
    ws.options,
    ws,
    deflate === undefined ? undefined : { ...deflate.sides.inflate, maxConcurrency: deflate.options.maxConcurrency },
    ws.core,
  );
  // Fairness: at most TURN_FRAMES frames parsed per turn (renewed at each turn's end, see yieldTurn).
  ws.receiver.splitter.budget = TURN_FRAMES;
  const deflateSide = deflate?.sides.deflate ?? null;
  ws.sender = new Sender(
    transport,
    ws.role,
    ws.options,
    deflate === undefined || deflateSide === null ? undefined : { side: deflateSide, options: deflate.options },
  );
  hookTaps(ws);
  (transport as OwnedTransport)[kConnection] = ws;
  transport.on('data', transportData);
  transport.on('end', transportEnd);
  transport.on('close', transportClose);
  transport.on('error', transportError);
  transport.on('drain', transportDrain);
  ws.setFlag(Flag.Attached, true);
  if (ws.has(Flag.Timed)) {
    // Heartbeat and idle timeout run from now.
    const now = Date.now();
    ws.core.received(now);
    ws.core.sent(now);
    arm(ws);
  }
  if (diagnostics.frame.hasSubscribers) hookFrameDiagnostics(ws);
  if (diagnostics.open.hasSubscribers) {
    diagnostics.open.publish({ websocket: ws, role: ws.role, address: peerAddress(transport), protocol: ws.protocol, extensions: ws.extensions });
  }
  ws.emit('open');
  // Bytes that came with the handshake are parsed on the next tick, once the caller that
  // received this connection has attached its listeners (before any later socket data).
  if (head !== null && head.length > 0) process.nextTick(receiveHead, ws, head);
  // Writes queued while CONNECTING go out now, in order.
  const queued = ws.extras?.whenOpen ?? null;
  if (queued !== null) {
    ws.extras!.whenOpen = null;
    for (const task of queued) task();
  }
}

// The transport's listeners: one set of functions for all connections (`this` is the transport).
function transportData(this: OwnedTransport, chunk: Buffer): void {
  onData(this[kConnection]!, chunk);
}

function transportEnd(this: OwnedTransport): void {
  onEnd(this[kConnection]!);
}

function transportClose(this: OwnedTransport): void {
  onTransportClose(this[kConnection]!);
}

function transportError(this: OwnedTransport, err: Error): void {
  onTransportError(this[kConnection]!, err);
}

function transportDrain(this: OwnedTransport): void {
  onDrain(this[kConnection]!);
}

function receiveHead(ws: WebSocket, head: Buffer): void {
  onData(ws, head);
}

/** The transport is gone: its listeners go (an 'error' after a destroy must not be unhandled: one is left). */
export function detachTransport(ws: WebSocket): void {
  const transport = ws.transport;
  if (transport === null) return;
  transport.removeListener('data', transportData);
  transport.removeListener('drain', transportDrain);
  transport.removeListener('end', transportEnd);
  transport.removeListener('close', transportClose);
  transport.removeListener('error', transportError);
  transport.on('error', ignore);
}

function onEnd(ws: WebSocket): void {
  // The peer will send nothing more; finish our side too. What it sent is still being
  // inflated only if it closed properly (see peerLeft).
  peerLeft(ws);
  if (ws.transport !== null && !ws.transport.destroyed) ws.transport.end();
}

function onTransportError(ws: WebSocket, err: Error): void {
  // Once close frames went both ways the connection is closed cleanly (RFC 6455 §7.1.4); what
  // TCP does after that (a reset from a peer that hangs up with our bytes unread, as Autobahn's
  // server does) is not an error of the connection: the core decides.
  ws.core.transportError(err);
  ws.transport?.destroy();
}

function onTransportClose(ws: WebSocket): void {
  // permessage-deflate: frames received before the end are still being inflated (the peer
  // closed properly, see peerLeft); deliver them (whatever the reader's pace) before 'close'.
  if (peerLeft(ws)) {
    ws.more().afterInflate = () => ws.finish();
    ws.receiver!.resumeInflate();
    return;
  }
  ws.finish();
}
