/**
 * The closing handshake and failing of a fused connection in the cases issue 18 found broken:
 * a server that does not read, a streamed message whose source fails, a send the sender refuses,
 * a TCP reset after a clean close, and the close echo's reason (RFC 6455 §5.5.1, §7.1.7).
 */
import { expect } from 'chai';
import * as net from 'node:net';
import { WebSocketError } from '../../lib';
import { Transport, WebSocket, WebSocketOptions } from '../../lib/connection/websocket';
import { clientClose, clientFrame, closeOf, DecodedFrame, decodeFrames, wireFrame } from '../helpers/frames';
import { closed as socketClosed, socketPair } from '../helpers/sockets';

const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

async function serverSide(options: WebSocketOptions = {}): Promise<{ ws: WebSocket; peer: net.Socket }> {
  const [a, b] = await socketPair();
  const ws = new WebSocket('server', options);
  ws.attach(a as Transport, null, { protocol: '', extensions: '' });
  return { ws, peer: b };
}

async function clientSide(options: WebSocketOptions = {}): Promise<{ ws: WebSocket; peer: net.Socket }> {
  const [a, b] = await socketPair();
  const ws = new WebSocket('client', options);
  ws.attach(b as Transport, null, { protocol: '', extensions: '' });
  return { ws, peer: a };
}

/** Resolves with 'close''s (code, reason) and the time it took from now. */
function closed(ws: WebSocket): Promise<{ code: number; reason: string; ms: number }> {
  const start = Date.now();
  return new Promise((resolve) => ws.once('close', (code: number, reason: string) => resolve({ code, reason, ms: Date.now() - start })));
}

/** Collects the frames `peer` receives; the returned function waits (bounded) until one matches. */
function framesArriving(peer: net.Socket): (until: (f: DecodedFrame) => boolean, timeoutMs?: number) => Promise<DecodedFrame[]> {
  const chunks: Buffer[] = [];
  peer.on('data', (c: Buffer) => chunks.push(c));
  return async (until, timeoutMs = 3000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { frames } = decodeFrames(Buffer.concat(chunks));
      if (frames.some(until) || Date.now() > deadline) return frames;
      await new Promise((r) => setTimeout(r, 5));
    }
  };
}

const isClose = (f: DecodedFrame): boolean => f.opcode === OP_CLOSE;

