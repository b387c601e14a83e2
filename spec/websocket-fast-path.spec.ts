/**
 * WebSocket's fast paths (see sendableAtOnce/sendAtOnce in lib/connection/websocket.ts and emitIfFlowing in
 * lib/stages/stage.ts): a received message handed to a flowing reader without push(), a write without a
 * callback sent without the Writable's machinery. These specs pin that the fast paths are taken
 * (they fail if readable-stream's state no longer looks as they expect, which would silently
 * turn them off) and that what a user observes is what the usual paths give: order, return
 * values, 'drain', callbacks, errors, the memory budget.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { connect, createServer, MessageReadable, WebSocketError, WebSocketServer } from '../lib';
import { Transport, WebSocket, WebSocketOptions } from '../lib/connection/websocket';
import { NullTransport } from './helpers/transports';

const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** A masked client frame (payload under 126 bytes); opcode 1 text, 2 binary. */
function clientFrame(opcode: number, payload: Buffer | string): Buffer {
  const data = Buffer.from(payload);
  const masked = Buffer.from(data.map((b, i) => b ^ MASK[i & 3]!));
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | data.length]), MASK, masked]);
}

/** Payloads of the unmasked frames in `bytes` (short frames only). */
function payloads(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at + 2 <= bytes.length; ) {
    const length = bytes[at + 1]! & 0x7f;
    out.push(bytes.subarray(at + 2, at + 2 + length).toString());
    at += 2 + length;
  }
  return out;
}

/**
 * A transport in memory: records what is written, in order, and when told `full`, write()
 * answers false (as a socket over its mark) and holds what it is given (writableLength) until
 * drain() emits 'drain'.
 */
class MemoryTransport extends NullTransport {
  readonly written: Buffer[] = [];
  full = false;
  override write(chunk: Buffer, callback?: (err?: Error | null) => void): boolean {
    this.written.push(Buffer.from(chunk));
    if (this.full) this.writableLength += chunk.length;
    if (callback !== undefined) process.nextTick(callback);
    return !this.full;
  }
  override destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    process.nextTick(() => this.emit('close'));
    return this;
  }
  drain(): void {
    this.full = false;
    this.writableLength = 0;
    this.emit('drain');
  }
  /** The payloads of everything written so far. */
  frames(): string[] {
    return payloads(Buffer.concat(this.written));
  }
}

function server(options: WebSocketOptions = {}): { ws: WebSocket; t: MemoryTransport } {
  const t = new MemoryTransport();
  const ws = new WebSocket('server', options);
  ws.attach(t as unknown as Transport, null, { protocol: '', extensions: '' });
  return { ws, t };
}

