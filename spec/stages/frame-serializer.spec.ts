import { expect } from 'chai';
import fc from 'fast-check';
import { pipeline } from 'readable-stream';
import * as ws from 'ws';
import { CloseCode, Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { makeFrame, type Frame } from '../../lib/protocol/frame';
import {
  checkFrame,
  COALESCE_LIMIT,
  encodeHeader,
  FrameSerializer,
  FrameSerializerCore,
  headerSize,
} from '../../lib/stages/frame-serializer';
import { MessageFramer, MessageFramerCore, type OutboundMessage } from '../../lib/stages/message-framer';
import { Masker, MaskerCore } from '../../lib/stages/masker';
import { collect, everyChunking, fromChunks, someChunkings } from '../helpers/chunks';

/** ws's pure frame encoder (not in @types/ws), as an independent reference. */
interface WsSenderOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  maskBuffer: Buffer;
  generateMask: () => void;
  readOnly: boolean;
  rsv1: boolean;
}
const { Sender } = ws as unknown as { Sender: { frame(data: Buffer, options: WsSenderOptions): Buffer[] } };

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** The masking key of the RFC 6455 §5.7 examples. */
const RFC_KEY = '37fa213d';
const rfcKey = (): Buffer => hex(RFC_KEY);

/** Serializes `frames` with a fresh core; returns every chunk it emitted and the final error. */
function serialize(frames: Frame[]): { chunks: Buffer[]; error: WebSocketError | null } {
  const chunks: Buffer[] = [];
  const core = new FrameSerializerCore({}, { onData: (chunk) => chunks.push(chunk) });
  let error: WebSocketError | null = null;
  for (const frame of frames) error = core.write(frame);
  return { chunks, error };
}

/** The bytes framer -> masker (when `key` is given) -> serializer produce for `messages`. */
function outbound(messages: OutboundMessage[], fragmentSize = 0, key?: string): Buffer {
  const chunks: Buffer[] = [];
  const serializer = new FrameSerializerCore({}, { onData: (chunk) => chunks.push(chunk) });
  const masker = new MaskerCore({ generateMask: () => hex(key ?? RFC_KEY) }, { onFrame: (f) => serializer.write(f) });
  const framer = new MessageFramerCore(
    { fragmentSize },
    { onFrame: (f) => (key === undefined ? serializer.write(f) : masker.write(f)) },
  );
  for (const message of messages) expect(framer.write(message)).to.equal(null);
  expect(serializer.error).to.equal(null);
  return Buffer.concat(chunks);
}

function expectError(err: WebSocketError | null, code: string, closeCode: CloseCode): void {
  expect(err).to.be.instanceOf(WebSocketError);
  expect(err!.code).to.equal(code);
  expect(err!.closeCode).to.equal(closeCode);
}

