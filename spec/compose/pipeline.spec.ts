/**
 * composePipeline (lib/compose/pipeline.ts): the stages built onto a real loopback socket in one
 * call, against our fused client and server and against raw bytes: the opening handshake,
 * inserting, replacing and observing stages, the closing handshake both ways (RFC 6455 §7.1),
 * failing with the error's close code (§7.1.7), backpressure to the socket, permessage-deflate.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as net from 'node:net';
import { Transform } from 'readable-stream';
import { connect, createServer, Frame, Message, MessageFramer, Opcode, WebSocket, WebSocketServer } from '../../lib';
import { ComposedPipeline, composePipeline, PipelineOptions } from '../../lib/compose/pipeline';
import { clientClose, clientFrame, closeOf, decodeFrames, upgradeRequest } from '../helpers/frames';
import { closed, readAll, readBytes } from '../helpers/sockets';

const LOCAL = '127.0.0.1';

/** A pass-through Transform that counts what it sees: a user's stage in under 10 lines. */
function counter(): Transform & { seen: number } {
  const t = new Transform({
    objectMode: true,
    transform(value: unknown, _enc, cb) {
      t.seen++;
      cb(null, value);
    },
  }) as Transform & { seen: number };
  t.seen = 0;
  return t;
}

/** A server whose every connection is a composed pipeline made with `options`. */
async function composedServer(options: Omit<PipelineOptions, 'role'> | (() => Omit<PipelineOptions, 'role'>), onPipeline: (p: ComposedPipeline) => void): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer((socket) => onPipeline(composePipeline(socket, { role: 'server', ...(typeof options === 'function' ? options() : options) })));
  server.listen(0, LOCAL);
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, server };
}

/** The pipeline's 'close' (code, reason), whatever 'error' came before (events.once would reject on it). */
function whenClosed(p: ComposedPipeline): Promise<[number, string]> {
  return new Promise((resolve) => p.once('close', (code: number, reason: string) => resolve([code, reason])));
}

function echo(p: ComposedPipeline): void {
  p.on('data', (message: Message) => p.write(message));
}

/** The next `n` messages of a fused client, as [text, binary]. */
function messages(ws: WebSocket, n: number): Promise<Array<[string, boolean]>> {
  return new Promise((resolve) => {
    const got: Array<[string, boolean]> = [];
    const on = (data: Buffer | string, binary: boolean): void => {
      got.push([data.toString(), binary]);
      if (got.length === n) {
        ws.removeListener('message', on);
        resolve(got);
      }
    };
    ws.on('message', on);
  });
}

/** A raw client that has done its opening handshake; returns the socket and the bytes after the 101. */
async function rawClient(port: number): Promise<{ socket: net.Socket; rest: Buffer }> {
  const socket = net.connect(port, LOCAL);
  await once(socket, 'connect');
  socket.write(upgradeRequest(`${LOCAL}:${port}`));
  const head = await readBytes(socket, 1);
  const end = head.indexOf('\r\n\r\n');
  expect(head.toString('latin1', 0, 12)).to.equal('HTTP/1.1 101');
  return { socket, rest: head.subarray(end + 4) };
}