/** Counts the calls of `ws`'s _write/_writev and push (the usual paths), on this instance only. */
function countUsualPaths(ws: WebSocket): { writes: number; pushes: number } {
  const counts = { writes: 0, pushes: 0 };
  const target = ws as unknown as {
    _write: (...a: unknown[]) => void;
    _writev: (...a: unknown[]) => void;
    push: (...a: unknown[]) => boolean;
  };
  const write = target._write;
  const writev = target._writev;
  const push = target.push;
  target._write = function (this: unknown, ...a: unknown[]) {
    counts.writes++;
    return write.apply(this, a);
  };
  target._writev = function (this: unknown, ...a: unknown[]) {
    counts.writes++;
    return writev.apply(this, a);
  };
  target.push = function (this: unknown, ...a: unknown[]) {
    counts.pushes++;
    return push.apply(this, a);
  };
  return counts;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('WebSocket fast paths', () => {
  it('an echo with a flowing reader takes both fast paths: no push(), no _write(), nothing left queued', async () => {
    const { ws, t } = server();
    const usual = countUsualPaths(ws);
    const got: Array<[string | Buffer, boolean]> = [];
    ws.on('message', (data: string | Buffer, isBinary: boolean) => {
      got.push([data, isBinary]);
      expect(ws.send(data)).to.equal(true);
    });
    await tick();
    t.emit('data', Buffer.concat([clientFrame(1, 'one'), clientFrame(2, 'two'), clientFrame(1, 'three')]));
    // Delivered and answered before emit() returned, without the Duplex's usual bookkeeping:
    // this fails if readable-stream's state no longer looks as the fast paths expect.
    expect(got.map(([d, b]) => [d.toString(), b])).to.deep.equal([
      ['one', false],
      ['two', true],
      ['three', false],
    ]);
    expect(t.frames()).to.deep.equal(['one', 'two', 'three']);
    expect(usual).to.deep.equal({ writes: 0, pushes: 0 });
    expect([ws.readableLength, ws.writableLength, ws.bufferedAmount, ws.heldBytes]).to.deep.equal([0, 0, 0, 0]);
    ws.terminate();
  });

  it("a 'data' listener gets the same values as a 'message' listener, and a paused reader still buffers", async () => {
    const { ws, t } = server();
    const data: unknown[] = [];
    ws.on('data', (d: unknown) => data.push(d));
    await tick();
    t.emit('data', clientFrame(1, 'a'));
    expect(data).to.deep.equal(['a']);
    ws.pause();
    t.emit('data', clientFrame(2, 'bc'));
    expect(ws.readableLength).to.equal(1);
    expect(ws.heldBytes).to.equal(2); // the buffered message counts against the budget
    ws.resume();
    await tick();
    expect(data.map(String)).to.deep.equal(['a', 'bc']);
    expect(ws.heldBytes).to.equal(0);
    ws.terminate();
  });

  it('writes with and without a callback, corked or not, leave in write order; callbacks never run synchronously', async () => {
    const { ws, t } = server();
    const usual = countUsualPaths(ws);
    const calls: string[] = [];
    ws.send('a');
    ws.send('b', {}, (err) => calls.push(`b:${String(err)}`));
    ws.send('c'); // b's write settled at once (the socket had room): c goes at once too
    ws.cork();
    ws.send('d');
    ws.send('e');
    ws.uncork();
    expect(calls).to.deep.equal([]);
    await tick();
    ws.send('f');
    expect(t.frames()).to.deep.equal(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(calls).to.deep.equal(['b:null']);
    // a, c and f went at once; b (a callback) and the corked d, e (one writev) took the usual path.
    expect(usual.writes).to.equal(2);
    ws.terminate();
  });

  it('a full socket: writes go on to it while bufferedAmount is under writableHighWaterMarkBytes; the write that reaches the mark is held as the usual path holds it, later writes queue behind it, false from the mark on, then drain', async () => {
    // Each frame is 3 bytes (2 of header): the socket holds 9 once 'c' is written, over the mark.
    const { ws, t } = server({ writableHighWaterMarkBytes: 7 });
    t.full = true;
    const answers = ['a', 'b', 'c', 'd', 'e'].map((m) => ws.send(m));
    // The socket said wait from 'a' on, but held less than the connection's mark in bytes: 'a' and
    // 'b' were done at once. 'c' reached the mark: its write stays in progress until the socket
    // drains, d and e queue in the Writable, and every answer from 'c' on says to wait.
    expect(answers).to.deep.equal([true, true, false, false, false]);
    expect(t.frames()).to.deep.equal(['a', 'b', 'c']);
    expect(ws.writableLength).to.equal(3);
    expect(ws.bufferedAmount).to.equal(9 + 2);
    const drained = once(ws, 'drain');
    t.drain();
    await drained;
    expect(t.frames()).to.deep.equal(['a', 'b', 'c', 'd', 'e']);
    expect(ws.writableLength).to.equal(0);
    // Idle again: the next write goes at once.
    const usual = countUsualPaths(ws);
    ws.send('f');
    expect(usual.writes).to.equal(0);
    expect(t.frames().at(-1)).to.equal('f');
    ws.terminate();
  });

  it('a full socket, then the connection closes: the held write settles and later writes are refused as before', async () => {
    // 'a' (3 bytes) reaches the mark: its write is held, and b queues behind it.
    const { ws, t } = server({ writableHighWaterMarkBytes: 3 });
    t.full = true;
    ws.send('a');
    const refused: Array<Error | null | undefined> = [];
    ws.send('b', {}, (err) => refused.push(err)); // queued behind 'a'
    ws.terminate();
    await once(ws, 'close');
    await tick();
    expect(refused).to.have.length(1);
    expect((refused[0] as WebSocketError).code).to.equal('WS_ERR_INVALID_STATE');
    expect(ws.send('c')).to.equal(false);
    expect(t.frames()).to.deep.equal(['a']);
  });

  it('writableHighWaterMark 1: a write alone says to wait, so it takes the usual path and drain follows', async () => {
    const { ws, t } = server({ writableHighWaterMark: 1 });
    expect(ws.send('a')).to.equal(false);
    await once(ws, 'drain');
    expect(t.frames()).to.deep.equal(['a']);
    ws.terminate();
  });

  it('writableHighWaterMarkBytes: a fast write over the mark returns false and our drain follows', async () => {
    const { ws, t } = server({ writableHighWaterMarkBytes: 100 });
    t.writableLength = 150; // the socket holds bytes it has not sent
    expect(ws.send('a')).to.equal(false);
    expect(ws.bufferedAmount).to.equal(150);
    const drained = once(ws, 'drain');
    t.writableLength = 0;
    t.drain();
    await drained;
    ws.terminate();
  });

  it('after end() or close(), a write with or without a callback is refused (WS_ERR_INVALID_STATE) and sends nothing', async () => {
    for (const finish of [(ws: WebSocket) => ws.end(), (ws: WebSocket) => ws.close(1000)]) {
      const { ws, t } = server();
      const errors: Error[] = [];
      ws.on('error', (err: Error) => errors.push(err));
      finish(ws);
      const calls: Array<Error | null | undefined> = [];
      expect(ws.send('late', {}, (err) => calls.push(err))).to.equal(false);
      expect(ws.send('late')).to.equal(false);
      await tick();
      expect(calls).to.have.length(1);
      expect((calls[0] as WebSocketError).code).to.equal('WS_ERR_INVALID_STATE');
      expect(errors).to.deep.equal([]);
      expect(t.frames()).to.not.include('late');
      ws.terminate();
    }
  });

  it('a transport that corks the connection while it writes: the message is sent once, the next writes follow in order', async () => {
    const { ws, t } = server();
    t.full = true;
    const write = t.write.bind(t);
    let corkedOnce = false;
    t.write = (chunk: Buffer, callback?: (err?: Error | null) => void): boolean => {
      if (!corkedOnce) {
        corkedOnce = true;
        ws.cork();
      }
      return write(chunk, callback);
    };
    ws.send('a');
    ws.send('b');
    ws.uncork();
    t.drain();
    await tick();
    ws.send('c');
    await tick();
    expect(t.frames()).to.deep.equal(['a', 'b', 'c']);
    ws.terminate();
  });

  it('a tap on the outbound side takes the usual path and sees every message', async () => {
    const { ws, t } = server();
    const tap = ws.tap('messages', 'out');
    const seen: string[] = [];
    tap.on('data', (m: { data: Buffer }) => seen.push(m.data.toString()));
    const usual = countUsualPaths(ws);
    ws.send('a');
    ws.send('b');
    await tick();
    expect(usual.writes).to.be.at.least(1);
    expect(t.frames()).to.deep.equal(['a', 'b']);
    expect(seen).to.deep.equal(['a', 'b']);
    ws.terminate();
  });

  describe('over real sockets', () => {
    let wss: WebSocketServer;
    afterEach(() => wss?.close());

    async function pair(serverOptions = {}, clientOptions = {}): Promise<{ ws: WebSocket; client: WebSocket }> {
      wss = createServer({ port: 0, host: '127.0.0.1', ...serverOptions });
      await once(wss, 'listening');
      const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
      const client = connect(`ws://127.0.0.1:${wss.address()!.port}`, clientOptions);
      await once(client, 'open');
      const [ws] = await accepted;
      return { ws, client };
    }

    it('permessage-deflate: a write compressed later is held until it is out; order kept with callback writes', async () => {
      const { ws, client } = await pair({ perMessageDeflate: { threshold: 0 } });
      const got: string[] = [];
      client.on('message', (d: Buffer | string) => got.push(d.toString()));
      const calls: Array<Error | null | undefined> = [];
      ws.send('x'.repeat(200));
      // zlib has it: the write stays in progress as in the usual path.
      expect(ws.writableLength).to.equal(1);
      ws.send('y', {}, (err) => calls.push(err));
      ws.send('z');
      while (got.length < 3) await once(client, 'message');
      expect(got).to.deep.equal(['x'.repeat(200), 'y', 'z']);
      expect(calls).to.deep.equal([null]);
      client.terminate();
    });

    it('streamed messages: pieces reach a flowing MessageReadable without push(), and ordinary sends wait for a streamed one', async () => {
      const { ws, client } = await pair({ streamMessages: true });
      const pushes = { n: 0 };
      const push = MessageReadable.prototype.push;
      MessageReadable.prototype.push = function (this: MessageReadable, ...a: Parameters<typeof push>) {
        if (a[0] !== null) pushes.n++;
        return push.apply(this, a);
      };
      try {
        const body: Buffer[] = [];
        const done = new Promise<void>((resolve) => {
          ws.on('message', (stream: MessageReadable) => {
            stream.on('data', (c: Buffer) => body.push(c));
            stream.on('end', resolve);
          });
        });
        const out = client.createMessageStream({ binary: true });
        // One piece at a time: each arrives in its own read from the socket.
        for (let i = 0; i < 8; i++) {
          out.write(Buffer.alloc(1000, i));
          while (body.length <= i) await tick();
        }
        out.end();
        await done;
        expect(Buffer.concat(body).equals(Buffer.concat(Array.from({ length: 8 }, (_, i) => Buffer.alloc(1000, i))))).to.equal(true);
        // The first piece is pushed: a new stream counts as inside a read (readable-stream's
        // `sync`) until it is first read. The others go straight to 'data'.
        expect(pushes.n).to.equal(1);
        expect(ws.heldBytes).to.equal(0);
      } finally {
        MessageReadable.prototype.push = push;
      }

      // While a streamed message is open outbound, a plain send waits for it.
      const got: string[] = [];
      client.on('message', (d: string) => got.push(d)); // the client takes messages whole
      const stream = ws.createMessageStream({ binary: false });
      stream.write('s1');
      await tick();
      ws.send('after');
      stream.end('s2');
      while (got.length < 2) await tick();
      expect(got).to.deep.equal(['s1s2', 'after']);
      client.terminate();
    });
  });
});