describe('FrameSerializer', () => {
  describe('encodeHeader (RFC 6455 §5.2)', () => {
    const cases: Array<[number, string]> = [
      [0, '8200'],
      [1, '8201'],
      [125, '827d'],
      [126, '827e 007e'],
      [65535, '827e ffff'],
      [65536, '827f 0000000000010000'],
      [2 ** 32 + 1, '827f 0000000100000001'],
      [0x0102030405, '827f 0000000102030405'],
      [2 ** 53 - 1, '827f 001fffffffffffff'],
    ];
    for (const [length, expected] of cases) {
      it(`uses the minimal length form for ${length} bytes`, () => {
        const frame = makeFrame(Opcode.Binary, Buffer.alloc(0), { length });
        expect(encodeHeader(frame).toString('hex')).to.equal(hex(expected).toString('hex'));
        expect(headerSize(frame)).to.equal(hex(expected).length);
      });
      it(`sets MASK and appends the key after the length for ${length} bytes`, () => {
        const frame = makeFrame(Opcode.Binary, Buffer.alloc(0), { length, mask: rfcKey() });
        const plain = hex(expected);
        const masked = Buffer.from(plain);
        masked[1] = masked[1]! | 0x80;
        expect(encodeHeader(frame).toString('hex')).to.equal(masked.toString('hex') + RFC_KEY);
      });
    }

    it('writes FIN, each RSV bit and the opcode into the first byte', () => {
      const first = (fields: Parameters<typeof makeFrame>[2], opcode = Opcode.Text): number =>
        encodeHeader(makeFrame(opcode, Buffer.alloc(0), fields))[0]!;
      expect(first({})).to.equal(0x81);
      expect(first({ fin: false })).to.equal(0x01);
      expect(first({ rsv1: true })).to.equal(0xc1);
      expect(first({ rsv2: true })).to.equal(0xa1);
      expect(first({ rsv3: true })).to.equal(0x91);
      expect(first({ fin: false, rsv1: true, rsv2: true, rsv3: true }, Opcode.Continuation)).to.equal(0x70);
      expect(first({}, Opcode.Pong)).to.equal(0x8a);
      expect(first({}, Opcode.Close)).to.equal(0x88);
    });
  });

  describe('checkFrame', () => {
    it('accepts every frame the RFC allows', () => {
      expect(checkFrame(makeFrame(Opcode.Ping, Buffer.alloc(125)))).to.equal(null);
      expect(checkFrame(makeFrame(Opcode.Text, Buffer.alloc(3), { fin: false, length: 10, offset: 7 }))).to.equal(null);
    });

    it('rejects reserved opcodes, bad lengths, bad keys and bad control frames', () => {
      const bad: Frame[] = [
        makeFrame(3 as Opcode, Buffer.alloc(0)),
        makeFrame(Opcode.Binary, Buffer.alloc(0), { length: -1 }),
        makeFrame(Opcode.Binary, Buffer.alloc(0), { length: 2 ** 53 }),
        makeFrame(Opcode.Binary, Buffer.alloc(4), { length: 5, offset: 2 }),
        makeFrame(Opcode.Binary, Buffer.alloc(1), { mask: Buffer.alloc(3) }),
        makeFrame(Opcode.Ping, Buffer.alloc(126)),
        makeFrame(Opcode.Close, Buffer.alloc(2), { fin: false }),
      ];
      for (const frame of bad) expectError(checkFrame(frame), 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
    });
  });

  describe('FrameSerializerCore: RFC 6455 §5.7 examples', () => {
    it('a single-frame unmasked text message', () => {
      const { chunks } = serialize([makeFrame(Opcode.Text, Buffer.from('Hello'))]);
      expect(Buffer.concat(chunks).toString('hex')).to.equal('810548656c6c6f');
    });

    it('a single-frame masked text message (payload masked beforehand)', () => {
      const { chunks } = serialize([makeFrame(Opcode.Text, hex('7f9f4d5158'), { mask: rfcKey() })]);
      expect(Buffer.concat(chunks).toString('hex')).to.equal('818537fa213d7f9f4d5158');
    });

    it('a fragmented unmasked text message', () => {
      const { chunks } = serialize([
        makeFrame(Opcode.Text, Buffer.from('Hel'), { fin: false }),
        makeFrame(Opcode.Continuation, Buffer.from('lo')),
      ]);
      expect(chunks.map((c) => c.toString('hex'))).to.deep.equal(['010348656c', '80026c6f']);
    });

    it('an unmasked ping and a masked pong', () => {
      const { chunks } = serialize([
        makeFrame(Opcode.Ping, Buffer.from('Hello')),
        makeFrame(Opcode.Pong, hex('7f9f4d5158'), { mask: rfcKey() }),
      ]);
      expect(chunks.map((c) => c.toString('hex'))).to.deep.equal(['890548656c6c6f', '8a8537fa213d7f9f4d5158']);
    });

    it('256 bytes of binary data in a single unmasked frame', () => {
      const data = Buffer.alloc(256, 0x5a);
      const { chunks } = serialize([makeFrame(Opcode.Binary, data)]);
      expect(Buffer.concat(chunks).equals(Buffer.concat([hex('827e0100'), data]))).to.equal(true);
    });

    it('64 KiB of binary data in a single unmasked frame', () => {
      const data = Buffer.alloc(65536, 0xa5);
      const { chunks } = serialize([makeFrame(Opcode.Binary, data)]);
      expect(Buffer.concat(chunks).equals(Buffer.concat([hex('827f0000000000010000'), data]))).to.equal(true);
    });
  });

  describe('FrameSerializerCore: chunks', () => {
    it(`copies header and payload into one chunk up to ${COALESCE_LIMIT} bytes`, () => {
      for (const size of [0, 1, 125, 126, COALESCE_LIMIT]) {
        const data = Buffer.alloc(size, 7);
        const { chunks } = serialize([makeFrame(Opcode.Binary, data)]);
        expect(chunks).to.have.length(1);
        expect(chunks[0]!.equals(Buffer.concat([encodeHeader(makeFrame(Opcode.Binary, data)), data]))).to.equal(true);
      }
    });

    it('sends a larger payload as its own chunk, not copied', () => {
      const data = Buffer.alloc(COALESCE_LIMIT + 1, 7);
      const { chunks } = serialize([makeFrame(Opcode.Binary, data)]);
      expect(chunks).to.have.length(2);
      expect(chunks[0]!.toString('hex')).to.equal(`827e${(COALESCE_LIMIT + 1).toString(16).padStart(4, '0')}`);
      expect(chunks[1]).to.equal(data);
    });

    it('sends thousands of small frames, in order', () => {
      const frames: Frame[] = [];
      const expected: Buffer[] = [];
      for (let i = 0; i < 5000; i++) {
        const data = Buffer.from(`m${i}`);
        frames.push(makeFrame(Opcode.Text, data));
        expected.push(Buffer.from([0x81, data.length]), data);
      }
      const { chunks, error } = serialize(frames);
      expect(error).to.equal(null);
      expect(chunks).to.have.length(5000);
      expect(Buffer.concat(chunks).equals(Buffer.concat(expected))).to.equal(true);
    });
  });

  describe('FrameSerializerCore: pieces of a frame', () => {
    /** Cuts a frame's payload into pieces as FrameSplitter's streaming mode hands them on. */
    const piecesOf = (opcode: Opcode, chunks: Buffer[], total: number, mask: Buffer | null = null): Frame[] => {
      let offset = 0;
      return chunks.map((chunk) => {
        const piece = makeFrame(opcode, chunk, { length: total, offset, mask });
        offset += chunk.length;
        return piece;
      });
    };

    it('writes the header once, then only payload bytes, at every split', () => {
      const data = Buffer.from('a payload that streams in pieces', 'utf8');
      const whole = Buffer.concat(serialize([makeFrame(Opcode.Binary, data)]).chunks);
      for (const { name, chunks } of everyChunking(data)) {
        const { chunks: out, error } = serialize(piecesOf(Opcode.Binary, chunks, data.length));
        expect(error, name).to.equal(null);
        expect(Buffer.concat(out).equals(whole), name).to.equal(true);
        if (chunks.length > 1) expect(out[out.length - 1], name).to.equal(chunks[chunks.length - 1]);
      }
    });

    it('writes a large masked frame in pieces with the header of the whole frame', () => {
      const data = Buffer.alloc(70000);
      for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
      const whole = Buffer.concat(serialize([makeFrame(Opcode.Binary, data, { mask: rfcKey() })]).chunks);
      expect(whole.subarray(0, 14).toString('hex')).to.equal(`82ff0000000000011170${RFC_KEY}`);
      for (const { name, chunks } of someChunkings(data, [1000, 4096, 65536])) {
        const { chunks: out } = serialize(piecesOf(Opcode.Binary, chunks, data.length, rfcKey()));
        expect(Buffer.concat(out).equals(whole), name).to.equal(true);
      }
    });

    it('fails when another frame starts before the pieces end (bytes would interleave)', () => {
      const { chunks, error } = serialize([
        makeFrame(Opcode.Binary, Buffer.from('ab'), { length: 4 }),
        makeFrame(Opcode.Ping, Buffer.alloc(0)),
        makeFrame(Opcode.Binary, Buffer.from('cd'), { length: 4, offset: 2 }),
      ]);
      expectError(error, 'WS_ERR_INVALID_STATE', CloseCode.InternalError);
      expect(chunks).to.have.length(1);
    });

    it('fails on a piece that skips bytes or has no start', () => {
      expectError(
        serialize([makeFrame(Opcode.Binary, Buffer.from('cd'), { length: 4, offset: 2 })]).error,
        'WS_ERR_INVALID_STATE',
        CloseCode.InternalError,
      );
      expectError(
        serialize([
          makeFrame(Opcode.Binary, Buffer.from('a'), { length: 4 }),
          makeFrame(Opcode.Binary, Buffer.from('c'), { length: 4, offset: 2 }),
        ]).error,
        'WS_ERR_INVALID_STATE',
        CloseCode.InternalError,
      );
    });
  });

  describe('FrameSerializerCore: nothing after a close frame (RFC 6455 §5.5.1)', () => {
    it('drops and counts every frame written after a close frame', () => {
      const chunks: Buffer[] = [];
      const core = new FrameSerializerCore({}, { onData: (chunk) => chunks.push(chunk) });
      const frames = [
        makeFrame(Opcode.Text, Buffer.from('a')),
        makeFrame(Opcode.Close, hex('03e8')),
        makeFrame(Opcode.Text, Buffer.from('late')),
        makeFrame(Opcode.Ping, Buffer.alloc(0)),
        makeFrame(Opcode.Binary, Buffer.alloc(COALESCE_LIMIT * 2)),
      ];
      for (const frame of frames) expect(core.write(frame)).to.equal(null);
      expect(Buffer.concat(chunks)).to.deep.equal(hex('81 01 61 88 02 03 e8'));
      expect(core.droppedAfterClose).to.equal(3);
    });

    it('counts nothing while no close frame went out, pieces of a frame included', () => {
      const payload = Buffer.from('abcdef');
      const { chunks, error } = serialize([
        makeFrame(Opcode.Binary, payload.subarray(0, 3), { length: 6 }),
        makeFrame(Opcode.Binary, payload.subarray(3), { length: 6, offset: 3 }),
        makeFrame(Opcode.Ping, Buffer.alloc(0)),
        makeFrame(Opcode.Close, Buffer.alloc(0)),
      ]);
      expect(error).to.equal(null);
      expect(Buffer.concat(chunks)).to.deep.equal(hex('82 06 61 62 63 64 65 66 89 00 88 00'));
    });
  });

  describe('FrameSerializerCore: errors', () => {
    it('fails on an invalid frame and ignores all later input', () => {
      const chunks: Buffer[] = [];
      const core = new FrameSerializerCore({}, { onData: (chunk) => chunks.push(chunk) });
      expectError(core.write(makeFrame(Opcode.Ping, Buffer.alloc(126))), 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
      const first = core.error;
      expect(core.write(makeFrame(Opcode.Text, Buffer.from('Hello')))).to.equal(first);
      expect(chunks).to.have.length(0);
    });

    it('stops at once when failed from inside its handler', () => {
      const chunks: Buffer[] = [];
      const stop = new WebSocketError('WS_ERR_BUFFER_FULL');
      const core: FrameSerializerCore = new FrameSerializerCore(
        {},
        {
          onData: (chunk) => {
            chunks.push(chunk);
            core.fail(stop);
          },
        },
      );
      expect(core.write(makeFrame(Opcode.Binary, Buffer.alloc(COALESCE_LIMIT * 2)))).to.equal(stop);
      expect(chunks).to.have.length(1);
      expectError(core.error, 'WS_ERR_BUFFER_FULL', CloseCode.PolicyViolation);
    });
  });

  describe('FrameSerializer stream', () => {
    it('turns frames into the RFC bytes', async () => {
      const serializer = new FrameSerializer();
      const out = collect<Buffer>(serializer);
      serializer.write(makeFrame(Opcode.Text, Buffer.from('Hel'), { fin: false }));
      serializer.write(makeFrame(Opcode.Continuation, Buffer.from('lo')));
      serializer.end(makeFrame(Opcode.Ping, Buffer.from('Hello')));
      expect(Buffer.concat(await out).toString('hex')).to.equal('010348656c' + '80026c6f' + '890548656c6c6f');
    });

    it('errors with the WebSocketError of an invalid frame', async () => {
      const serializer = new FrameSerializer();
      const failed = new Promise<Error>((resolve) => serializer.once('error', resolve));
      serializer.resume();
      serializer.write(makeFrame(Opcode.Close, Buffer.alloc(200)));
      const err = (await failed) as WebSocketError;
      expectError(err, 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
      expect(serializer.core.error).to.equal(err);
    });
  });

  describe('outbound pipeline: MessageFramer -> Masker -> FrameSerializer', () => {
    it('produces the RFC 6455 §5.7 examples byte for byte', () => {
      expect(outbound(['Hello']).toString('hex')).to.equal('810548656c6c6f');
      expect(outbound(['Hello'], 0, RFC_KEY).toString('hex')).to.equal('818537fa213d7f9f4d5158');
      expect(outbound(['Hello'], 3).toString('hex')).to.equal('010348656c80026c6f');
      const data256 = Buffer.alloc(256, 1);
      expect(outbound([data256]).equals(Buffer.concat([hex('827e0100'), data256]))).to.equal(true);
      const data64k = Buffer.alloc(65536, 2);
      expect(outbound([data64k]).equals(Buffer.concat([hex('827f0000000000010000'), data64k]))).to.equal(true);
    });

    it('masks each fragment with its own key', () => {
      const keys = ['37fa213d', '01020304'];
      let next = 0;
      const chunks: Buffer[] = [];
      const serializer = new FrameSerializerCore({}, { onData: (c) => chunks.push(c) });
      const masker = new MaskerCore({ generateMask: () => hex(keys[next++]!) }, { onFrame: (f) => serializer.write(f) });
      const framer = new MessageFramerCore({ fragmentSize: 3 }, { onFrame: (f) => masker.write(f) });
      framer.write('Hello');
      // "Hel" ^ 37fa213d = 7f9f4d; "lo" ^ 01020304 = 6d6d
      expect(Buffer.concat(chunks).toString('hex')).to.equal('0183' + '37fa213d' + '7f9f4d' + '8082' + '01020304' + '6d6d');
    });

    it('matches the ws library frame for frame (property)', () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 2000 }),
          fc.boolean(),
          fc.uint8Array({ minLength: 4, maxLength: 4 }).filter((k) => k.some((b) => b !== 0)),
          fc.integer({ min: 0, max: 700 }),
          (bytes, masked, keyBytes, fragmentSize) => {
            const key = Buffer.from(keyBytes).toString('hex');
            const data = Buffer.from(bytes);
            const ours = outbound([data], fragmentSize, masked ? key : undefined);
            const theirs: Buffer[] = [];
            const size = fragmentSize === 0 ? Math.max(data.length, 1) : fragmentSize;
            for (let start = 0; start < data.length || start === 0; start += size) {
              const piece = Buffer.from(data.subarray(start, start + size));
              theirs.push(
                ...Sender.frame(piece, {
                  fin: start + size >= data.length,
                  opcode: start === 0 ? Opcode.Binary : Opcode.Continuation,
                  mask: masked,
                  maskBuffer: Buffer.from(keyBytes),
                  generateMask: () => undefined,
                  readOnly: true,
                  rsv1: false,
                }),
              );
            }
            expect(ours.equals(Buffer.concat(theirs))).to.equal(true);
          },
        ),
        { numRuns: 200 },
      );
    });

    it('works as a stream pipeline', async () => {
      const framer = new MessageFramer({ fragmentSize: 3 });
      const masker = new Masker({ generateMask: rfcKey });
      const serializer = new FrameSerializer();
      const done = collect<Buffer>(serializer);
      pipeline(fromChunks<OutboundMessage>(['Hello', { data: 'Hi', binary: false }], true), framer, masker, serializer, () => undefined);
      // Hel / lo / Hi, each masked with 37fa213d.
      expect(Buffer.concat(await done).toString('hex')).to.equal(
        '0183' + RFC_KEY + '7f9f4d' + '8082' + RFC_KEY + '5b95' + '8182' + RFC_KEY + '7f93',
      );
    });
  });
});