describe('composePipeline', () => {
  const servers: net.Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
  });
  const start = async (...args: Parameters<typeof composedServer>): Promise<number> => {
    const { port, server } = await composedServer(...args);
    servers.push(server);
    return port;
  };

  describe('server role, with our fused client', () => {
    it('does the opening handshake and echoes text and binary messages', async () => {
      const opened: ComposedPipeline[] = [];
      const port = await start({}, (p) => {
        opened.push(p);
        echo(p);
      });
      const ws = connect(`ws://${LOCAL}:${port}/`, { perMessageDeflate: false });
      await once(ws, 'open');
      const got = messages(ws, 2);
      ws.send('héllo');
      ws.send(Buffer.from([1, 2, 3]));
      expect(await got).to.deep.equal([['héllo', false], ['\u0001\u0002\u0003', true]]);
      expect(opened[0]!.opening).to.deep.equal({ protocol: '', extensions: '', deflate: null });
      ws.close(1000);
      await once(ws, 'close');
    });

    it('insert: a pass-through Transform after the splitter sees every frame, and the traffic is unchanged', async () => {
      const counters: Array<ReturnType<typeof counter>> = [];
      const port = await start(
        () => {
          const c = counter();
          counters.push(c);
          return { insert: { afterSplitter: c } };
        },
        echo,
      );
      const ws = connect(`ws://${LOCAL}:${port}/`, { perMessageDeflate: false });
      await once(ws, 'open');
      const got = messages(ws, 3);
      for (const text of ['a', 'b', 'c']) ws.send(text);
      expect(await got).to.deep.equal([['a', false], ['b', false], ['c', false]]);
      ws.ping('p');
      await once(ws, 'pong');
      expect(counters[0]!.seen).to.equal(4); // three text frames and the ping
      ws.close();
      await once(ws, 'close');
    });

    it('replace: a framer of our own (fragmenting) takes the place of the default one; tap shows its frames', async () => {
      const frames: Frame[] = [];
      const port = await start({ replace: { framer: new MessageFramer({ fragmentSize: 2 }) } }, (p) => {
        p.tap('afterFramer').on('data', (f: Frame) => frames.push(f));
        echo(p);
      });
      const ws = connect(`ws://${LOCAL}:${port}/`, { perMessageDeflate: false });
      await once(ws, 'open');
      const got = messages(ws, 1);
      ws.send('hello');
      expect(await got).to.deep.equal([['hello', false]]);
      expect(frames.map((f) => [f.opcode, f.fin, f.payload.toString()])).to.deep.equal([
        [Opcode.Text, false, 'he'],
        [Opcode.Continuation, false, 'll'],
        [Opcode.Continuation, true, 'o'],
      ]);
      ws.close();
      await once(ws, 'close');
    });

    it('tap: the masked frames after the splitter are copies the unmasker does not change; after the unmasker, plain', async () => {
      const seen: { split: Frame[]; unmasked: Frame[] } = { split: [], unmasked: [] };
      const port = await start({}, (p) => {
        p.tap('afterSplitter').on('data', (f: Frame) => seen.split.push(f));
        p.tap('afterUnmasker').on('data', (f: Frame) => seen.unmasked.push(f));
        echo(p);
      });
      const ws = connect(`ws://${LOCAL}:${port}/`, { perMessageDeflate: false });
      await once(ws, 'open');
      const got = messages(ws, 1);
      ws.send('secret');
      await got;
      expect(seen.split[0]!.mask).to.not.equal(null);
      expect(seen.split[0]!.payload.toString()).to.not.equal('secret');
      expect(seen.unmasked[0]!.payload.toString()).to.equal('secret');
      ws.close();
      await once(ws, 'close');
    });

    it('permessage-deflate: negotiated, compressed frames both ways (RSV1), messages intact', async () => {
      const rsv1: { in: boolean[]; out: boolean[] } = { in: [], out: [] };
      const port = await start({ perMessageDeflate: { threshold: 0 } }, (p) => {
        p.tap('afterUnmasker').on('data', (f: Frame) => rsv1.in.push(f.rsv1));
        p.tap('afterDeflater').on('data', (f: Frame) => rsv1.out.push(f.rsv1));
        echo(p);
      });
      const ws = connect(`ws://${LOCAL}:${port}/`);
      await once(ws, 'open');
      expect(ws.extensions).to.match(/^permessage-deflate/);
      const got = messages(ws, 2);
      const big = 'abc'.repeat(10000);
      ws.send(big);
      ws.send('small');
      const echoed = await got;
      expect(echoed.map(([t]) => t)).to.deep.equal([big, 'small']);
      // The client compresses from 1024 bytes on (its default threshold), the server from 0.
      expect(rsv1).to.deep.equal({ in: [true, false], out: [true, true] });
      ws.close();
      await once(ws, 'close');
    });
  });

  describe('client role, with our fused server', () => {
    let server: WebSocketServer;
    let port: number;
    beforeEach(async () => {
      server = createServer({ port: 0, host: LOCAL, perMessageDeflate: true });
      await once(server, 'listening');
      port = server.address()!.port;
      server.on('connection', (ws: WebSocket) => ws.on('message', (data, binary) => ws.send(data, { binary })));
    });
    afterEach((done) => {
      server.close(() => done());
    });

    for (const deflate of [false, true]) {
      it(`sends masked frames, reads the echo, and closes first: the server ends the TCP connection (deflate ${deflate})`, async () => {
        const socket = net.connect(port, LOCAL);
        const p = composePipeline(socket, { role: 'client', host: `${LOCAL}:${port}`, perMessageDeflate: deflate });
        await once(p, 'open');
        expect(p.opening!.extensions !== '').to.equal(deflate);
        const received: Message[] = [];
        const two = new Promise<void>((resolve) => p.on('data', (m: Message) => received.push(m) === 2 && resolve()));
        p.write('one');
        p.write(Buffer.from('two'));
        await two;
        const [a, b] = received as [Message, Message];
        expect([a.data.toString(), a.binary, b.data.toString(), b.binary]).to.deep.equal(['one', false, 'two', true]);
        const serverClosed = new Promise<[number, string]>((resolve) => {
          for (const ws of server.clients) ws.once('close', (code: number, reason: string) => resolve([code, reason]));
        });
        p.close(4001, 'client done');
        expect((await once(p, 'close'))[0]).to.equal(4001); // the echo's code (its reason is the server's choice)
        expect(await serverClosed).to.deep.equal([4001, 'client done']);
      });
    }

    it('a 101 with the wrong accept key fails the connection: WS_ERR_INVALID_ACCEPT, close 1002, the socket dropped', async () => {
      const fake = net.createServer((s) => {
        s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n'));
      });
      fake.listen(0, LOCAL);
      await once(fake, 'listening');
      servers.push(fake);
      const socket = net.connect((fake.address() as net.AddressInfo).port, LOCAL);
      const p = composePipeline(socket, { role: 'client' });
      const errors: Error[] = [];
      p.on('error', (e) => errors.push(e));
      const [code] = await whenClosed(p);
      expect(code).to.equal(1002);
      expect(errors.map((e) => (e as { code?: string }).code)).to.deep.equal(['WS_ERR_INVALID_ACCEPT']);
    });
  });

  describe('closing handshake (RFC 6455 §7.1), raw client', () => {
    it('the peer closes: the messages written before are sent, then the echo; the server ends the TCP connection', async () => {
      const closes: Array<[number, string]> = [];
      let pipelineClosed: Promise<unknown> | null = null;
      const port = await start({}, (p) => {
        p.on('close', (code: number, reason: string) => closes.push([code, reason]));
        pipelineClosed = whenClosed(p);
        echo(p);
      });
      const { socket, rest } = await rawClient(port);
      const all = readAll(socket);
      socket.write(Buffer.concat([clientFrame(Opcode.Text, 'last words'), clientClose(1000, 'bye')]));
      const frames = decodeFrames(Buffer.concat([rest, await all])).frames;
      expect(frames.map((f) => f.opcode)).to.deep.equal([Opcode.Text, Opcode.Close]);
      expect(frames[0]!.payload.toString()).to.equal('last words');
      expect(closeOf(frames[1]!).code).to.equal(1000);
      await closed(socket);
      await pipelineClosed;
      expect(closes).to.deep.equal([[1000, 'bye']]);
    });

    it('close(code, reason): after the messages already written, then the close frame; invalid arguments throw with a code', async () => {
      let pipeline: ComposedPipeline | null = null;
      const port = await start({}, (p) => {
        pipeline = p;
      });
      const { socket, rest } = await rawClient(port);
      const all = readAll(socket);
      const p = pipeline!;
      expect(() => p.close(1005)).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => p.close(1000, 'x'.repeat(124))).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      p.write('first');
      p.close(4000, 'done');
      const writeAfter = new Promise<Error | null | undefined>((resolve) => p.write('late', (err) => resolve(err)));
      expect(await writeAfter).to.have.property('code', 'WS_ERR_INVALID_STATE');
      const got = decodeFrames(Buffer.concat([rest, await readBytes(socket, 1)]));
      const frames = got.frames.length >= 2 ? got.frames : decodeFrames(Buffer.concat([rest, await all])).frames;
      expect(frames[0]!.payload.toString()).to.equal('first');
      expect(closeOf(frames[1]!)).to.deep.equal({ code: 4000, reason: 'done' });
      const gone = once(p, 'close');
      socket.write(clientClose(4000));
      expect(await gone).to.deep.equal([4000, '']);
      await closed(socket);
    });

    it('write(): a Uint8Array goes as binary, { data, binary } as told; a value that is no message throws WS_ERR_INVALID_ARGUMENT at the call', async () => {
      let pipeline: ComposedPipeline | null = null;
      const port = await start({}, (p) => {
        pipeline = p;
      });
      const { socket, rest } = await rawClient(port);
      const p = pipeline!;
      expect(() => p.write(42 as never)).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => p.write({ data: 'x', binary: 'yes' } as never)).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      p.write(new Uint8Array([1, 2, 3]));
      p.write({ data: Buffer.from('as text'), binary: false });
      let bytes = rest;
      while (decodeFrames(bytes).frames.length < 2) bytes = Buffer.concat([bytes, await readBytes(socket, 1)]);
      expect(decodeFrames(bytes).frames.map((f) => [f.opcode, f.payload.toString('hex')])).to.deep.equal([
        [Opcode.Binary, '010203'],
        [Opcode.Text, Buffer.from('as text').toString('hex')],
      ]);
      const gone = whenClosed(p);
      socket.write(clientClose(1000));
      await gone;
      await closed(socket);
    });

    it('a peer that never answers our close: the socket is destroyed after closeTimeout, close 1006', async () => {
      let pipeline: ComposedPipeline | null = null;
      const port = await start({ closeTimeout: 100 }, (p) => {
        pipeline = p;
      });
      const { socket } = await rawClient(port);
      socket.on('data', () => {});
      pipeline!.close(1000);
      expect(await once(pipeline!, 'close')).to.deep.equal([1006, '']);
      await closed(socket);
    });
  });

  describe('control frames whatever the reader does (only data backpressures)', () => {
    /** Reads `socket` until `done(frames)` says so; the frames decoded so far. */
    async function readUntil(socket: net.Socket, first: Buffer, done: (frames: ReturnType<typeof decodeFrames>['frames']) => boolean): Promise<ReturnType<typeof decodeFrames>['frames']> {
      let bytes = first;
      for (;;) {
        const frames = decodeFrames(bytes).frames;
        if (done(frames)) return frames;
        bytes = Buffer.concat([bytes, await readBytes(socket, 1)]);
      }
    }

    it('nobody reads the messages: a ping after 4 MB of them is answered, and the close is echoed with its code and reason', async () => {
      let pipeline: ComposedPipeline | null = null;
      const port = await start({}, (p) => {
        pipeline = p;
      });
      const { socket, rest } = await rawClient(port);
      const payload = 'x'.repeat(1024);
      const many: Buffer[] = [];
      for (let i = 0; i < 4000; i++) many.push(clientFrame(Opcode.Text, payload));
      socket.write(Buffer.concat([...many, clientFrame(Opcode.Ping, 'still there?')]));
      const pong = await readUntil(socket, rest, (fs) => fs.some((f) => f.opcode === Opcode.Pong));
      expect(pong.find((f) => f.opcode === Opcode.Pong)!.payload.toString()).to.equal('still there?');
      const gone = whenClosed(pipeline!);
      socket.write(clientClose(4001, 'bye now'));
      const frames = await readUntil(socket, Buffer.alloc(0), (fs) => fs.some((f) => f.opcode === Opcode.Close));
      expect(closeOf(frames.find((f) => f.opcode === Opcode.Close)!)).to.deep.equal({ code: 4001, reason: 'bye now' });
      await closed(socket);
      expect(await gone).to.deep.equal([4001, 'bye now']);
      // What nobody read is still there to read, in order.
      expect(pipeline!.readableLength).to.be.greaterThan(0);
    });

    it('a reader that paused for good: the peer\'s close is answered after half of closeTimeout, not at closeTimeout with 1006', async () => {
      let pipeline: ComposedPipeline | null = null;
      const port = await start({ closeTimeout: 600 }, (p) => {
        pipeline = p;
        p.on('data', () => p.pause());
      });
      const { socket, rest } = await rawClient(port);
      const gone = whenClosed(pipeline!);
      const all = readAll(socket);
      socket.write(Buffer.concat([clientFrame(Opcode.Text, 'one'), clientFrame(Opcode.Text, 'two'), clientClose(1000, 'done')]));
      const frames = decodeFrames(Buffer.concat([rest, await all])).frames;
      expect(frames.map((f) => f.opcode)).to.deep.equal([Opcode.Close]);
      expect(closeOf(frames[0]!)).to.deep.equal({ code: 1000, reason: 'done' });
      expect(await gone).to.deep.equal([1000, 'done']);
    });

    it('ping(payload) and pong(payload): sent between data frames; over 125 bytes throws; once closing, WS_ERR_INVALID_STATE', async () => {
      let pipeline: ComposedPipeline | null = null;
      const port = await start({}, (p) => {
        pipeline = p;
      });
      const { socket, rest } = await rawClient(port);
      const p = pipeline!;
      const pongs: string[] = [];
      p.on('pong', (payload: Buffer) => pongs.push(payload.toString()));
      p.write('before');
      p.ping('are you there');
      p.pong(Buffer.from('heartbeat'));
      p.write('after');
      expect(() => p.ping('x'.repeat(126))).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      const frames = await readUntil(socket, rest, (fs) => fs.length >= 4);
      expect(frames.map((f) => [f.opcode, f.payload.toString()])).to.deep.equal([
        [Opcode.Text, 'before'],
        [Opcode.Ping, 'are you there'],
        [Opcode.Pong, 'heartbeat'],
        [Opcode.Text, 'after'],
      ]);
      const gotPong = once(p, 'pong');
      socket.write(clientFrame(Opcode.Pong, 'are you there'));
      await gotPong;
      expect(pongs).to.deep.equal(['are you there']);
      p.close(1000);
      expect(() => p.ping()).to.throw().with.property('code', 'WS_ERR_INVALID_STATE');
      const gone = whenClosed(p);
      socket.write(clientClose(1000));
      await gone;
      await closed(socket);
    });
  });

  describe('failing the connection (RFC 6455 §7.1.7)', () => {
    const cases: Array<[string, Buffer, string, number]> = [
      ['an unmasked client frame', Buffer.from([0x81, 0x01, 0x61]), 'WS_ERR_EXPECTED_MASK', 1002],
      ['invalid UTF-8 in a text message', clientFrame(Opcode.Text, Buffer.from([0xc0, 0xaf])), 'WS_ERR_INVALID_UTF8', 1007],
      ['a frame over maxPayload', clientFrame(Opcode.Binary, Buffer.alloc(200)), 'WS_ERR_PAYLOAD_TOO_BIG', 1009],
      ['a reserved opcode', clientFrame(0x3, 'x'), 'WS_ERR_INVALID_OPCODE', 1002],
    ];
    for (const [title, bytes, code, closeCode] of cases) {
      it(`${title}: ${code}, a close frame with ${closeCode}, one 'error', the socket ended`, async () => {
        const outcome: { errors: string[]; close: Array<[number, string]> } = { errors: [], close: [] };
        let pipelineClosed: Promise<unknown> | null = null;
        const port = await start({ maxPayload: 100 }, (p) => {
          p.on('error', (e: Error & { code?: string }) => outcome.errors.push(e.code ?? e.message));
          p.on('close', (c: number, r: string) => outcome.close.push([c, r]));
          pipelineClosed = whenClosed(p);
          echo(p);
        });
        const { socket, rest } = await rawClient(port);
        const all = readAll(socket);
        socket.write(bytes);
        const frames = decodeFrames(Buffer.concat([rest, await all])).frames;
        expect(frames.map((f) => f.opcode)).to.deep.equal([Opcode.Close]);
        expect(closeOf(frames[0]!).code).to.equal(closeCode);
        await closed(socket);
        await pipelineClosed;
        expect(outcome).to.deep.equal({ errors: [code], close: [[closeCode, '']] });
      });
    }

    it('an inserted stream that fails with a plain Error: close 1011, and the error as it was', async () => {
      const errors: Error[] = [];
      const port = await start(
        () => ({
          insert: {
            afterAssembler: new Transform({ objectMode: true, transform: (_v, _e, cb) => cb(new Error('boom')) }),
          },
        }),
        (p) => p.on('error', (e) => errors.push(e)),
      );
      const { socket, rest } = await rawClient(port);
      const all = readAll(socket);
      socket.write(clientFrame(Opcode.Text, 'x'));
      const frames = decodeFrames(Buffer.concat([rest, await all])).frames;
      expect(frames.map((f) => closeOf(f).code)).to.deep.equal([1011]);
      expect(errors.map((e) => e.message)).to.deep.equal(['boom']);
    });

    it('a request that is not an upgrade is refused with 400 and the socket closed', async () => {
      const errors: string[] = [];
      const port = await start({}, (p) => p.on('error', (e: Error & { code?: string }) => errors.push(e.code!)));
      const socket = net.connect(port, LOCAL);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      const answer = (await readAll(socket)).toString('latin1');
      expect(answer.startsWith('HTTP/1.1 400 ')).to.equal(true);
      expect(errors).to.deep.equal(['WS_ERR_INVALID_HANDSHAKE']);
    });

    it('options it cannot use throw at the call with WS_ERR_INVALID_ARGUMENT', () => {
      const socket = new net.Socket();
      const bad: unknown[] = [
        { role: 'peer' },
        { role: 'server', insert: { afterNothing: counter() } },
        { role: 'server', insert: { afterSplitter: 'not a stream' } },
        { role: 'server', replace: { responder: counter() } },
        { role: 'client', headers: { 'X-Bad': 'a\r\nb' } },
      ];
      for (const options of bad) {
        expect(() => composePipeline(socket, options as PipelineOptions), JSON.stringify(options)).to.throw().with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      }
      socket.destroy();
    });
  });

  describe('backpressure', () => {
    it('a reader that stops reading pauses the socket once memoryBudget is held; reading again delivers every message in order', async () => {
      let pipeline: ComposedPipeline | null = null;
      let serverSocket: net.Socket | null = null;
      const memoryBudget = 256 * 1024;
      const server = net.createServer((socket) => {
        serverSocket = socket;
        pipeline = composePipeline(socket, { role: 'server', memoryBudget });
      });
      server.listen(0, LOCAL);
      await once(server, 'listening');
      servers.push(server);
      const ws = connect(`ws://${LOCAL}:${(server.address() as net.AddressInfo).port}/`, { perMessageDeflate: false });
      await once(ws, 'open');
      const count = 2000;
      const payload = 'x'.repeat(1024);
      for (let i = 0; i < count; i++) ws.send(`${i} ${payload}`);
      // Nobody reads the pipeline: messages are held up to the budget, then the socket is paused.
      const deadline = Date.now() + 5000;
      while (serverSocket!.isPaused() === false && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(serverSocket!.isPaused()).to.equal(true);
      expect(pipeline!.readableLength).to.be.at.most(pipeline!.readableHighWaterMark);
      // Held for the reader: the budget, and at most one message past it.
      expect(pipeline!.heldBytes).to.be.at.least(memoryBudget).and.at.most(memoryBudget + 2048);
      const got: number[] = [];
      const all = new Promise<void>((resolve) => {
        pipeline!.on('data', (m: Message) => {
          got.push(Number(m.data.toString().split(' ')[0]));
          if (got.length === count) resolve();
        });
      });
      await all;
      expect(got).to.deep.equal(Array.from({ length: count }, (_, i) => i));
      ws.close();
      await once(ws, 'close');
    });
  });
});
