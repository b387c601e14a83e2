/**
 * Property tests (fast-check), each with a fixed seed so that a CI failure can be replayed:
 * - frames serialized by our outbound stages parse back to the same frames, cut anywhere;
 * - messages framed at any fragment size assemble back to the same messages;
 * - hostile bytes into the server's inbound chain end in "need more" or a WebSocketError with
 *   close code 1002, 1007 or 1009, the same for every chunking, and never throw or hang;
 * - the incremental UTF-8 validator agrees with Node's native `buffer.isUtf8`, piece by piece.
 */
import { isUtf8 } from 'node:buffer';
import { pipeline } from 'node:stream/promises';
import { expect } from 'chai';
import fc from 'fast-check';
import { CloseCode, Opcode, isControlOpcode } from '../lib/protocol/constants';
import { ERROR_TABLE, WebSocketError } from '../lib/protocol/errors';
import { FragmentAssemblerCore } from '../lib/stages/fragment-assembler';
import { type Frame, type Message, isLastPiece, makeFrame } from '../lib/protocol/frame';
import { FrameSerializerCore } from '../lib/stages/frame-serializer';
import { FrameSplitter, FrameSplitterCore } from '../lib/stages/frame-splitter';
import { MaskerCore } from '../lib/stages/masker';
import { MessageFramerCore, type OutboundMessage } from '../lib/stages/message-framer';
import { Receiver, type Role } from '../lib/connection/receiver';
import { Unmasker, UnmaskerCore } from '../lib/stages/unmasker';
import { Utf8Validator } from '../lib/protocol/utf8';
import { collect, fromChunks } from './helpers/chunks';
import { wireFrame } from './helpers/frames';

const SEED = 42;

// ----- Generators -----

/** `n` pseudo-random bytes from `seed` (xorshift32): cheap for large payloads, unlike one arbitrary per byte. */
function fill(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed | 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Payload sizes, weighted toward the edges of the three length forms (125/126, 65535/65536). */
const sizeArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 130 }) },
  { weight: 2, arbitrary: fc.constantFrom(125, 126, 127, 65535, 65536, 70000) },
  { weight: 1, arbitrary: fc.integer({ min: 131, max: 70000 }) },
);
const bytesArb = (sizes: fc.Arbitrary<number>): fc.Arbitrary<Buffer> =>
  fc.tuple(sizes, fc.integer()).map(([n, seed]) => fill(n, seed));
const keyArb = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((k) => Buffer.from(k));

/** Cuts `bytes` at the given points (taken modulo its length, sorted, deduplicated). */
function cut(bytes: Buffer, points: number[]): Buffer[] {
  if (bytes.length === 0) return [];
  const at = [...new Set(points.map((p) => p % bytes.length))].filter((p) => p > 0).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const p of at) {
    chunks.push(bytes.subarray(start, p));
    start = p;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}
const cutsArb = fc.array(fc.nat(), { maxLength: 30 });

/** A plan of frames: data messages (fragmented or not) with control frames between fragments. */
interface PlannedFrame {
  frame: Frame;
  /** Split the payload into two pieces at this offset before masking and serializing (0: whole). */
  pieceAt: number;
}
/** Pings and pongs may fall anywhere; a close frame only comes last (nothing follows one, RFC 6455 §5.5.1). */
const controlArb = fc
  .tuple(fc.constantFrom(Opcode.Ping, Opcode.Pong), bytesArb(fc.integer({ min: 0, max: 125 })))
  .map(([opcode, payload]) => makeFrame(opcode, payload));
const closeArb = bytesArb(fc.integer({ min: 0, max: 125 })).map((payload) => makeFrame(Opcode.Close, payload));
const fragmentArb = fc.record({
  payload: bytesArb(sizeArb),
  rsv: fc.tuple(fc.boolean(), fc.boolean(), fc.boolean()),
  pieceAt: fc.nat(),
  controls: fc.array(controlArb, { maxLength: 2 }),
});
const messagePlanArb = fc.record({
  binary: fc.boolean(),
  fragments: fc.array(fragmentArb, { minLength: 1, maxLength: 4 }),
});
const planArb = fc.tuple(fc.array(messagePlanArb, { maxLength: 5 }), fc.option(closeArb)).map(([messages, close]) => {
  const plan: PlannedFrame[] = [];
  for (const m of messages) {
    m.fragments.forEach((f, i) => {
      for (const c of f.controls) plan.push({ frame: c, pieceAt: 0 });
      const opcode = i > 0 ? Opcode.Continuation : m.binary ? Opcode.Binary : Opcode.Text;
      const frame = makeFrame(opcode, f.payload, {
        fin: i === m.fragments.length - 1,
        rsv1: f.rsv[0],
        rsv2: f.rsv[1],
        rsv3: f.rsv[2],
      });
      plan.push({ frame, pieceAt: f.payload.length === 0 ? 0 : f.pieceAt % f.payload.length });
    });
  }
  if (close !== null) plan.push({ frame: close, pieceAt: 0 });
  return plan;
});

