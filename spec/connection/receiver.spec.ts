/**
 * The fused inbound chain (lib/connection/receiver.ts). Its output for the same bytes is compared
 * with the stages composed by pipe() in spec/equivalence.spec.ts; here, what only the fused chain
 * does: messages in one small frame each, whole in a chunk, taken straight from the chunk
 * (FragmentAssemblerCore.whole), with every check and limit of the usual path.
 */
import { expect } from 'chai';
import { Opcode, WebSocketError, makeFrame } from '../../lib';
import { Receiver, type ReceiverOptions, type Role } from '../../lib/connection/receiver';
import { FrameSerializerCore } from '../../lib/stages/frame-serializer';
import { applyMask } from '../../lib/protocol/mask';
import type { Message } from '../../lib/protocol/frame';

/** Frame bytes as `role`'s peer sends them: masked with a fixed key to a server, plain to a client. */
function frame(to: Role, opcode: Opcode, payload: Buffer | string, fin = true): Buffer {
  const data = Buffer.from(payload);
  const key = to === 'server' ? Buffer.from([0x11, 0x22, 0x33, 0x44]) : null;
  if (key !== null) applyMask(data, key);
  const out: Buffer[] = [];
  new FrameSerializerCore({}, { onData: (c) => out.push(Buffer.from(c)) }).write(makeFrame(opcode, data, { fin, mask: key }));
  return Buffer.concat(out);
}

interface Made {
  receiver: Receiver;
  messages: string[];
  events: string[];
  /** Frames (or pieces of frames) that went through the splitter's handler (Receiver.onFrame): their opcodes. */
  framed: number[];
  /** Their frames' payload bytes that went through it. */
  framedBytes: { count: number };
}

function make(role: Role, options: ReceiverOptions = {}): Made {
  const messages: string[] = [];
  const events: string[] = [];
  const receiver = new Receiver(role, options, {
    onMessage: (m: Message) => messages.push(`${m.binary ? 'b' : 't'}:${m.binary ? m.data.toString('hex') : m.data.toString('utf8')}`),
    onPing: (p: Buffer) => events.push(`ping:${p.toString()}`),
    onPong: (p: Buffer) => events.push(`pong:${p.toString()}`),
    onClose: (code: number) => {
      events.push(`close:${code}`);
    },
    onReply: () => undefined,
    onMessagePiece: (piece) => messages.push(`piece:${piece.data.toString()}:${piece.last}`),
  });
  const framed: number[] = [];
  const framedBytes = { count: 0 };
  const onFrame = receiver.onFrame.bind(receiver);
  receiver.onFrame = (f) => {
    framed.push(f.opcode);
    framedBytes.count += f.payload.length;
    onFrame(f);
  };
  return { receiver, messages, events, framed, framedBytes };
}

const errorOf = (err: WebSocketError | null): string | null => (err === null ? null : err.code);

