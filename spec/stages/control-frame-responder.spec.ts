import { expect } from 'chai';
import { Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { type Frame, type Inbound, type Message, makeFrame } from '../../lib/protocol/frame';
import { encodeClosePayload } from '../../lib/protocol/close';
import {
  ControlFrameResponder,
  ControlFrameResponderCore,
  type ControlFrameResponderOptions,
} from '../../lib/stages/control-frame-responder';
import { Transform } from 'readable-stream';
import { MessageFramer } from '../../lib/stages/message-framer';
import { FrameSerializer } from '../../lib/stages/frame-serializer';
import { collect } from '../helpers/chunks';
import { closeOf, decodeFrames } from '../helpers/frames';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Decodes a short unmasked control frame typed out by hand (RFC 6455 §5.7), independently of the parser. */
function frameFromHex(s: string): Frame {
  const bytes = hex(s);
  expect(bytes[1]! & 0x80, 'unmasked').to.equal(0);
  expect(bytes.length).to.equal(2 + (bytes[1]! & 0x7f));
  return makeFrame(bytes[0]! & 0x0f, bytes.subarray(2), { fin: (bytes[0]! & 0x80) !== 0 });
}

function closeFrame(payload: Buffer): Frame {
  return makeFrame(Opcode.Close, payload);
}
function codePayload(code: number, reason: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(code, 0);
  return Buffer.concat([head, reason]);
}
function msg(s: string): Message {
  return { binary: false, data: Buffer.from(s) };
}

type Event = ['message', Message] | ['ping', Buffer] | ['pong', Buffer] | ['close', number, string] | ['reply', Frame];

function setup(options: ControlFrameResponderOptions = {}): { core: ControlFrameResponderCore; events: Event[]; replies: () => Frame[] } {
  const events: Event[] = [];
  const core = new ControlFrameResponderCore(options, {
    onMessage: (m) => events.push(['message', m]),
    onPing: (p) => events.push(['ping', p]),
    onPong: (p) => events.push(['pong', p]),
    onClose: (code, reason) => {
      events.push(['close', code, reason]);
    },
    onReply: (f) => events.push(['reply', f]),
  });
  const replies = (): Frame[] => events.filter((e): e is ['reply', Frame] => e[0] === 'reply').map((e) => e[1]);
  return { core, events, replies };
}

function expectError(err: unknown, code: string, closeCode: number): void {
  expect(err).to.be.instanceOf(WebSocketError);
  expect((err as WebSocketError).code).to.equal(code);
  expect((err as WebSocketError).closeCode).to.equal(closeCode);
}

/** The reply is a whole, unmasked close frame carrying `code` (or no payload for undefined). */
function expectCloseReply(frame: Frame | undefined, code: number | undefined): void {
  expect(frame).to.not.equal(undefined);
  expect(frame!.opcode).to.equal(Opcode.Close);
  expect(frame!.fin).to.equal(true);
  expect(frame!.mask).to.equal(null);
  expect(frame!.length).to.equal(frame!.payload.length);
  if (code === undefined) expect(frame!.payload.length).to.equal(0);
  else expect(frame!.payload.readUInt16BE(0)).to.equal(code);
  expect(frame!.payload.length).to.be.at.most(125);
}

describe('ControlFrameResponder', () => {
  describe('messages', () => {
    it('passes data messages on', () => {
      const { core, events } = setup();
      expect(core.write(msg('a'))).to.equal(null);
      expect(core.write({ binary: true, data: hex('00ff') })).to.equal(null);
      expect(events).to.deep.equal([['message', msg('a')], ['message', { binary: true, data: hex('00ff') }]]);
    });
  });

  describe('ping and pong (§5.5.2, §5.5.3)', () => {
    it('§5.7 unmasked ping "Hello" (89 05 48 65 6c 6c 6f) is answered by a pong with the same payload', () => {
      const { core, events, replies } = setup();
      expect(core.write(frameFromHex('89 05 48 65 6c 6c 6f'))).to.equal(null);
      expect(events[0]).to.deep.equal(['ping', Buffer.from('Hello')]);
      const [pong] = replies();
      expect(pong).to.deep.equal(makeFrame(Opcode.Pong, Buffer.from('Hello')));
    });

    it('the pong payload is a copy: masking it in place leaves the ping payload intact', () => {
      const { core, replies } = setup();
      const ping = makeFrame(Opcode.Ping, Buffer.from('Hello'));
      core.write(ping);
      replies()[0]!.payload.fill(0);
      expect(ping.payload.toString()).to.equal('Hello');
    });

    it('answers an empty ping with an empty pong, and every ping in order', () => {
      const { core, replies } = setup();
      core.write(makeFrame(Opcode.Ping, Buffer.alloc(0)));
      core.write(makeFrame(Opcode.Ping, Buffer.from('2')));
      expect(replies().map((f) => [f.opcode, f.payload.toString()])).to.deep.equal([
        [Opcode.Pong, ''],
        [Opcode.Pong, '2'],
      ]);
    });

    it('autoPong: false reports the ping without answering', () => {
      const { core, events, replies } = setup({ autoPong: false });
      core.write(makeFrame(Opcode.Ping, Buffer.from('x')));
      expect(events).to.deep.equal([['ping', Buffer.from('x')]]);
      expect(replies()).to.deep.equal([]);
    });

    it('§5.7 pong "Hello" (unmasked form of 8a 85 ...) is reported, never answered', () => {
      const { core, events } = setup();
      core.write(frameFromHex('8a 05 48 65 6c 6c 6f'));
      expect(events).to.deep.equal([['pong', Buffer.from('Hello')]]);
    });

    it('sends no pong once a close was sent', () => {
      const { core, events, replies } = setup();
      expect(core.close(1000)).to.equal(null);
      core.write(makeFrame(Opcode.Ping, Buffer.from('late')));
      expect(events.filter((e) => e[0] === 'ping')).to.have.length(1);
      expect(replies().map((f) => f.opcode)).to.deep.equal([Opcode.Close]);
    });

    it("sendControl: the application's ping and unsolicited pong as whole frames; 126 bytes or after a close, an error and nothing sent", () => {
      const { core, replies } = setup();
      expect(core.sendControl(Opcode.Ping, Buffer.from('p'))).to.equal(null);
      expect(core.sendControl(Opcode.Pong, Buffer.alloc(125))).to.equal(null);
      expect(core.sendControl(Opcode.Ping, Buffer.alloc(126))).to.have.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(replies().map((f) => [f.opcode, f.fin, f.payload.length])).to.deep.equal([
        [Opcode.Ping, true, 1],
        [Opcode.Pong, true, 125],
      ]);
      core.close(1000);
      expect(core.sendControl(Opcode.Ping, Buffer.alloc(0))).to.have.property('code', 'WS_ERR_INVALID_STATE');
      expect(replies().map((f) => f.opcode)).to.deep.equal([Opcode.Ping, Opcode.Pong, Opcode.Close]);
    });
  });

  describe('closing handshake (§5.5.1, §7)', () => {
    it('echoes the code and reason of the peer close and reports code and reason', () => {
      const { core, events, replies } = setup();
      expect(core.write(closeFrame(codePayload(1001, Buffer.from('bye'))))).to.equal(null);
      expect(events[0]).to.deep.equal(['close', 1001, 'bye']);
      expect(replies()).to.have.length(1);
      expectCloseReply(replies()[0], 1001);
      expect(replies()[0]!.payload).to.deep.equal(codePayload(1001, Buffer.from('bye')));
      expect(core.closeReceived).to.equal(true);
      expect(core.closeSent).to.equal(true);
    });

    for (const code of [1000, 1003, 1007, 1014, 3000, 4999]) {
      it(`echoes code ${code}`, () => {
        const { core, replies } = setup();
        core.write(closeFrame(codePayload(code)));
        expectCloseReply(replies()[0], code);
      });
    }

    it('answers an empty close with an empty close (1005 never goes on the wire)', () => {
      const { core, events, replies } = setup();
      core.write(closeFrame(Buffer.alloc(0)));
      expect(events[0]).to.deep.equal(['close', 1005, '']);
      expectCloseReply(replies()[0], undefined);
    });

    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
      it(`fails on close code ${code} with WS_ERR_INVALID_CLOSE_CODE and a failing close carrying 1002`, () => {
        const { core, events, replies } = setup();
        const err = core.write(closeFrame(codePayload(code)));
        expectError(err, 'WS_ERR_INVALID_CLOSE_CODE', 1002);
        expect(core.error).to.equal(err);
        expect(events.filter((e) => e[0] === 'close')).to.deep.equal([]);
        expect(replies()).to.have.length(1);
        expectCloseReply(replies()[0], 1002);
        expect(core.closeSent).to.equal(true);
      });
    }

    it('fails on a 1-byte close payload with 1002', () => {
      const { core, replies } = setup();
      expectError(core.write(closeFrame(hex('03'))), 'WS_ERR_INVALID_CLOSE_PAYLOAD', 1002);
      expectCloseReply(replies()[0], 1002);
    });

    it('fails on a close reason that is not UTF-8 with 1007, and the failing close carries 1007', () => {
      const { core, replies } = setup();
      expectError(core.write(closeFrame(codePayload(1000, hex('ed a0 80')))), 'WS_ERR_INVALID_UTF8', 1007);
      expectCloseReply(replies()[0], 1007);
    });

    it('does not echo the peer close after noteCloseSent', () => {
      const { core, events, replies } = setup();
      core.noteCloseSent();
      core.write(closeFrame(codePayload(1000)));
      expect(events).to.deep.equal([['close', 1000, '']]);
      expect(replies()).to.deep.equal([]);
      expect(core.closeReceived && core.closeSent).to.equal(true);
    });

    it('a handler that returns true from onClose answers later with close(), once', () => {
      const replies: Frame[] = [];
      const core = new ControlFrameResponderCore(
        {},
        { onMessage: () => {}, onPing: () => {}, onPong: () => {}, onClose: () => true, onReply: (f) => replies.push(f) },
      );
      core.write(closeFrame(codePayload(1001)));
      expect(replies).to.deep.equal([]);
      expect(core.closeReceived).to.equal(true);
      expect(core.closeSent).to.equal(false);
      expect(core.close(1001)).to.equal(null);
      expect(core.close(1000)).to.equal(null); // one close only
      expect(replies.map((f) => f.payload)).to.deep.equal([encodeClosePayload(1001)]);
    });

    it('a handler that returns true from onClose answers later with answerClose(): the echo of the peer code, once', () => {
      for (const [payload, echoed] of [
        [codePayload(1001, Buffer.from('away')), 1001],
        [Buffer.alloc(0), undefined],
      ] as const) {
        const replies: Frame[] = [];
        const core = new ControlFrameResponderCore(
          {},
          { onMessage: () => {}, onPing: () => {}, onPong: () => {}, onClose: () => true, onReply: (f) => replies.push(f) },
        );
        core.answerClose(); // nothing to answer yet
        expect(replies).to.deep.equal([]);
        core.write(closeFrame(payload));
        expect(replies).to.deep.equal([]);
        core.answerClose();
        core.answerClose();
        expect(replies).to.have.length(1);
        expectCloseReply(replies[0], echoed);
        expect(core.closeSent).to.equal(true);
      }
    });

    it('does not echo the peer close after an application close', () => {
      const { core, replies } = setup();
      core.close(4000, 'done');
      core.write(closeFrame(codePayload(4000)));
      expect(replies()).to.have.length(1);
      expect(replies()[0]!.payload).to.deep.equal(encodeClosePayload(4000, 'done'));
    });

    it('discards messages and control frames after the peer close', () => {
      const { core, events, replies } = setup();
      core.write(closeFrame(codePayload(1000)));
      expect(core.write(msg('late'))).to.equal(null);
      core.write(makeFrame(Opcode.Ping, Buffer.from('late')));
      core.write(closeFrame(codePayload(1001)));
      expect(events.map((e) => e[0])).to.deep.equal(['close', 'reply']);
      expect(replies()).to.have.length(1);
    });
  });

  describe('close() from the application', () => {
    it('queues a close frame with code and reason and marks closeSent', () => {
      const { core, replies } = setup();
      expect(core.close(1000, 'bye')).to.equal(null);
      expect(core.closeSent).to.equal(true);
      expectCloseReply(replies()[0], 1000);
      expect(replies()[0]!.payload.subarray(2).toString()).to.equal('bye');
    });

    it('queues an empty close frame without a code', () => {
      const { core, replies } = setup();
      core.close();
      expectCloseReply(replies()[0], undefined);
    });

    it('rejects invalid arguments with WS_ERR_INVALID_ARGUMENT and sends nothing', () => {
      const { core, replies } = setup();
      expectError(core.close(1005), 'WS_ERR_INVALID_ARGUMENT', 1011);
      expectError(core.close(1000, 'x'.repeat(124)), 'WS_ERR_INVALID_ARGUMENT', 1011);
      expect(replies()).to.deep.equal([]);
      expect(core.closeSent).to.equal(false);
    });

    it('sends one close only', () => {
      const { core, replies } = setup();
      core.close(1000);
      expect(core.close(1001)).to.equal(null);
      expect(replies()).to.have.length(1);
    });
  });

  describe('failConnection (§7.1.7)', () => {
    it('queues a close with the error close code and a short reason, then ignores input', () => {
      const { core, events, replies } = setup();
      core.failConnection(new WebSocketError('WS_ERR_MESSAGE_TOO_BIG'));
      expectCloseReply(replies()[0], 1009);
      expect(replies()[0]!.payload.subarray(2).toString()).to.equal('WS_ERR_MESSAGE_TOO_BIG');
      expect(core.closeSent).to.equal(true);
      expectError(core.write(msg('x')), 'WS_ERR_MESSAGE_TOO_BIG', 1009);
      expect(events.filter((e) => e[0] !== 'reply')).to.deep.equal([]);
    });

    it('sends nothing when a close was already sent', () => {
      const { core, replies } = setup();
      core.close(1000);
      core.failConnection(new WebSocketError('WS_ERR_INVALID_UTF8'));
      expect(replies()).to.have.length(1);
      expectCloseReply(replies()[0], 1000);
    });

    it('sends nothing for a close code that may not be on the wire (1006), but counts the close as sent', () => {
      const { core, replies } = setup();
      core.failConnection(new WebSocketError('WS_ERR_CONNECTION_LOST'));
      expect(replies()).to.deep.equal([]);
      expect(core.closeSent).to.equal(true);
    });
  });

  describe('ControlFrameResponder stream', () => {
    it('passes messages, fires ping/pong/peerclose, and yields pong and close echo on replies; both sides end', async () => {
      const responder = new ControlFrameResponder();
      const fired: unknown[][] = [];
      responder.on('ping', (p: Buffer) => fired.push(['ping', p.toString()]));
      responder.on('pong', (p: Buffer) => fired.push(['pong', p.toString()]));
      responder.on('peerclose', (code: number, reason: string) => fired.push(['peerclose', code, reason]));
      const messages = collect<Message>(responder);
      const replies = collect<Frame>(responder.replies);
      const input: Inbound[] = [
        msg('one'),
        frameFromHex('89 05 48 65 6c 6c 6f'),
        frameFromHex('8a 05 48 65 6c 6c 6f'),
        msg('two'),
        closeFrame(codePayload(1000, Buffer.from('done'))),
      ];
      for (const v of input) responder.write(v);
      expect(await messages).to.deep.equal([msg('one'), msg('two')]);
      const frames = await replies;
      expect(frames.map((f) => f.opcode)).to.deep.equal([Opcode.Pong, Opcode.Close]);
      expect(frames[0]!.payload.toString()).to.equal('Hello');
      expectCloseReply(frames[1], 1000);
      expect(fired).to.deep.equal([['ping', 'Hello'], ['pong', 'Hello'], ['peerclose', 1000, 'done']]);
    });

    it('ends replies when the application closes, and the message side when the peer answers', async () => {
      const responder = new ControlFrameResponder();
      const replies = collect<Frame>(responder.replies);
      expect(responder.close(1000, 'bye')).to.equal(null);
      const frames = await replies;
      expect(frames).to.have.length(1);
      expectCloseReply(frames[0], 1000);
      const messages = collect<Message>(responder);
      responder.write(msg('still open'));
      responder.write(closeFrame(codePayload(1000)));
      expect(await messages).to.deep.equal([msg('still open')]);
    });

    it('noteCloseSent ends replies without a frame; the peer close then ends the message side', async () => {
      const responder = new ControlFrameResponder();
      const replies = collect<Frame>(responder.replies);
      responder.noteCloseSent();
      expect(await replies).to.deep.equal([]);
      const messages = collect<Message>(responder);
      responder.write(closeFrame(Buffer.alloc(0)));
      expect(await messages).to.deep.equal([]);
    });

    it('errors with the close error, and still yields the failing close frame on replies', async () => {
      const responder = new ControlFrameResponder();
      const replies = collect<Frame>(responder.replies);
      const failed = new Promise<unknown>((resolve) => responder.on('error', resolve));
      responder.write(closeFrame(codePayload(1004)));
      expectError(await failed, 'WS_ERR_INVALID_CLOSE_CODE', 1002);
      const frames = await replies;
      expect(frames).to.have.length(1);
      expectCloseReply(frames[0], 1002);
    });

    it('failConnection on the wrapper queues the failing close and ends replies', async () => {
      const responder = new ControlFrameResponder();
      const replies = collect<Frame>(responder.replies);
      responder.failConnection(new WebSocketError('WS_ERR_INVALID_OPCODE'));
      const frames = await replies;
      expect(frames).to.have.length(1);
      expectCloseReply(frames[0], 1002);
    });

    it("closeAnswer: 'manual': the peer's close ends the message side without an echo; answerClose() echoes its code", async () => {
      const responder = new ControlFrameResponder({ closeAnswer: 'manual' });
      const fired: unknown[][] = [];
      responder.on('peerclose', (code: number, reason: string) => fired.push(['peerclose', code, reason]));
      const messages = collect<Message>(responder);
      const replies = collect<Frame>(responder.replies);
      responder.write(msg('before'));
      responder.write(closeFrame(codePayload(1001, Buffer.from('away'))));
      expect(await messages).to.deep.equal([msg('before')]);
      expect(fired).to.deep.equal([['peerclose', 1001, 'away']]);
      expect(responder.core.closeSent).to.equal(false);
      responder.answerClose();
      responder.answerClose(); // one close only
      const frames = await replies;
      expect(frames).to.have.length(1);
      expectCloseReply(frames[0], 1001);
    });

    it("closeAnswer: 'manual': answerClose() answers a close without a code with an empty close, and does nothing before the peer's close", async () => {
      const responder = new ControlFrameResponder({ closeAnswer: 'manual' });
      const replies = collect<Frame>(responder.replies);
      responder.answerClose();
      expect(responder.core.closeSent).to.equal(false);
      responder.resume();
      responder.write(closeFrame(Buffer.alloc(0)));
      responder.answerClose();
      const frames = await replies;
      expect(frames).to.have.length(1);
      expectCloseReply(frames[0], undefined);
    });

    /**
     * An echo pipeline as examples/compose.ts builds it, with an echo stage that takes 5 ms a
     * message: responder > echo > MessageFramer > FrameSerializer, and .replies into the
     * serializer too, which ends once both have ended. `answerClose`: the application answers
     * the peer's close when the framer ends, once the echo side has handed on everything it had
     * (closeAnswer 'manual'). Writes 'a', 'b', 'c' and a close 1000; resolves with what the
     * serializer put out, frame by frame, and what it dropped.
     */
    async function echoThrough(responder: ControlFrameResponder, answerClose = false): Promise<{ sent: string[]; dropped: number }> {
      const slowEcho = new Transform({
        objectMode: true,
        transform(m: Message, _enc: BufferEncoding, cb: (err: null, m: Message) => void) {
          setTimeout(() => cb(null, m), 5);
        },
      });
      const framer = new MessageFramer();
      const serializer = new FrameSerializer();
      responder.pipe(slowEcho).pipe(framer).pipe(serializer, { end: false });
      responder.replies.pipe(serializer, { end: false });
      if (answerClose) framer.once('end', () => responder.answerClose());
      let sources = 2;
      const ended = (): void => {
        if (--sources === 0) serializer.end();
      };
      framer.once('end', ended);
      responder.replies.once('end', ended);
      const bytes = collect<Buffer>(serializer);
      for (const t of ['a', 'b', 'c']) responder.write(msg(t));
      responder.write(closeFrame(codePayload(1000)));
      const { frames, rest } = decodeFrames(Buffer.concat(await bytes));
      expect(rest.length).to.equal(0);
      const sent = frames.map((f) => (f.opcode === Opcode.Close ? `close ${closeOf(f).code}` : f.payload.toString()));
      return { sent, dropped: serializer.core.droppedAfterClose };
    }

    it("closeAnswer: 'auto' (the default) in an echo pipeline: echoes behind the close are dropped at the serializer, never sent after it", async () => {
      const { sent, dropped } = await echoThrough(new ControlFrameResponder());
      expect(sent[sent.length - 1]).to.equal('close 1000');
      expect(dropped).to.be.greaterThan(0);
      expect(sent.length - 1 + dropped).to.equal(3); // each echo went out before the close, or was dropped
    });

    it("closeAnswer: 'manual' in an echo pipeline: every echo goes out before the close, even from a slow stage", async () => {
      const { sent, dropped } = await echoThrough(new ControlFrameResponder({ closeAnswer: 'manual' }), true);
      expect(sent).to.deep.equal(['a', 'b', 'c', 'close 1000']);
      expect(dropped).to.equal(0);
    });

    it('passes options through (autoPong: false)', async () => {
      const responder = new ControlFrameResponder({ autoPong: false });
      const replies = collect<Frame>(responder.replies);
      responder.write(makeFrame(Opcode.Ping, Buffer.from('p')));
      responder.write(closeFrame(codePayload(1000)));
      expect((await replies).map((f) => f.opcode)).to.deep.equal([Opcode.Close]);
    });
  });
});
