import { expect } from 'chai';
import { once } from 'node:events';
import * as net from 'node:net';
import { Frame, Message, Opcode, Tap } from '../../lib';
import { Transport, WebSocket } from '../../lib/connection/websocket';
import { hex, readBytes, socketPair } from '../helpers/sockets';

const KEY = hex('37 fa 21 3d');

function clientFrame(opcode: number, text: string): Buffer {
  const payload = Buffer.from(text);
  for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ KEY[i & 3]!;
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), KEY, payload]);
}

async function serverSide(): Promise<{ ws: WebSocket; peer: net.Socket }> {
  const [a, b] = await socketPair();
  const ws = new WebSocket('server');
  ws.attach(a as Transport, null, { protocol: '', extensions: '' });
  return { ws, peer: b };
}

/** Sends three messages and a ping from the peer, echoes them, returns what the peer received. */
async function exchange(ws: WebSocket, peer: net.Socket): Promise<Buffer> {
  ws.on('message', (d: string | Buffer) => ws.send(d));
  peer.write(Buffer.concat([clientFrame(1, 'one'), clientFrame(2, 'two'), clientFrame(9, 'p'), clientFrame(1, 'three')]));
  // 3 echoes (5+5+7 bytes) and a pong (3 bytes)
  return readBytes(peer, 5 + 5 + 3 + 7);
}

function drain<T>(tap: Tap<T>): T[] {
  const out: T[] = [];
  let v: T | null;
  while ((v = tap.read() as T | null) !== null) out.push(v);
  return out;
}

describe('taps', () => {
  it('never change the traffic: the wire bytes are identical with and without taps', async () => {
    const plain = await serverSide();
    const without = await exchange(plain.ws, plain.peer);
    const tapped = await serverSide();
    const taps = (['in', 'out'] as const).flatMap((d) => [
      tapped.ws.tap('bytes', d),
      tapped.ws.tap('frames', d),
      tapped.ws.tap('messages', d),
    ]);
    const withTaps = await exchange(tapped.ws, tapped.peer);
    expect(withTaps).to.deep.equal(without);
    expect(taps.every((t) => t.readableLength > 0)).to.equal(true);
    plain.ws.terminate();
    tapped.ws.terminate();
  });

  it('show each layer in each direction', async () => {
    const { ws, peer } = await serverSide();
    const bytesOut = ws.tap('bytes', 'out');
    const framesIn = ws.tap('frames', 'in');
    const messagesIn = ws.tap('messages', 'in');
    const messagesOut = ws.tap('messages', 'out');
    const wire = await exchange(ws, peer);
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(drain(bytesOut))).to.deep.equal(wire);
    const frames = drain(framesIn) as Frame[];
    expect(frames.map((f) => [f.opcode, f.mask, f.payload.toString()])).to.deep.equal([
      [Opcode.Text, null, 'one'],
      [Opcode.Binary, null, 'two'],
      [Opcode.Ping, null, 'p'],
      [Opcode.Text, null, 'three'],
    ]);
    expect((drain(messagesIn) as Message[]).map((m) => [m.binary, m.data.toString()])).to.deep.equal([
      [false, 'one'],
      [true, 'two'],
      [false, 'three'],
    ]);
    expect((drain(messagesOut) as Message[]).map((m) => m.data.toString())).to.deep.equal(['one', 'two', 'three']);
    ws.terminate();
  });

  it("a slow tap with the 'drop' policy never slows the connection and counts its drops", async () => {
    const { ws, peer } = await serverSide();
    const tap = ws.tap('messages', 'in', { policy: 'drop', highWaterMark: 2 });
    const got: string[] = [];
    ws.on('message', (d: string) => got.push(d));
    const frames: Buffer[] = [];
    for (let i = 0; i < 50; i++) frames.push(clientFrame(1, `m${i}`));
    peer.write(Buffer.concat(frames));
    while (got.length < 50) await new Promise((r) => setTimeout(r, 5));
    expect(tap.readableLength).to.equal(2);
    expect(tap.dropped).to.equal(48);
    ws.terminate();
  });

  it("a tap with the 'block' policy holds the connection until it is read", async () => {
    const { ws, peer } = await serverSide();
    const tap = ws.tap('messages', 'in', { policy: 'block', highWaterMark: 2 });
    const got: string[] = [];
    ws.on('message', (d: string) => got.push(d));
    // One message per write, so that the pause shows between TCP reads.
    for (let i = 0; i < 20; i++) {
      peer.write(clientFrame(1, `m${i}`));
      await new Promise((r) => setTimeout(r, 2));
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(got.length).to.be.lessThan(20);
    expect(tap.dropped).to.equal(0);
    const seen: Message[] = [];
    tap.on('data', (m: Message) => seen.push(m));
    while (got.length < 20) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setImmediate(r));
    expect(seen.map((m) => m.data.toString())).to.deep.equal(got);
    ws.terminate();
  });

  it('end when the connection closes, and can be detached by destroying them', async () => {
    const { ws, peer } = await serverSide();
    const kept = ws.tap('frames', 'in');
    const detached = ws.tap('frames', 'in');
    detached.destroy();
    peer.write(clientFrame(1, 'x'));
    await once(ws, 'data');
    kept.resume();
    const ended = once(kept, 'end');
    peer.destroy();
    await ended;
  });
});
