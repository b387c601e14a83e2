/**
 * Fairness between connections (lib/connection/turn.ts): what a connection's reads took within
 * one turn of the event loop adds up, and once it passes TURN_MS (1 ms) in a busy turn (all
 * connections' reads over LOOP_MS) turnTookLong says that connection's turn ends (its reading
 * held until the next turn: inbound.ts and lib/proxy/turns.ts, specified with them). The reads are simulated by the clock readings passed in (a read that started
 * 0.6 ms ago), never by waiting.
 */
import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import { ConnectionCore, type ConnectionCoreHandler } from '../../lib/connection/connection-core';
import { LOOP_BYTES, LOOP_MS, TURN_BYTES, TURN_FRAMES, framesSpent, readTooMuch, renewsFrameBudget, turnClock, turnTookLong } from '../../lib/connection/turn';

function core(): { core: ConnectionCore } {
  const handler: ConnectionCoreHandler = {
    onMessage: () => undefined,
    onPing: () => undefined,
    onPong: () => undefined,
    onPeerClose: () => false,
    sendFrame: () => undefined,
    onError: () => undefined,
    endTransport: () => undefined,
    destroyTransport: () => undefined,
    setReading: () => undefined,
    onClosed: () => undefined,
    unsentBytes: () => 0,
    assemblingBytes: () => 0,
  };
  return { core: new ConnectionCore('server', { closeTimeout: 1000 }, handler, 0) };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Makes this turn busy: another connection's reads took LOOP_MS. */
function busyTurn(): void {
  turnTookLong(core().core, performance.now() - LOOP_MS);
}

describe('connection/turn: fairness between connections', () => {
  it('small reads are not timed', () => {
    expect(turnClock(16 * 1024 - 1)).to.equal(0);
    expect(turnClock(16 * 1024)).to.be.greaterThan(0);
  });

  it('a lone connection\'s turn does not end while the turn\'s reads took under LOOP_MS (spec first: ended after 1 ms)', async () => {
    await nextTurn();
    const { core: c } = core();
    expect(turnTookLong(c, performance.now() - 3)).to.equal(false);
  });

  it('in a busy turn (all reads over LOOP_MS), one read that took over 1 ms ends the connection\'s turn', async () => {
    await nextTurn();
    busyTurn();
    const { core: c } = core();
    expect(turnTookLong(c, performance.now() - 1.5)).to.equal(true);
  });

  it('in a busy turn, reads under 1 ms each that together pass it end the turn; the count starts again at the next turn', async () => {
    await nextTurn();
    busyTurn();
    const { core: c } = core();
    expect(turnTookLong(c, performance.now() - 0.55)).to.equal(false);
    expect(turnTookLong(c, performance.now() - 0.55)).to.equal(true);
    // A new turn: one read under 1 ms does not end it.
    await nextTurn();
    busyTurn();
    expect(turnTookLong(c, performance.now() - 0.3)).to.equal(false);
    // Nor does one in the turn after (what the last turn took is not carried over).
    await nextTurn();
    busyTurn();
    expect(turnTookLong(c, performance.now() - 0.3)).to.equal(false);
  });

  it('what one connection took does not count for another', async () => {
    await nextTurn();
    busyTurn();
    const a = core();
    const b = core();
    expect(turnTookLong(a.core, performance.now() - 0.55)).to.equal(false);
    expect(turnTookLong(b.core, performance.now() - 0.55)).to.equal(false);
  });

  it('a small read is not timed: turnClock gives 0 and turnTookLong counts nothing for it', async () => {
    await nextTurn();
    busyTurn();
    const { core: c } = core();
    expect(turnTookLong(c, turnClock(1024))).to.equal(false);
    expect(c.turnTook).to.equal(0);
  });

  it('renewsFrameBudget: once turns are counted (a chunk left half the budget or less: framesSpent), true for a connection\'s first chunk in a later turn than its last renewal, false for the next ones; each connection for itself', async () => {
    await nextTurn();
    const a = core();
    const b = core();
    // A new connection's first chunk.
    expect(renewsFrameBudget(a.core)).to.equal(true);
    expect(renewsFrameBudget(b.core)).to.equal(true);
    // Half the budget left after a chunk: turns are counted from now on; this turn renews no more.
    framesSpent(TURN_FRAMES / 2);
    expect(renewsFrameBudget(a.core)).to.equal(false);
    await nextTurn();
    expect(renewsFrameBudget(a.core)).to.equal(true);
    expect(renewsFrameBudget(a.core)).to.equal(false);
    expect(renewsFrameBudget(b.core)).to.equal(true);
  });

  it('readTooMuch counts a connection\'s bytes up to TURN_BYTES only: one that never yields keeps a small count, and the rule says the same (spec first: 3 GiB counted)', async () => {
    // A turn of its own (turns counted: what earlier specs read this turn is not counted here).
    framesSpent(0);
    await nextTurn();
    const { core: c } = core();
    // A lone connection's turn: under LOOP_BYTES, however much it read since it last yielded.
    expect(readTooMuch(c, TURN_BYTES - 1)).to.equal(false);
    expect(c.turnBytes).to.equal(TURN_BYTES - 1);
    expect(readTooMuch(c, 1)).to.equal(false);
    for (let i = 0; i < 3; i++) readTooMuch(c, 1 << 30);
    expect(c.turnBytes).to.equal(TURN_BYTES);
    // This turn read over LOOP_BYTES in all: the connection has read TURN_BYTES, so it yields.
    expect(readTooMuch(c, 1)).to.equal(true);
    // Once it yielded (the caller resets the count), it reads TURN_BYTES again first.
    c.turnBytes = 0;
    expect(readTooMuch(c, TURN_BYTES / 2)).to.equal(false);
    expect(readTooMuch(c, TURN_BYTES / 2)).to.equal(true);
    expect(LOOP_BYTES).to.be.greaterThan(TURN_BYTES);
  });

  it('renewsFrameBudget: while every chunk left more than half the budget, nothing counts turns and nothing is renewed', async () => {
    await nextTurn();
    const a = core();
    expect(renewsFrameBudget(a.core)).to.equal(true);
    for (let i = 0; i < 4; i++) {
      framesSpent(TURN_FRAMES / 2 + 1);
      await nextTurn();
      expect(renewsFrameBudget(a.core)).to.equal(false);
    }
  });
});