/** Serializes the plan with MaskerCore (when `keys` is given) and FrameSerializerCore. */
function serialize(plan: PlannedFrame[], keys: Buffer[] | null): Buffer {
  const out: Buffer[] = [];
  const serializer = new FrameSerializerCore({}, { onData: (chunk) => out.push(Buffer.from(chunk)) });
  let k = 0;
  const masker = new MaskerCore({ generateMask: () => keys![k++ % keys!.length]! }, { onFrame: (f) => serializer.write(f) });
  for (const { frame, pieceAt } of plan) {
    const pieces =
      pieceAt === 0
        ? [frame]
        : [
            { ...frame, payload: frame.payload.subarray(0, pieceAt) },
            { ...frame, payload: frame.payload.subarray(pieceAt), offset: pieceAt },
          ];
    for (const piece of pieces) {
      const err = keys === null ? serializer.write(piece) : masker.write(piece);
      expect(err).to.equal(null);
    }
  }
  expect(masker.error).to.equal(null);
  expect(serializer.error).to.equal(null);
  return Buffer.concat(out);
}

/** Joins the pieces of each frame (streaming mode) back into whole frames. */
function joinPieces(pieces: Frame[]): Frame[] {
  const frames: Frame[] = [];
  let open: Frame[] = [];
  for (const piece of pieces) {
    expect(piece.offset).to.equal(open.reduce((n, p) => n + p.payload.length, 0));
    open.push(piece);
    if (isLastPiece(piece)) {
      const first = open[0]!;
      frames.push({ ...first, payload: Buffer.concat(open.map((p) => p.payload)), offset: 0 });
      open = [];
    }
  }
  expect(open, 'an unfinished frame').to.have.length(0);
  return frames;
}

function expectSameFrames(got: Frame[], plan: PlannedFrame[]): void {
  expect(got.length).to.equal(plan.length);
  got.forEach((frame, i) => {
    const want = plan[i]!.frame;
    expect(frame.opcode, `frame ${i} opcode`).to.equal(want.opcode);
    expect(frame.fin, `frame ${i} fin`).to.equal(want.fin);
    expect([frame.rsv1, frame.rsv2, frame.rsv3], `frame ${i} rsv`).to.deep.equal([want.rsv1, want.rsv2, want.rsv3]);
    expect(frame.mask, `frame ${i} mask`).to.equal(null);
    expect(frame.length, `frame ${i} length`).to.equal(want.payload.length);
    expect(frame.payload.equals(want.payload), `frame ${i} payload`).to.equal(true);
  });
}

const ALL_RSV = { rsv1: true, rsv2: true, rsv3: true };

