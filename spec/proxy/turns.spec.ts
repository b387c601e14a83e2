/**
 * Fairness between the proxy's sides (lib/proxy/turns.ts): within one turn of the event loop a
 * side relays at most TURN_FRAMES frames (the rest of its chunk waits, in order, for the next
 * turns) and, once the turn is busy (LOOP_BYTES), at most about TURN_BYTES, as a WebSocket's
 * inbound path does (spec/connection/websocket.spec.ts); sides whose turn ended get their next
 * one in the order they yielded, SIDES_PER_TURN per turn of the event loop (round robin).
 *
 * The relay runs between two stand-in sockets: what it writes is recorded, its pause() and
 * resume() too, and reads come by emit('data') as a socket's would, so each case sees the
 * mechanism (what was relayed in a turn, whether reading is held) without timing anything.
 */
import { expect } from 'chai';
import { Opcode } from '../../lib';
import { TURN_FRAMES } from '../../lib/connection/inbound';
import { COUNT_FROM, LOOP_BYTES, TURN_BYTES } from '../../lib/connection/turn';
import type { ProxyConnection } from '../../lib/proxy/relay';
import { SIDES_PER_TURN } from '../../lib/proxy/turns';
import { clientClose, clientFrame, closeOf, decodeFrames, DecodedFrame, wireFrame } from '../helpers/frames';
import { immediatesOver } from '../helpers/immediates';
import { clockReadings } from '../helpers/clock';
import { StandInSocket, relayBetween } from '../helpers/transports';

/** A stand-in socket that also keeps what is written, to decode it. */
class RecordingSocket extends StandInSocket {
  readonly chunks: Buffer[] = [];
  override write(chunk: Buffer): boolean {
    this.chunks.push(Buffer.from(chunk));
    return super.write(chunk);
  }
  /** The frames written so far. */
  frames(): DecodedFrame[] {
    return decodeFrames(Buffer.concat(this.chunks)).frames;
  }
}

