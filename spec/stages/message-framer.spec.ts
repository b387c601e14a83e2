import { expect } from 'chai';
import { CloseCode, Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { type Frame } from '../../lib/protocol/frame';
import { MessageFramer, MessageFramerCore, toMessage, type OutboundMessage } from '../../lib/stages/message-framer';
import { collect, fromChunks } from '../helpers/chunks';

/** Frames `messages` with a fresh core; returns the frames and the final error. */
function frame(messages: OutboundMessage[], fragmentSize?: number): { out: Frame[]; error: WebSocketError | null } {
  const out: Frame[] = [];
  const core = new MessageFramerCore({ fragmentSize }, { onFrame: (f) => out.push(f) });
  let error: WebSocketError | null = null;
  for (const message of messages) error = core.write(message);
  return { out, error };
}

/** opcode/FIN/length of each frame, for compact comparisons. */
const shape = (frames: Frame[]): Array<[Opcode, boolean, number]> => frames.map((f) => [f.opcode, f.fin, f.payload.length]);

function expectError(err: WebSocketError | null, code: string, closeCode: CloseCode): void {
  expect(err).to.be.instanceOf(WebSocketError);
  expect(err!.code).to.equal(code);
  expect(err!.closeCode).to.equal(closeCode);
}

describe('MessageFramer', () => {
  describe('toMessage', () => {
    it('a string is a text message, encoded as UTF-8', () => {
      const m = toMessage('héllo €') as { binary: boolean; data: Buffer };
      expect(m.binary).to.equal(false);
      expect(m.data.toString('hex')).to.equal('68c3a96c6c6f20e282ac');
    });

    it('a Buffer is a binary message, not copied', () => {
      const data = Buffer.from([1, 2, 3]);
      const m = toMessage(data) as { binary: boolean; data: Buffer };
      expect(m.binary).to.equal(true);
      expect(m.data).to.equal(data);
    });

    it('a Uint8Array is a binary message viewing the same memory, offset respected', () => {
      const backing = new Uint8Array([9, 8, 7, 6, 5]);
      const view = backing.subarray(1, 4);
      const m = toMessage(view) as { binary: boolean; data: Buffer };
      expect(m.binary).to.equal(true);
      expect([...m.data]).to.deep.equal([8, 7, 6]);
      backing[2] = 0;
      expect([...m.data]).to.deep.equal([8, 0, 6]);
    });

    it('the object form says binary explicitly, defaulting by the type of data', () => {
      const cases: Array<[OutboundMessage, boolean]> = [
        [{ data: 'a' }, false],
        [{ data: Buffer.from('a') }, true],
        [{ data: new Uint8Array([0x61]) }, true],
        [{ data: 'a', binary: true }, true],
        [{ data: Buffer.from('a'), binary: false }, false],
      ];
      for (const [value, binary] of cases) {
        const m = toMessage(value) as { binary: boolean; data: Buffer };
        expect(m.binary, JSON.stringify(value)).to.equal(binary);
        expect(m.data.toString(), JSON.stringify(value)).to.equal('a');
      }
    });

    it('returns WS_ERR_INVALID_ARGUMENT (never throws) for anything else', () => {
      const bad: unknown[] = [
        undefined,
        null,
        42,
        true,
        {},
        [1, 2],
        { data: 42 },
        { data: null },
        { data: 'a', binary: 'yes' },
        // RFC 6455 §5.6: text must be UTF-8; a peer would fail us with 1007.
        { data: Buffer.from([0xc3, 0x28]), binary: false },
      ];
      for (const value of bad) {
        expectError(toMessage(value as OutboundMessage) as WebSocketError, 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
      }
    });
  });

  describe('MessageFramerCore: whole messages', () => {
    it('frames "Hello" as one FIN text frame (§5.7)', () => {
      const { out, error } = frame(['Hello']);
      expect(error).to.equal(null);
      expect(shape(out)).to.deep.equal([[Opcode.Text, true, 5]]);
      expect(out[0]!.payload.toString()).to.equal('Hello');
      expect(out[0]!.mask).to.equal(null);
      expect([out[0]!.rsv1, out[0]!.rsv2, out[0]!.rsv3]).to.deep.equal([false, false, false]);
    });

    it('frames a binary message without copying it', () => {
      const data = Buffer.alloc(65536, 3);
      const { out } = frame([data]);
      expect(shape(out)).to.deep.equal([[Opcode.Binary, true, 65536]]);
      expect(out[0]!.payload).to.equal(data);
    });

    it('frames an empty message as one empty FIN frame, fragmented or not', () => {
      for (const size of [0, 1, 3]) {
        expect(shape(frame([''], size).out), `fragmentSize ${size}`).to.deep.equal([[Opcode.Text, true, 0]]);
        expect(shape(frame([Buffer.alloc(0)], size).out), `fragmentSize ${size}`).to.deep.equal([[Opcode.Binary, true, 0]]);
      }
    });
  });

  describe('MessageFramerCore: fragmentation (§5.4)', () => {
    const data = Buffer.alloc(1000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;

    for (const size of [1, 3, 125]) {
      it(`cuts a 1000-byte message into frames of at most ${size} bytes`, () => {
        const { out, error } = frame([data], size);
        expect(error).to.equal(null);
        expect(out).to.have.length(Math.ceil(1000 / size));
        out.forEach((f, i) => {
          const last = i === out.length - 1;
          expect(f.opcode, `frame ${i}`).to.equal(i === 0 ? Opcode.Binary : Opcode.Continuation);
          expect(f.fin, `frame ${i}`).to.equal(last);
          expect(f.payload.length, `frame ${i}`).to.equal(last ? 1000 - size * (out.length - 1) : size);
          expect(f.length, `frame ${i}`).to.equal(f.payload.length);
          expect(f.offset, `frame ${i}`).to.equal(0);
          expect(f.payload.buffer, `frame ${i} is a view`).to.equal(data.buffer);
        });
        expect(Buffer.concat(out.map((f) => f.payload)).equals(data)).to.equal(true);
      });
    }

    it('cuts "Hello" at 3 into Hel + lo as in §5.7', () => {
      const { out } = frame(['Hello'], 3);
      expect(out.map((f) => [f.opcode, f.fin, f.payload.toString()])).to.deep.equal([
        [Opcode.Text, false, 'Hel'],
        [Opcode.Continuation, true, 'lo'],
      ]);
    });

    it('does not fragment a message of exactly fragmentSize bytes, nor when fragmentSize is 0', () => {
      expect(shape(frame([Buffer.alloc(125)], 125).out)).to.deep.equal([[Opcode.Binary, true, 125]]);
      expect(shape(frame([Buffer.alloc(126)], 125).out)).to.deep.equal([
        [Opcode.Binary, false, 125],
        [Opcode.Continuation, true, 1],
      ]);
      expect(shape(frame([Buffer.alloc(5000)]).out)).to.deep.equal([[Opcode.Binary, true, 5000]]);
    });

    it('starts each message afresh', () => {
      expect(shape(frame(['abcd', Buffer.from('xy')], 3).out)).to.deep.equal([
        [Opcode.Text, false, 3],
        [Opcode.Continuation, true, 1],
        [Opcode.Binary, true, 2],
      ]);
    });

    it('rejects a fragmentSize that is not a non-negative integer', () => {
      for (const fragmentSize of [-1, 1.5, NaN, Infinity]) {
        expect(() => new MessageFramerCore({ fragmentSize }, { onFrame: () => undefined }), String(fragmentSize))
          .to.throw(WebSocketError)
          .with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      }
    });

    it('stops at once when failed from inside its handler', () => {
      const out: Frame[] = [];
      const stop = new WebSocketError('WS_ERR_BUFFER_FULL');
      const core: MessageFramerCore = new MessageFramerCore(
        { fragmentSize: 10 },
        {
          onFrame: (f) => {
            out.push(f);
            if (out.length === 2) core.fail(stop);
          },
        },
      );
      expect(core.write(Buffer.alloc(100))).to.equal(stop);
      expect(out).to.have.length(2);
      expectError(core.error, 'WS_ERR_BUFFER_FULL', CloseCode.PolicyViolation);
      expect(core.write('more')).to.equal(stop);
      expect(out).to.have.length(2);
    });
  });

  describe('MessageFramerCore: streamed parts (writePart)', () => {
    const parts = (...spec: Array<[string, boolean, boolean]>): { out: Frame[]; core: MessageFramerCore; errors: Array<WebSocketError | null> } => {
      const out: Frame[] = [];
      const core = new MessageFramerCore({ fragmentSize: 1 }, { onFrame: (f) => out.push(f) });
      const errors = spec.map(([data, binary, fin]) => core.writePart(Buffer.from(data), binary, fin));
      return { out, core, errors };
    };

    it('sends each part as one frame: Text/Binary first, then Continuation, FIN on the last', () => {
      const { out, core, errors } = parts(['Hel', false, false], ['', false, false], ['lo', false, true], ['bin', true, true]);
      expect(errors).to.deep.equal([null, null, null, null]);
      expect(out.map((f) => [f.opcode, f.fin, f.payload.toString()])).to.deep.equal([
        [Opcode.Text, false, 'Hel'],
        [Opcode.Continuation, false, ''],
        [Opcode.Continuation, true, 'lo'],
        [Opcode.Binary, true, 'bin'],
      ]);
      expect(core.streaming).to.equal(false);
    });

    it('tracks whether a streamed message is open', () => {
      const { core } = parts(['a', true, false]);
      expect(core.streaming).to.equal(true);
      core.writePart(Buffer.from('b'), true, true);
      expect(core.streaming).to.equal(false);
    });

    it('allows whole messages between streamed ones', () => {
      const { out, core } = parts(['a', false, true]);
      expect(core.write('b')).to.equal(null);
      expect(core.writePart(Buffer.from('c'), true, true)).to.equal(null);
      expect(shape(out)).to.deep.equal([
        [Opcode.Text, true, 1],
        [Opcode.Text, true, 1],
        [Opcode.Binary, true, 1],
      ]);
    });

    it('fails with WS_ERR_INVALID_STATE on a whole message while a streamed one is open', () => {
      const { out, core } = parts(['Hel', false, false]);
      expectError(core.write('interleaved'), 'WS_ERR_INVALID_STATE', CloseCode.InternalError);
      expect(core.writePart(Buffer.from('lo'), false, true)).to.equal(core.error);
      expect(out).to.have.length(1);
    });

    it('fails with WS_ERR_INVALID_ARGUMENT when a part changes the message type or is not bytes', () => {
      const { out, errors } = parts(['Hel', false, false], ['lo', true, true]);
      expect(errors[0]).to.equal(null);
      expectError(errors[1]!, 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
      expect(out).to.have.length(1);
      const core = new MessageFramerCore({}, { onFrame: () => undefined });
      expectError(core.writePart('text' as unknown as Buffer, false, true), 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
    });
  });

  describe('MessageFramer stream', () => {
    it('turns messages into frames', async () => {
      const framer = new MessageFramer({ fragmentSize: 3 });
      const out = collect<Frame>(framer);
      fromChunks<OutboundMessage>(['Hello', Buffer.from([1, 2]), { data: 'x', binary: true }], true).pipe(framer);
      expect((await out).map((f) => [f.opcode, f.fin, f.payload.toString('hex')])).to.deep.equal([
        [Opcode.Text, false, '48656c'],
        [Opcode.Continuation, true, '6c6f'],
        [Opcode.Binary, true, '0102'],
        [Opcode.Binary, true, '78'],
      ]);
    });

    it('errors with WS_ERR_INVALID_ARGUMENT for a value that is not a message', async () => {
      const framer = new MessageFramer();
      const failed = new Promise<Error>((resolve) => framer.once('error', resolve));
      framer.resume();
      framer.write(42 as unknown as OutboundMessage);
      const err = (await failed) as WebSocketError;
      expectError(err, 'WS_ERR_INVALID_ARGUMENT', CloseCode.InternalError);
      expect(framer.core.error).to.equal(err);
    });
  });
});