describe('Receiver: messages in one small frame, whole in a chunk', () => {
  for (const role of ['server', 'client'] as const) {
    it(`${role}: are delivered from the chunk, in order, without a Frame each, up to the first frame that is not one: it and the rest go through the splitter`, () => {
      const { receiver, messages, events, framed } = make(role);
      const chunk = Buffer.concat([
        frame(role, Opcode.Text, 'héllo'),
        frame(role, Opcode.Binary, Buffer.from([0, 1, 2])),
        frame(role, Opcode.Ping, 'p'),
        frame(role, Opcode.Text, ''),
        frame(role, Opcode.Text, 'fr', false),
        frame(role, Opcode.Continuation, 'ag'),
        frame(role, Opcode.Binary, Buffer.alloc(300, 7)),
      ]);
      expect(errorOf(receiver.write(chunk))).to.equal(null);
      expect(messages).to.deep.equal(['t:héllo', 'b:000102', 't:', 't:frag', `b:${Buffer.alloc(300, 7).toString('hex')}`]);
      expect(events).to.deep.equal(['ping:p']);
      expect(framed).to.deep.equal([Opcode.Ping, Opcode.Text, Opcode.Text, Opcode.Continuation, Opcode.Binary]);
      // The next chunk is scanned again.
      expect(errorOf(receiver.write(Buffer.concat([frame(role, Opcode.Text, 'x'), frame(role, Opcode.Binary, 'y')])))).to.equal(null);
      expect(messages.slice(-2)).to.deep.equal(['t:x', 'b:79']);
      expect(framed).to.have.length(5);
    });
  }

  it('a frame cut by the chunk, wherever the cut, goes through the splitter, and the whole frames after it in the next chunk do not', () => {
    const one = frame('server', Opcode.Text, 'one');
    const two = frame('server', Opcode.Text, 'two');
    const input = Buffer.concat([one, two, frame('server', Opcode.Text, 'three')]);
    for (let cut = one.length + 1; cut < one.length + two.length; cut++) {
      // (A fresh copy each time: a server unmasks in place.)
      const bytes = Buffer.from(input);
      const { receiver, messages, framedBytes } = make('server');
      expect(errorOf(receiver.write(bytes.subarray(0, cut)))).to.equal(null);
      expect(errorOf(receiver.write(bytes.subarray(cut)))).to.equal(null);
      expect(messages, `cut at ${cut}`).to.deep.equal(['t:one', 't:two', 't:three']);
      // "two" only (in one piece or two: the splitter hands on what each chunk holds of it).
      expect(framedBytes.count, `cut at ${cut}`).to.equal(3);
    }
  });

  it('a frame with a 64-bit length goes through the splitter with the rest of its chunk; the next chunk is scanned again', () => {
    const { receiver, messages, framed } = make('server');
    const big = Buffer.alloc(70000, 3);
    const chunk = Buffer.concat([frame('server', Opcode.Text, 'a'), frame('server', Opcode.Binary, big), frame('server', Opcode.Text, 'b')]);
    expect(errorOf(receiver.write(chunk))).to.equal(null);
    expect(errorOf(receiver.write(frame('server', Opcode.Text, 'c')))).to.equal(null);
    expect(messages).to.deep.equal(['t:a', `b:${big.toString('hex')}`, 't:b', 't:c']);
    expect(framed).to.deep.equal([Opcode.Binary, Opcode.Text]);
  });

  it('frames with a 64-bit length (even a non-minimal one for a byte) cost the splitter one write per chunk, not a write per header byte', () => {
    const { receiver, messages } = make('server');
    // 0x82, masked, 127: a 64-bit length of 1; the key 0 0 0 0; one byte.
    const one = Buffer.from([0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x2a]);
    const writes = { count: 0 };
    const write = receiver.splitter.write.bind(receiver.splitter);
    receiver.splitter.write = (chunk: Buffer) => {
      writes.count++;
      return write(chunk);
    };
    expect(errorOf(receiver.write(Buffer.concat(Array.from({ length: 100 }, () => one))))).to.equal(null);
    expect(messages).to.have.length(100);
    expect(writes.count).to.equal(1);
  });

  it('a flood of 1-byte fragments costs the splitter one write per chunk (not a write per frame)', () => {
    const { receiver } = make('server');
    const writes = { count: 0 };
    const write = receiver.splitter.write.bind(receiver.splitter);
    receiver.splitter.write = (chunk: Buffer) => {
      writes.count++;
      return write(chunk);
    };
    const chunk = Buffer.concat([frame('server', Opcode.Binary, 'a', false), ...Array.from({ length: 99 }, () => frame('server', Opcode.Continuation, 'a', false))]);
    expect(errorOf(receiver.write(chunk))).to.equal(null);
    expect(writes.count).to.equal(1);
  });

  it('a header cut by the chunk: the next chunk completes it a byte at a time, then is scanned', () => {
    const one = frame('server', Opcode.Binary, Buffer.alloc(200, 1));
    const input = Buffer.concat([one, frame('server', Opcode.Text, 'two'), frame('server', Opcode.Text, 'three')]);
    // Inside the 16-bit length and inside the key.
    for (const cut of [1, 3, 5, 7]) {
      const bytes = Buffer.from(input);
      const { receiver, messages, framedBytes } = make('server');
      expect(errorOf(receiver.write(bytes.subarray(0, cut)))).to.equal(null);
      expect(errorOf(receiver.write(bytes.subarray(cut)))).to.equal(null);
      expect(messages, `cut at ${cut}`).to.deep.equal([`b:${Buffer.alloc(200, 1).toString('hex')}`, 't:two', 't:three']);
      expect(framedBytes.count, `cut at ${cut}`).to.equal(200);
    }
  });

  it('invalid UTF-8 fails with WS_ERR_INVALID_UTF8 and nothing after it is delivered', () => {
    const { receiver, messages } = make('server');
    const chunk = Buffer.concat([
      frame('server', Opcode.Text, 'ok'),
      frame('server', Opcode.Text, Buffer.from([0xc0, 0xaf])),
      frame('server', Opcode.Text, 'after'),
    ]);
    expect(errorOf(receiver.write(chunk))).to.equal('WS_ERR_INVALID_UTF8');
    expect(messages).to.deep.equal(['t:ok']);
    expect(errorOf(receiver.write(frame('server', Opcode.Text, 'later')))).to.equal('WS_ERR_INVALID_UTF8');
    expect(messages).to.deep.equal(['t:ok']);
  });

  it('skipUtf8Validation: invalid UTF-8 is delivered as the usual path delivers it', () => {
    const { receiver, messages } = make('server', { skipUtf8Validation: true });
    expect(errorOf(receiver.write(frame('server', Opcode.Text, Buffer.from([0x61, 0xff]))))).to.equal(null);
    expect(messages).to.deep.equal([`t:${Buffer.from([0x61, 0xff]).toString('utf8')}`]);
  });

  it('a message over maxMessageSize fails with WS_ERR_MESSAGE_TOO_BIG, one at the limit is delivered', () => {
    const { receiver, messages } = make('server', { maxMessageSize: 4 });
    const chunk = Buffer.concat([frame('server', Opcode.Binary, 'abcd'), frame('server', Opcode.Binary, 'abcde'), frame('server', Opcode.Binary, 'x')]);
    expect(errorOf(receiver.write(chunk))).to.equal('WS_ERR_MESSAGE_TOO_BIG');
    expect(messages).to.deep.equal(['b:61626364']);
  });

  it('a frame over maxPayload fails with WS_ERR_PAYLOAD_TOO_BIG', () => {
    const { receiver, messages } = make('server', { maxPayload: 2 });
    expect(errorOf(receiver.write(Buffer.concat([frame('server', Opcode.Binary, 'ab'), frame('server', Opcode.Binary, 'abc')])))).to.equal(
      'WS_ERR_PAYLOAD_TOO_BIG',
    );
    expect(messages).to.deep.equal(['b:6162']);
  });

  it('a new message while a fragmented one is open fails as the usual path fails it', () => {
    const { receiver, messages } = make('server');
    const chunk = Buffer.concat([frame('server', Opcode.Text, 'a', false), frame('server', Opcode.Text, 'b'), frame('server', Opcode.Text, 'c')]);
    const err = receiver.write(chunk);
    expect(err).to.be.instanceOf(WebSocketError);
    expect(err!.closeCode).to.equal(1002);
    expect(messages).to.deep.equal([]);
  });

  it('wrong masking fails (an unmasked frame to a server, a masked one to a client)', () => {
    expect(errorOf(make('server').receiver.write(frame('client', Opcode.Text, 'x')))).to.equal('WS_ERR_EXPECTED_MASK');
    expect(errorOf(make('client').receiver.write(frame('server', Opcode.Text, 'x')))).to.equal('WS_ERR_UNEXPECTED_MASK');
  });

  it('RSV bits no extension claims fail with WS_ERR_UNEXPECTED_RSV', () => {
    const bytes = frame('server', Opcode.Text, 'x');
    bytes[0] = bytes[0]! | 0x40;
    const { receiver, messages } = make('server');
    expect(errorOf(receiver.write(Buffer.concat([frame('server', Opcode.Text, 'ok'), bytes])))).to.equal('WS_ERR_UNEXPECTED_RSV');
    expect(messages).to.deep.equal(['t:ok']);
  });

  it('the frame budget counts them: parsing stops with the rest held, and goes on once it is renewed', () => {
    const { receiver, messages } = make('server');
    receiver.splitter.budget = 3;
    const chunk = Buffer.concat(Array.from({ length: 7 }, (_, i) => frame('server', Opcode.Text, `m${i}`)));
    expect(errorOf(receiver.write(chunk))).to.equal(null);
    expect(messages).to.deep.equal(['t:m0', 't:m1', 't:m2']);
    expect(receiver.splitter.stalled).to.equal(true);
    receiver.splitter.budget = 3;
    expect(errorOf(receiver.resumeParsing())).to.equal(null);
    expect(messages).to.have.length(6);
    receiver.splitter.budget = 3;
    expect(errorOf(receiver.resumeParsing())).to.equal(null);
    expect(messages).to.deep.equal(Array.from({ length: 7 }, (_, i) => `t:m${i}`));
    expect(receiver.splitter.stalled).to.equal(false);
  });

  it('a handler that fails the receiver mid-chunk stops delivery there', () => {
    const messages: string[] = [];
    const receiver: Receiver = new Receiver('server', {}, {
      onMessage: (m: Message) => {
        messages.push(m.data.toString());
        if (messages.length === 2) receiver.splitter.fail(new WebSocketError('WS_ERR_INVALID_STATE', 'stop'));
      },
      onPing: () => undefined,
      onPong: () => undefined,
      onClose: () => undefined,
      onReply: () => undefined,
    });
    const chunk = Buffer.concat(['a', 'b', 'c'].map((s) => frame('server', Opcode.Text, s)));
    expect(errorOf(receiver.write(chunk))).to.equal('WS_ERR_INVALID_STATE');
    expect(messages).to.deep.equal(['a', 'b']);
  });

  it('a handler that throws: the exception goes on to the caller, and the frames after it in the chunk come with the next one, in order', () => {
    const messages: string[] = [];
    const receiver = new Receiver('server', {}, {
      onMessage: (m: Message) => {
        messages.push(m.data.toString());
        if (messages.length === 1) throw new Error('boom');
      },
      onPing: () => undefined,
      onPong: () => undefined,
      onClose: () => undefined,
      onReply: () => undefined,
    });
    // The third frame is cut by the chunk: the next chunk starts in its payload.
    const bytes = Buffer.concat(['a', 'b', 'cde', 'f'].map((t) => frame('server', Opcode.Text, t)));
    const cut = bytes.length - frame('server', Opcode.Text, 'f').length - 2;
    expect(() => receiver.write(bytes.subarray(0, cut))).to.throw('boom');
    expect(messages).to.deep.equal(['a']);
    expect(errorOf(receiver.write(bytes.subarray(cut)))).to.equal(null);
    expect(messages).to.deep.equal(['a', 'b', 'cde', 'f']);
  });

  it('streamMessages: each message still comes as pieces', () => {
    const { receiver, messages } = make('server', { streamMessages: true });
    expect(errorOf(receiver.write(Buffer.concat([frame('server', Opcode.Text, 'ab'), frame('server', Opcode.Binary, 'c')])))).to.equal(null);
    expect(messages).to.deep.equal(['piece:ab:true', 'piece:c:true']);
  });

  it('with a frame observer (taps) every frame goes through the splitter, seen unmasked', () => {
    const { receiver, messages, framed } = make('server');
    const seen: string[] = [];
    receiver.frameObserver = (f) => seen.push(f.payload.toString());
    expect(errorOf(receiver.write(Buffer.concat([frame('server', Opcode.Text, 'ab'), frame('server', Opcode.Binary, 'c')])))).to.equal(null);
    expect(seen).to.deep.equal(['ab', 'c']);
    expect(messages).to.deep.equal(['t:ab', 'b:63']);
    expect(framed).to.deep.equal([Opcode.Text, Opcode.Binary]);
  });
});