describe('properties (fast-check)', function () {
  this.timeout(60_000);

  describe('frames: FrameSerializer(+Masker) then FrameSplitter -> Unmasker', () => {
    it('gives back the same frames for any plan, keys and chunking, streaming and whole', () => {
      fc.assert(
        fc.property(planArb, fc.option(fc.array(keyArb, { minLength: 1, maxLength: 4 })), cutsArb, (plan, keys, cuts) => {
          const wire = serialize(plan, keys);
          const role: Role = keys === null ? 'client' : 'server';
          for (const streaming of [false, true]) {
            // The Unmasker works in place: each parse gets its own copy of the bytes.
            const chunks = cut(Buffer.from(wire), cuts);
            const pieces: Frame[] = [];
            const unmasker = new UnmaskerCore({ role }, { onFrame: (f) => pieces.push(f) });
            const splitter = new FrameSplitterCore({ ...ALL_RSV, streaming }, { onFrame: (f) => unmasker.write(f) });
            for (const chunk of chunks) expect(splitter.write(chunk)).to.equal(null);
            expect(unmasker.error).to.equal(null);
            expect(splitter.atFrameBoundary).to.equal(true);
            if (!streaming) expect(pieces.every((p) => p.offset === 0 && p.payload.length === p.length)).to.equal(true);
            expectSameFrames(joinPieces(pieces), plan);
          }
        }),
        { seed: SEED, numRuns: 300 },
      );
    });

    it('gives back the same frames through the stream wrappers', async () => {
      await fc.assert(
        fc.asyncProperty(planArb, fc.array(keyArb, { minLength: 1, maxLength: 4 }), cutsArb, fc.boolean(), async (plan, keys, cuts, streaming) => {
          const chunks = cut(serialize(plan, keys), cuts);
          const splitter = new FrameSplitter({ ...ALL_RSV, streaming });
          const unmasker = new Unmasker({ role: 'server' });
          const out = collect<Frame>(unmasker);
          await pipeline(fromChunks(chunks), splitter, unmasker);
          expectSameFrames(joinPieces(await out), plan);
        }),
        { seed: SEED, numRuns: 60 },
      );
    });
  });

  describe('messages: MessageFramer -> Masker -> FrameSerializer -> bytes -> FrameSplitter -> Unmasker -> FragmentAssembler', () => {
    const textArb = fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'grapheme', maxLength: 100 }));
    const outboundArb: fc.Arbitrary<OutboundMessage> = fc.oneof(textArb, bytesArb(fc.integer({ min: 0, max: 3000 })));

    it('gives back the same messages for any fragment size and chunking', () => {
      fc.assert(
        fc.property(
          fc.array(outboundArb, { maxLength: 8 }),
          fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 4000 })),
          cutsArb,
          fc.boolean(),
          (messages, fragmentSize, cuts, streaming) => {
            const wire: Buffer[] = [];
            const serializer = new FrameSerializerCore({}, { onData: (chunk) => wire.push(Buffer.from(chunk)) });
            const masker = new MaskerCore({}, { onFrame: (f) => serializer.write(f) });
            const framer = new MessageFramerCore({ fragmentSize }, { onFrame: (f) => masker.write(f) });
            for (const m of messages) expect(framer.write(m)).to.equal(null);
            expect(serializer.error).to.equal(null);

            const got: Message[] = [];
            const assembler = new FragmentAssemblerCore({}, {
              onMessage: (m) => got.push({ binary: m.binary, data: Buffer.from(m.data) }),
              onControl: () => expect.fail('no control frame was sent'),
            });
            const unmasker = new UnmaskerCore({ role: 'server' }, { onFrame: (f) => assembler.write(f) });
            const splitter = new FrameSplitterCore({ streaming }, { onFrame: (f) => unmasker.write(f) });
            for (const chunk of cut(Buffer.concat(wire), cuts)) splitter.write(chunk);
            expect(assembler.error).to.equal(null);
            expect(splitter.error).to.equal(null);

            expect(got.length).to.equal(messages.length);
            got.forEach((m, i) => {
              const sent = messages[i]!;
              const text = typeof sent === 'string';
              expect(m.binary).to.equal(!text);
              const bytes = text ? Buffer.from(sent, 'utf8') : (sent as Buffer);
              expect(m.data.equals(bytes), `message ${i}`).to.equal(true);
              if (text) expect(m.data.toString('utf8')).to.equal(sent);
            });
          },
        ),
        { seed: SEED, numRuns: 300 },
      );
    });
  });

  describe('hostile bytes into the inbound chain (Receiver)', () => {
    /** A token of hostile input: raw bytes, or a frame with arbitrary (often invalid) fields. */
    const frameTokenArb = fc.record({
      opcode: fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(0x0, 0x1, 0x2, 0x8, 0x9, 0xa) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) },
      ),
      fin: fc.boolean(),
      rsv: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 7 }) }),
      maskAsRole: fc.oneof({ weight: 12, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      key: keyArb,
      payload: fc.oneof(
        bytesArb(fc.integer({ min: 0, max: 200 })),
        fc.string({ unit: 'binary', maxLength: 60 }).map((s) => Buffer.from(s, 'utf8')),
        // A close payload: a code (valid or not) and a reason (UTF-8 or not).
        fc
          .tuple(fc.integer({ min: 0, max: 5000 }), fc.oneof(fc.string({ maxLength: 20 }).map((s) => Buffer.from(s)), bytesArb(fc.integer({ min: 0, max: 8 }))))
          .map(([code, reason]) => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), reason])),
      ),
      /** Declared length minus actual: negative truncates nothing (extra bytes are the next frame), positive truncates. */
      lengthDelta: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }),
      lengthForm: fc.oneof({ weight: 10, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(7 as const, 16 as const, 64 as const) }),
    });
    type FrameToken = typeof frameTokenArb extends fc.Arbitrary<infer T> ? T : never;
    const tokenArb = fc.oneof(
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)) },
      { weight: 5, arbitrary: frameTokenArb },
    );
    const limitsArb = fc.record(
      {
        maxPayload: fc.integer({ min: 0, max: 300 }),
        maxMessageSize: fc.integer({ min: 0, max: 600 }),
        maxFragments: fc.integer({ min: 1, max: 6 }),
      },
      { requiredKeys: [] },
    );

    function toBytes(token: Buffer | FrameToken, role: Role): Buffer {
      if (Buffer.isBuffer(token)) return token;
      const masked = (role === 'server') === token.maskAsRole;
      const length = Math.max(0, token.payload.length + token.lengthDelta);
      const form = token.lengthForm === 7 && length > 125 ? undefined : token.lengthForm === 16 && length > 0xffff ? undefined : token.lengthForm;
      return wireFrame({
        opcode: token.opcode,
        fin: token.fin,
        rsv1: (token.rsv & 4) !== 0,
        rsv2: (token.rsv & 2) !== 0,
        rsv3: (token.rsv & 1) !== 0,
        mask: masked ? token.key : null,
        payload: token.payload.subarray(0, Math.min(token.payload.length, length)),
        length,
        lengthForm: form,
      });
    }

    /** Feeds `chunks` to a fresh Receiver; returns every event (as text) and the final error. */
    function run(role: Role, limits: object, chunks: Buffer[]): { events: string[]; error: WebSocketError | null } {
      const events: string[] = [];
      // Declared below; every callback checks that no output follows an error.
      let receiver: Receiver | null = null;
      const record = (event: string): void => {
        expect(receiver!.error, `${event} after an error`).to.equal(null);
        events.push(event);
      };
      receiver = new Receiver(role, limits, {
        onMessage: (m) => record(`message ${m.binary ? 'binary' : 'text'} ${m.data.toString('hex')}`),
        onPing: (p) => record(`ping ${p.toString('hex')}`),
        onPong: (p) => record(`pong ${p.toString('hex')}`),
        onClose: (code, reason) => record(`close ${code} ${JSON.stringify(reason)}`),
        onReply: (f) => record(`reply ${f.opcode} ${f.payload.toString('hex')}`),
      });
      for (const chunk of chunks) {
        const err = receiver.write(chunk);
        expect(err).to.equal(receiver.error);
      }
      return { events, error: receiver.error };
    }

    it('never throws: ends in "need more" or a WebSocketError with close code 1002, 1007 or 1009, the same for any chunking', () => {
      let failures = 0;
      const seen = new Set<string>();
      fc.assert(
        fc.property(
          fc.constantFrom<Role>('server', 'client'),
          limitsArb,
          fc.array(tokenArb, { maxLength: 12 }),
          cutsArb,
          (role, limits, tokens, cuts) => {
            const bytes = Buffer.concat(tokens.map((t) => toBytes(t, role)));
            const whole = run(role, limits, [Buffer.from(bytes)]);
            const chunked = run(role, limits, cut(Buffer.from(bytes), cuts));
            const byteByByte = run(
              role,
              limits,
              [...Buffer.from(bytes)].map((b) => Buffer.from([b])),
            );
            for (const result of [whole, chunked, byteByByte]) {
              if (result.error === null) continue;
              expect(result.error).to.be.instanceOf(WebSocketError);
              expect(ERROR_TABLE[result.error.code].closeCode).to.equal(result.error.closeCode);
              expect([CloseCode.ProtocolError, CloseCode.InvalidPayload, CloseCode.MessageTooBig]).to.include(result.error.closeCode);
            }
            expect(chunked.events).to.deep.equal(whole.events);
            expect(byteByByte.events).to.deep.equal(whole.events);
            expect(chunked.error?.code).to.equal(whole.error?.code);
            expect(byteByByte.error?.code).to.equal(whole.error?.code);
            if (whole.error !== null) {
              failures++;
              seen.add(whole.error.code);
            }
          },
        ),
        { seed: SEED, numRuns: 400 },
      );
      // The generator reaches both outcomes and all three close codes' worth of errors.
      expect(failures).to.be.greaterThan(50);
      expect([...seen]).to.include.members(['WS_ERR_INVALID_UTF8', 'WS_ERR_TOO_MANY_FRAGMENTS', 'WS_ERR_PAYLOAD_TOO_BIG', 'WS_ERR_INVALID_OPCODE']);
    });

    it('never throws on uniformly random bytes either', () => {
      fc.assert(
        fc.property(fc.constantFrom<Role>('server', 'client'), fc.uint8Array({ maxLength: 2000 }), cutsArb, (role, raw, cuts) => {
          const result = run(role, {}, cut(Buffer.from(raw), cuts));
          if (result.error !== null) {
            expect([CloseCode.ProtocolError, CloseCode.InvalidPayload, CloseCode.MessageTooBig]).to.include(result.error.closeCode);
          }
        }),
        { seed: SEED, numRuns: 500 },
      );
    });
  });

  describe('Utf8Validator', () => {
    /** Bytes that sit on the edges of RFC 3629's byte ranges. */
    const edgeByteArb = fc.constantFrom(0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff);
    /** A lead byte and up to three would-be tail bytes: valid, overlong, surrogate, too high or cut short. */
    const sequenceArb = fc
      .tuple(
        fc.constantFrom(0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5),
        fc.array(fc.constantFrom(0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0x41, 0xc2), { maxLength: 3 }),
      )
      .map(([lead, tail]) => Buffer.from([lead, ...tail]));
    const partArb = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }).map((s) => Buffer.from(s, 'utf8')),
      sequenceArb,
      sequenceArb,
      fc.array(edgeByteArb, { maxLength: 6 }).map((b) => Buffer.from(b)),
      fc.uint8Array({ maxLength: 10 }).map((b) => Buffer.from(b)),
      // Long valid runs, so that the native path (32 bytes and more) is taken.
      fc.string({ unit: 'grapheme', minLength: 20, maxLength: 80 }).map((s) => Buffer.from(s, 'utf8')),
    );

    /** Can `prefix` be completed into valid UTF-8? (Tries every class of completion: 0 to 3 tail bytes.) */
    function viable(prefix: Buffer): boolean {
      const completions = [[], [0x80], [0x90], [0xa0], [0x80, 0x80], [0x90, 0x80], [0xa0, 0x80], [0x80, 0x80, 0x80], [0x90, 0x80, 0x80], [0xa0, 0x80, 0x80]];
      return completions.some((c) => isUtf8(Buffer.concat([prefix, Buffer.from(c)])));
    }

    it('agrees with buffer.isUtf8 on the whole, and rejects at the first piece that makes the input invalid', () => {
      fc.assert(
        fc.property(fc.array(partArb, { maxLength: 12 }), cutsArb, (parts, cuts) => {
          const whole = Buffer.concat(parts);
          const pieces = cut(whole, cuts);
          const validator = new Utf8Validator();
          let ok = true;
          let seen = 0;
          for (const piece of pieces) {
            seen += piece.length;
            const result = validator.write(piece);
            // Once false, false until reset.
            if (!ok) expect(result).to.equal(false);
            ok = result;
            // Fail fast, and never too early: false exactly when no valid text starts with these bytes.
            expect(result, `after ${seen} of ${whole.toString('hex')}`).to.equal(viable(whole.subarray(0, seen)));
          }
          expect(ok && validator.end()).to.equal(isUtf8(whole));
          validator.reset();
          expect(validator.write(Buffer.from('ok')) && validator.end()).to.equal(true);
        }),
        { seed: SEED, numRuns: 2000 },
      );
    });

    it('agrees with buffer.isUtf8 on uniformly random bytes in random pieces', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), cutsArb, (raw, cuts) => {
          const whole = Buffer.from(raw);
          const validator = new Utf8Validator();
          let ok = true;
          for (const piece of cut(whole, cuts)) ok = validator.write(piece) && ok;
          expect(ok && validator.end()).to.equal(isUtf8(whole));
        }),
        { seed: SEED, numRuns: 1000 },
      );
    });
  });

  it('control opcodes are never carried in pieces', () => {
    // A guard for joinPieces above: control frames arrive whole even in streaming mode.
    const pieces: Frame[] = [];
    const splitter = new FrameSplitterCore({ streaming: true }, { onFrame: (f) => pieces.push(f) });
    const ping = wireFrame({ opcode: Opcode.Ping, payload: 'abc', mask: null });
    for (const b of ping) splitter.write(Buffer.from([b]));
    expect(pieces).to.have.length(1);
    expect(isControlOpcode(pieces[0]!.opcode)).to.equal(true);
    expect(pieces[0]!.payload.toString()).to.equal('abc');
  });
});
