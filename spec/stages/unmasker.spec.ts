import { expect } from 'chai';
import { CloseCode, Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { Frame, makeFrame } from '../../lib/protocol/frame';
import { FrameSplitter, FrameSplitterCore } from '../../lib/stages/frame-splitter';
import { Unmasker, UnmaskerCore, UnmaskerOptions, maskingError, unmaskFrame } from '../../lib/stages/unmasker';
import { collect, everyChunking, fromChunks, someChunkings } from '../helpers/chunks';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function pattern(length: number, seed = 0): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 13 + seed * 5 + 1) & 0xff;
  return out;
}

const KEY = hex('37 fa 21 3d');

/** A masked frame (FIN set, 7- or 16-bit length), built from RFC 6455 §5.2 and §5.3 by hand. */
function maskedFrame(opcode: Opcode, plain: Buffer, key: Buffer): Buffer {
  const n = plain.length;
  const head = n < 126 ? [0x80 | opcode, 0x80 | n] : [0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff];
  const body = Buffer.alloc(n);
  for (let i = 0; i < n; i++) body[i] = plain[i]! ^ key[i % 4]!;
  return Buffer.concat([Buffer.from(head), key, body]);
}

/** Splits bytes into frames (streaming or not), unmasks them, and returns what comes out. */
function pipeline(chunks: Buffer[], role: UnmaskerOptions['role'], streaming = false) {
  const out: Frame[] = [];
  const unmasker = new UnmaskerCore({ role }, { onFrame: (f) => out.push(f) });
  const splitter = new FrameSplitterCore({ streaming }, {
    onFrame(frame) {
      const err = unmasker.write(frame);
      if (err !== null) splitter.fail(err);
    },
  });
  let error: WebSocketError | null = null;
  // Copies, since unmasking happens in place and the same input is fed at many chunkings.
  for (const chunk of chunks) error = splitter.write(Buffer.from(chunk));
  return { out, error, unmasker };
}

