/**
 * Fairness between connections: libuv hands a readable socket up to 32 reads (64 KiB each) in
 * one go, so a peer sending thousands of tiny frames per read (a flood of 1-byte fragments)
 * would hold the event loop for tens of milliseconds per turn, and every other connection would
 * wait. Once a connection's reads took longer than TURN_MS within one turn of the event loop
 * (one long read, or several shorter ones: a read handled quickly still adds up over 32 of
 * them), reading from it pauses until the next turn (setImmediate, ReadHold.Turn): each
 * connection gets about TURN_MS of reading per turn while it is expensive. Bulk transfers
 * (large frames) and ordinary traffic never take this path. Used by the WebSocket's inbound
 * path (inbound.ts) and by each side of the proxy's relayed connections (lib/proxy/turns.ts),
 * which both also bound the bytes (readTooMuch) and the frames (TURN_FRAMES) of a turn.
 */
import { performance } from 'node:perf_hooks';
import type { ConnectionCore } from './connection-core';
import type { FrameSplitterCore } from '../stages/frame-splitter';

/** Chunks at least this large are timed (a 16 KiB chunk holds at most about 2 300 frames). */
const TIMED_CHUNK = 16 * 1024;
/** Reads that took longer than this (ms) together within one turn end the connection's turn. */
const TURN_MS = 1;
/**
 * What all connections' reads took in one turn (ms) before TURN_MS applies: a lone busy
 * connection (an echo of 16 KiB messages: 32 reads of 64 KiB, 4 ms) is not held back, which cost
 * it a sixth of its rate; many busy ones are, each after its TURN_MS.
 */
export const LOOP_MS = 5;
/**
 * The byte and time rules count turns once the turn's reads reached 1/COUNT_FROM of LOOP_BYTES
 * or LOOP_MS; what earlier, uncounted turns read stays under that, so the rules apply at most
 * that much early (never to a lone connection: 2 MiB per turn and 1/16 of 4 MiB).
 */
export const COUNT_FROM = 16;
let loopTook = 0;
let loopTookTurn = -1;

/**
 * True when a chunk of `length` bytes lies inside the payload of the frame `splitter` has under
 * way (the reads of a large message): it ends no frame, it is one piece, however large. Such a
 * chunk is not timed (the time rule is for chunks of many frames): a WebSocket's inbound path
 * and the proxy's sides pass 0 to turnTookLong for it (a WebSocket does not cork for it either:
 * nothing answers a piece).
 */
export function insidePayload(splitter: FrameSplitterCore, length: number): boolean {
  return splitter.bytesToBoundary > length;
}

/**
 * The clock reading to pass to turnTookLong once a chunk of `length` bytes is handled; 0 for a
 * small chunk, which cannot hold many frames and is not timed.
 */
export function turnClock(length: number): number {
  return length >= TIMED_CHUNK ? performance.now() : 0;
}

/**
 * The turn of the event loop, counted only while some rule needs turns told apart (countTurns):
 * a setImmediate in every turn in which a connection read cost an extra pass of the event loop
 * per turn, 3 to 5 % of the CPU of an echo of 64-byte messages with one in flight. So turns are
 * counted only once a rule's count has come near its limit (half the frame budget: framesSpent;
 * 1/COUNT_FROM of the turn's bytes or time), and until then a count may include earlier turns'
 * share, less than the rule's limit by a wide margin.
 */
let turn = 0;
let counting = false;

/** Counts the turns from now on, until the next turn: a setImmediate, once per turn at most. */
function countTurns(): void {
  if (counting) return;
  counting = true;
  setImmediate(nextTurn);
}

function nextTurn(): void {
  turn++;
  counting = false;
}

