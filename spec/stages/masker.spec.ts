import { expect } from 'chai';
import { CloseCode, Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { makeFrame, type Frame } from '../../lib/protocol/frame';
import { Masker, MaskerCore } from '../../lib/stages/masker';
import { MaskSlots, maskSlots } from '../../lib/protocol/mask';
import { COALESCE_LIMIT } from '../../lib/stages/frame-serializer';
import { collect, everyChunking, someChunkings } from '../helpers/chunks';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const RFC_KEY = '37fa213d';

/** A generator handing out the given keys in turn, counting calls. */
function keys(...list: string[]): { generateMask: () => Buffer; calls: () => number } {
  let next = 0;
  return {
    generateMask: () => hex(list[Math.min(next++, list.length - 1)]!),
    calls: () => next,
  };
}

/** Masks `frames` with a fresh core; returns what it emitted and the final error. */
function mask(frames: Frame[], generateMask = keys(RFC_KEY).generateMask): { out: Frame[]; error: WebSocketError | null } {
  const out: Frame[] = [];
  const core = new MaskerCore({ generateMask }, { onFrame: (f) => out.push(f) });
  let error: WebSocketError | null = null;
  for (const frame of frames) error = core.write(frame);
  return { out, error };
}

/** Reference masking, byte by byte, straight from RFC 6455 §5.3: j = i MOD 4. */
function referenceMask(data: Buffer, key: Buffer): Buffer {
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! ^ key[i % 4]!;
  return out;
}

/** Frame pieces of one frame, as FrameSplitter's streaming mode produces them. */
function piecesOf(opcode: Opcode, chunks: Buffer[], total: number): Frame[] {
  let offset = 0;
  return chunks.map((chunk) => {
    const piece = makeFrame(opcode, chunk, { length: total, offset });
    offset += chunk.length;
    return piece;
  });
}

function expectError(err: WebSocketError | null, code: string, closeCode: CloseCode): void {
  expect(err).to.be.instanceOf(WebSocketError);
  expect(err!.code).to.equal(code);
  expect(err!.closeCode).to.equal(closeCode);
}

describe('Masker', () => {
  describe('MaskerCore (RFC 6455 §5.3)', () => {
    it('masks "Hello" with 37 fa 21 3d as in §5.7', () => {
      const { out, error } = mask([makeFrame(Opcode.Text, Buffer.from('Hello'))]);
      expect(error).to.equal(null);
      expect(out).to.have.length(1);
      expect(out[0]!.mask!.toString('hex')).to.equal(RFC_KEY);
      expect(out[0]!.payload.toString('hex')).to.equal('7f9f4d5158');
      expect(out[0]!.opcode).to.equal(Opcode.Text);
      expect(out[0]!.fin).to.equal(true);
    });

    it('keeps every header field', () => {
      const frame = makeFrame(Opcode.Continuation, Buffer.from('x'), { fin: false, rsv1: true, rsv3: true });
      const masked = mask([frame]).out[0]!;
      expect({ ...masked, payload: null, mask: null }).to.deep.equal({ ...frame, payload: null, mask: null });
    });

    it("never modifies the caller's payload buffer", () => {
      const data = Buffer.from('the same buffer broadcast to several connections: '.repeat(20));
      const before = Buffer.from(data);
      const first = mask([makeFrame(Opcode.Text, data)], keys('01020304').generateMask).out[0]!;
      const second = mask([makeFrame(Opcode.Text, data)], keys('a0b0c0d0').generateMask).out[0]!;
      expect(data.equals(before)).to.equal(true);
      expect(first.payload.equals(referenceMask(before, hex('01020304')))).to.equal(true);
      expect(second.payload.equals(referenceMask(before, hex('a0b0c0d0')))).to.equal(true);
    });

    it('matches byte-by-byte masking at every length and alignment', () => {
      const key = hex('9a3c0f71');
      const backing = Buffer.alloc(300);
      for (let i = 0; i < backing.length; i++) backing[i] = (i * 31 + 7) & 0xff;
      for (const start of [0, 1, 2, 3]) {
        for (const length of [0, 1, 3, 4, 5, 31, 32, 33, 100, 257]) {
          const data = backing.subarray(start, start + length);
          const masked = mask([makeFrame(Opcode.Binary, data)], () => key).out[0]!;
          expect(masked.payload.equals(referenceMask(data, key)), `start ${start} length ${length}`).to.equal(true);
        }
      }
    });

    it('draws a fresh key for every frame', () => {
      const gen = keys('01010101', '02020202', '03030303');
      const { out } = mask(
        [
          makeFrame(Opcode.Text, Buffer.from('a'), { fin: false }),
          makeFrame(Opcode.Ping, Buffer.alloc(0)),
          makeFrame(Opcode.Continuation, Buffer.from('b')),
        ],
        gen.generateMask,
      );
      expect(gen.calls()).to.equal(3);
      expect(out.map((f) => f.mask!.toString('hex'))).to.deep.equal(['01010101', '02020202', '03030303']);
      expect(out.map((f) => f.payload.toString('hex'))).to.deep.equal(['60', '', '61']);
    });

    it('passes a frame that already has a mask unchanged', () => {
      const frame = makeFrame(Opcode.Text, hex('7f9f4d5158'), { mask: hex(RFC_KEY) });
      const gen = keys('00000001');
      const { out } = mask([frame], gen.generateMask);
      expect(out[0]).to.equal(frame);
      expect(gen.calls()).to.equal(0);
    });
  });

  describe('MaskerCore: pieces of a frame', () => {
    it('masks every piece with the key of its frame, at its offset, at every split', () => {
      const data = Buffer.from('Hello, pieces of one frame!');
      const key = hex(RFC_KEY);
      const expected = referenceMask(data, key);
      for (const { name, chunks } of everyChunking(data)) {
        const gen = keys(RFC_KEY, 'ffffffff');
        const { out, error } = mask(piecesOf(Opcode.Text, chunks, data.length), gen.generateMask);
        expect(error, name).to.equal(null);
        expect(gen.calls(), name).to.equal(1);
        expect(Buffer.concat(out.map((f) => f.payload)).equals(expected), name).to.equal(true);
        expect(out.map((f) => f.offset), name).to.deep.equal(piecesOf(Opcode.Text, chunks, data.length).map((f) => f.offset));
        for (const piece of out) expect(piece.mask, name).to.equal(out[0]!.mask);
      }
    });

    it('masks a large frame in pieces, then draws a new key for the next frame', () => {
      const data = Buffer.alloc(5000);
      for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
      for (const { name, chunks } of someChunkings(data, [1, 3, 7, 1000])) {
        const gen = keys('11223344', '55667788');
        const { out } = mask([...piecesOf(Opcode.Binary, chunks, data.length), makeFrame(Opcode.Text, Buffer.from('next'))], gen.generateMask);
        const last = out.pop()!;
        expect(Buffer.concat(out.map((f) => f.payload)).equals(referenceMask(data, hex('11223344'))), name).to.equal(true);
        expect(last.mask!.toString('hex'), name).to.equal('55667788');
      }
    });

    it('fails on a later piece without its frame start, or out of order', () => {
      expectError(
        mask([makeFrame(Opcode.Binary, Buffer.from('cd'), { length: 4, offset: 2 })]).error,
        'WS_ERR_INVALID_STATE',
        CloseCode.InternalError,
      );
      expectError(
        mask([
          makeFrame(Opcode.Binary, Buffer.from('ab'), { length: 4 }),
          makeFrame(Opcode.Binary, Buffer.from('d'), { length: 4, offset: 3 }),
        ]).error,
        'WS_ERR_INVALID_STATE',
        CloseCode.InternalError,
      );
    });
  });

  describe('MaskerCore: errors', () => {
    it('fails when generateMask returns a key that is not 4 bytes, then ignores input', () => {
      const out: Frame[] = [];
      const core = new MaskerCore({ generateMask: () => Buffer.alloc(3) }, { onFrame: (f) => out.push(f) });
      expectError(core.write(makeFrame(Opcode.Text, Buffer.from('a'))), 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
      const first = core.error;
      expect(core.write(makeFrame(Opcode.Text, Buffer.from('b'), { mask: hex(RFC_KEY) }))).to.equal(first);
      expect(out).to.have.length(0);
    });

    it('uses random keys by default', () => {
      const out: Frame[] = [];
      const core = new MaskerCore({}, { onFrame: (f) => out.push(f) });
      for (let i = 0; i < 8; i++) core.write(makeFrame(Opcode.Binary, Buffer.alloc(4)));
      // With a zero payload the masked payload is the key itself.
      for (const f of out) expect(f.payload.equals(f.mask!)).to.equal(true);
      expect(new Set(out.map((f) => f.mask!.toString('hex'))).size).to.be.greaterThan(1);
    });
  });

  describe('MaskerCore with output slots', () => {
    const SLOT = 65536;
    /** Slots over a plain buffer (the generic masking path) or the process's wasm slots. */
    const kinds: Array<[string, () => MaskSlots]> = [
      ['slots in a plain buffer', () => new MaskSlots(new Uint8Array(3 * (SLOT + 4096)), 0, 3)],
    ];
    if (maskSlots !== null) kinds.push(['the wasm memory slots (SIMD in place)', () => maskSlots!]);

    function maskWithSlots(frames: Frame[], slots: MaskSlots): Frame[] {
      const out: Frame[] = [];
      const core = new MaskerCore({ generateMask: keys('a1b2c3d4').generateMask, slots }, { onFrame: (f) => out.push(f) });
      for (const frame of frames) expect(core.write(frame)).to.equal(null);
      return out;
    }

    function releaseAll(slots: MaskSlots, frames: Frame[]): void {
      for (const f of frames) if (slots.owns(f.payload)) slots.release(f.payload);
    }

    for (const [kind, make] of kinds) {
      it(`${kind}: cuts a large payload into slot-sized pieces at the right offsets, masked as one`, () => {
        const slots = make();
        const before = slots.available;
        const data = Buffer.alloc(2 * SLOT + 1234);
        for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
        const copy = Buffer.from(data);
        const out = maskWithSlots([makeFrame(Opcode.Binary, data)], slots);
        expect(out.map((f) => [f.offset, f.payload.length, f.length])).to.deep.equal([
          [0, SLOT, data.length],
          [SLOT, SLOT, data.length],
          [2 * SLOT, 1234, data.length],
        ]);
        expect(out.every((f) => slots.owns(f.payload))).to.equal(true);
        expect(slots.available).to.equal(before - 3);
        const joined = Buffer.concat(out.map((f) => f.payload));
        expect(joined.equals(referenceMask(copy, hex('a1b2c3d4')))).to.equal(true);
        expect(data.equals(copy)).to.equal(true);
        releaseAll(slots, out);
        expect(slots.available).to.equal(before);
      });

      it(`${kind}: masks the rest into a fresh buffer once no slot is free, and pieces keep the key's phase`, () => {
        const slots = make();
        const held: Buffer[] = [];
        while (slots.available > 1) held.push(slots.take()!);
        const data = Buffer.alloc(SLOT + 5003, 0x5a);
        // A piece of a frame at an odd offset: the key must apply from that offset on.
        const piece = makeFrame(Opcode.Binary, data, { length: data.length + 3, offset: 3 });
        const out: Frame[] = [];
        const core = new MaskerCore({ generateMask: keys('a1b2c3d4').generateMask, slots }, { onFrame: (f) => out.push(f) });
        expect(core.write(makeFrame(Opcode.Binary, Buffer.from('abc'), { length: data.length + 3, fin: false }))).to.equal(null);
        expect(core.write(piece)).to.equal(null);
        expect(out.slice(1).map((f) => [f.offset, f.payload.length, slots.owns(f.payload)])).to.deep.equal([
          [3, SLOT, true],
          [3 + SLOT, 5003, false],
        ]);
        const whole = referenceMask(Buffer.concat([Buffer.from('abc'), data]), hex('a1b2c3d4'));
        expect(Buffer.concat(out.map((f) => f.payload)).equals(whole)).to.equal(true);
        releaseAll(slots, out);
        for (const slot of held) slots.release(slot);
      });

      it(`${kind}: never uses a slot for payloads of ${COALESCE_LIMIT} bytes or less (the serializer copies those)`, () => {
        const slots = make();
        const before = slots.available;
        const out = maskWithSlots(
          [makeFrame(Opcode.Text, Buffer.alloc(0)), makeFrame(Opcode.Binary, Buffer.alloc(COALESCE_LIMIT, 1)), makeFrame(Opcode.Ping, Buffer.from('p'))],
          slots,
        );
        expect(out).to.have.length(3);
        expect(out.some((f) => slots.owns(f.payload))).to.equal(false);
        expect(slots.available).to.equal(before);
      });
    }
  });

  describe('Masker stream', () => {
    it('masks frames in order', async () => {
      const masker = new Masker({ generateMask: keys(RFC_KEY).generateMask });
      const out = collect<Frame>(masker);
      masker.write(makeFrame(Opcode.Text, Buffer.from('Hello')));
      masker.end(makeFrame(Opcode.Pong, Buffer.from('Hello')));
      const frames = await out;
      expect(frames.map((f) => [f.opcode, f.payload.toString('hex')])).to.deep.equal([
        [Opcode.Text, '7f9f4d5158'],
        [Opcode.Pong, '7f9f4d5158'],
      ]);
    });

    it('errors with the WebSocketError', async () => {
      const masker = new Masker({ generateMask: () => Buffer.alloc(0) });
      const failed = new Promise<Error>((resolve) => masker.once('error', resolve));
      masker.resume();
      masker.write(makeFrame(Opcode.Text, Buffer.from('a')));
      const err = (await failed) as WebSocketError;
      expectError(err, 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
      expect(masker.core.error).to.equal(err);
    });
  });
});