describe('Unmasker', () => {
  describe('RFC 6455 §5.7 masked examples', () => {
    const vectors = [
      { name: 'masked text "Hello"', bytes: hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'), opcode: Opcode.Text },
      { name: 'masked pong "Hello"', bytes: hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58'), opcode: Opcode.Pong },
    ];
    for (const vector of vectors) {
      for (const streaming of [false, true]) {
        it(`unmasks ${vector.name} at every chunking${streaming ? ', streaming' : ''}`, () => {
          for (const { name, chunks } of everyChunking(vector.bytes)) {
            const { out, error } = pipeline(chunks, 'server', streaming);
            expect(error, name).to.equal(null);
            expect(out.every((f) => f.mask === null && f.opcode === vector.opcode), name).to.equal(true);
            expect(Buffer.concat(out.map((f) => f.payload)).toString(), name).to.equal('Hello');
          }
        });
      }
    }
  });

  it('unmasks pieces of one frame split anywhere', () => {
    const plain = pattern(37, 1);
    const masked = maskedFrame(Opcode.Binary, plain, KEY).subarray(6);
    for (let a = 0; a <= masked.length; a++) {
      for (let b = a; b <= masked.length; b++) {
        const out: Buffer[] = [];
        const core = new UnmaskerCore({ role: 'server' }, { onFrame: (f) => out.push(f.payload) });
        for (const [start, end] of [[0, a], [a, b], [b, masked.length]] as const) {
          const payload = Buffer.from(masked.subarray(start, end));
          const fields = { mask: KEY, length: masked.length, offset: start, fin: true };
          expect(core.write(makeFrame(Opcode.Binary, payload, fields))).to.equal(null);
        }
        if (!Buffer.concat(out).equals(plain)) expect.fail(`split at ${a} and ${b}`);
      }
    }
  });

  it('unmasks long frames streamed at many chunkings', () => {
    const plain = pattern(1000, 2);
    const bytes = Buffer.concat([maskedFrame(Opcode.Binary, plain, hex('01 23 45 67')), maskedFrame(Opcode.Text, plain.subarray(0, 99), KEY)]);
    for (const { name, chunks } of someChunkings(bytes, [1, 2, 3, 5, 7, 64, 333])) {
      const { out, error } = pipeline(chunks, 'server', true);
      expect(error, name).to.equal(null);
      const binary = Buffer.concat(out.filter((f) => f.opcode === Opcode.Binary).map((f) => f.payload));
      const text = Buffer.concat(out.filter((f) => f.opcode === Opcode.Text).map((f) => f.payload));
      expect(binary.equals(plain), name).to.equal(true);
      expect(text.equals(plain.subarray(0, 99)), name).to.equal(true);
    }
  });

  it('unmasks in place and keeps every header field', () => {
    const payload = hex('7f 9f 4d 51 58');
    const frame = makeFrame(Opcode.Text, payload, { fin: false, rsv1: true, mask: KEY });
    const out: Frame[] = [];
    new UnmaskerCore({ role: 'server' }, { onFrame: (f) => out.push(f) }).write(frame);
    expect(out.length).to.equal(1);
    expect(out[0]!.payload).to.equal(payload);
    expect(payload.toString()).to.equal('Hello');
    expect(out[0]).to.deep.equal({ ...frame, mask: null });
  });

  describe('unmaskFrame (the plain function the fused receiver calls)', () => {
    it('as a server: unmasks in place, or keeps a data frame masked when asked; control frames always unmasked', () => {
      const frame = makeFrame(Opcode.Binary, hex('7f 9f 4d 51 58'), { fin: false, mask: KEY });
      expect(unmaskFrame(frame, true, true)).to.equal(frame);
      expect(frame.payload.toString('hex')).to.equal('7f9f4d5158');
      const out = unmaskFrame(frame, true, false);
      expect(out).to.deep.equal({ ...frame, mask: null });
      expect(out!.payload).to.equal(frame.payload);
      expect(frame.payload.toString()).to.equal('Hello');
      const ping = makeFrame(Opcode.Ping, hex('7f 9f 4d 51 58'), { mask: KEY });
      expect(unmaskFrame(ping, true, true)!.payload.toString()).to.equal('Hello');
    });

    it('refuses a frame masked wrongly for the role; maskingError names why', () => {
      const plain = makeFrame(Opcode.Text, Buffer.from('x'));
      const masked = makeFrame(Opcode.Text, Buffer.from('x'), { mask: KEY });
      expect(unmaskFrame(plain, true, true)).to.equal(null);
      expect(unmaskFrame(masked, false, false)).to.equal(null);
      expect(unmaskFrame(plain, false, false)).to.equal(plain);
      expect(maskingError(true).code).to.equal('WS_ERR_EXPECTED_MASK');
      expect(maskingError(false).code).to.equal('WS_ERR_UNEXPECTED_MASK');
      expect(maskingError(false).closeCode).to.equal(CloseCode.ProtocolError);
    });
  });

  describe('keepDataMasked (the next stage unmasks as it copies)', () => {
    it('checks data frames but hands them on still masked; control frames are unmasked', () => {
      const out: Frame[] = [];
      const core = new UnmaskerCore({ role: 'server', keepDataMasked: true }, { onFrame: (f) => out.push(f) });
      const data = makeFrame(Opcode.Text, hex('7f 9f 4d 51 58'), { mask: KEY });
      const ping = makeFrame(Opcode.Ping, hex('7f 9f 4d 51 58'), { mask: KEY });
      expect(core.write(data)).to.equal(null);
      expect(core.write(ping)).to.equal(null);
      expect(out[0]).to.equal(data);
      expect(out[0]!.payload.toString('hex')).to.equal('7f9f4d5158');
      expect(out[1]!.mask).to.equal(null);
      expect(out[1]!.payload.toString()).to.equal('Hello');
    });

    it('still fails on an unmasked frame from a client', () => {
      const core = new UnmaskerCore({ role: 'server', keepDataMasked: true }, { onFrame: () => expect.fail('no output') });
      const err = core.write(makeFrame(Opcode.Binary, Buffer.from('x')));
      expect(err?.code).to.equal('WS_ERR_EXPECTED_MASK');
      expect(err?.closeCode).to.equal(CloseCode.ProtocolError);
    });
  });

  describe('roles (RFC 6455 §5.1)', () => {
    it('a server fails on an unmasked frame', () => {
      for (const { name, chunks } of everyChunking(hex('81 05 48 65 6c 6c 6f'))) {
        const { out, error } = pipeline(chunks, 'server');
        expect(error?.code, name).to.equal('WS_ERR_EXPECTED_MASK');
        expect(error?.closeCode, name).to.equal(CloseCode.ProtocolError);
        expect(out, name).to.deep.equal([]);
      }
    });

    it('a client fails on a masked frame', () => {
      for (const { name, chunks } of everyChunking(hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58'))) {
        const { out, error } = pipeline(chunks, 'client');
        expect(error?.code, name).to.equal('WS_ERR_UNEXPECTED_MASK');
        expect(error?.closeCode, name).to.equal(CloseCode.ProtocolError);
        expect(out, name).to.deep.equal([]);
      }
    });

    it('a client passes unmasked frames on unchanged', () => {
      const frame = makeFrame(Opcode.Ping, Buffer.from('Hello'));
      const out: Frame[] = [];
      const core = new UnmaskerCore({ role: 'client' }, { onFrame: (f) => out.push(f) });
      expect(core.write(frame)).to.equal(null);
      expect(out).to.deep.equal([frame]);
      expect(out[0]).to.equal(frame);
    });

    it('stops the splitter in the middle of a chunk and ignores later frames', () => {
      const good = hex('81 82 00 00 00 00 68 69');
      const { out, error, unmasker } = pipeline([Buffer.concat([good, hex('81 00'), good])], 'server');
      expect(out.length).to.equal(1);
      expect(error?.code).to.equal('WS_ERR_EXPECTED_MASK');
      expect(unmasker.write(makeFrame(Opcode.Text, Buffer.alloc(0), { mask: KEY }))).to.equal(error);
      expect(out.length).to.equal(1);
    });
  });

  describe('stream wrapper', () => {
    it('unmasks frames piped from a FrameSplitter', async () => {
      const bytes = Buffer.concat([hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'), hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58')]);
      for (const { name, chunks } of someChunkings(bytes, [1, 3, 11])) {
        const copies = chunks.map((c) => Buffer.from(c));
        const frames = await collect<Frame>(fromChunks(copies).pipe(new FrameSplitter()).pipe(new Unmasker({ role: 'server' })));
        expect(frames.map((f) => [f.opcode, f.mask, f.payload.toString()]), name).to.deep.equal([
          [Opcode.Text, null, 'Hello'],
          [Opcode.Pong, null, 'Hello'],
        ]);
      }
    });

    it('takes stream options, keeping object mode on both sides', () => {
      const plain = new Unmasker({ role: 'server' });
      expect([plain.readableObjectMode, plain.writableObjectMode, plain.readableHighWaterMark]).to.deep.equal([true, true, 16]);
      const tuned = new Unmasker({ role: 'server' }, { highWaterMark: 2 });
      expect([tuned.readableObjectMode, tuned.writableObjectMode]).to.deep.equal([true, true]);
      expect([tuned.readableHighWaterMark, tuned.writableHighWaterMark]).to.deep.equal([2, 2]);
      expect(new Unmasker({ role: 'server' }).writableHighWaterMark).to.equal(16);
    });

    it('fails with the WebSocketError', async () => {
      const unmasker = new Unmasker({ role: 'client' });
      let caught: unknown = null;
      try {
        await collect(fromChunks([hex('81 85 37 fa 21 3d 7f 9f 4d 51 58')]).pipe(new FrameSplitter()).pipe(unmasker));
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(WebSocketError);
      expect((caught as WebSocketError).code).to.equal('WS_ERR_UNEXPECTED_MASK');
      expect((caught as WebSocketError).closeCode).to.equal(CloseCode.ProtocolError);
      expect(unmasker.core.error).to.equal(caught);
    });
  });
});
