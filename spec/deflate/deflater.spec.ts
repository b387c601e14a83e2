import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import { Readable } from 'readable-stream';
import { CloseCode, Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { Deflater, DeflaterCore, DeflaterOptions } from '../../lib/deflate/deflater';
import { Frame, makeFrame } from '../../lib/protocol/frame';
import { InflaterCore } from '../../lib/deflate/inflater';
import { MessageFramerCore } from '../../lib/stages/message-framer';
import { ZlibLimiter } from '../../lib/deflate/permessage-deflate';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** Writes frames to a DeflaterCore and resolves with every frame it handed on, once all are called back. */
function deflate(frames: Frame[], options: DeflaterOptions = {}): Promise<{ out: Frame[]; error: WebSocketError | null; core: DeflaterCore }> {
  return new Promise((resolve) => {
    const out: Frame[] = [];
    const core = new DeflaterCore(options, { onFrame: (frame) => out.push(frame) });
    let left = frames.length;
    let error: WebSocketError | null = null;
    if (left === 0) resolve({ out, error, core });
    for (const frame of frames) {
      core.write(frame, (err) => {
        error ??= err;
        if (--left === 0) resolve({ out, error, core });
      });
    }
  });
}

function text(data: string, fin = true): Frame {
  return makeFrame(Opcode.Text, Buffer.from(data), { fin });
}

/** Inflates one message's frames independently of lib/inflater: payloads joined, 00 00 ff ff appended (RFC 7692 §7.2.2). */
function inflateMessage(frames: Frame[], windowBits = 15): Buffer {
  const data = Buffer.concat([...frames.map((f) => f.payload), hex('00 00 ff ff')]);
  return inflateRawSync(data, { finishFlush: zlibConstants.Z_SYNC_FLUSH, windowBits });
}

/** Frames of a message built by our MessageFramer (fragmented at `fragmentSize`). */
function framed(data: Buffer, fragmentSize: number, binary = true): Frame[] {
  const frames: Frame[] = [];
  const framer = new MessageFramerCore({ fragmentSize }, { onFrame: (f) => frames.push(f) });
  framer.write({ data, binary });
  return frames;
}

describe('Deflater', () => {
  describe('RFC 7692 §7.2.3 examples', () => {
    it('§7.2.3.1: "Hello" compresses to f2 48 cd c9 c9 07 00 with RSV1 set', async () => {
      const { out } = await deflate([text('Hello')], { threshold: 0 });
      expect(out.length).to.equal(1);
      expect(out[0]!.payload.toString('hex')).to.equal('f248cdc9c90700');
      expect(out[0]!).to.deep.include({ rsv1: true, fin: true, opcode: Opcode.Text });
    });

    it('§7.2.3.2: with context takeover the second "Hello" is f2 00 11 00 00', async () => {
      const { out } = await deflate([text('Hello'), text('Hello')], { threshold: 0 });
      expect(out.map((f) => f.payload.toString('hex'))).to.deep.equal(['f248cdc9c90700', 'f200110000']);
    });

    it('without context takeover every "Hello" is f2 48 cd c9 c9 07 00, and the zlib stream is freed', async () => {
      const { out, core } = await deflate([text('Hello'), text('Hello')], { threshold: 0, noContextTakeover: true });
      expect(out.map((f) => f.payload.toString('hex'))).to.deep.equal(['f248cdc9c90700', 'f248cdc9c90700']);
      expect(core.hasContext).to.equal(false);
    });

    it('§7.2.3.6: an empty message compresses to the single byte 00, first and after another', async () => {
      const { out } = await deflate([text(''), text('Hello'), text('')], { threshold: 0 });
      expect(out.map((f) => f.payload.toString('hex'))).to.deep.equal(['00', 'f248cdc9c90700', '00']);
      expect(out.every((f) => f.rsv1)).to.equal(true);
    });
  });

  describe('threshold', () => {
    it('a message sent whole under the threshold goes uncompressed (RSV1 clear); at the threshold, compressed', async () => {
      const { out } = await deflate([text('a'.repeat(99)), text('a'.repeat(100))], { threshold: 100 });
      expect(out[0]!.rsv1).to.equal(false);
      expect(out[0]!.payload.toString()).to.equal('a'.repeat(99));
      expect(out[1]!.rsv1).to.equal(true);
      expect(inflateMessage([out[1]!]).toString()).to.equal('a'.repeat(100));
    });

    it('defaults to 1024 bytes', async () => {
      const { out } = await deflate([text('b'.repeat(1023)), text('b'.repeat(1024))]);
      expect(out.map((f) => f.rsv1)).to.deep.equal([false, true]);
    });

    it('a message in several frames is compressed whatever its size', async () => {
      const { out } = await deflate([text('He', false), makeFrame(Opcode.Continuation, Buffer.from('llo'))]);
      expect(out.map((f) => f.rsv1)).to.deep.equal([true, false]);
      expect(inflateMessage(out).toString()).to.equal('Hello');
    });

    it('uncompressed messages between compressed ones leave the window as it was', async () => {
      const { out } = await deflate([text('Hello'), text('hi'), text('Hello')], { threshold: 5 });
      expect(out.map((f) => f.rsv1)).to.deep.equal([true, false, true]);
      expect(out[2]!.payload.toString('hex')).to.equal('f200110000');
    });
  });

  describe('fragmented and streamed messages', () => {
    const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => `line ${i % 50}: some text\n`).join(''));

    for (const fragmentSize of [1, 100, 4096, 0]) {
      // Byte-sized fragments cost one zlib round trip each: a shorter message for those.
      const message = fragmentSize === 1 ? data.subarray(0, 2000) : data;
      it(`a ${message.length}-byte message cut into ${fragmentSize === 0 ? 'one frame' : `frames of ${fragmentSize}`}: RSV1 on the first only, trailer removed from the last only`, async () => {
        const frames = framed(message, fragmentSize);
        const { out, error } = await deflate(frames);
        expect(error).to.equal(null);
        expect(out.length).to.equal(frames.length);
        expect(out.map((f) => f.rsv1)).to.deep.equal(out.map((_, i) => i === 0));
        expect(out.map((f) => f.fin)).to.deep.equal(frames.map((f) => f.fin));
        expect(out[0]!.opcode).to.equal(Opcode.Binary);
        for (const f of out.slice(0, -1)) {
          if (f.payload.length > 0) expect(f.payload.subarray(-4).toString('hex')).to.equal('0000ffff');
        }
        expect(inflateMessage(out).equals(message)).to.equal(true);
      });
    }

    it('streamed parts (writePart) compress part by part, empty parts included', async () => {
      const frames: Frame[] = [];
      const framer = new MessageFramerCore({}, { onFrame: (f) => frames.push(f) });
      framer.writePart(Buffer.from('abc'), false, false);
      framer.writePart(Buffer.alloc(0), false, false);
      framer.writePart(Buffer.from('abcabcabc'), false, false);
      framer.writePart(Buffer.alloc(0), false, true);
      const { out } = await deflate(frames);
      expect(out.map((f) => f.opcode)).to.deep.equal([Opcode.Text, Opcode.Continuation, Opcode.Continuation, Opcode.Continuation]);
      expect(out.map((f) => f.rsv1)).to.deep.equal([true, false, false, false]);
      expect(out[1]!.payload.length).to.equal(0);
      expect(inflateMessage(out).toString()).to.equal('abcabcabcabc');
    });
  });

  describe('round trip through the Inflater', () => {
    const sizes = [0, 1, 125, 1024, 65535, 65536, 300_000];
    for (const windowBits of [9, 12, 15]) {
      for (const noContextTakeover of [false, true]) {
        it(`windowBits ${windowBits}, ${noContextTakeover ? 'no ' : ''}context takeover: random and repetitive messages`, async () => {
          const messages = sizes.flatMap((n) => [randomBytes(n), Buffer.alloc(n, n % 251)]);
          const { out, error } = await deflate(
            messages.map((m) => makeFrame(Opcode.Binary, m)),
            { threshold: 0, windowBits, noContextTakeover },
          );
          expect(error).to.equal(null);
          const inflated: Buffer[] = [];
          let parts: Buffer[] = [];
          const inflater = new InflaterCore({ windowBits, noContextTakeover }, {
            onFrame: (f) => {
              parts.push(f.payload);
              if (f.fin) {
                inflated.push(Buffer.concat(parts));
                parts = [];
              }
            },
          });
          await Promise.all(out.map((f) => new Promise((resolve) => inflater.write(f, resolve))));
          expect(inflater.error).to.equal(null);
          expect(inflated.length).to.equal(messages.length);
          messages.forEach((m, i) => expect(inflated[i]!.equals(m), `message ${i}`).to.equal(true));
        });
      }
    }
  });

  describe('ordering', () => {
    it('pings and pongs are handed on at once, even while a large message is being compressed', async () => {
      const out: Frame[] = [];
      const core = new DeflaterCore({}, { onFrame: (f) => out.push(f) });
      const big = new Promise((resolve) => core.write(makeFrame(Opcode.Binary, randomBytes(16 * 1024 * 1024)), resolve));
      let pongDone = false;
      core.write(makeFrame(Opcode.Pong, Buffer.from('p')), () => (pongDone = true));
      expect(pongDone).to.equal(true);
      expect(out.map((f) => f.opcode)).to.deep.equal([Opcode.Pong]);
      await big;
      expect(out.map((f) => f.opcode)).to.deep.equal([Opcode.Pong, Opcode.Binary]);
    });

    it('data messages keep their order, and a close frame waits for the messages before it', async () => {
      const close = makeFrame(Opcode.Close, hex('03 e8'));
      const { out } = await deflate([text('x'.repeat(5000)), text('small'), close, text('y'.repeat(5000))]);
      expect(out.map((f) => [f.opcode, f.rsv1])).to.deep.equal([
        [Opcode.Text, true],
        [Opcode.Text, false],
        [Opcode.Close, false],
        [Opcode.Text, true],
      ]);
    });
  });

  describe('options and errors', () => {
    it('refuses an 8-bit window: zlib cannot compress with it', () => {
      expect(() => new DeflaterCore({ windowBits: 8 }, { onFrame: () => undefined })).to.throw(RangeError);
    });

    it('level and memLevel reach zlib (level 0 stores)', async () => {
      const data = Buffer.alloc(4000, 'k');
      const stored = (await deflate([makeFrame(Opcode.Binary, data)], { level: 0 })).out[0]!;
      const best = (await deflate([makeFrame(Opcode.Binary, data)], { level: 9, memLevel: 9 })).out[0]!;
      expect(stored.payload.length).to.be.greaterThan(data.length);
      expect(best.payload.length).to.be.lessThan(100);
    });

    it('after fail() every write is called back with the error', () => {
      const core = new DeflaterCore({}, { onFrame: () => expect.fail('nothing may come out') });
      const err = new WebSocketError('WS_ERR_INVALID_STATE', 'stop');
      core.fail(err);
      let got: WebSocketError | null = null;
      expect(core.write(text('x'), (e) => (got = e))).to.equal(err);
      expect(got).to.equal(err);
      expect(err.closeCode).to.equal(CloseCode.InternalError);
    });

    it('never runs more zlib operations at once than the limiter allows', async () => {
      const limiter = new ZlibLimiter(1);
      let peak = 0;
      const acquire = limiter.acquire.bind(limiter);
      limiter.acquire = (task) =>
        acquire(() => {
          peak = Math.max(peak, limiter.active);
          task();
        });
      const frames = Array.from({ length: 4 }, () => makeFrame(Opcode.Binary, randomBytes(50_000)));
      const results = await Promise.all(Array.from({ length: 6 }, () => deflate(frames, { limiter })));
      expect(results.every((r) => r.error === null && r.out.length === 4)).to.equal(true);
      expect(peak).to.equal(1);
      expect(limiter.active).to.equal(0);
    });
  });

  describe('the stream stage', () => {
    it('compresses frames piped through it', async () => {
      const out: Frame[] = [];
      const stage = Readable.from([text('Hello'), text('Hello')]).pipe(new Deflater({ threshold: 0 }));
      for await (const frame of stage as unknown as AsyncIterable<Frame>) out.push(frame);
      expect(out.map((f) => f.payload.toString('hex'))).to.deep.equal(['f248cdc9c90700', 'f200110000']);
    });
  });
});
