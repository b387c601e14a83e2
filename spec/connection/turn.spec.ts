/**
 * Fairness between connections (lib/connection/turn.ts): what a connection's reads took within
 * one turn of the event loop adds up, and once it passes TURN_MS (1 ms) in a busy turn (all
 * connections' reads over LOOP_MS) reading is held until the next turn. The reads are simulated by the clock readings passed in (a read that started
 * 0.6 ms ago), never by waiting.
 */
import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import { ConnectionCore, type ConnectionCoreHandler, ReadHold } from '../../lib/connection/connection-core';
import { LOOP_MS, endTurnIfLong, turnClock } from '../../lib/connection/turn';

function core(): { core: ConnectionCore; reading: boolean[] } {
  const reading: boolean[] = [];
  const handler: ConnectionCoreHandler = {
    onMessage: () => undefined,
    onPing: () => undefined,
    onPong: () => undefined,
    onPeerClose: () => false,
    sendFrame: () => undefined,
    onError: () => undefined,
    endTransport: () => undefined,
    destroyTransport: () => undefined,
    setReading: (on) => reading.push(on),
    onClosed: () => undefined,
    unsentBytes: () => 0,
    assemblingBytes: () => 0,
  };
  return { core: new ConnectionCore('server', { closeTimeout: 1000 }, handler, 0), reading };
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Makes this turn busy: another connection's reads took LOOP_MS. */
function busyTurn(): void {
  endTurnIfLong(core().core, performance.now() - LOOP_MS);
}

describe('connection/turn: fairness between connections', () => {
  it('small reads are not timed', () => {
    expect(turnClock(16 * 1024 - 1)).to.equal(0);
    expect(turnClock(16 * 1024)).to.be.greaterThan(0);
  });

  it('a lone connection is not held while the turn\'s reads took under LOOP_MS (spec first: held after 1 ms)', async () => {
    await nextTurn();
    const { core: c, reading } = core();
    endTurnIfLong(c, performance.now() - 3);
    expect(c.holds & ReadHold.Turn).to.equal(0);
    expect(reading).to.deep.equal([]);
  });

  it('in a busy turn (all reads over LOOP_MS), one read that took over 1 ms holds reading until the next turn', async () => {
    await nextTurn();
    busyTurn();
    const { core: c, reading } = core();
    endTurnIfLong(c, performance.now() - 1.5);
    expect(c.holds & ReadHold.Turn).to.equal(ReadHold.Turn);
    expect(reading).to.deep.equal([false]);
    await nextTurn();
    expect(c.holds & ReadHold.Turn).to.equal(0);
    expect(reading).to.deep.equal([false, true]);
  });

  it('in a busy turn, reads under 1 ms each that together pass it hold reading; the count starts again at the next turn', async () => {
    await nextTurn();
    busyTurn();
    const { core: c, reading } = core();
    endTurnIfLong(c, performance.now() - 0.55);
    endTurnIfLong(c, performance.now() - 0.55);
    expect(c.holds & ReadHold.Turn).to.equal(ReadHold.Turn);
    await nextTurn();
    expect(reading).to.deep.equal([false, true]);
    // A new turn: one read under 1 ms does not hold.
    await nextTurn();
    busyTurn();
    endTurnIfLong(c, performance.now() - 0.3);
    expect(c.holds & ReadHold.Turn).to.equal(0);
    // Nor does one in the turn after (what the last turn took is not carried over).
    await nextTurn();
    busyTurn();
    endTurnIfLong(c, performance.now() - 0.3);
    expect(c.holds & ReadHold.Turn).to.equal(0);
  });

  it('what one connection took does not count for another', async () => {
    await nextTurn();
    busyTurn();
    const a = core();
    const b = core();
    endTurnIfLong(a.core, performance.now() - 0.55);
    endTurnIfLong(b.core, performance.now() - 0.55);
    expect(a.core.holds & ReadHold.Turn).to.equal(0);
    expect(b.core.holds & ReadHold.Turn).to.equal(0);
  });
});