describe('WebSocket closing and failing (issue 18)', function () {
  this.timeout(10000);

  describe('control frames are answered whatever the application does with data', () => {
    it('a server with no message listener answers the close after more messages than its readable buffer holds', async () => {
      const { ws, peer } = await serverSide({ closeTimeout: 2000 });
      const received = framesArriving(peer);
      const closing = closed(ws);
      const data = Buffer.concat(Array.from({ length: 40 }, (_, i) => clientFrame(OP_TEXT, `message ${i}`)));
      peer.write(data);
      await new Promise((r) => setTimeout(r, 50));
      peer.write(clientClose(1000, 'bye'));
      const frames = await received(isClose);
      const close = frames.find(isClose);
      expect(close, 'the close echo').to.not.equal(undefined);
      const { code, ms } = await closing;
      expect(code).to.equal(1000);
      expect(ms, 'well before closeTimeout').to.be.below(1000);
    });

    it('answers pings while the application reads nothing, under a stream of data', async () => {
      const { ws, peer } = await serverSide();
      const received = framesArriving(peer);
      const big = Buffer.alloc(16 * 1024, 0x61);
      const chunks: Buffer[] = [];
      for (let i = 0; i < 64; i++) chunks.push(clientFrame(OP_BINARY, big));
      chunks.push(clientFrame(OP_PING, 'still there?'));
      peer.write(Buffer.concat(chunks));
      const frames = await received((f) => f.opcode === OP_PONG);
      const pong = frames.find((f) => f.opcode === OP_PONG);
      expect(pong?.payload.toString()).to.equal('still there?');
      expect(ws.readyState).to.equal(WebSocket.OPEN);
      ws.terminate();
    });

    it('a server whose reader stopped (paused) still completes the closing handshake before closeTimeout', async () => {
      const { ws, peer } = await serverSide({ closeTimeout: 1000 });
      const received = framesArriving(peer);
      const closing = closed(ws);
      ws.on('data', () => {});
      ws.pause();
      const data = Buffer.concat(Array.from({ length: 40 }, (_, i) => clientFrame(OP_TEXT, `message ${i}`)));
      peer.write(data);
      await new Promise((r) => setTimeout(r, 50));
      peer.write(clientClose(1000));
      const frames = await received(isClose, 1500);
      expect(frames.find(isClose), 'the close answered').to.not.equal(undefined);
      const { code, ms } = await closing;
      expect(code).to.equal(1000);
      expect(ms, 'the server closed TCP once the handshake completed, before closeTimeout').to.be.below(1000);
      // The messages received before the close are still readable.
      expect(ws.readableLength).to.equal(40);
    });

    it('past the memory budget, close() from the application reads on to find the peer close', async () => {
      const { ws, peer } = await serverSide({ memoryBudget: 64 * 1024, closeTimeout: 2000 });
      peer.on('error', () => {}); // the server may hang up with data unread
      const closing = closed(ws);
      const big = Buffer.alloc(32 * 1024, 0x62);
      const frames: Buffer[] = [];
      for (let i = 0; i < 32; i++) frames.push(clientFrame(OP_BINARY, big)); // 1 MiB, 16 budgets
      peer.write(Buffer.concat(frames));
      await new Promise((r) => setTimeout(r, 100));
      expect(ws.heldBytes, 'reading stopped at the budget').to.be.below(1024 * 1024);
      // The peer answers our close once it sees it (as a client does).
      const received = framesArriving(peer);
      ws.close(1001, 'going');
      const got = await received(isClose);
      expect(closeOf(got.find(isClose)!)).to.deep.equal({ code: 1001, reason: 'going' });
      peer.write(clientClose(1001, 'going'));
      const { code, ms } = await closing;
      expect(code).to.equal(1001);
      expect(ms).to.be.below(1000);
    });
  });

  describe('a streamed message whose source fails (MessageWritable destroyed)', () => {
    it("fails the connection with 1011: one 'error' with the cause, the peer sees 1011 and why", async () => {
      const { ws, peer } = await serverSide();
      const received = framesArriving(peer);
      const errors: Error[] = [];
      ws.on('error', (err: Error) => errors.push(err));
      const closing = closed(ws);
      const stream = ws.createMessageStream({ binary: true });
      stream.on('error', () => {}); // its own 'error' (the cause), as pipeline() would listen
      stream.write(Buffer.from('first part'));
      await new Promise((r) => setTimeout(r, 20));
      const cause = new Error('the file went away');
      stream.destroy(cause);
      const frames = await received(isClose);
      const close = frames.find(isClose);
      expect(close, 'a close frame').to.not.equal(undefined);
      if (close === undefined) return;
      expect(frames[0]!.opcode).to.equal(OP_BINARY);
      expect(frames[0]!.fin).to.equal(false);
      expect(closeOf(close).code).to.equal(1011);
      expect(closeOf(close).reason).to.equal('WS_ERR_MESSAGE_ABORTED');
      peer.end(wireFrame({ opcode: OP_CLOSE, payload: close.payload, mask: Buffer.from([1, 2, 3, 4]) }));
      const { code } = await closing;
      expect(code).to.equal(1011);
      expect(errors.length).to.equal(1);
      expect((errors[0] as WebSocketError).code).to.equal('WS_ERR_MESSAGE_ABORTED');
      expect((errors[0] as WebSocketError).closeCode).to.equal(1011);
      expect(errors[0]!.cause).to.equal(cause);
    });

    it('a stream destroyed before it sent anything leaves the connection open and usable', async () => {
      const { ws, peer } = await serverSide();
      const received = framesArriving(peer);
      const errors: Error[] = [];
      ws.on('error', (err: Error) => errors.push(err));
      const stream = ws.createMessageStream();
      stream.on('error', () => {});
      stream.destroy(new Error('nothing sent'));
      await new Promise((r) => setTimeout(r, 10));
      ws.send('after');
      const frames = await received((f) => f.opcode === OP_TEXT);
      expect(frames.map((f) => f.payload.toString())).to.deep.equal(['after']);
      expect(errors).to.deep.equal([]);
      ws.terminate();
    });
  });

  describe('a send the sender refuses is reported', () => {
    it("without a callback: 'error' hears of it", async () => {
      const { ws } = await clientSide({ generateMask: () => Buffer.alloc(3) });
      const errors: Error[] = [];
      ws.on('error', (err: Error) => errors.push(err));
      ws.send('x');
      await new Promise((r) => setTimeout(r, 10));
      expect(errors.map((e) => (e as WebSocketError).code)).to.deep.equal(['WS_ERR_INVALID_ARGUMENT']);
      ws.terminate();
    });

    it('with a callback: the callback hears of it', async () => {
      const { ws } = await clientSide({ generateMask: () => Buffer.alloc(3) });
      const err = await new Promise<Error | null | undefined>((resolve) => ws.send('x', {}, resolve));
      expect((err as WebSocketError).code).to.equal('WS_ERR_INVALID_ARGUMENT');
      ws.terminate();
    });
  });

  describe('a TCP reset after the closing handshake completed', () => {
    it("is not an error: no 'error', 'close' 1000", async () => {
      const { ws, peer } = await clientSide();
      const errors: Error[] = [];
      ws.on('error', (err: Error) => errors.push(err));
      const closing = closed(ws);
      const received = framesArriving(peer);
      // The server closes, the client echoes, then the server resets TCP (as Autobahn's does).
      peer.write(wireFrame({ opcode: OP_CLOSE, payload: Buffer.from([0x03, 0xe8]), mask: null }));
      await received(isClose);
      peer.resetAndDestroy();
      await socketClosed(peer);
      const { code } = await closing;
      expect(code).to.equal(1000);
      expect(errors).to.deep.equal([]);
    });

    it('before the handshake completed, a reset is still an error (1006)', async () => {
      const { ws, peer } = await clientSide();
      const errors: Error[] = [];
      ws.on('error', (err: Error) => errors.push(err));
      const closing = closed(ws);
      ws.send('unanswered');
      await new Promise((r) => setTimeout(r, 20));
      peer.resetAndDestroy();
      const { code } = await closing;
      expect(code).to.equal(1006);
      expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).to.deep.equal(['ECONNRESET']);
    });
  });

  describe("the close echo (RFC 6455 §5.5.1: 'typically echos the status code it received')", () => {
    it("echoes the peer's code and reason", async () => {
      const { ws, peer } = await serverSide();
      const received = framesArriving(peer);
      const closing = closed(ws);
      peer.write(clientClose(4000, 'done here, ünïcode'));
      const frames = await received(isClose);
      expect(closeOf(frames.find(isClose)!)).to.deep.equal({ code: 4000, reason: 'done here, ünïcode' });
      expect(await closing).to.include({ code: 4000, reason: 'done here, ünïcode' });
    });
  });
});
