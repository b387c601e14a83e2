/**
 * ConnectionCore, synchronously: frames and time in, decisions out. Groups follow RFC 6455
 * §5.5 (control frames), §7.1 (closing, failing) and the connection's own policies (liveness,
 * reading holds, the memory budget, outbound ordering).
 */
import { expect } from 'chai';
import { ConnectionCore, type ConnectionCoreHandler, type ConnectionCoreOptions, CoreState, ReadHold } from '../../lib/connection/connection-core';
import { Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { type Frame, type Message, makeFrame } from '../../lib/protocol/frame';

/** What the core asked for, in order, as short tuples. */
type Call = [string, ...unknown[]];

function closePayload(code: number, reason = ''): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

/** Describes a frame sent: ['ping', payload text], ['close', code, reason] or ['close'] for an empty one. */
function described(frame: Frame): Call {
  if (frame.opcode === Opcode.Close) {
    return frame.payload.length === 0 ? ['close'] : ['close', frame.payload.readUInt16BE(0), frame.payload.subarray(2).toString()];
  }
  return [frame.opcode === Opcode.Ping ? 'ping' : frame.opcode === Opcode.Pong ? 'pong' : `op${frame.opcode}`, frame.payload.toString()];
}

/** What the budget sees besides unread data: set by the specs. */
const sizes = { unsent: 0, assembling: 0 };

function setup(
  options: ConnectionCoreOptions & { role?: 'server' | 'client' } = {},
  answerLater = false,
): { core: ConnectionCore; calls: Call[]; sent: () => Call[] } {
  sizes.unsent = sizes.assembling = 0;
  const calls: Call[] = [];
  const handler: ConnectionCoreHandler = {
    onMessage: (m: Message) => calls.push(['message', m.data.toString()]),
    onPing: (p) => calls.push(['onPing', p.toString()]),
    onPong: (p) => calls.push(['onPong', p.toString()]),
    onPeerClose: (code, reason) => {
      calls.push(['onPeerClose', code, reason]);
      return answerLater;
    },
    sendFrame: (f) => calls.push(['send', ...described(f)]),
    onError: (err) => calls.push(['error', (err as WebSocketError).code ?? err.message]),
    endTransport: () => calls.push(['end']),
    destroyTransport: () => calls.push(['destroy']),
    setReading: (on) => calls.push(['reading', on]),
    onClosed: (code, reason, clean) => calls.push(['closed', code, reason, clean]),
    unsentBytes: () => sizes.unsent,
    assemblingBytes: () => sizes.assembling,
  };
  const core = new ConnectionCore(options.role ?? 'server', { closeTimeout: 1000, ...options }, handler, 0);
  const sent = (): Call[] => calls.filter((c) => c[0] === 'send').map((c) => c.slice(1) as Call);
  return { core, calls, sent };
}

const text = (s: string): Message => ({ binary: false, data: Buffer.from(s) });
const ping = (s: string): Frame => makeFrame(Opcode.Ping, Buffer.from(s));
const pong = (s: string): Frame => makeFrame(Opcode.Pong, Buffer.from(s));
const close = (code?: number, reason = ''): Frame => makeFrame(Opcode.Close, code === undefined ? Buffer.alloc(0) : closePayload(code, reason));

describe('ConnectionCore', () => {
  describe('RFC 6455 §5.5.2-3: ping and pong', () => {
    it('answers a ping with a pong of identical application data ("Hello", §5.7)', () => {
      const { core, calls } = setup();
      expect(core.receive(ping('Hello'), 1)).to.equal(null);
      expect(calls).to.deep.equal([
        ['onPing', 'Hello'],
        ['send', 'pong', 'Hello'],
      ]);
    });

    it('reports a pong and sends nothing', () => {
      const { core, calls } = setup();
      core.receive(pong('x'), 1);
      expect(calls).to.deep.equal([['onPong', 'x']]);
    });

    it('autoPong: false reports the ping without answering', () => {
      const { core, sent } = setup({ autoPong: false });
      core.receive(ping('a'), 1);
      expect(sent()).to.deep.equal([]);
    });

    it('sends no pong once its close is sent (nothing follows a close, §5.5.1)', () => {
      const { core, sent } = setup();
      core.close(1000, '', 1);
      core.receive(ping('late'), 2);
      expect(sent()).to.deep.equal([['close', 1000, '']]);
    });

    it('passes data messages through, in order with control frames', () => {
      const { core, calls } = setup();
      core.receive(text('a'), 1);
      core.receive(ping('p'), 1);
      core.receive(text('b'), 1);
      expect(calls.map((c) => c.join(' '))).to.deep.equal(['message a', 'onPing p', 'send pong p', 'message b']);
    });
  });

  describe('RFC 6455 §5.5.1, §7.1: the closing handshake', () => {
    it("server: echoes the peer's code AND reason, then ends TCP at once (§7.1.1)", () => {
      const { core, calls } = setup();
      core.receive(close(1000, 'bye'), 5);
      expect(calls).to.deep.equal([['onPeerClose', 1000, 'bye'], ['send', 'close', 1000, 'bye'], ['end']]);
      expect(core.state).to.equal(CoreState.Closing);
      expect(core.handshakeDone).to.equal(true);
      core.transportClosed();
      expect(calls.at(-1)).to.deep.equal(['closed', 1000, 'bye', true]);
      expect(core.state).to.equal(CoreState.Closed);
    });

    it('client: echoes, and waits for the server to close TCP (no endTransport)', () => {
      const { core, calls } = setup({ role: 'client' });
      core.receive(close(4000, 'done'), 5);
      expect(calls).to.deep.equal([['onPeerClose', 4000, 'done'], ['send', 'close', 4000, 'done']]);
      expect(core.deadline).to.equal(1005);
      core.tick(1005);
      expect(calls.at(-1)).to.deep.equal(['destroy']);
    });

    it('answers an empty close with an empty close; "close" reports 1005 (§7.1.5)', () => {
      const { core, calls } = setup();
      core.receive(close(), 1);
      expect(calls.slice(0, 2)).to.deep.equal([['onPeerClose', 1005, ''], ['send', 'close']]);
      core.transportClosed();
      expect(calls.at(-1)).to.deep.equal(['closed', 1005, '', true]);
    });

    it('the application closes first: close frame, closing deadline; the peer answer completes it', () => {
      const { core, calls } = setup();
      core.close(1001, 'going', 10);
      expect(calls).to.deep.equal([['send', 'close', 1001, 'going']]);
      expect(core.deadline).to.equal(1010);
      core.receive(close(1001, 'going'), 20);
      // Told of the peer's close (nothing to answer: no second close frame), then TCP ends.
      expect(calls.slice(1)).to.deep.equal([['onPeerClose', 1001, 'going'], ['end']]);
      core.transportClosed();
      expect(calls.at(-1)).to.deep.equal(['closed', 1001, 'going', true]);
    });

    it('a close received without a time starts the close timeout at the next settle(now)', () => {
      const { core } = setup();
      core.receive(close(1000));
      core.settle(300);
      expect(core.deadline).to.equal(1300);
      core.settle(400);
      expect(core.deadline).to.equal(1300);
    });

    it('a second close() sends nothing; invalid arguments throw WS_ERR_INVALID_ARGUMENT at the call', () => {
      const { core, sent } = setup();
      expect(() => core.close(1005, '', 1)).to.throw(WebSocketError).with.property('code', 'WS_ERR_INVALID_ARGUMENT');
      expect(() => core.close(1000, 'x'.repeat(124), 1)).to.throw(WebSocketError);
      core.close(1000, '', 1);
      core.close(4000, 'again', 1);
      expect(sent()).to.deep.equal([['close', 1000, '']]);
    });

    it('onPeerClose returning true defers the answer to answerClose(), once', () => {
      const { core, sent } = setup({}, true);
      core.receive(close(1000, 'later'), 1);
      expect(sent()).to.deep.equal([]);
      expect(core.answerPending).to.equal(true);
      core.answerClose(2);
      core.answerClose(3);
      expect(sent()).to.deep.equal([['close', 1000, 'later']]);
      expect(core.answerPending).to.equal(false);
    });

    it("a deferred answer may be another close: close() after the peer's close sends its own code and reason (a relay answers with the far side's close)", () => {
      const { core, calls } = setup({}, true);
      core.receive(close(4001, 'client says bye'), 1);
      expect(core.answerPending).to.equal(true);
      core.close(4002, 'upstream answers', 2);
      // Not an echo: the code and reason given; then, as the server, TCP ends at once (§7.1.1).
      expect(calls.slice(1)).to.deep.equal([['send', 'close', 4002, 'upstream answers'], ['end']]);
      expect(core.handshakeDone).to.equal(true);
      core.transportClosed();
      // 'close' reports the peer's close, not the answer.
      expect(calls.at(-1)).to.deep.equal(['closed', 4001, 'client says bye', true]);
    });

    it('beginClose() with no close to send yet starts the close timeout only once', () => {
      const { core, calls } = setup({ role: 'client' });
      core.beginClose(10);
      core.beginClose(500);
      expect(core.state).to.equal(CoreState.Closing);
      expect(core.deadline).to.equal(1010);
      core.tick(1010);
      expect(calls).to.deep.equal([['destroy']]);
    });

    it('closeWithin() brings the closing deadline forward, never back, and starts closing', () => {
      const { core, calls } = setup({ role: 'client', closeTimeout: 30000 });
      core.close(1001, 'going', 0);
      expect(core.deadline).to.equal(30000);
      core.closeWithin(100, 500);
      expect(core.deadline).to.equal(600);
      core.closeWithin(200, 5000);
      expect(core.deadline).to.equal(600);
      core.tick(600);
      expect(calls.slice(-1)).to.deep.equal([['destroy']]);
      // Open still: CLOSING, with the shorter of the two bounds.
      const open = setup({ role: 'server', closeTimeout: 300 });
      open.core.closeWithin(10, 1000);
      expect(open.core.state).to.equal(CoreState.Closing);
      expect(open.core.deadline).to.equal(310);
    });

    it('discards messages and control frames after the peer close (§1.4)', () => {
      const { core, calls } = setup();
      core.receive(close(1000), 1);
      const before = calls.length;
      core.receive(text('after'), 2);
      core.receive(ping('after'), 2);
      expect(calls.length).to.equal(before);
    });

    it('"close" reports 1006 when the transport closes without a close frame', () => {
      const { core, calls } = setup();
      core.transportClosed();
      expect(calls).to.deep.equal([['closed', 1006, '', false]]);
      core.transportClosed();
      expect(calls).to.have.length(1);
    });
  });

  describe('RFC 6455 §7.1.7: failing the connection', () => {
    it('a bad close code: one error, a 1002 close with the error code as reason, input discarded', () => {
      const { core, calls } = setup();
      const err = core.receive(close(1005), 1);
      expect(err?.code).to.equal('WS_ERR_INVALID_CLOSE_CODE');
      expect(calls).to.deep.equal([['error', 'WS_ERR_INVALID_CLOSE_CODE'], ['send', 'close', 1002, 'WS_ERR_INVALID_CLOSE_CODE'], ['end']]);
      core.receive(text('ignored'), 2);
      core.transportClosed();
      expect(calls.at(-1)).to.deep.equal(['closed', 1002, '', false]);
    });

    it('a 1-byte close payload fails with 1002 (§5.5.1)', () => {
      const { core, sent } = setup();
      core.receive(makeFrame(Opcode.Close, Buffer.from([3])), 1);
      expect(sent()).to.deep.equal([['close', 1002, 'WS_ERR_INVALID_CLOSE_PAYLOAD']]);
    });

    it('fail() after our close sends no second close, and reports once', () => {
      const { core, calls } = setup();
      core.close(1000, '', 1);
      core.fail(new WebSocketError('WS_ERR_MESSAGE_ABORTED'), 2);
      core.fail(new WebSocketError('WS_ERR_INVALID_UTF8'), 3);
      expect(calls.filter((c) => c[0] === 'error')).to.deep.equal([['error', 'WS_ERR_MESSAGE_ABORTED']]);
      expect(calls.filter((c) => c[0] === 'send')).to.have.length(1);
    });

    it('a code that may not be on the wire (1006) sends no close but counts it as sent', () => {
      const { core, calls } = setup();
      core.fail(new WebSocketError('WS_ERR_CONNECTION_LOST'), 1);
      expect(calls).to.deep.equal([['error', 'WS_ERR_CONNECTION_LOST'], ['end']]);
      expect(core.closeSent).to.equal(true);
    });

    it('a transport error before the handshake completed is an error; after it, it is not', () => {
      const a = setup();
      a.core.transportError(new Error('ECONNRESET'));
      expect(a.calls).to.deep.equal([['error', 'ECONNRESET']]);
      const b = setup({ role: 'client' });
      b.core.receive(close(1000), 1);
      b.core.transportError(new Error('ECONNRESET'));
      b.core.transportClosed();
      expect(b.calls.filter((c) => c[0] === 'error')).to.deep.equal([]);
      expect(b.calls.at(-1)).to.deep.equal(['closed', 1000, '', true]);
    });
  });

  describe('liveness: deadlines reported, time passed in', () => {
    it('heartbeat: pings after `interval` of silence, then the peer is dead after `timeout` more', () => {
      const { core, calls } = setup({ heartbeat: { interval: 100, timeout: 50 } });
      expect(core.deadline).to.equal(100);
      core.tick(100);
      expect(calls).to.deep.equal([['send', 'ping', '']]);
      expect(core.deadline).to.equal(150);
      core.tick(150);
      expect(calls.slice(1)).to.deep.equal([['error', 'WS_ERR_PEER_UNRESPONSIVE'], ['destroy']]);
    });

    it('heartbeat: a pong (or anything) in time keeps the peer', () => {
      const { core, calls } = setup({ heartbeat: { interval: 100, timeout: 50 } });
      core.tick(100);
      core.receive(pong(''), 120);
      expect(core.deadline).to.equal(220);
      core.tick(150);
      expect(calls.filter((c) => c[0] === 'destroy')).to.deep.equal([]);
    });

    it('heartbeat: while reading is held, silence proves nothing', () => {
      const { core, calls } = setup({ heartbeat: { interval: 100, timeout: 50 } });
      core.tick(100);
      core.hold(ReadHold.Budget);
      core.tick(150);
      expect(calls.filter((c) => c[0] === 'destroy' || c[0] === 'error')).to.deep.equal([]);
    });

    it('idleTimeout closes with 1001 "idle timeout" after no traffic either way', () => {
      const { core, sent } = setup({ idleTimeout: 300 });
      core.sent(200);
      expect(core.deadline).to.equal(500);
      core.tick(499);
      expect(sent()).to.deep.equal([]);
      core.tick(500);
      expect(sent()).to.deep.equal([['close', 1001, 'idle timeout']]);
      expect(core.deadline).to.equal(1500);
    });

    it('the close timeout destroys the transport; no deadline once closed', () => {
      const { core, calls } = setup();
      core.close(1000, '', 0);
      core.tick(999);
      expect(calls.at(-1)).to.deep.equal(['send', 'close', 1000, '']);
      core.tick(1000);
      expect(calls.at(-1)).to.deep.equal(['destroy']);
      core.transportClosed();
      expect(core.deadline).to.equal(Infinity);
    });
  });

  describe('reading holds and the memory budget', () => {
    it('reports only the transitions: held by any reason, resumed when none holds', () => {
      const { core, calls } = setup();
      core.hold(ReadHold.Replies);
      core.hold(ReadHold.External);
      core.release(ReadHold.Replies);
      core.release(ReadHold.External);
      core.release(ReadHold.External);
      expect(calls).to.deep.equal([
        ['reading', false],
        ['reading', true],
      ]);
    });

    it('the inflater alone holds reading only once 1 MiB is read ahead (counted in heldBytes); any other hold stops reading at once', () => {
      const { core, calls } = setup();
      core.hold(ReadHold.Inflate);
      expect(core.readingAhead).to.equal(true);
      expect(calls, 'reading goes on: a FIN or reset behind the frames is seen').to.deep.equal([]);
      core.readAhead(1024 * 1024 - 1);
      expect(calls).to.deep.equal([]);
      expect(core.heldBytes).to.equal(1024 * 1024 - 1);
      core.readAhead(1);
      expect(calls).to.deep.equal([['reading', false]]);
      // The inflater is idle: what was kept aside goes to the parser, and reading goes on.
      core.readAhead(-1024 * 1024);
      core.release(ReadHold.Inflate);
      expect(core.readingAhead).to.equal(false);
      expect(calls).to.deep.equal([
        ['reading', false],
        ['reading', true],
      ]);
      calls.length = 0;
      core.hold(ReadHold.Inflate);
      core.hold(ReadHold.Reader);
      expect(calls).to.deep.equal([['reading', false]]);
      core.release(ReadHold.Reader);
      expect(calls.at(-1)).to.deep.equal(['reading', true]);
    });

    it('the read-ahead is at most a quarter of a small memoryBudget', () => {
      const { core, calls } = setup({ memoryBudget: 1000 });
      core.hold(ReadHold.Inflate);
      core.readAhead(249);
      expect(calls).to.deep.equal([]);
      core.readAhead(1);
      expect(calls).to.deep.equal([['reading', false]]);
    });

    it("once our close is sent the server-wide budget's hold (External) is released and no longer taken: the peer's close must be read", () => {
      const { core, calls } = setup();
      core.hold(ReadHold.External);
      core.fail(new WebSocketError('WS_ERR_SERVER_MEMORY', 'over'), 1);
      expect(calls.filter((c) => c[0] === 'reading')).to.deep.equal([
        ['reading', false],
        ['reading', true],
      ]);
      core.hold(ReadHold.External);
      expect(core.holds).to.equal(0);
      expect(calls.filter((c) => c[0] === 'reading')).to.have.length(2);
    });

    it('holds at the budget while unread data can go away, and resumes once read', () => {
      const { core, calls } = setup({ memoryBudget: 100 });
      core.unread(60);
      expect(calls).to.deep.equal([]);
      core.unread(40);
      expect(calls).to.deep.equal([['reading', false]]);
      expect(core.heldBytes).to.equal(100);
      core.unread(-50);
      expect(calls.at(-1)).to.deep.equal(['reading', true]);
      // A message being assembled alone never holds reading (only more reading completes it).
      core.unread(-50);
      sizes.assembling = 500;
      core.checkBudget();
      expect(calls.at(-1)).to.deep.equal(['reading', true]);
    });

    it('unsent data count too, and reading resumes as the transport takes them', () => {
      const { core, calls } = setup({ memoryBudget: 100 });
      core.unread(10);
      sizes.unsent = 95;
      core.checkBudget();
      expect(calls).to.deep.equal([['reading', false]]);
      sizes.unsent = 0;
      core.checkBudget();
      expect(calls.at(-1)).to.deep.equal(['reading', true]);
    });

    it('never holds for the budget once our close is sent; data past it are to be discarded', () => {
      const { core, calls } = setup({ memoryBudget: 100 });
      core.unread(100);
      expect(calls).to.deep.equal([['reading', false]]);
      core.close(1000, '', 1);
      expect(calls.at(-1)).to.deep.equal(['reading', true]);
      expect(core.discards(1)).to.equal(true);
      core.unread(-100);
      expect(core.discards(100)).to.equal(false);
    });
  });

  describe('outbound ordering of streamed messages', () => {
    it('sendable: open, no close sent, no streamed message holding or waited for', () => {
      const { core } = setup();
      expect(core.sendable).to.equal(true);
      const a = {};
      core.claim(a);
      expect(core.sendable).to.equal(false);
      core.finish(a);
      expect(core.sendable).to.equal(true);
      core.close(1000, '', 1);
      expect(core.sendable).to.equal(false);
    });

    it('one streamed message owns the data side; other sends wait, in order, until it finishes', () => {
      const { core } = setup();
      const order: string[] = [];
      const a = {};
      const b = {};
      core.whenSendable(a, () => {
        core.claim(a);
        order.push('a1');
      });
      expect(core.whenSendable(null, () => order.push('plain'))).to.equal(false);
      core.whenSendable(b, () => order.push('b1'));
      core.whenSendable(a, () => order.push('a2'));
      expect(order).to.deep.equal(['a1', 'a2']);
      core.finish(a);
      expect(order).to.deep.equal(['a1', 'a2', 'plain', 'b1']);
      expect(core.outboundOwner).to.equal(null);
    });

    it('control frames never wait for a streamed message (§5.4: they may be injected between fragments)', () => {
      const { core, sent } = setup();
      core.claim({});
      core.receive(ping('mid'), 1);
      core.close(1000, '', 1);
      expect(sent()).to.deep.equal([
        ['pong', 'mid'],
        ['close', 1000, ''],
      ]);
    });
  });
});
