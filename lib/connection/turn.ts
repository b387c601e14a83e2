/**
 * Fairness between connections: libuv hands a readable socket up to 32 reads (64 KiB each) in
 * one go, so a peer sending thousands of tiny frames per read (a flood of 1-byte fragments)
 * would hold the event loop for tens of milliseconds per turn, and every other connection would
 * wait. After a chunk that took longer than TURN_MS, reading from that connection pauses until
 * the next turn (setImmediate, ReadHold.Turn): each connection gets about one read per turn
 * while it is expensive. Bulk transfers (large frames) and ordinary traffic never take this
 * path. Used by the WebSocket's inbound path (inbound.ts) and by the proxy's relay, for each of
 * its sides (lib/proxy/relay.ts).
 */
import { performance } from 'node:perf_hooks';
import { type ConnectionCore, ReadHold } from './connection-core';

/** Chunks at least this large are timed (a 16 KiB chunk holds at most about 2 300 frames). */
const TIMED_CHUNK = 16 * 1024;
/** A chunk whose handling took longer than this (ms) ends the connection's turn. */
const TURN_MS = 1;

/**
 * The clock reading to pass to endTurnIfLong once a chunk of `length` bytes is handled; 0 for a
 * small chunk, which cannot hold many frames and is not timed.
 */
export function turnClock(length: number): number {
  return length >= TIMED_CHUNK ? performance.now() : 0;
}

/** Ends `core`'s turn (ReadHold.Turn until the next turn of the event loop) when the chunk timed from `started` took long. */
export function endTurnIfLong(core: ConnectionCore, started: number): void {
  if (started === 0 || performance.now() - started <= TURN_MS) return;
  if ((core.holds & ReadHold.Turn) !== 0) return;
  core.hold(ReadHold.Turn);
  setImmediate(endTurn, core);
}

function endTurn(core: ConnectionCore): void {
  core.release(ReadHold.Turn);
}
