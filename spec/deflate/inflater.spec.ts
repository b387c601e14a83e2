import { expect } from 'chai';
import { constants as zlibConstants, createDeflateRaw, deflateRawSync } from 'node:zlib';
import { Readable } from 'readable-stream';
import { CloseCode, Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { FragmentAssemblerCore } from '../../lib/stages/fragment-assembler';
import { Frame, Message, makeFrame } from '../../lib/protocol/frame';
import { FrameSplitterCore } from '../../lib/stages/frame-splitter';
import { Inflater, InflaterCore, InflaterOptions } from '../../lib/deflate/inflater';
import { ZlibLimiter } from '../../lib/deflate/permessage-deflate';
import { everyChunking, someChunkings } from '../helpers/chunks';
import { wireFrame } from '../helpers/frames';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** What came out of the inflater, in order: a message's text/bytes, or a control frame's opcode. */
type Event = { message: Message } | { control: Opcode; payload: string };

interface Run {
  events: Event[];
  error: WebSocketError | null;
  inflater: InflaterCore;
}

/**
 * Bytes from a server (unmasked) through FrameSplitter (RSV1 allowed) into the inflater and a
 * FragmentAssembler; resolves once every frame has been called back.
 */
function run(chunks: Buffer[], options: InflaterOptions = {}, streaming = true): Promise<Run> {
  return new Promise((resolve) => {
    const events: Event[] = [];
    let error: WebSocketError | null = null;
    let outstanding = 0;
    let fed = false;
    const assembler = new FragmentAssemblerCore(
      {},
      {
        onMessage: (message) => events.push({ message }),
        onControl: (frame) => events.push({ control: frame.opcode, payload: frame.payload.toString() }),
      },
    );
    const inflater = new InflaterCore(options, {
      onFrame: (frame) => {
        const err = assembler.write(frame);
        if (err !== null) inflater.fail(err);
      },
    });
    const settle = (): void => {
      if (fed && outstanding === 0) resolve({ events, error: error ?? inflater.error, inflater });
    };
    const done = (err: WebSocketError | null): void => {
      if (err !== null && error === null) error = err;
      outstanding--;
      settle();
    };
    const splitter = new FrameSplitterCore(
      { rsv1: true, streaming },
      {
        onFrame: (frame) => {
          outstanding++;
          inflater.write(frame, done);
        },
      },
    );
    for (const chunk of chunks) {
      const err = splitter.write(chunk);
      if (err !== null) error ??= err;
    }
    fed = true;
    settle();
  });
}

function texts(events: Event[]): Array<string> {
  return events.map((e) => ('message' in e ? e.message.data.toString() : `<${Opcode[e.control]}:${e.payload}>`));
}

/** Compresses one message alone (no context) the way RFC 7692 §7.2.1 says: sync flush, trailer removed. */
function compress(data: Buffer, windowBits = 15): Buffer {
  const out = deflateRawSync(data, { finishFlush: zlibConstants.Z_SYNC_FLUSH, windowBits });
  expect(out.subarray(-4).equals(hex('00 00 ff ff'))).to.equal(true);
  return out.subarray(0, out.length - 4);
}

function serverFrame(opcode: Opcode, payload: Buffer, fields: { fin?: boolean; rsv1?: boolean } = {}): Buffer {
  return wireFrame({ opcode, payload, mask: null, ...fields });
}

describe('Inflater', () => {
  describe('RFC 7692 §7.2.3 examples, at every chunking, splitter streaming and not', () => {
    const vectors: Array<{ name: string; bytes: Buffer; expected: string[]; options?: InflaterOptions }> = [
      { name: '§7.2.3.1 "Hello" in one compressed frame', bytes: hex('c1 07 f2 48 cd c9 c9 07 00'), expected: ['Hello'] },
      {
        name: '§7.2.3.1 "Hello" compressed and fragmented over two frames',
        bytes: hex('41 03 f2 48 cd  80 04 c9 c9 07 00'),
        expected: ['Hello'],
      },
      {
        name: '§7.2.3.2 two "Hello" messages sharing the LZ77 window (context takeover)',
        bytes: hex('c1 07 f2 48 cd c9 c9 07 00  c1 05 f2 00 11 00 00'),
        expected: ['Hello', 'Hello'],
      },
      {
        name: '§7.2.3.3 a DEFLATE block with no compression (BFINAL=0 stored block)',
        bytes: hex('c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00'),
        expected: ['Hello'],
      },
      {
        name: '§7.2.3.4 a DEFLATE block with BFINAL set to 1',
        bytes: hex('c1 08 f3 48 cd c9 c9 07 00 00'),
        expected: ['Hello'],
      },
      {
        name: '§7.2.3.5 two DEFLATE blocks in one message',
        bytes: hex('c1 0d f2 48 05 00 00 00 ff ff ca c9 c9 07 00'),
        expected: ['Hello'],
      },
      {
        name: 'an uncompressed message (RSV1 clear) passes through: RFC 6455 §5.7 "Hello"',
        bytes: hex('81 05 48 65 6c 6c 6f'),
        expected: ['Hello'],
      },
      {
        name: 'a ping between the fragments of a compressed message',
        bytes: hex('41 03 f2 48 cd  89 02 68 69  80 04 c9 c9 07 00'),
        expected: ['<Ping:hi>', 'Hello'],
      },
      {
        name: 'compressed, plain, compressed: context carries over the plain one',
        bytes: hex('c1 07 f2 48 cd c9 c9 07 00  81 02 68 69  c1 05 f2 00 11 00 00'),
        expected: ['Hello', 'hi', 'Hello'],
      },
      {
        name: 'a close frame after a compressed message comes out after it',
        bytes: hex('c1 07 f2 48 cd c9 c9 07 00  88 02 03 e8'),
        expected: ['Hello', '<Close:\u0003\ufffd>'],
      },
    ];
    for (const vector of vectors) {
      it(vector.name, async () => {
        for (const streaming of [true, false]) {
          for (const { name, chunks } of everyChunking(vector.bytes)) {
            const { events, error } = await run(chunks, vector.options, streaming);
            expect(error, name).to.equal(null);
            expect(texts(events), `${name}, streaming ${streaming}`).to.deep.equal(vector.expected);
          }
        }
      });
    }

    it('a compressed text message is delivered as text, a binary one as binary', async () => {
      const { events } = await run([serverFrame(Opcode.Binary, hex('f2 48 cd c9 c9 07 00'), { rsv1: true }), hex('c1 07 f2 48 cd c9 c9 07 00')]);
      expect(events.map((e) => ('message' in e ? e.message.binary : null))).to.deep.equal([true, false]);
    });

    it('an empty compressed message (the single byte 00, §7.2.3.6) inflates to nothing', async () => {
      const { events, error } = await run([hex('c1 01 00')]);
      expect(error).to.equal(null);
      expect(texts(events)).to.deep.equal(['']);
    });
  });

  describe('context takeover', () => {
    it('noContextTakeover: the second §7.2.3.2 message (which refers to the first) fails with 1007', async () => {
      const { events, error } = await run([hex('c1 07 f2 48 cd c9 c9 07 00  c1 05 f2 00 11 00 00')], { noContextTakeover: true });
      expect(texts(events)).to.deep.equal(['Hello']);
      expect(error?.closeCode).to.equal(CloseCode.InvalidPayload);
    });

    it('noContextTakeover frees the zlib stream after each message; with takeover it is kept', async () => {
      const frames = [hex('c1 07 f2 48 cd c9 c9 07 00')];
      expect((await run(frames, { noContextTakeover: true })).inflater.hasContext).to.equal(false);
      expect((await run(frames)).inflater.hasContext).to.equal(true);
    });

    it('several independent messages in a row inflate with noContextTakeover', async () => {
      const messages = ['first message', 'second message, a bit longer', 'third'];
      const bytes = Buffer.concat(messages.map((m) => serverFrame(Opcode.Text, compress(Buffer.from(m)), { rsv1: true })));
      const { events, error } = await run([bytes], { noContextTakeover: true });
      expect(error).to.equal(null);
      expect(texts(events)).to.deep.equal(messages);
    });
  });

  describe('large messages', () => {
    const text = Buffer.from(
      Array.from({ length: 40000 }, (_, i) => `{"id":${i},"name":"item ${i % 97}","ok":${i % 3 === 0}}`).join(','),
    );
    const compressed = compress(text);

    it(`${text.length} bytes compressed to ${compressed.length}, fragmented over frames, at several chunkings`, async () => {
      const frames: Buffer[] = [];
      const size = 1000;
      for (let at = 0; at < compressed.length; at += size) {
        const end = Math.min(at + size, compressed.length);
        frames.push(serverFrame(at === 0 ? Opcode.Text : Opcode.Continuation, compressed.subarray(at, end), { rsv1: at === 0, fin: end === compressed.length }));
      }
      const bytes = Buffer.concat(frames);
      for (const { name, chunks } of someChunkings(bytes, [97, 1000, 65536])) {
        const { events, error } = await run(chunks);
        expect(error, name).to.equal(null);
        expect(events.length, name).to.equal(1);
        expect((events[0] as { message: Message }).message.data.equals(text), name).to.equal(true);
      }
    });

    it('emits the inflated message in pieces as it is produced (zlib chunks), FIN on the last', async () => {
      const out: Frame[] = [];
      const inflater = new InflaterCore({}, { onFrame: (frame) => out.push(frame) });
      await new Promise<void>((resolve, reject) =>
        inflater.write(makeFrame(Opcode.Binary, compressed, { rsv1: true }), (err) => (err === null ? resolve() : reject(err))),
      );
      expect(out.length).to.be.greaterThan(1);
      expect(out[0]!.opcode).to.equal(Opcode.Binary);
      expect(out.slice(1).every((f) => f.opcode === Opcode.Continuation)).to.equal(true);
      expect(out.map((f) => f.fin)).to.deep.equal([...out.slice(1).map(() => false), true]);
      expect(out.every((f) => !f.rsv1 && f.offset === 0 && f.length === f.payload.length)).to.equal(true);
      expect(Buffer.concat(out.map((f) => f.payload)).equals(text)).to.equal(true);
    });
  });

  describe('errors', () => {
    it('RFC 7692 §6.1: RSV1 on a continuation frame fails with WS_ERR_UNEXPECTED_RSV (1002)', async () => {
      const { error } = await run([hex('41 03 f2 48 cd  c0 04 c9 c9 07 00')]);
      expect(error?.code).to.equal('WS_ERR_UNEXPECTED_RSV');
      expect(error?.closeCode).to.equal(CloseCode.ProtocolError);
    });

    it('RSV1 on a continuation of an uncompressed message fails too', async () => {
      const { error } = await run([hex('01 03 48 65 6c  c0 02 6c 6f')]);
      expect(error?.code).to.equal('WS_ERR_UNEXPECTED_RSV');
    });

    it('RSV1 on a control frame fails with WS_ERR_UNEXPECTED_RSV (1002)', () => {
      const core = new InflaterCore({}, { onFrame: () => expect.fail('nothing may come out') });
      const err = core.write(makeFrame(Opcode.Ping, Buffer.alloc(0), { rsv1: true }));
      expect(err?.code).to.equal('WS_ERR_UNEXPECTED_RSV');
      expect(err?.closeCode).to.equal(CloseCode.ProtocolError);
    });

    it('bytes that are not DEFLATE data fail with 1007', async () => {
      const { error, events } = await run([serverFrame(Opcode.Text, hex('ff ff ff ff 00'), { rsv1: true })]);
      expect(events).to.deep.equal([]);
      expect(error?.code).to.equal('WS_ERR_INVALID_COMPRESSED_DATA');
      expect(error?.closeCode).to.equal(CloseCode.InvalidPayload);
    });

    it('maxMessageSize applies to the inflated size: WS_ERR_MESSAGE_TOO_BIG (1009)', async () => {
      const payload = compress(Buffer.alloc(5000, 'a'));
      expect(payload.length).to.be.lessThan(100);
      const ok = await run([serverFrame(Opcode.Text, payload, { rsv1: true })], { maxMessageSize: 5000 });
      expect(ok.error).to.equal(null);
      const { error, events } = await run([serverFrame(Opcode.Text, payload, { rsv1: true })], { maxMessageSize: 4999 });
      expect(events).to.deep.equal([]);
      expect(error?.code).to.equal('WS_ERR_MESSAGE_TOO_BIG');
      expect(error?.closeCode).to.equal(CloseCode.MessageTooBig);
    });

    it('maxMessageSize counts every frame of a fragmented message', async () => {
      // Two fragments of one compressed message, each inflating to 3000 bytes.
      const whole = compress(Buffer.alloc(6000, 'b'));
      const half = whole.length >> 1;
      const bytes = Buffer.concat([
        serverFrame(Opcode.Text, whole.subarray(0, half), { rsv1: true, fin: false }),
        serverFrame(Opcode.Continuation, whole.subarray(half)),
      ]);
      expect((await run([bytes], { maxMessageSize: 6000, frameOverhead: 0 })).error).to.equal(null);
      expect((await run([bytes], { maxMessageSize: 5999, frameOverhead: 0 })).error?.code).to.equal('WS_ERR_MESSAGE_TOO_BIG');
      // Beside its bytes, the second frame counts frameOverhead (256 by default).
      expect((await run([bytes], { maxMessageSize: 6255 })).error?.code).to.equal('WS_ERR_TOO_MANY_FRAGMENTS');
      expect((await run([bytes], { maxMessageSize: 6256 })).error).to.equal(null);
    });

    it('maxPayload applies to what one frame inflates to', async () => {
      const payload = compress(Buffer.alloc(5000, 'a'));
      const { error } = await run([serverFrame(Opcode.Text, payload, { rsv1: true })], { maxPayload: 4096 });
      expect(error?.code).to.equal('WS_ERR_MESSAGE_TOO_BIG');
      expect(error?.closeCode).to.equal(CloseCode.MessageTooBig);
    });

    it('maxFragments counts wire frames, compressed or not: WS_ERR_TOO_MANY_FRAGMENTS (1009)', async () => {
      const bytes = hex('41 03 f2 48 cd  00 00  80 04 c9 c9 07 00');
      expect((await run([bytes], { maxFragments: 3 })).error).to.equal(null);
      const { error } = await run([bytes], { maxFragments: 2 });
      expect(error?.code).to.equal('WS_ERR_TOO_MANY_FRAGMENTS');
      expect(error?.closeCode).to.equal(CloseCode.MessageTooBig);
    });

    it('a compressed message of empty fragments is cut once their overhead passes maxMessageSize (1009)', async () => {
      const first = serverFrame(Opcode.Binary, compress(Buffer.from('x')).subarray(0, 1), { rsv1: true, fin: false });
      const empty = serverFrame(Opcode.Continuation, Buffer.alloc(0), { fin: false });
      // maxMessageSize 64 KiB: the 257th frame's overhead (256 x 256) passes it.
      const flood = Buffer.concat([first, ...Array.from({ length: 300 }, () => empty)]);
      const { error, events } = await run([flood], { maxMessageSize: 64 * 1024 });
      expect(error?.code).to.equal('WS_ERR_TOO_MANY_FRAGMENTS');
      expect(error?.closeCode).to.equal(CloseCode.MessageTooBig);
      expect(events).to.deep.equal([]);
    });

    it('after an error every later write is called back with it and nothing comes out', async () => {
      const { inflater, error } = await run([serverFrame(Opcode.Text, hex('ff ff'), { rsv1: true })]);
      let got: WebSocketError | null = null;
      expect(inflater.write(makeFrame(Opcode.Text, Buffer.from('x')), (err) => (got = err))).to.equal(error);
      expect(got).to.equal(error);
    });
  });

  describe('decompression bomb', function () {
    this.timeout(60_000);

    /**
     * 1 GiB of zeros, DEFLATEd: once zlib's window is full of zeros, each further MiB compresses
     * to the very same bytes, so the bomb is the first MiB's output plus 1023 copies of the second's.
     */
    async function bomb(mebibytes: number): Promise<Buffer> {
      const deflate = createDeflateRaw({ level: 9 });
      const parts: Buffer[] = [];
      let current: Buffer[] = [];
      deflate.on('data', (chunk: Buffer) => current.push(chunk));
      const zeros = Buffer.alloc(1 << 20);
      for (let i = 0; i < 3; i++) {
        deflate.write(zeros);
        await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
        parts.push(Buffer.concat(current));
        current = [];
      }
      deflate.destroy();
      expect(parts[2]!.equals(parts[1]!)).to.equal(true);
      const blocks = [parts[0]!];
      for (let i = 1; i < mebibytes; i++) blocks.push(parts[1]!);
      const body = Buffer.concat(blocks);
      return body.subarray(0, body.length - 4); // the message's trailer, removed as §7.2.1 says
    }

    it('a ~1 MB frame that inflates to 1 GiB stops at maxMessageSize with 1009; memory stays bounded', async () => {
      const payload = await bomb(1024);
      expect(payload.length).to.be.lessThan(1_200_000);
      global.gc?.();
      const before = process.memoryUsage().rss;
      let inflated = 0;
      let peak = before;
      const limit = 64 * 1024 * 1024;
      const core = new InflaterCore(
        { maxMessageSize: limit },
        {
          onFrame: (frame) => {
            inflated += frame.payload.length;
            if ((inflated & 0xfffff) < frame.payload.length) peak = Math.max(peak, process.memoryUsage().rss);
          },
        },
      );
      const err = await new Promise<WebSocketError | null>((resolve) => core.write(makeFrame(Opcode.Binary, payload, { rsv1: true }), resolve));
      peak = Math.max(peak, process.memoryUsage().rss);
      expect(err?.code).to.equal('WS_ERR_MESSAGE_TOO_BIG');
      expect(err?.closeCode).to.equal(CloseCode.MessageTooBig);
      expect(inflated).to.be.at.most(limit);
      expect(core.hasContext).to.equal(false);
      expect(peak - before, `RSS grew by ${((peak - before) / 2 ** 20).toFixed(1)} MiB`).to.be.lessThan(100 * 2 ** 20);
    });

    it('the same bomb through the stream stage, the reader keeping nothing: 1009, RSS growth < 100 MiB', async () => {
      const payload = await bomb(1024);
      const before = process.memoryUsage().rss;
      let peak = before;
      const inflater = new Inflater({});
      let inflated = 0;
      const result = new Promise<Error | undefined>((resolve) => {
        inflater.on('data', (frame: Frame) => {
          inflated += frame.payload.length;
          peak = Math.max(peak, process.memoryUsage().rss);
        });
        inflater.on('error', resolve);
        inflater.on('end', () => resolve(undefined));
      });
      inflater.end(makeFrame(Opcode.Binary, payload, { rsv1: true }));
      const err = (await result) as WebSocketError | undefined;
      expect(err?.code).to.equal('WS_ERR_MESSAGE_TOO_BIG');
      expect(inflated).to.be.at.most(100 * 2 ** 20);
      expect(peak - before, `RSS grew by ${((peak - before) / 2 ** 20).toFixed(1)} MiB`).to.be.lessThan(100 * 2 ** 20);
    });
  });

  describe('backpressure and concurrency', () => {
    it('a reader that stops reading stops the inflation; reading again finishes the message', async () => {
      const big = Buffer.alloc(32 * 1024 * 1024, 'z');
      const payload = compress(big);
      const inflater = new Inflater({});
      inflater.write(makeFrame(Opcode.Binary, payload, { rsv1: true }));
      // Nobody reads: wait until the stage is full, then give zlib time to run on if it would.
      while (inflater.readableLength < inflater.readableHighWaterMark) await new Promise((resolve) => setImmediate(resolve));
      for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(inflater.readableLength, 'frames waiting in the stage').to.be.at.most(inflater.readableHighWaterMark + 1);
      let total = 0;
      let frames = 0;
      for await (const frame of inflater as unknown as AsyncIterable<Frame>) {
        total += frame.payload.length;
        frames++;
        if (frame.fin) break;
      }
      expect(total).to.equal(big.length);
      expect(frames).to.be.greaterThan(17);
    });

    it('a paused inflater holds no zlib slot: another connection inflates meanwhile', async () => {
      const limiter = new ZlibLimiter(1);
      const slow = new Inflater({ limiter });
      slow.write(makeFrame(Opcode.Binary, compress(Buffer.alloc(8 * 1024 * 1024, 'q')), { rsv1: true }));
      // Wait until the stage is full (nobody reads it) and the inflater has paused.
      while (slow.readableLength < slow.readableHighWaterMark) await new Promise((resolve) => setImmediate(resolve));
      expect(limiter.active).to.equal(0);
      const { events, error } = await run([hex('c1 07 f2 48 cd c9 c9 07 00')], { limiter });
      expect(error).to.equal(null);
      expect(texts(events)).to.deep.equal(['Hello']);
      slow.destroy();
    });

    it('never runs more zlib operations at once than the limiter allows', async () => {
      const limiter = new ZlibLimiter(2);
      let peak = 0;
      const acquire = limiter.acquire.bind(limiter);
      limiter.acquire = (task) =>
        acquire(() => {
          peak = Math.max(peak, limiter.active);
          task();
        });
      const bytes = Buffer.concat(Array.from({ length: 5 }, () => serverFrame(Opcode.Text, compress(Buffer.alloc(20000, 'm')), { rsv1: true })));
      const runs = await Promise.all(Array.from({ length: 8 }, () => run([bytes], { limiter, noContextTakeover: true })));
      for (const r of runs) {
        expect(r.error).to.equal(null);
        expect(r.events.length).to.equal(5);
      }
      expect(peak).to.equal(2);
      expect(limiter.active).to.equal(0);
    });

    it('inflates queued tiny frames of one message together: thousands of frames of 1 byte, a few zlib operations', async () => {
      // Hex digits of a fixed pseudo-random sequence: about half their size once compressed.
      let seed = 1;
      const text = Buffer.from(Array.from({ length: 8000 }, () => ((seed = (seed * 48271) % 2147483647) & 0xff).toString(16).padStart(2, '0')).join(''));
      const compressed = compress(text);
      const frames: Buffer[] = [];
      for (let i = 0; i < compressed.length; i++) {
        frames.push(serverFrame(i === 0 ? Opcode.Text : Opcode.Continuation, compressed.subarray(i, i + 1), { rsv1: i === 0, fin: i === compressed.length - 1 }));
      }
      expect(frames.length).to.be.above(1000);
      // Three copies of the message, in one chunk.
      const bytes = Buffer.concat([...frames, ...frames, ...frames]);
      const limiter = new ZlibLimiter(1);
      let operations = 0;
      const acquire = limiter.acquire.bind(limiter);
      limiter.acquire = (task) => {
        operations++;
        acquire(task);
      };
      const { events, error } = await run([bytes], { limiter, maxMessageSize: 100 * 1024 * 1024 });
      expect(error).to.equal(null);
      expect(texts(events)).to.deep.equal([text.toString(), text.toString(), text.toString()]);
      expect(operations, `${operations} zlib operations for ${3 * frames.length} frames`).to.be.below(30);
    });

    it('a large inflation yields its slot every MiB to others waiting: a small message gets through before it ends', async () => {
      const limiter = new ZlibLimiter(1);
      const order: string[] = [];
      const big = new InflaterCore({ limiter }, { onFrame: (frame) => frame.fin && order.push('big') });
      const small = new InflaterCore({ limiter }, { onFrame: (frame) => frame.fin && order.push('small') });
      const bigDone = new Promise((resolve) => big.write(makeFrame(Opcode.Binary, compress(Buffer.alloc(64 * 1024 * 1024, 'y')), { rsv1: true }), resolve));
      // The big one holds the only slot now; the small one queues behind it.
      expect(limiter.active).to.equal(1);
      const smallDone = new Promise((resolve) => small.write(makeFrame(Opcode.Text, hex('f2 48 cd c9 c9 07 00'), { rsv1: true }), resolve));
      await Promise.all([bigDone, smallDone]);
      expect(order).to.deep.equal(['small', 'big']);
      expect(big.error).to.equal(null);
      expect(limiter.active).to.equal(0);
    });

    it('the stream stage inflates what is piped through it', async () => {
      const frames = [hex('c1 07 f2 48 cd c9 c9 07 00'), hex('c1 05 f2 00 11 00 00')].map((b) =>
        makeFrame(Opcode.Text, b.subarray(2), { rsv1: true }),
      );
      const out: Frame[] = [];
      const inflater = Readable.from(frames).pipe(new Inflater());
      for await (const frame of inflater as unknown as AsyncIterable<Frame>) out.push(frame);
      expect(out.map((f) => f.payload.toString())).to.deep.equal(['Hello', 'Hello']);
    });
  });
});