/**
 * Bytes all connections together parse in one turn of the event loop before a WebSocket's byte
 * budget (TURN_BYTES, inbound.ts) applies: one busy connection alone is not held back (a yield
 * every 64 KiB, a readStop/readStart and a turn each, cost a lone bulk transfer up to half its
 * rate); many busy ones are, each after its share. Twice the most one socket reads in a turn
 * (libuv reads a readable socket up to 32 times, Node 64 KiB each: 2 MiB), so that a lone
 * connection never reaches it: at 1 MiB, a one-way transfer of 16 MiB messages yielded every
 * MiB and lost about a tenth of its rate.
 */
export const LOOP_BYTES = 4 * 1024 * 1024;
let loopBytes = 0;
let loopBytesTurn = -1;

/** Bytes a connection reads before it yields its turn, however fast, once the turn is busy (see readTooMuch). */
export const TURN_BYTES = 64 * 1024;

/**
 * Frames (or pieces of frames) a connection parses per turn, however cheap: a WebSocket's
 * receiver (inbound.ts, yieldTurn) and each side of a relayed connection (lib/proxy/turns.ts)
 * stop there, and the rest of their input waits for the next turn.
 */
export const TURN_FRAMES = 1024;

/**
 * True when `core`'s connection, about to parse a chunk, gets its frame budget (TURN_FRAMES)
 * renewed: at its first chunk in a turn after the one where it last did, once turns are counted.
 * Turns are counted once a chunk (or a turn's held input) left half the budget or less
 * (framesSpent), so a connection that parses fewer than TURN_FRAMES frames per turn never runs
 * out, however many of them a read holds. (Renewed only when the connection yielded, a lone
 * bulk transfer, a piece or two of a frame per read, used it up over many turns and yielded
 * every 1 024 pieces: a readStop/readStart and a turn for nobody.)
 */
export function renewsFrameBudget(core: ConnectionCore): boolean {
  if (core.framesTurnOf === turn) return false;
  core.framesTurnOf = turn;
  return true;
}

/**
 * A chunk (or a turn's held input) was parsed, and `left` of the frame budget is left: at half
 * of it or less, turns are counted, so that the connection's first chunk in the next turn renews
 * it (renewsFrameBudget). (Counted only when a chunk began with half of it spent, three quarters
 * of the budget a turn in one read ran out every other turn.)
 */
export function framesSpent(left: number): void {
  if (left <= TURN_FRAMES / 2) countTurns();
}

/**
 * Counts a chunk of `length` bytes that `core`'s connection read: true once it has read
 * TURN_BYTES since its turn last ended (core.turnBytes, reset by the caller when it does) and this
 * turn's reads of all connections reached LOOP_BYTES. Every chunk is counted toward the turn.
 */
export function readTooMuch(core: ConnectionCore, length: number): boolean {
  if (loopBytesTurn !== turn) {
    loopBytesTurn = turn;
    loopBytes = 0;
  }
  loopBytes += length;
  if (loopBytes >= LOOP_BYTES / COUNT_FROM) countTurns();
  // Kept at most TURN_BYTES (what the rule compares): a connection that never yields would
  // otherwise count past 2^31, and its core's field would turn from a small integer to a double.
  const bytes = core.turnBytes + length;
  core.turnBytes = bytes < TURN_BYTES ? bytes : TURN_BYTES;
  return bytes >= TURN_BYTES && loopBytes >= LOOP_BYTES;
}

/**
 * Adds what the chunk timed from `started` took to what `core`'s reads took in this turn of the
 * event loop; true once that is over TURN_MS and the turn's reads (all connections') took over
 * LOOP_MS (the caller ends `core`'s turn).
 */
export function turnTookLong(core: ConnectionCore, started: number): boolean {
  if (started === 0) return false;
  const took = performance.now() - started;
  if (core.turnOf !== turn) {
    core.turnOf = turn;
    core.turnTook = 0;
  }
  core.turnTook += took;
  if (loopTookTurn !== turn) {
    loopTookTurn = turn;
    loopTook = 0;
  }
  loopTook += took;
  if (loopTook >= LOOP_MS / COUNT_FROM) countTurns();
  return core.turnTook > TURN_MS && loopTook > LOOP_MS;
}
