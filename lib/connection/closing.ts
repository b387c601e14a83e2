/**
 * A WebSocket's closing and failing, as the adapter of its ConnectionCore: failConnection()
 * hands the error to the core (which reports it once and sends the close with its code), the
 * connection's one timer is armed at the core's deadline (heartbeat, idle timeout, close
 * timeout) and ticks the core, and the close the application asked for goes out from _final
 * once the writes before it are out. Functions of the connection (see connection-state.ts).
 */
import { checkCloseArgs } from '../protocol/close';
import { WebSocketError } from '../protocol/errors';
import { CoreState } from './connection-core';
import { Flag, type WriteCallback } from './connection-state';
import { channels as diagnostics } from './diagnostics';
import { ReadyState } from './websocket-types';
import { abortInboundStream, endReadable } from './inbound';
import { detachTransport } from './attach';
import type { WebSocket } from './websocket';

/** RFC 6455 §7.1.7: send a close frame with the error's code, then close the transport. */
export function failConnection(ws: WebSocket, err: WebSocketError): void {
  // The core reports the error (once), sends the close frame with its code (which 'close'
  // reports, unless the peer's close came first), and ends our side of the transport.
  ws.core.fail(err, Date.now());
  // Everything the peer sends from now on is discarded (the receiver keeps this first error
  // and reads nothing after it), so that nothing reports it a second time.
  ws.receiver?.splitter.fail(err);
  abortInboundStream(ws, err);
  endReadable(ws);
  arm(ws);
}

/**
 * Arms the connection's one timer at the core's deadline (heartbeat, idle timeout, close
 * timeout), unless it is armed for that time or earlier already: when it fires, the core's
 * tick() does what is due and the timer is armed again for the next deadline. Traffic only
 * moves deadlines later, so it never re-arms the timer: one armed early costs one early wake-up.
 */
export function arm(ws: WebSocket): void {
  const core = ws.core;
  const now = Date.now();
  // A close timeout started by the peer's close (the receiver passes no time) runs from now.
  core.settle(now);
  const at = core.deadline;
  if (at === Infinity) {
    disarm(ws);
    return;
  }
  const extras = ws.more();
  if (extras.timer !== null) {
    if (extras.timerAt <= at) return;
    clearTimeout(extras.timer);
  }
  extras.timerAt = at;
  extras.timer = setTimeout(onTimer, Math.max(0, at - now), ws);
  extras.timer.unref?.();
}

/** Stops the connection's timer (nothing is due: the connection is closed, or nothing is timed). */
export function disarm(ws: WebSocket): void {
  const extras = ws.extras;
  if (extras === null || extras.timer === null) return;
  clearTimeout(extras.timer);
  extras.timer = null;
  extras.timerAt = Infinity;
}

/** The timer fired: the core does what is due at this time, and the timer is armed for the next deadline. */
function onTimer(ws: WebSocket): void {
  const extras = ws.extras!;
  extras.timer = null;
  extras.timerAt = Infinity;
  const core = ws.core;
  const closeSent = core.closeSent;
  // (While reading is held, the core takes the peer's silence for nothing: its pong may be waiting.)
  core.tick(Date.now());
  // The idle timeout closed: as after close(), the writable side ends (_final has nothing left to send).
  if (!closeSent && core.closeSent && !ws.writableEnded) ws.end();
  arm(ws);
}

/** Stops the timer that answers the peer's close for a reader that stopped reading (see peerClosed). */
export function clearAnswerTimer(ws: WebSocket): void {
  const extras = ws.extras;
  if (extras === null || extras.answerTimer === null) return;
  clearTimeout(extras.answerTimer);
  extras.answerTimer = null;
}

/** WebSocket.close(): the close is sent from _final (finalClose), after the writes queued before it. */
export function closeConnection(ws: WebSocket, code: number | undefined, reason: string | undefined): void {
  const invalid = checkCloseArgs(code, reason);
  if (invalid !== null) throw invalid;
  if (ws.state === ReadyState.CLOSED || ws.core.closeSent || (ws.extras !== null && ws.extras.closePending !== null)) return;
  if (ws.state === ReadyState.CONNECTING) {
    // Asynchronously, so that listeners added right after close() still hear 'close'.
    process.nextTick(() => ws.abortHandshake(new WebSocketError('WS_ERR_INVALID_STATE', 'closed before the connection was established')));
    ws.transport?.destroy();
    return;
  }
  ws.options.topicHost?.beforeSend(ws);
  ws.more().closePending = { code, reason };
  // CLOSING, and the close timeout runs; _final sends the close once the writes queued are out.
  ws.core.beginClose(Date.now());
  arm(ws);
  ws.end();
}

/** The Writable's _final(): every write before it is out, so the close goes now (the core decides which). */
export function finalClose(ws: WebSocket, callback: WriteCallback): void {
  const extras = ws.extras;
  const close = extras === null ? null : extras.closePending;
  if (extras !== null) extras.closePending = null;
  const core = ws.core;
  if (!core.closeSent && ws.has(Flag.Attached) && core.state !== CoreState.Closed) {
    const now = Date.now();
    core.beginClose(now);
    // close() gave a code and reason. Ended without close() (end(), or pipe() at its source's
    // end): after the peer's close, the echo of its code; before it, a close without a code.
    try {
      if (close === null && core.closeReceived) core.answerClose(now);
      else core.close(close?.code, close?.reason, now);
    } catch (err) {
      callback(err as Error);
      return;
    } finally {
      arm(ws);
    }
  }
  callback();
}

/** The transport is gone (the core is CLOSED): settle every pending callback, end the taps, emit 'close'. */
export function closed(ws: WebSocket, code: number, reason: string): void {
  disarm(ws);
  clearAnswerTimer(ws);
  // permessage-deflate: free zlib's memory (nothing more will be sent or delivered).
  ws.receiver?.destroy();
  ws.sender?.destroy();
  detachTransport(ws);
  // Settle every write still waiting: it can no longer be sent.
  // Writes whose bytes are in the transport already: nothing more will come of them.
  const extras = ws.extras;
  // Sends waiting for a streamed message to end: settled (refused) below.
  const waiting = ws.core.takeWaiting();
  if (extras === null) for (const task of waiting) task();
  else {
    const drainWaiters = extras.drainWaiters;
    extras.drainWaiters = null;
    if (drainWaiters !== null) for (const callback of drainWaiters) callback();
    const pending = [...(extras.whenOpen ?? []), ...waiting];
    extras.whenOpen = null;
    for (const task of pending) task();
    if (extras.tapPoints !== null) {
      for (const direction of [extras.tapPoints.in, extras.tapPoints.out]) {
        direction.bytes.end();
        direction.frames.end();
        direction.messages.end();
      }
    }
    // A message being streamed in cannot end normally any more (the error only made then: an
    // Error's stack trace costs more than the rest of a close).
    if (extras.inboundStream !== null) {
      abortInboundStream(ws, new WebSocketError('WS_ERR_CONNECTION_LOST', 'connection closed in the middle of a message'));
    }
  }
  // Messages already received stay readable: the readable side ends, nothing is destroyed.
  endReadable(ws);
  // Without a closing handshake or a failure of ours, 1006 (the core's default).
  if (diagnostics.close.hasSubscribers) diagnostics.close.publish({ websocket: ws, code, reason });
  ws.emit('close', code, reason);
}
