import { expect } from 'chai';
import { CloseCode, Opcode } from '../../lib/protocol/constants';
import { WebSocketError, WebSocketErrorCode } from '../../lib/protocol/errors';
import { Frame, isLastPiece, makeFrame, withPayload } from '../../lib/protocol/frame';
import { FrameSplitter, FrameSplitterCore, FrameSplitterOptions } from '../../lib/stages/frame-splitter';
import { Chunking, collect, everyChunking, fromChunks, someChunkings } from '../helpers/chunks';

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** A payload whose bytes are not all the same, so that a misplaced byte shows. */
function pattern(length: number, seed = 0): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return out;
}

interface Spec {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  payload: Buffer;
  mask?: Buffer;
}

/** Builds a frame byte by byte from RFC 6455 §5.2, independently of the code under test. */
function encode(spec: Spec): Buffer {
  const bytes: number[] = [((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | spec.opcode];
  const maskBit = spec.mask === undefined ? 0 : 0x80;
  const n = spec.payload.length;
  if (n < 126) bytes.push(maskBit | n);
  else if (n < 65536) bytes.push(maskBit | 126, n >> 8, n & 0xff);
  else {
    bytes.push(maskBit | 127);
    for (let shift = 7; shift >= 0; shift--) bytes.push(Math.floor(n / 2 ** (shift * 8)) & 0xff);
  }
  const payload = Buffer.from(spec.payload);
  if (spec.mask !== undefined) {
    bytes.push(...spec.mask);
    for (let i = 0; i < n; i++) payload[i] = payload[i]! ^ spec.mask[i % 4]!;
  }
  return Buffer.concat([Buffer.from(bytes), payload]);
}

interface Run {
  frames: Frame[];
  error: WebSocketError | null;
  maxBuffered: number;
  core: FrameSplitterCore;
}

/** Feeds `chunks` to a new core, copying each frame's payload as it is emitted. */
function run(chunks: Buffer[], options: FrameSplitterOptions = {}): Run {
  const frames: Frame[] = [];
  const core = new FrameSplitterCore(options, {
    onFrame(frame) {
      frames.push({ ...frame, payload: Buffer.from(frame.payload), mask: frame.mask && Buffer.from(frame.mask) });
    },
  });
  let error: WebSocketError | null = null;
  let maxBuffered = 0;
  for (const chunk of chunks) {
    error = core.write(chunk);
    maxBuffered = Math.max(maxBuffered, core.bufferedBytes);
  }
  return { frames, error, maxBuffered, core };
}

/** Joins the pieces of each frame, checking how they are described, into whole frames. */
function joinPieces(pieces: Frame[]): Frame[] {
  const out: Frame[] = [];
  let parts: Buffer[] = [];
  let received = 0;
  let first: Frame | null = null;
  for (const piece of pieces) {
    if (first === null) first = piece;
    const same =
      piece.fin === first.fin &&
      piece.rsv1 === first.rsv1 &&
      piece.rsv2 === first.rsv2 &&
      piece.rsv3 === first.rsv3 &&
      piece.opcode === first.opcode &&
      piece.length === first.length &&
      (piece.mask === null ? first.mask === null : first.mask !== null && piece.mask.equals(first.mask));
    if (!same) expect(piece, 'header fields of a piece').to.deep.include({ ...first, payload: piece.payload, offset: piece.offset });
    if (piece.offset !== received) expect(piece.offset, 'piece offset').to.equal(received);
    if (piece.length > 0 && piece.payload.length === 0) expect.fail('an empty piece of a non-empty frame');
    parts.push(piece.payload);
    received += piece.payload.length;
    if (isLastPiece(piece)) {
      out.push({ ...first, payload: Buffer.concat(parts), offset: 0 });
      parts = [];
      received = 0;
      first = null;
    }
  }
  expect(first, 'a frame left unfinished').to.equal(null);
  return out;
}

interface Expected {
  fin: boolean;
  opcode: Opcode;
  mask: Buffer | null;
  /** The payload as it is on the wire (still masked). */
  payload: Buffer;
  rsv1?: boolean;
}

function expectFrames(actual: Frame[], expected: Expected[], label: string): void {
  expect(actual.length, `${label}: frame count`).to.equal(expected.length);
  expected.forEach((want, i) => {
    const got = actual[i]!;
    const ok =
      got.fin === want.fin &&
      got.opcode === want.opcode &&
      got.rsv1 === (want.rsv1 ?? false) &&
      !got.rsv2 &&
      !got.rsv3 &&
      (want.mask === null ? got.mask === null : got.mask !== null && got.mask.equals(want.mask)) &&
      got.length === want.payload.length &&
      got.offset === 0 &&
      got.payload.equals(want.payload);
    if (!ok) {
      // Say exactly what differs.
      expect({ ...got, payload: [...got.payload], mask: got.mask && [...got.mask] }, `${label}: frame ${i}`).to.deep.equal({
        fin: want.fin,
        rsv1: want.rsv1 ?? false,
        rsv2: false,
        rsv3: false,
        opcode: want.opcode,
        mask: want.mask && [...want.mask],
        payload: [...want.payload],
        length: want.payload.length,
        offset: 0,
      });
    }
  });
}

const KEY = hex('37 fa 21 3d');
const DATA_256 = pattern(256, 1);
const DATA_64K = pattern(65536, 2);

/** The RFC 6455 §5.7 examples, typed out by hand. */
const VECTORS: { name: string; bytes: Buffer; frames: Expected[] }[] = [
  {
    name: 'a single-frame unmasked text message',
    bytes: hex('81 05 48 65 6c 6c 6f'),
    frames: [{ fin: true, opcode: Opcode.Text, mask: null, payload: Buffer.from('Hello') }],
  },
  {
    name: 'a single-frame masked text message',
    bytes: hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'),
    frames: [{ fin: true, opcode: Opcode.Text, mask: KEY, payload: hex('7f 9f 4d 51 58') }],
  },
  {
    name: 'a fragmented unmasked text message',
    bytes: hex('01 03 48 65 6c 80 02 6c 6f'),
    frames: [
      { fin: false, opcode: Opcode.Text, mask: null, payload: Buffer.from('Hel') },
      { fin: true, opcode: Opcode.Continuation, mask: null, payload: Buffer.from('lo') },
    ],
  },
  {
    name: 'an unmasked ping',
    bytes: hex('89 05 48 65 6c 6c 6f'),
    frames: [{ fin: true, opcode: Opcode.Ping, mask: null, payload: Buffer.from('Hello') }],
  },
  {
    name: 'a masked pong',
    bytes: hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58'),
    frames: [{ fin: true, opcode: Opcode.Pong, mask: KEY, payload: hex('7f 9f 4d 51 58') }],
  },
  {
    name: '256 bytes binary in a single unmasked frame',
    bytes: Buffer.concat([hex('82 7e 01 00'), DATA_256]),
    frames: [{ fin: true, opcode: Opcode.Binary, mask: null, payload: DATA_256 }],
  },
];

const VECTOR_64K = {
  name: '64 KiB binary in a single unmasked frame',
  bytes: Buffer.concat([hex('82 7f 00 00 00 00 00 01 00 00'), DATA_64K]),
  frames: [{ fin: true, opcode: Opcode.Binary, mask: null, payload: DATA_64K }],
};

function chunkingsOf(bytes: Buffer): Chunking[] {
  return bytes.length <= 1024 ? everyChunking(bytes) : someChunkings(bytes, [1, 2, 3, 7, 125, 126, 4096, 65535]);
}

describe('FrameSplitter', () => {
  describe('RFC 6455 §5.7 examples', () => {
    for (const vector of [...VECTORS, VECTOR_64K]) {
      it(`parses ${vector.name} at every chunking`, () => {
        for (const { name, chunks } of chunkingsOf(vector.bytes)) {
          const { frames, error, core } = run(chunks);
          expect(error, name).to.equal(null);
          expectFrames(frames, vector.frames, name);
          expect(core.bufferedBytes, name).to.equal(0);
          expect(core.atFrameBoundary, name).to.equal(true);
        }
      });

      it(`streams ${vector.name} in pieces at every chunking`, () => {
        for (const { name, chunks } of chunkingsOf(vector.bytes)) {
          const { frames, error, maxBuffered } = run(chunks, { streaming: true });
          expect(error, name).to.equal(null);
          expectFrames(joinPieces(frames), vector.frames, name);
          // Never more than a partial header is held.
          expect(maxBuffered, name).to.be.lessThan(14);
          for (const piece of frames) {
            if (piece.opcode >= Opcode.Close) expect(piece.payload.length, `${name}: control frame whole`).to.equal(piece.length);
          }
        }
      });
    }

    it('parses all the examples back to back, at every chunking', () => {
      const bytes = Buffer.concat(VECTORS.map((v) => v.bytes));
      const expected = VECTORS.flatMap((v) => v.frames);
      for (const { name, chunks } of everyChunking(bytes)) {
        expectFrames(run(chunks).frames, expected, name);
        expectFrames(joinPieces(run(chunks, { streaming: true }).frames), expected, `${name} (streaming)`);
      }
    });

    it('hands a masked payload on still masked, with its key', () => {
      const { frames } = run([hex('81 85 37 fa 21 3d 7f 9f 4d 51 58')]);
      const frame = frames[0]!;
      const plain = Buffer.from(frame.payload.map((b, i) => b ^ frame.mask![i % 4]!));
      expect(plain.toString()).to.equal('Hello');
    });
  });

  describe('many frames', () => {
    const COUNT = 20000;
    const one = (i: number): Spec => ({ opcode: Opcode.Binary, payload: pattern(i % 7, i), mask: i % 2 === 0 ? KEY : undefined });
    const bytes = Buffer.concat(Array.from({ length: COUNT }, (_, i) => encode(one(i))));
    const expected: Expected[] = Array.from({ length: COUNT }, (_, i) => {
      const spec = one(i);
      const wire = encode(spec);
      return { fin: true, opcode: Opcode.Binary, mask: spec.mask ?? null, payload: wire.subarray(wire.length - spec.payload.length) };
    });

    it(`parses ${COUNT} small frames in one chunk`, () => {
      const { frames, error, core } = run([bytes]);
      expect(error).to.equal(null);
      expectFrames(frames, expected, 'one chunk');
      expect(core.bufferedBytes).to.equal(0);
    });

    it(`parses ${COUNT} small frames at several chunkings, whole and streaming`, () => {
      for (const { name, chunks } of someChunkings(bytes, [1, 3, 7, 64, 1000, 4096])) {
        expectFrames(run(chunks).frames, expected, name);
        expectFrames(joinPieces(run(chunks, { streaming: true }).frames), expected, `${name} (streaming)`);
      }
    });
  });

  describe('payload length encodings (§5.2)', () => {
    const cases: { length: number; headerSize: number }[] = [
      { length: 0, headerSize: 2 },
      { length: 1, headerSize: 2 },
      { length: 125, headerSize: 2 },
      { length: 126, headerSize: 4 },
      { length: 127, headerSize: 4 },
      { length: 65535, headerSize: 4 },
      { length: 65536, headerSize: 10 },
      { length: 65537, headerSize: 10 },
    ];
    for (const { length, headerSize } of cases) {
      for (const masked of [false, true]) {
        it(`parses a ${masked ? 'masked' : 'unmasked'} ${length}-byte payload`, () => {
          const spec: Spec = { opcode: Opcode.Binary, payload: pattern(length, 3), mask: masked ? KEY : undefined };
          const bytes = encode(spec);
          expect(bytes.length).to.equal(headerSize + (masked ? 4 : 0) + length);
          const wirePayload = bytes.subarray(bytes.length - length);
          const want: Expected[] = [{ fin: true, opcode: Opcode.Binary, mask: masked ? KEY : null, payload: wirePayload }];
          const chunkings = someChunkings(bytes, [1, 2, 3, 5, headerSize, headerSize + 1, 1000]);
          // Every split inside the header and just after it.
          for (let at = 1; at <= Math.min(bytes.length - 1, headerSize + 5); at++) {
            chunkings.push({ name: `split at ${at}`, chunks: [bytes.subarray(0, at), bytes.subarray(at)] });
          }
          for (const { name, chunks } of chunkings) {
            expectFrames(run(chunks).frames, want, name);
            const pieces = run(chunks, { streaming: true }).frames;
            expectFrames(joinPieces(pieces), want, `${name} (streaming)`);
          }
        });
      }
    }

    it('accepts a 16-bit or 64-bit length that is not minimal', () => {
      // §5.2 asks senders for the minimal encoding; like other receivers we do not enforce it.
      const { frames, error } = run([hex('82 7e 00 03 01 02 03 82 7f 00 00 00 00 00 00 00 01 04')]);
      expect(error).to.equal(null);
      expect(frames.map((f) => [...f.payload])).to.deep.equal([[1, 2, 3], [4]]);
    });
  });

  describe('budget (fairness: frames per turn)', () => {
    it('stops at its budget in the middle of a chunk, holds the rest, and goes on in order after resume() with a new budget', () => {
      const frames = Array.from({ length: 10 }, (_, i) => encode({ opcode: Opcode.Binary, payload: Buffer.from([i]), mask: hex('01 02 03 04') }));
      for (const streaming of [false, true]) {
        const got: number[] = [];
        const core = new FrameSplitterCore({ streaming }, { onFrame: (f) => got.push(f.payload[0]! ^ f.mask![0]!) });
        core.budget = 4;
        expect(core.write(Buffer.concat(frames.slice(0, 7)))).to.equal(null);
        expect(got, `streaming ${streaming}`).to.deep.equal([0, 1, 2, 3]);
        expect(core.stalled).to.equal(true);
        // More input while stalled is held behind the rest.
        expect(core.write(Buffer.concat(frames.slice(7)))).to.equal(null);
        expect(got.length).to.equal(4);
        core.budget = 4;
        expect(core.resume()).to.equal(null);
        expect(got).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
        core.budget = 4;
        expect(core.resume()).to.equal(null);
        expect(got).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        expect(core.stalled).to.equal(false);
        expect(core.bufferedBytes).to.equal(0);
      }
    });

    it('without a budget (the default) parses everything', () => {
      const frames = Array.from({ length: 3000 }, () => encode({ opcode: Opcode.Text, payload: Buffer.from('x') }));
      const { frames: got } = run([Buffer.concat(frames)]);
      expect(got.length).to.equal(3000);
    });
  });

  describe('streaming mode', () => {
    it('hands on pieces that are views of the chunks, never copies of whole frames', () => {
      const chunks = [hex('82 0a 00 01 02'), hex('03 04 05 06'), hex('07 08 09')];
      const pieces: Frame[] = [];
      const core = new FrameSplitterCore({ streaming: true }, { onFrame: (f) => pieces.push(f) });
      for (const chunk of chunks) core.write(chunk);
      expect(pieces.map((p) => [p.offset, p.payload.length, p.length])).to.deep.equal([
        [0, 3, 10],
        [3, 4, 10],
        [7, 3, 10],
      ]);
      expect(pieces[1]!.payload.buffer).to.equal(chunks[1]!.buffer);
      expect(pieces[1]!.payload.byteOffset).to.equal(chunks[1]!.byteOffset);
    });

    it('hands on an empty data frame as one empty piece', () => {
      const { frames } = run([hex('81 00 82 80 01 02 03 04')], { streaming: true });
      expect(frames.map((f) => [f.opcode, f.payload.length, f.length, f.offset])).to.deep.equal([
        [Opcode.Text, 0, 0, 0],
        [Opcode.Binary, 0, 0, 0],
      ]);
      expect(frames[1]!.mask).to.deep.equal(hex('01 02 03 04'));
    });

    it('keeps control frames whole', () => {
      for (const { name, chunks } of everyChunking(hex('89 85 01 02 03 04 05 06 07 08 09'))) {
        const { frames } = run(chunks, { streaming: true });
        expect(frames.length, name).to.equal(1);
        expect(frames[0]!.payload.length, name).to.equal(5);
      }
    });

    it('streams a frame declaring 1 GiB fed 1 MiB at a time, holding no more than one chunk', () => {
      const GiB = 2 ** 30;
      const MiB = 2 ** 20;
      const data = pattern(MiB, 5);
      let pieces = 0;
      let received = 0;
      let last: Frame | null = null;
      const core = new FrameSplitterCore({ streaming: true, maxPayload: GiB }, {
        onFrame(frame) {
          expect(frame.offset).to.equal(received);
          expect(frame.length).to.equal(GiB);
          received += frame.payload.length;
          pieces++;
          last = frame;
        },
      });
      // The header and the start of the payload share the first chunk; the rest is misaligned.
      const header = hex('82 7f 00 00 00 00 40 00 00 00');
      expect(core.write(Buffer.concat([header, data.subarray(0, 1000)]))).to.equal(null);
      let maxBuffered = core.bufferedBytes;
      for (let i = 0; i < 1024; i++) {
        const chunk = i === 1023 ? data.subarray(0, MiB - 1000) : data;
        expect(core.write(chunk)).to.equal(null);
        maxBuffered = Math.max(maxBuffered, core.bufferedBytes);
      }
      expect(received).to.equal(GiB);
      expect(pieces).to.equal(1025);
      expect(isLastPiece(last!)).to.equal(true);
      expect(maxBuffered).to.be.at.most(MiB);
      expect(core.atFrameBoundary).to.equal(true);
    });

    it('holds a whole frame when not streaming', () => {
      const core = new FrameSplitterCore({}, { onFrame: () => undefined });
      core.write(hex('82 7e 01 00'));
      core.write(pattern(200));
      expect(core.bufferedBytes).to.equal(200);
      expect(core.atFrameBoundary).to.equal(false);
    });
  });

  describe('rejections', () => {
    const cases: {
      name: string;
      bytes: Buffer;
      code: WebSocketErrorCode;
      closeCode: CloseCode;
      options?: FrameSplitterOptions;
    }[] = [
      ...[3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op) => ({
        name: `reserved opcode 0x${op.toString(16)}`,
        bytes: Buffer.from([0x80 | op, 0x00]),
        code: 'WS_ERR_INVALID_OPCODE' as const,
        closeCode: CloseCode.ProtocolError,
      })),
      { name: 'RSV1 without an extension', bytes: hex('c1 05'), code: 'WS_ERR_UNEXPECTED_RSV', closeCode: CloseCode.ProtocolError },
      { name: 'RSV2 without an extension', bytes: hex('a1 05'), code: 'WS_ERR_UNEXPECTED_RSV', closeCode: CloseCode.ProtocolError },
      { name: 'RSV3 without an extension', bytes: hex('91 05'), code: 'WS_ERR_UNEXPECTED_RSV', closeCode: CloseCode.ProtocolError },
      {
        name: 'RSV2 when only RSV1 is claimed',
        bytes: hex('e1 05'),
        code: 'WS_ERR_UNEXPECTED_RSV',
        closeCode: CloseCode.ProtocolError,
        options: { rsv1: true },
      },
      {
        name: 'RSV1 on a ping when RSV1 is claimed',
        bytes: hex('c9 00'),
        code: 'WS_ERR_UNEXPECTED_RSV',
        closeCode: CloseCode.ProtocolError,
        options: { rsv1: true },
      },
      {
        name: 'RSV1 on a close when every RSV bit is claimed',
        bytes: hex('c8 00'),
        code: 'WS_ERR_UNEXPECTED_RSV',
        closeCode: CloseCode.ProtocolError,
        options: { rsv1: true, rsv2: true, rsv3: true },
      },
      { name: 'a ping of 126 bytes', bytes: hex('89 7e 00 7e'), code: 'WS_ERR_CONTROL_FRAME_TOO_LONG', closeCode: CloseCode.ProtocolError },
      { name: 'a close with a 64-bit length', bytes: hex('88 7f'), code: 'WS_ERR_CONTROL_FRAME_TOO_LONG', closeCode: CloseCode.ProtocolError },
      { name: 'a pong with FIN clear', bytes: hex('0a 00'), code: 'WS_ERR_FRAGMENTED_CONTROL_FRAME', closeCode: CloseCode.ProtocolError },
      { name: 'a close with FIN clear', bytes: hex('08 02 03 e8'), code: 'WS_ERR_FRAGMENTED_CONTROL_FRAME', closeCode: CloseCode.ProtocolError },
      {
        name: 'a 64-bit length with its most significant bit set',
        bytes: hex('82 7f 80 00 00 00 00 00 00 01'),
        code: 'WS_ERR_INVALID_LENGTH',
        closeCode: CloseCode.ProtocolError,
      },
      {
        name: 'a 64-bit length of 2^53 (legal, but over any maxPayload)',
        bytes: hex('82 7f 00 20 00 00 00 00 00 00'),
        code: 'WS_ERR_PAYLOAD_TOO_BIG',
        closeCode: CloseCode.MessageTooBig,
        options: { maxPayload: Number.MAX_SAFE_INTEGER },
      },
      {
        name: 'a 7-bit length over maxPayload',
        bytes: hex('82 0b'),
        code: 'WS_ERR_PAYLOAD_TOO_BIG',
        closeCode: CloseCode.MessageTooBig,
        options: { maxPayload: 10 },
      },
      {
        name: 'a 16-bit length over maxPayload',
        bytes: hex('82 fe 01 00'),
        code: 'WS_ERR_PAYLOAD_TOO_BIG',
        closeCode: CloseCode.MessageTooBig,
        options: { maxPayload: 255 },
      },
      {
        name: 'a 64-bit length of 2^53 - 1 over the default maxPayload',
        bytes: hex('82 ff 00 1f ff ff ff ff ff ff'),
        code: 'WS_ERR_PAYLOAD_TOO_BIG',
        closeCode: CloseCode.MessageTooBig,
      },
      {
        name: 'a 64-bit length one over maxPayload',
        bytes: hex('82 7f 00 00 00 00 00 01 00 01'),
        code: 'WS_ERR_PAYLOAD_TOO_BIG',
        closeCode: CloseCode.MessageTooBig,
        options: { maxPayload: 65536 },
      },
    ];

    for (const c of cases) {
      it(`rejects ${c.name} from its header alone, at every chunking`, () => {
        // Only the header bytes are fed: the error must not wait for the payload.
        for (const { name, chunks } of everyChunking(c.bytes)) {
          const { frames, error, core } = run(chunks, c.options);
          expect(error, name).to.be.instanceOf(WebSocketError);
          expect(error!.code, name).to.equal(c.code);
          expect(error!.closeCode, name).to.equal(c.closeCode);
          expect(core.error, name).to.equal(error);
          expect(frames, name).to.deep.equal([]);
          expect(core.bufferedBytes, name).to.equal(0);
        }
      });
    }

    it('emits the frames before a bad one, then stops', () => {
      const good = hex('81 02 68 69');
      const bytes = Buffer.concat([good, good, hex('83 00'), good]);
      for (const { name, chunks } of everyChunking(bytes)) {
        const { frames, error } = run(chunks);
        expect(frames.length, name).to.equal(2);
        expect(error?.code, name).to.equal('WS_ERR_INVALID_OPCODE');
      }
    });

    it('accepts the largest allowed lengths without allocating them', () => {
      const core = new FrameSplitterCore({ maxPayload: Number.MAX_SAFE_INTEGER }, { onFrame: () => undefined });
      const before = process.memoryUsage().arrayBuffers;
      expect(core.write(hex('82 7f 00 1f ff ff ff ff ff ff 01 02 03'))).to.equal(null);
      expect(core.bufferedBytes).to.equal(3);
      expect(process.memoryUsage().arrayBuffers - before).to.be.lessThan(2 ** 20);
    });

    it('accepts a payload of exactly maxPayload', () => {
      const { frames, error } = run([hex('82 0a'), pattern(10)], { maxPayload: 10 });
      expect(error).to.equal(null);
      expect(frames.length).to.equal(1);
    });

    it('accepts claimed RSV bits on data frames and reports them', () => {
      const bytes = hex('c1 01 61 41 01 62 b2 00 f0 00');
      for (const { name, chunks } of everyChunking(bytes)) {
        const { frames, error } = run(chunks, { rsv1: true, rsv2: true, rsv3: true });
        expect(error, name).to.equal(null);
        expect(frames.map((f) => [f.fin, f.rsv1, f.rsv2, f.rsv3, f.opcode])).to.deep.equal([
          [true, true, false, false, Opcode.Text],
          [false, true, false, false, Opcode.Text],
          [true, false, true, true, Opcode.Binary],
          [true, true, true, true, Opcode.Continuation],
        ]);
      }
    });

    it('setExtensionBits changes the claimed RSV bits', () => {
      const core = new FrameSplitterCore({}, { onFrame: () => undefined });
      core.setExtensionBits({ rsv1: true });
      expect(core.write(hex('c1 00'))).to.equal(null);
      core.setExtensionBits({});
      expect(core.write(hex('c1 00'))?.code).to.equal('WS_ERR_UNEXPECTED_RSV');
    });

    it('setExtensionBits and the limits of one splitter do not reach others made with the same options', () => {
      // Splitters share their settings object (one per distinct option set), so a change must
      // replace it, never write to it.
      const a = new FrameSplitterCore({ maxPayload: 4 }, { onFrame: () => undefined });
      const b = new FrameSplitterCore({ maxPayload: 4 }, { onFrame: () => undefined });
      const c = new FrameSplitterCore({ maxPayload: 5 }, { onFrame: () => undefined });
      a.setExtensionBits({ rsv1: true });
      expect(a.write(hex('c2 00'))).to.equal(null);
      expect(b.write(hex('c2 00'))?.code).to.equal('WS_ERR_UNEXPECTED_RSV');
      expect(c.write(hex('82 05 0102030405'))).to.equal(null);
      expect(a.write(hex('82 05'))?.code).to.equal('WS_ERR_PAYLOAD_TOO_BIG');
    });

    it('ignores every write after an error', () => {
      const frames: Frame[] = [];
      const core = new FrameSplitterCore({}, { onFrame: (f) => frames.push(f) });
      const err = core.write(hex('83 00'));
      expect(err?.code).to.equal('WS_ERR_INVALID_OPCODE');
      expect(core.write(hex('81 02 68 69'))).to.equal(err);
      expect(core.write(hex('c1 00'))).to.equal(err);
      expect(frames).to.deep.equal([]);
      expect(core.bufferedBytes).to.equal(0);
    });

    it('fail() stops the loop in the middle of a chunk', () => {
      const frames: Frame[] = [];
      const stop = new WebSocketError('WS_ERR_INVALID_UTF8');
      const core: FrameSplitterCore = new FrameSplitterCore({}, {
        onFrame(frame) {
          frames.push(frame);
          core.fail(stop);
        },
      });
      expect(core.write(hex('81 01 61 81 01 62 81 01 63'))).to.equal(stop);
      expect(frames.length).to.equal(1);
      core.fail(new WebSocketError('WS_ERR_INVALID_OPCODE'));
      expect(core.error).to.equal(stop);
    });

    it('fail() stops a streamed frame between pieces', () => {
      const frames: Frame[] = [];
      const stop = new WebSocketError('WS_ERR_MESSAGE_TOO_BIG');
      const core: FrameSplitterCore = new FrameSplitterCore({ streaming: true }, {
        onFrame(frame) {
          frames.push(frame);
          core.fail(stop);
        },
      });
      core.write(hex('82 06 01'));
      core.write(hex('02'));
      core.write(hex('03'));
      expect(frames.length).to.equal(1);
      expect(core.error).to.equal(stop);
    });

    it('fail() stops streaming mode in the middle of a chunk of frames', () => {
      let count = 0;
      const stop = new WebSocketError('WS_ERR_INVALID_UTF8');
      const core: FrameSplitterCore = new FrameSplitterCore({ streaming: true }, {
        onFrame() {
          count++;
          core.fail(stop);
        },
      });
      expect(core.write(hex('82 01 61 81 00 82 01 63'))).to.equal(stop);
      expect(count).to.equal(1);
    });
  });

  it("emits frames with makeFrame's fields in makeFrame's order (so every Frame shares one shape)", () => {
    const frames: Frame[] = [];
    const core = new FrameSplitterCore({ streaming: true }, { onFrame: (f) => frames.push(f) });
    core.write(hex('81 85 37 fa 21 3d 7f 9f 4d 51 58')); // RFC 6455 §5.7, masked "Hello"
    core.write(hex('02 03 01 02')); // a piece of an unfinished frame
    const order = Object.keys(makeFrame(Opcode.Text, Buffer.alloc(0)));
    expect(frames).to.have.length(2);
    for (const frame of frames) expect(Object.keys(frame)).to.deep.equal(order);
    expect(Object.keys(withPayload(frames[0]!, Buffer.alloc(0), null))).to.deep.equal(order);
  });

  describe('stream wrapper', () => {
    it('turns a byte stream into frames', async () => {
      const bytes = Buffer.concat(VECTORS.map((v) => v.bytes));
      for (const { name, chunks } of someChunkings(bytes)) {
        const frames = await collect<Frame>(fromChunks(chunks).pipe(new FrameSplitter()));
        expectFrames(frames, VECTORS.flatMap((v) => v.frames), name);
      }
    });

    it('passes options to its core', async () => {
      const splitter = new FrameSplitter({ streaming: true, rsv1: true }, { highWaterMark: 4 });
      const frames = await collect<Frame>(fromChunks([hex('c2 04 01 02'), hex('03 04')]).pipe(splitter));
      expect(frames.map((f) => [f.rsv1, f.offset, f.payload.length])).to.deep.equal([
        [true, 0, 2],
        [true, 2, 2],
      ]);
      expect(splitter.core).to.be.instanceOf(FrameSplitterCore);
    });

    it('takes stream options, keeping its readable side in object mode and its writable side in bytes', () => {
      const plain = new FrameSplitter();
      expect([plain.readableObjectMode, plain.writableObjectMode]).to.deep.equal([true, false]);
      expect([plain.readableHighWaterMark, plain.writableHighWaterMark]).to.deep.equal([16, 16 * 1024]);
      const tuned = new FrameSplitter({}, { readableHighWaterMark: 3, writableHighWaterMark: 100 });
      expect([tuned.readableObjectMode, tuned.writableObjectMode]).to.deep.equal([true, false]);
      expect([tuned.readableHighWaterMark, tuned.writableHighWaterMark]).to.deep.equal([3, 100]);
      // Stream options given to one splitter never leak into the next one made without any.
      expect(new FrameSplitter().readableHighWaterMark).to.equal(16);
    });

    it('fails with the WebSocketError', async () => {
      const splitter = new FrameSplitter({ maxPayload: 4 });
      let caught: unknown = null;
      try {
        await collect(fromChunks([hex('81 01 61'), hex('82 05')]).pipe(splitter));
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(WebSocketError);
      expect((caught as WebSocketError).code).to.equal('WS_ERR_PAYLOAD_TOO_BIG');
      expect((caught as WebSocketError).closeCode).to.equal(CloseCode.MessageTooBig);
      expect(splitter.core.error).to.equal(caught);
    });
  });
});

describe('FrameSplitterCore.writeFrameFrom (for callers that take whole frames themselves)', () => {
  const input = Buffer.concat([
    encode({ opcode: Opcode.Text, payload: pattern(5), mask: Buffer.from([1, 2, 3, 4]) }),
    encode({ opcode: Opcode.Binary, payload: pattern(300, 1), mask: Buffer.from([5, 6, 7, 8]) }),
    encode({ opcode: Opcode.Binary, payload: pattern(70000, 2), mask: Buffer.from([9, 10, 11, 12]) }),
    encode({ opcode: Opcode.Ping, payload: pattern(3, 3), mask: Buffer.from([13, 14, 15, 16]) }),
  ]);
  const frameEnds = [11, 11 + 308, 11 + 308 + 70014, input.length];

  for (const { name, chunks } of someChunkings(input, [1, 7, 1000, 65536])) {
    it(`fed ${name}: the same frames as write(), each call ending at a frame's end or the chunk's, or one byte on while the length is unknown`, () => {
      const whole = run(chunks);
      const frames: Frame[] = [];
      const core = new FrameSplitterCore({}, { onFrame: (f) => frames.push({ ...f, payload: Buffer.from(f.payload), mask: f.mask && Buffer.from(f.mask) }) });
      let offset = 0;
      for (const chunk of chunks) {
        let at = 0;
        while (at < chunk.length) {
          const next = core.writeFrameFrom(chunk, at);
          if (typeof next !== 'number') throw next;
          expect(next).to.be.greaterThan(at);
          const stop = offset + next;
          expect(next === chunk.length || frameEnds.includes(stop) || next === at + 1, `stopped at ${stop}`).to.equal(true);
          at = next;
        }
        offset += chunk.length;
      }
      expect(core.atFrameBoundary).to.equal(true);
      expect(frames).to.deep.equal(whole.frames);
    });
  }

  it('returns the error met', () => {
    const core = new FrameSplitterCore({}, { onFrame: () => undefined });
    const bad = Buffer.from([0x83, 0x80, 0, 0, 0, 0]);
    const err = core.writeFrameFrom(bad, 0);
    expect(err).to.be.instanceOf(WebSocketError);
    expect((err as WebSocketError).code).to.equal('WS_ERR_INVALID_OPCODE');
  });
});