/** A relayed connection between two stand-in sockets, both read from (after the relay's first turn). */
async function pair(options: { pausedPingInterval?: number } = {}): Promise<{ conn: ProxyConnection; client: RecordingSocket; upstream: RecordingSocket }> {
  const client = new RecordingSocket();
  const upstream = new RecordingSocket();
  const conn = relayBetween(client, upstream, options);
  await nextTurn();
  expect(client.reading).to.equal(true);
  return { conn, client, upstream };
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** `count` masked text messages '0', '1', ... as one chunk. */
function numbered(count: number, from = 0): Buffer {
  return Buffer.concat(Array.from({ length: count }, (_, i) => clientFrame(Opcode.Text, String(from + i))));
}

const texts = (frames: DecodedFrame[]): string[] => frames.map((f) => f.payload.toString());
const range = (count: number): string[] => Array.from({ length: count }, (_, i) => String(i));

describe('proxy turns (fairness between sides)', () => {
  it('a side relays at most TURN_FRAMES frames per turn: the rest of a chunk of thousands of small messages waits, in order, for the next turns, its reading held meanwhile', async () => {
    const { conn, client, upstream } = await pair();
    const count = 3 * TURN_FRAMES + 10;
    client.emit('data', numbered(count));
    // This turn: TURN_FRAMES of them, and reading is held until the next.
    expect(upstream.frames().length).to.equal(TURN_FRAMES);
    expect(client.reading).to.equal(false);
    let turns = 0;
    while (upstream.frames().length < count && turns < 10) {
      await nextTurn();
      turns++;
      expect(upstream.frames().length).to.be.at.most((turns + 1) * TURN_FRAMES);
    }
    expect(texts(upstream.frames())).to.deep.equal(range(count));
    expect(turns).to.equal(3);
    await nextTurn();
    expect(client.reading).to.equal(true);
    expect(conn.frames.upstream).to.equal(count);
    conn.close();
  });

  it('the frame budget is per turn: a side that relays fewer than TURN_FRAMES frames in each turn never yields, however many turns it reads', async () => {
    // (Spec first: renewed only when the side yielded, it yielded after TURN_FRAMES frames in all.
    // With three quarters of the budget a turn in one read, renewed only in a turn after one
    // that began with half of it spent, it ran out every other turn.)
    for (const [perTurn, reads] of [[TURN_FRAMES / 4, TURN_FRAMES / 4], [(3 * TURN_FRAMES) / 4, 1]] as const) {
      const { conn, client, upstream } = await pair();
      const turns = 8;
      const each = perTurn / reads;
      for (let turn = 0; turn < turns; turn++) {
        for (let i = 0; i < reads; i++) client.emit('data', numbered(each, turn * perTurn + i * each));
        expect(client.reading).to.equal(true);
        await nextTurn();
      }
      expect(texts(upstream.frames())).to.deep.equal(range(perTurn * turns));
      expect(client.reading).to.equal(true);
      conn.close();
    }
  });

  it('telling turns apart costs a side that relays a few small frames a turn no setImmediate per turn (one every several turns at most)', async () => {
    // (Spec first: one setImmediate in every turn in which a side read.)
    const { conn, client, upstream } = await pair();
    const turns = 64;
    const perTurn = 64;
    const scheduled = await immediatesOver(turns, (turn) => {
      for (let i = 0; i < perTurn; i++) client.emit('data', numbered(1, turn * perTurn + i));
    });
    expect(texts(upstream.frames())).to.deep.equal(range(turns * perTurn));
    expect(scheduled).to.be.at.most(turns / 4);
    expect(client.reading).to.equal(true);
    conn.close();
  });

  it('what comes while the rest of a chunk waits (a socket that does not honor pause()) is relayed after it, in order', async () => {
    const { conn, client, upstream } = await pair();
    const count = 2 * TURN_FRAMES;
    client.emit('data', numbered(count));
    client.emit('data', numbered(10, count));
    expect(upstream.frames().length).to.equal(TURN_FRAMES);
    for (let turns = 0; turns < 10 && upstream.frames().length < count + 10; turns++) await nextTurn();
    expect(texts(upstream.frames())).to.deep.equal(range(count + 10));
    conn.close();
  });

  it('pieces and control frames count too, each way: a flood of pings from the upstream is relayed TURN_FRAMES per turn', async () => {
    const { conn, client, upstream } = await pair();
    const count = 2 * TURN_FRAMES + 5;
    const pings = Array.from({ length: count }, (_, i) => wireFrame({ opcode: Opcode.Ping, payload: String(i), mask: null }));
    upstream.emit('data', Buffer.concat(pings));
    expect(client.frames().length).to.equal(TURN_FRAMES);
    expect(upstream.reading).to.equal(false);
    for (let turns = 0; turns < 10 && client.frames().length < count; turns++) await nextTurn();
    expect(texts(client.frames())).to.deep.equal(range(count));
    await nextTurn();
    expect(upstream.reading).to.equal(true);
    conn.close();
  });

  it('a side whose socket closes with the rest of a chunk waiting: the rest is relayed first, so that a close frame in it is relayed as a close', async () => {
    const { conn, client, upstream } = await pair();
    client.emit('data', Buffer.concat([numbered(TURN_FRAMES + 1), clientClose(4000, 'bye')]));
    expect(upstream.frames().length).to.equal(TURN_FRAMES);
    const closed = new Promise((resolve) => conn.once('close', resolve));
    client.destroy();
    // (The stand-in emits 'close' at the next tick: before the next turn.)
    await new Promise((resolve) => process.nextTick(resolve));
    await new Promise((resolve) => process.nextTick(resolve));
    const frames = upstream.frames();
    expect(texts(frames.slice(0, TURN_FRAMES + 1))).to.deep.equal(range(TURN_FRAMES + 1));
    expect(frames[TURN_FRAMES + 1]!.opcode).to.equal(Opcode.Close);
    expect(closeOf(frames[TURN_FRAMES + 1]!).code).to.equal(4000);
    upstream.destroy();
    await closed;
  });

  it("once the turn's reads reach LOOP_BYTES, a side yields its turn after TURN_BYTES however cheap the chunks (a large frame relayed in pieces); the pause ends at the next turn", async () => {
    const { conn, client } = await pair();
    // One 2 MiB binary frame, read 8 KiB at a time (under the size whose relaying is timed):
    // only the byte rule can end the turn.
    const READ = 8 * 1024;
    const stream = clientFrame(Opcode.Binary, Buffer.alloc(2 * LOOP_BYTES, 0x61));
    let fed = 0;
    while (client.reading && fed < stream.length) {
      client.emit('data', stream.subarray(fed, fed + READ));
      fed += READ;
    }
    expect(client.pauses).to.equal(1);
    // Earlier turns, which nobody counted, may have read up to LOOP_BYTES / COUNT_FROM (turn.ts).
    expect(fed).to.be.within(LOOP_BYTES - LOOP_BYTES / COUNT_FROM, LOOP_BYTES + READ);
    await nextTurn();
    expect(client.reading).to.equal(true);
    while (fed < stream.length) {
      client.emit('data', stream.subarray(fed, fed + READ));
      fed += READ;
    }
    await nextTurn();
    expect(conn.frames.upstream).to.equal(1);
    conn.close();
  });

  it('a read inside the payload of the frame under way (a piece of a large frame) is not timed; the read that ends the frame is, and the frame is relayed whole (spec first: every read over 16 KiB was timed)', async () => {
    const { conn, client, upstream } = await pair();
    // Four reads of 64 KiB and one of about 32 KiB: the first holds the header, the last the end.
    const READ = 64 * 1024;
    const payload = Buffer.alloc(4 * READ + 32 * 1024, 0x62);
    const stream = clientFrame(Opcode.Binary, payload);
    expect(clockReadings(() => client.emit('data', stream.subarray(0, READ)))).to.be.greaterThan(0);
    let inside = 0;
    let fed = READ;
    for (; fed + READ < stream.length; fed += READ) inside += clockReadings(() => client.emit('data', stream.subarray(fed, fed + READ)));
    expect(inside).to.equal(0);
    expect(clockReadings(() => client.emit('data', stream.subarray(fed)))).to.be.greaterThan(0);
    await nextTurn();
    const frames = upstream.frames();
    expect(frames).to.have.length(1);
    expect(frames[0]!.payload.equals(payload)).to.equal(true);
    conn.close();
  });

  it("what waits for a side's next turn counts as the connection's buffered bytes (so against the memory budget) until it is relayed", async () => {
    const { conn, client } = await pair();
    const chunk = numbered(2 * TURN_FRAMES);
    client.emit('data', chunk);
    const rest = chunk.length - numbered(TURN_FRAMES).length;
    expect(conn.bufferedBytes).to.equal(rest);
    await nextTurn();
    expect(conn.bufferedBytes).to.equal(0);
    conn.close();
  });

  it('once the other side is gone, a side still yields its turn: what it sends meanwhile waits (and is dropped) instead of being read on without bound', async () => {
    const { conn, client, upstream } = await pair();
    upstream.destroy();
    await new Promise((resolve) => process.nextTick(resolve));
    client.emit('data', numbered(2 * TURN_FRAMES));
    expect(client.reading).to.equal(false);
    await nextTurn();
    await nextTurn();
    expect(client.reading).to.equal(true);
    conn.close();
  });

  it("a side that keeps using up its turns (its FIN, if it left, is behind its backlog) gets the proxy's probe pings, as a paused side does", async () => {
    const { conn, client } = await pair({ pausedPingInterval: 20 });
    const pings = (): number => client.frames().filter((f) => f.opcode === Opcode.Ping).length;
    // A flood: each turn, more than the side may relay in one, until the first probe.
    for (let turns = 0; pings() === 0 && turns < 2000; turns++) {
      client.emit('data', numbered(2 * TURN_FRAMES));
      await nextTurn();
    }
    expect(pings()).to.equal(1);
    // (What waits is relayed before the next case.)
    for (let turns = 0; !client.reading && turns < 10; turns++) await nextTurn();
    expect(client.reading).to.equal(true);
    conn.close();
  });

  /** Messages each client of crowd() sends: its next turn relays the rest and leaves it frames to relay. */
  const CROWD = 2 * TURN_FRAMES - 100;

  /** `count` connections whose clients each sent CROWD small messages in one chunk: each relayed TURN_FRAMES, and yielded, in order. */
  async function crowd(count: number): Promise<Array<Awaited<ReturnType<typeof pair>>>> {
    const pairs: Array<Awaited<ReturnType<typeof pair>>> = [];
    for (let i = 0; i < count; i++) pairs.push(await pair());
    for (const p of pairs) p.client.emit('data', numbered(CROWD));
    for (const p of pairs) expect(p.upstream.frames().length).to.equal(TURN_FRAMES);
    return pairs;
  }

  it('round robin: while more sides wait for their next turn than SIDES_PER_TURN, each turn of the event loop gives it to the next SIDES_PER_TURN in line, in the order they yielded; the others stay held', async () => {
    const pairs = await crowd(2 * SIDES_PER_TURN + 1);
    const relayed = (): number[] => pairs.map((p) => p.upstream.frames().length);
    const reading = (): boolean[] => pairs.map((p) => p.client.reading);
    const first = (n: number, a: unknown, b: unknown): unknown[] => pairs.map((_, i) => (i < n ? a : b));
    for (let turn = 1; turn <= 3; turn++) {
      await nextTurn();
      const done = Math.min(pairs.length, turn * SIDES_PER_TURN);
      expect(relayed()).to.deep.equal(first(done, CROWD, TURN_FRAMES));
      expect(reading()).to.deep.equal(first(done, true, false));
    }
    for (const p of pairs) expect(texts(p.upstream.frames())).to.deep.equal(range(CROWD));
    for (const p of pairs) p.conn.close();
  });

  it('a side that got its turn while more sides waited than got one yields after TURN_BYTES, however little the turn read in all', async () => {
    const pairs = await crowd(2 * SIDES_PER_TURN);
    await nextTurn();
    // The first in line has had its turn (more waited): 8 KiB reads of a large frame, far under LOOP_BYTES in all.
    const { client } = pairs[0]!;
    expect(client.reading).to.equal(true);
    const READ = 8 * 1024;
    const stream = clientFrame(Opcode.Binary, Buffer.alloc(LOOP_BYTES / 2, 0x61));
    let fed = 0;
    while (client.reading && fed < stream.length) {
      client.emit('data', stream.subarray(fed, fed + READ));
      fed += READ;
    }
    expect(fed).to.be.within(TURN_BYTES, TURN_BYTES + READ);
    for (const p of pairs) p.conn.close();
  });
});
