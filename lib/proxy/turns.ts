/**
 * Fairness between the proxy's sides (issue #21): each side of a relayed connection follows the
 * rules of a WebSocket's inbound path (lib/connection/inbound.ts, turn.ts), so that connections
 * flooding the proxy (tiny frames, pings, large messages to an echo nobody reads) do not hold
 * the event loop for the others:
 *
 * - frames: a side relays at most TURN_FRAMES frames (or pieces of frames) per turn of the event
 *   loop, however cheap. The relay stops at the frame boundary where the budget ran out
 *   (Side.relayChunk, Side.turnFrames); the rest of the chunk waits here (Side.waiting),
 *   with whatever the socket still hands on meanwhile (the read that comes as it pauses, or
 *   everything from a socket that does not honor pause()), in order.
 * - bytes: once the turn's reads of all connections reached LOOP_BYTES, a side yields after
 *   TURN_BYTES (readTooMuch): otherwise each of 200 busy sides would read 32 x 64 KiB per turn.
 * - time: a side whose reads took over TURN_MS in a turn whose reads took over LOOP_MS yields
 *   (turnTookLong).
 *
 * A side that yields holds reading (ReadHold.Turn on its core: the relay pauses its socket, see
 * updateFlow in relay.ts) until its next turn, when its budgets are renewed and what waits is
 * relayed first, reading still held; if that uses up the budget again, it yields again.
 *
 * Its next turn is not always the event loop's next: with the rules above alone, each busy side
 * still got one 64 KiB read or 1 024 frames per turn of the event loop, so 40 ping flooders (and
 * their pongs) or 200 sides of slow readers made turns of 50 to 300 ms. Sides that yielded wait
 * in line, and each turn of the event loop gives SIDES_PER_TURN of them theirs (round robin,
 * in the order they yielded); the byte rule then applies to those whatever the turn read in all
 * (Side.crowded), since the turn no longer reads enough to reach LOOP_BYTES.
 */
import type { Buffer } from 'node:buffer';
import { ReadHold } from '../connection/connection-core';
import { TURN_BYTES, TURN_FRAMES, framesSpent, insidePayload, readTooMuch, renewsFrameBudget, turnClock, turnTookLong } from '../connection/turn';
import type { Side } from './side';

/**
 * Sides whose turn ended get their next one in the order they yielded, at most SIDES_PER_TURN
 * of them per turn of the event loop (round robin); the others stay held until theirs. Each one
 * relays up to TURN_FRAMES frames and about TURN_BYTES in its turn: 4 x 1 024 pings (about 1 µs
 * each, relayed) make turns of a few milliseconds, however many sides flood.
 */
export const SIDES_PER_TURN = 4;

/** Sides held until their next turn, in the order they yielded (queue[head] first). */
let queue: Side[] = [];
let head = 0;
let scheduled = false;

/** A chunk `side` read: relayed now as far as its turn allows, or after what waits already, in order. */
export function received(side: Side, chunk: Buffer): void {
  // Counted before relaying: every read counts toward the turn's bytes. A side that got its
  // turn from a crowded queue yields after TURN_BYTES, however few bytes the turn read so far.
  const tooMuch = readTooMuch(side.core, chunk.length) || (side.crowded && side.core.turnBytes >= TURN_BYTES);
  if (side.waiting !== null) {
    // Its turn has ended already (yieldTurn): this waits too.
    wait(side, chunk);
    return;
  }
  // The frame budget is per turn: renewed in a later turn once half spent.
  if (renewsFrameBudget(side.core)) side.turnFrames = TURN_FRAMES;
  // (A chunk inside the payload of the frame under way, a piece of a large frame, is not timed.)
  const started = insidePayload(side.splitter, chunk.length) ? 0 : turnClock(chunk.length);
  const at = side.relayFrom(chunk);
  framesSpent(side.turnFrames);
  if (at < chunk.length) wait(side, at === 0 ? chunk : chunk.subarray(at));
  if (at < chunk.length || tooMuch || turnTookLong(side.core, started)) yieldTurn(side);
}

/**
 * `side`'s socket has closed: nothing more comes, so what waits is relayed now, whatever the
 * turn's budget (a close frame in it is relayed as a close, not taken for the side leaving
 * without one).
 */
export function relayAllWaiting(side: Side): void {
  if (side.waiting === null) return;
  side.turnFrames = Infinity;
  relayWaiting(side);
}

function wait(side: Side, bytes: Buffer): void {
  (side.waiting ??= []).push(bytes);
  side.waitingBytes += bytes.length;
}

function yieldTurn(side: Side): void {
  if ((side.core.holds & ReadHold.Turn) !== 0) return;
  side.core.hold(ReadHold.Turn);
  side.crowded = false;
  side.yields++;
  if (side.busyTimer === null) watchBusy(side);
  queue.push(side);
  schedule();
}

/**
 * A side that keeps using up its turns reads behind a backlog: if its peer left, its FIN comes
 * after the backlog, which a round robin of many flooders relays in seconds. So it is probed as
 * a paused side is (Side.probeNow, every pausedPingInterval) while it keeps yielding: a peer that
 * left answers the ping with a reset, and the socket closes at once, its backlog dropped. The
 * timer stops after an interval without a yield.
 */
function watchBusy(side: Side): void {
  if (!Number.isFinite(side.probeInterval)) return;
  let seen = side.yields;
  const timer = setInterval(() => {
    if (side.yields === seen || side.closed) {
      clearInterval(timer);
      side.busyTimer = null;
      return;
    }
    seen = side.yields;
    side.probeNow();
  }, side.probeInterval);
  timer.unref();
  side.busyTimer = timer;
}

function schedule(): void {
  if (scheduled || head === queue.length) return;
  scheduled = true;
  setImmediate(nextTurns);
}

/** Once per turn of the event loop: the first SIDES_PER_TURN sides in line get their turn. */
function nextTurns(): void {
  scheduled = false;
  const end = Math.min(queue.length, head + SIDES_PER_TURN);
  // More sides wait than get a turn: the byte rule applies to them whatever the turn read.
  const crowded = queue.length - head > SIDES_PER_TURN;
  const now = queue.slice(head, end);
  head = end;
  if (head === queue.length) {
    queue = [];
    head = 0;
  } else if (head > 1024 && head * 2 > queue.length) {
    queue = queue.slice(head);
    head = 0;
  }
  for (const side of now) endTurn(side, crowded);
  schedule();
}

function endTurn(side: Side, crowded: boolean): void {
  side.core.turnBytes = 0;
  side.turnFrames = TURN_FRAMES;
  const relayed = side.waiting === null || relayWaiting(side);
  framesSpent(side.turnFrames);
  if (!relayed) {
    // The budget ran out again: reading stays held, and the side goes back in line.
    queue.push(side);
    return;
  }
  side.crowded = crowded;
  side.core.release(ReadHold.Turn);
}

/** Relays what waits, in order, as far as the turn's budget allows; true once none waits. */
function relayWaiting(side: Side): boolean {
  const waiting = side.waiting!;
  side.waiting = null;
  side.waitingBytes = 0;
  for (let i = 0; i < waiting.length; i++) {
    // (A side that failed relays nothing more: what waits is dropped.)
    if (!side.reading) return true;
    const chunk = waiting[i]!;
    const at = side.relayFrom(chunk);
    if (at < chunk.length) {
      wait(side, at === 0 ? chunk : chunk.subarray(at));
      for (let j = i + 1; j < waiting.length; j++) wait(side, waiting[j]!);
      return false;
    }
  }
  return true;
}
