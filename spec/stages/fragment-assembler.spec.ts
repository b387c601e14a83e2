import { expect } from 'chai';
import { Defaults, Opcode } from '../../lib/protocol/constants';
import { WebSocketError } from '../../lib/protocol/errors';
import { type Frame, type Inbound, type Message, isMessage, makeFrame, withPayload } from '../../lib/protocol/frame';
import { FragmentAssembler, FragmentAssemblerCore, type FragmentAssemblerOptions, fragmentOrderError } from '../../lib/stages/fragment-assembler';
import { applyMask } from '../../lib/protocol/mask';
import { collect, fromChunks } from '../helpers/chunks';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Decodes a short unmasked frame typed out by hand (RFC 6455 §5.7 examples), independently of the parser. */
function frameFromHex(s: string): Frame {
  const bytes = hex(s);
  const length = bytes[1]! & 0x7f;
  expect(bytes[1]! & 0x80, 'unmasked').to.equal(0);
  expect(length, 'short form').to.be.below(126);
  expect(bytes.length).to.equal(2 + length);
  return makeFrame(bytes[0]! & 0x0f, bytes.subarray(2), { fin: (bytes[0]! & 0x80) !== 0 });
}

function text(s: string | Buffer, fin = true): Frame {
  return makeFrame(Opcode.Text, typeof s === 'string' ? Buffer.from(s) : s, { fin });
}
function binary(b: Buffer, fin = true): Frame {
  return makeFrame(Opcode.Binary, b, { fin });
}
function binaryCont(b: Buffer): Frame {
  return makeFrame(Opcode.Continuation, b, { fin: true });
}
function cont(s: string | Buffer, fin = true): Frame {
  return makeFrame(Opcode.Continuation, typeof s === 'string' ? Buffer.from(s) : s, { fin });
}

/** `frame` cut into pieces at the given payload offsets. */
function pieces(frame: Frame, cuts: number[]): Frame[] {
  const bounds = [0, ...cuts, frame.length];
  const out: Frame[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    out.push(withPayload(frame, frame.payload.subarray(bounds[i], bounds[i + 1]), null, bounds[i]));
  }
  return out;
}

/** Every way of delivering `frames`: whole, each payload byte by byte, each payload split in two at every offset. */
function everyPiecing(frames: Frame[]): Array<{ name: string; input: Frame[] }> {
  const out = [{ name: 'whole frames', input: frames }];
  out.push({
    name: 'byte by byte',
    input: frames.flatMap((f) => pieces(f, Array.from({ length: Math.max(0, f.length - 1) }, (_, i) => i + 1))),
  });
  frames.forEach((f, index) => {
    for (let at = 1; at < f.length; at++) {
      out.push({ name: `frame ${index} split at ${at}`, input: frames.flatMap((g) => (g === f ? pieces(g, [at]) : [g])) });
    }
  });
  return out;
}

interface Run {
  out: Inbound[];
  results: Array<WebSocketError | null>;
  core: FragmentAssemblerCore;
}

function run(input: Frame[], options: FragmentAssemblerOptions = {}): Run {
  const out: Inbound[] = [];
  const core = new FragmentAssemblerCore(options, {
    onMessage: (m) => out.push(m),
    onControl: (f) => out.push(f),
  });
  const results = input.map((f) => core.write(f));
  return { out, results, core };
}

function expectError(err: WebSocketError | null | undefined, code: string, closeCode: number): void {
  expect(err).to.be.instanceOf(WebSocketError);
  expect(err!.code).to.equal(code);
  expect(err!.closeCode).to.equal(closeCode);
}

function messageOf(value: Inbound | undefined): Message {
  expect(value !== undefined && isMessage(value), 'a message').to.equal(true);
  return value as Message;
}

describe('FragmentAssembler (RFC 6455 §5.4)', () => {
  describe('whole messages', () => {
    it('§5.7 single-frame unmasked text "Hello" (81 05 48 65 6c 6c 6f), in every piecing', () => {
      for (const p of everyPiecing([frameFromHex('81 05 48 65 6c 6c 6f')])) {
        const { out, results } = run(p.input);
        expect(results.every((r) => r === null), p.name).to.equal(true);
        expect(out, p.name).to.deep.equal([{ binary: false, data: Buffer.from('Hello') }]);
      }
    });

    it('§5.7 256 bytes binary in one frame, in pieces of every size', () => {
      const data = Buffer.alloc(256, 0).map((_, i) => i);
      const frame = binary(Buffer.from(data));
      for (const size of [1, 2, 3, 7, 64, 255, 256]) {
        const cuts: number[] = [];
        for (let at = size; at < 256; at += size) cuts.push(at);
        const { out, results } = run(pieces(frame, cuts));
        expect(results.every((r) => r === null)).to.equal(true);
        expect(out).to.deep.equal([{ binary: true, data: Buffer.from(data) }]);
      }
    });

    it('hands on a message of one piece without copying it', () => {
      const payload = Buffer.from('no copy');
      const { out } = run([text(payload)]);
      expect(messageOf(out[0]).data).to.equal(payload);
    });

    it('hands on a fragmented message whose only non-empty piece is the last without copying it', () => {
      const payload = Buffer.from('last');
      const { out } = run([text('', false), cont(payload)]);
      expect(messageOf(out[0]).data).to.equal(payload);
    });

    it('delivers 0-length text and binary messages, whole and fragmented', () => {
      const { out, results } = run([text(''), binary(Buffer.alloc(0)), text('', false), cont('', false), cont('')]);
      expect(results.every((r) => r === null)).to.equal(true);
      expect(out).to.deep.equal([
        { binary: false, data: Buffer.alloc(0) },
        { binary: true, data: Buffer.alloc(0) },
        { binary: false, data: Buffer.alloc(0) },
      ]);
    });

    it('delivers consecutive messages separately', () => {
      const { out } = run([text('one'), binary(hex('0102'), false), cont(hex('03')), text('two')]);
      expect(out).to.deep.equal([
        { binary: false, data: Buffer.from('one') },
        { binary: true, data: hex('010203') },
        { binary: false, data: Buffer.from('two') },
      ]);
    });
  });

  describe('fragmented messages', () => {
    it('§5.7 fragmented "Hel" + "lo" (01 03 48 65 6c + 80 02 6c 6f), in every piecing', () => {
      const frames = [frameFromHex('01 03 48 65 6c'), frameFromHex('80 02 6c 6f')];
      for (const p of everyPiecing(frames)) {
        const { out, results } = run(p.input);
        expect(results.every((r) => r === null), p.name).to.equal(true);
        expect(out, p.name).to.deep.equal([{ binary: false, data: Buffer.from('Hello') }]);
      }
    });

    it('delivers a ping between fragments (89 05 ...) before the message (§5.4: control frames may be injected)', () => {
      const ping = frameFromHex('89 05 48 65 6c 6c 6f');
      const { out } = run([frameFromHex('01 03 48 65 6c'), ping, frameFromHex('80 02 6c 6f')]);
      expect(out).to.have.length(2);
      expect(out[0]).to.equal(ping);
      expect(out[1]).to.deep.equal({ binary: false, data: Buffer.from('Hello') });
    });

    it('delivers a control frame between pieces of one frame', () => {
      const pong = makeFrame(Opcode.Pong, Buffer.from('p'));
      const [a, b] = pieces(binary(hex('aabbcc')), [1]);
      const { out } = run([a!, pong, b!]);
      expect(out).to.deep.equal([pong, { binary: true, data: hex('aabbcc') }]);
    });

    it('joins many fragments in order', () => {
      const words = Array.from({ length: 50 }, (_, i) => `w${i};`);
      const frames = words.map((w, i) => (i === 0 ? text(w, false) : cont(w, i === words.length - 1)));
      const { out } = run(frames);
      expect(out).to.deep.equal([{ binary: false, data: Buffer.from(words.join('')) }]);
    });

    it('tracks bufferedBytes and bufferedParts of the open message, and clears them at its end', () => {
      const { core } = run([text('abc', false), cont('', false), ...pieces(cont('defg', false), [2])]);
      expect(core.bufferedBytes).to.equal(7);
      // Three small pieces, copied into one coalescing buffer.
      expect(core.bufferedParts).to.equal(1);
      core.write(cont('h'));
      expect(core.bufferedBytes).to.equal(0);
      expect(core.bufferedParts).to.equal(0);
      expect(core.heldBytes).to.equal(0);
    });

    it('keeps large pieces as they are and small ones coalesced, in order, masked or not', () => {
      const mask = Buffer.from([1, 2, 3, 4]);
      const big = Buffer.alloc(3000, 0x61);
      const masked = (opcode: Opcode, payload: Buffer, fin: boolean): Frame => {
        const copy = Buffer.from(payload);
        applyMask(copy, mask);
        return { ...makeFrame(opcode, copy, { fin }), mask };
      };
      const input = [
        masked(Opcode.Binary, Buffer.from('ab'), false),
        masked(Opcode.Continuation, big, false),
        cont(Buffer.from('cd'), false),
        ...pieces(masked(Opcode.Continuation, Buffer.from('efghij'), false), [1, 4]).map((p) => withPayload(p, p.payload, mask, p.offset)),
        binaryCont(big),
      ];
      const { out, core } = run(input);
      expect(core.error).to.equal(null);
      expect(messageOf(out[0]).data).to.deep.equal(Buffer.concat([Buffer.from('ab'), big, Buffer.from('cdefghij'), big]));
    });

    it('a message whose last few bytes come in their own piece (a read or TLS record boundary) is joined with one buffer made: the last piece is not copied into a coalescing tail first', () => {
      // 64 KiB messages read 64 KiB at a time end with a 14-byte piece; 16 KiB ones over TLS
      // (16 KiB records) with an 8-byte one. A tail sized for the message (16 to 64 KiB) was
      // made for those bytes, and then the join's buffer: two buffers of the message's size each.
      // (Spec first: 2 made.)
      const mask = Buffer.from([9, 8, 7, 6]);
      const payload = Buffer.alloc(16 * 1024, 0x61);
      const masked = Buffer.from(payload);
      applyMask(masked, mask);
      const frame = { ...makeFrame(Opcode.Binary, masked, { fin: true }), mask };
      const [head, last] = pieces(frame, [payload.length - 8]).map((p) => withPayload(p, p.payload, mask, p.offset));
      const out: Inbound[] = [];
      const core = new FragmentAssemblerCore({}, { onMessage: (m) => out.push(m), onControl: () => undefined });
      core.write(head!);
      const made: number[] = [];
      const allocUnsafe = Buffer.allocUnsafe;
      Buffer.allocUnsafe = ((size: number) => {
        made.push(size);
        return allocUnsafe(size);
      }) as typeof Buffer.allocUnsafe;
      try {
        core.write(last!);
      } finally {
        Buffer.allocUnsafe = allocUnsafe;
      }
      expect(made).to.deep.equal([payload.length]);
      expect(messageOf(out[0]).data).to.deep.equal(payload);
      expect(core.heldBytes).to.equal(0);
    });

    it('holds about its bytes for a message of tiny fragments: 4 MiB in 64-byte fragments, heldBytes under 4.2 MiB', () => {
      const core = new FragmentAssemblerCore({}, { onMessage: () => undefined, onControl: () => undefined });
      const piece = Buffer.alloc(64, 0x62);
      core.write(binary(piece, false));
      for (let i = 1; i < 65535; i++) core.write(cont(piece, false));
      expect(core.bufferedBytes).to.equal(4 * 1024 * 1024 - 64);
      expect(core.bufferedParts).to.be.below(100);
      expect(core.heldBytes).to.be.below(4.2 * 1024 * 1024);
    });
  });

  describe('sequencing errors (§5.4)', () => {
    it('a continuation frame without an open message is WS_ERR_UNEXPECTED_CONTINUATION (1002)', () => {
      const { results, out } = run([cont('x')]);
      expectError(results[0], 'WS_ERR_UNEXPECTED_CONTINUATION', 1002);
      expect(out).to.deep.equal([]);
    });

    it('a continuation frame after a finished message is WS_ERR_UNEXPECTED_CONTINUATION', () => {
      const { results, out } = run([text('done'), cont('more')]);
      expect(results[0]).to.equal(null);
      expectError(results[1], 'WS_ERR_UNEXPECTED_CONTINUATION', 1002);
      expect(out).to.have.length(1);
    });

    it('a text frame while a message is open is WS_ERR_EXPECTED_CONTINUATION (1002)', () => {
      const { results, out } = run([text('a', false), text('b')]);
      expectError(results[1], 'WS_ERR_EXPECTED_CONTINUATION', 1002);
      expect(out).to.deep.equal([]);
    });

    it('a binary frame while a message is open is WS_ERR_EXPECTED_CONTINUATION', () => {
      const { results } = run([binary(hex('01'), false), binary(hex('02'))]);
      expectError(results[1], 'WS_ERR_EXPECTED_CONTINUATION', 1002);
    });

    it('ignores everything after an error, control frames included', () => {
      const { results, out, core } = run([cont('x'), makeFrame(Opcode.Ping, Buffer.alloc(0)), text('fine')]);
      expect(results[1]).to.equal(results[0]);
      expect(results[2]).to.equal(results[0]);
      expect(out).to.deep.equal([]);
      expect(core.error).to.equal(results[0]);
    });

    it('fail() stops the core and keeps the first error', () => {
      const { core, out } = run([text('a', false)]);
      const first = new WebSocketError('WS_ERR_INVALID_STATE');
      core.fail(first);
      core.fail(new WebSocketError('WS_ERR_BUFFER_FULL'));
      expect(core.write(cont('b'))).to.equal(first);
      expect(out).to.deep.equal([]);
    });
  });

  describe('limits', () => {
    it('keeps the limits of each option set apart (assemblers share one settings object per set)', () => {
      const two = [binary(Buffer.alloc(5), false), cont(Buffer.alloc(5))];
      expect(run(two, { maxMessageSize: 10, frameOverhead: 0 }).results).to.deep.equal([null, null]);
      expectError(run(two, { maxMessageSize: 9, frameOverhead: 0 }).results[1], 'WS_ERR_MESSAGE_TOO_BIG', 1009);
      expectError(run(two, { maxFragments: 1 }).results[1], 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expectError(run(two, { maxMessageSize: 10 }).results[1], 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expect(run(two, { maxMessageSize: 10, frameOverhead: 0 }).results).to.deep.equal([null, null]);
      const bad = [text(Buffer.from([0xff]))];
      expectError(run(bad).results[0], 'WS_ERR_INVALID_UTF8', 1007);
      expect(run(bad, { skipUtf8Validation: true }).results).to.deep.equal([null]);
    });

    it('accepts a message of exactly maxMessageSize bytes (frameOverhead 0: bytes alone)', () => {
      const { results, out } = run([binary(Buffer.alloc(5), false), cont(Buffer.alloc(5))], { maxMessageSize: 10, frameOverhead: 0 });
      expect(results).to.deep.equal([null, null]);
      expect(out).to.have.length(1);
    });

    it('rejects a frame whose declared length is over maxMessageSize on its first piece (WS_ERR_MESSAGE_TOO_BIG, 1009)', () => {
      const frame = binary(Buffer.alloc(11));
      const [first] = pieces(frame, [1]);
      const { results, core } = run([first!], { maxMessageSize: 10 });
      expectError(results[0], 'WS_ERR_MESSAGE_TOO_BIG', 1009);
      expect(core.bufferedBytes).to.equal(0);
    });

    it('rejects fragments whose total is over maxMessageSize, on the frame that crosses it', () => {
      const { results, out } = run([text('12345', false), cont('67890', false), cont('1')], { maxMessageSize: 10, frameOverhead: 0 });
      expect(results.slice(0, 2)).to.deep.equal([null, null]);
      expectError(results[2], 'WS_ERR_MESSAGE_TOO_BIG', 1009);
      expect(out).to.deep.equal([]);
    });

    it('applies maxMessageSize to each message, not to the sum of messages', () => {
      const { results } = run([binary(Buffer.alloc(8)), binary(Buffer.alloc(8))], { maxMessageSize: 10 });
      expect(results).to.deep.equal([null, null]);
    });

    it('accepts maxFragments frames and rejects one more, empty frames included (WS_ERR_TOO_MANY_FRAGMENTS, 1009)', () => {
      const ok = run([text('', false), cont('', false), cont('', false), cont('')], { maxFragments: 4 });
      expect(ok.results.every((r) => r === null)).to.equal(true);
      expect(ok.out).to.have.length(1);
      const over = run([text('', false), cont('', false), cont('', false), cont('', false), cont('')], { maxFragments: 4 });
      expect(over.results.slice(0, 4).every((r) => r === null)).to.equal(true);
      expectError(over.results[4], 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expect(over.out).to.deep.equal([]);
    });

    it(`counts ${Defaults.frameOverhead} bytes (frameOverhead) for each frame after the first against maxMessageSize`, () => {
      // 2 + 2 bytes and one frame after the first: 4 + 6 = 10 fits; one byte more does not.
      const two = (last: string): Frame[] => [text('ab', false), cont(last)];
      expect(run(two('cd'), { maxMessageSize: 10, frameOverhead: 6 }).results).to.deep.equal([null, null]);
      const over = run(two('cde'), { maxMessageSize: 10, frameOverhead: 6 });
      expectError(over.results[1], 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expect(over.out).to.deep.equal([]);
      // A message in one frame is charged its bytes only.
      expect(run([text('0123456789')], { maxMessageSize: 10, frameOverhead: 6 }).results).to.deep.equal([null]);
    });

    it(`fails a flood of empty continuation frames at the default limits after maxMessageSize / ${Defaults.frameOverhead} frames, keeping nothing`, () => {
      const core = new FragmentAssemblerCore({}, { onMessage: () => expect.fail('no message'), onControl: () => undefined });
      const empty = cont('', false);
      expect(core.write(text('', false))).to.equal(null);
      const expected = Math.floor(Defaults.maxMessageSize / Defaults.frameOverhead) + 2;
      let failedAt = -1;
      for (let i = 2; i <= expected + 10 && failedAt < 0; i++) {
        if (core.write(empty) !== null) failedAt = i;
      }
      expect(failedAt).to.equal(expected);
      expectError(core.error, 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expect(core.bufferedParts).to.equal(0);
    });

    it('a flood of 1-byte fragments at the default limits: 1009 after a bounded number of frames, under 8 bytes of memory a frame', () => {
      const core = new FragmentAssemblerCore({}, { onMessage: () => expect.fail('no message'), onControl: () => undefined });
      // One frame reused: the frames are views the flood does not allocate per frame.
      const one = cont('a', false);
      core.write(text('a', false));
      global.gc!();
      const before = process.memoryUsage();
      const kept = 400_000;
      for (let frames = 1; frames < kept; frames++) core.write(one);
      expect(core.error).to.equal(null);
      // What the 400 000 kept frames cost, garbage collected: about a byte each.
      global.gc!();
      const after = process.memoryUsage();
      const grown = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers;
      expect(grown / kept, `${grown} bytes over ${kept} frames`).to.be.below(8);
      expect(core.heldBytes).to.be.below(kept + 64 * 1024);
      let frames = kept;
      while (core.error === null && frames < 1_000_000) {
        core.write(one);
        frames++;
      }
      expectError(core.error, 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expect(frames).to.equal(Math.floor((Defaults.maxMessageSize + Defaults.frameOverhead - 1) / (Defaults.frameOverhead + 1)) + 1);
    });

    it('fails a million 1-byte fragments at maxFragments when set, coalesced into one kept buffer', () => {
      const core = new FragmentAssemblerCore({ maxFragments: 1000 }, { onMessage: () => expect.fail('no message'), onControl: () => undefined });
      const one = cont('a', false);
      core.write(text('a', false));
      let i = 1;
      let maxParts = 0;
      while (i < 1_000_000 && core.error === null) {
        core.write(one);
        maxParts = Math.max(maxParts, core.bufferedParts);
        i++;
      }
      expectError(core.error, 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expect(i).to.equal(1001);
      expect(maxParts).to.equal(1);
    });

    it('counts a frame once, however many pieces it comes in', () => {
      const { results, out } = run([...pieces(text('abcd', false), [1, 2, 3]), ...pieces(cont('efgh'), [1, 2, 3])], { maxFragments: 2 });
      expect(results.every((r) => r === null)).to.equal(true);
      expect(out).to.deep.equal([{ binary: false, data: Buffer.from('abcdefgh') }]);
    });
  });

  describe('UTF-8 (§5.6, §8.1)', () => {
    it('fails invalid UTF-8 in the first fragment when that fragment arrives (WS_ERR_INVALID_UTF8, 1007)', () => {
      const { results } = run([text(hex('48 65 c0 af'), false)]);
      expectError(results[0], 'WS_ERR_INVALID_UTF8', 1007);
    });

    it('fails invalid UTF-8 in the first piece of a frame when that piece arrives', () => {
      const frame = text(Buffer.concat([hex('ed a0 80'), Buffer.alloc(100, 0x61)]));
      const { results } = run(pieces(frame, [10]).slice(0, 1));
      expectError(results[0], 'WS_ERR_INVALID_UTF8', 1007);
    });

    it('fails invalid UTF-8 in a single-piece message', () => {
      const { results, out } = run([text(hex('ff'))]);
      expectError(results[0], 'WS_ERR_INVALID_UTF8', 1007);
      expect(out).to.deep.equal([]);
    });

    it('accepts a multi-byte character split across fragments and across pieces, at every offset', () => {
      const message = Buffer.from('aé€😀z');
      for (let cut = 1; cut < message.length; cut++) {
        const frames = [text(message.subarray(0, cut), false), cont(message.subarray(cut))];
        for (const p of everyPiecing(frames)) {
          const { results, out } = run(p.input);
          expect(results.every((r) => r === null), `cut ${cut}, ${p.name}`).to.equal(true);
          expect(out, `cut ${cut}, ${p.name}`).to.deep.equal([{ binary: false, data: message }]);
        }
      }
    });

    it('fails a message that ends inside a character, on its last frame', () => {
      const euro = Buffer.from('€');
      const { results } = run([text('ok', false), cont(euro.subarray(0, 2))]);
      expect(results[0]).to.equal(null);
      expectError(results[1], 'WS_ERR_INVALID_UTF8', 1007);
    });

    it('does not carry validator state from a failed-free message into the next one', () => {
      const { results } = run([text('a', false), cont(''), text(hex('e2 82 ac'))]);
      expect(results).to.deep.equal([null, null, null]);
    });

    it('does not validate binary messages', () => {
      const { results, out } = run([binary(hex('ff'), false), cont(hex('c0 af'))]);
      expect(results).to.deep.equal([null, null]);
      expect(out).to.deep.equal([{ binary: true, data: hex('ffc0af') }]);
    });

    it('skipUtf8Validation delivers invalid text as is', () => {
      const { results, out } = run([text(hex('ff'), false), cont(hex('c0'))], { skipUtf8Validation: true });
      expect(results).to.deep.equal([null, null]);
      expect(out).to.deep.equal([{ binary: false, data: hex('ffc0') }]);
    });
  });

  describe('FragmentAssembler stream', () => {
    it('outputs messages and control frames in order', async () => {
      const ping = frameFromHex('89 05 48 65 6c 6c 6f');
      const input = [frameFromHex('01 03 48 65 6c'), ping, frameFromHex('80 02 6c 6f'), ...pieces(binary(hex('0102030405')), [2])];
      const out = await collect<Inbound>(fromChunks(input, true).pipe(new FragmentAssembler()));
      expect(out).to.deep.equal([ping, { binary: false, data: Buffer.from('Hello') }, { binary: true, data: hex('0102030405') }]);
    });

    it('errors with the WebSocketError and passes on nothing after it', async () => {
      const assembler = new FragmentAssembler({ maxFragments: 2 });
      const out: Inbound[] = [];
      assembler.on('data', (v: Inbound) => out.push(v));
      const failed = new Promise<WebSocketError>((resolve) => assembler.on('error', resolve));
      for (const f of [text('1'), text('a', false), cont('b', false), cont('c'), text('2')]) assembler.write(f);
      const err = await failed;
      expectError(err, 'WS_ERR_TOO_MANY_FRAGMENTS', 1009);
      expect(out).to.deep.equal([{ binary: false, data: Buffer.from('1') }]);
      expect(assembler.core.error).to.equal(err);
    });

    it('passes options through', async () => {
      const out = await collect<Inbound>(fromChunks([text(hex('ff'))], true).pipe(new FragmentAssembler({ skipUtf8Validation: true })));
      expect(out).to.deep.equal([{ binary: false, data: hex('ff') }]);
    });

    it('in streaming mode outputs the pieces of each message, control frames among them, in order', async () => {
      const ping = frameFromHex('89 05 48 65 6c 6c 6f');
      const input = [text('Hel', false), ping, cont('lo')];
      const out = await collect<unknown>(fromChunks(input, true).pipe(new FragmentAssembler({ streaming: true })));
      expect(out).to.deep.equal([
        { binary: false, data: Buffer.from('Hel'), first: true, last: false },
        ping,
        { binary: false, data: Buffer.from('lo'), first: false, last: true },
      ]);
    });
  });
});

describe('fragmentOrderError (RFC 6455 §5.4, the rule the assembler and the proxy share)', () => {
  it('a continuation needs an open message; a text or binary frame needs none open', () => {
    expect(fragmentOrderError(Opcode.Continuation, true)).to.equal(null);
    expect(fragmentOrderError(Opcode.Text, false)).to.equal(null);
    expect(fragmentOrderError(Opcode.Binary, false)).to.equal(null);
    const unexpected = fragmentOrderError(Opcode.Continuation, false);
    expect(unexpected).to.be.instanceOf(WebSocketError);
    expect(unexpected).to.include({ code: 'WS_ERR_UNEXPECTED_CONTINUATION', closeCode: 1002 });
    for (const opcode of [Opcode.Text, Opcode.Binary]) {
      expect(fragmentOrderError(opcode, true)).to.include({ code: 'WS_ERR_EXPECTED_CONTINUATION', closeCode: 1002 });
    }
  });
});

describe('FragmentAssembler with data frames still masked (UnmaskerCore keepDataMasked)', () => {
  const KEYS = [hex('37 fa 21 3d'), hex('01 02 04 80'), hex('a5 5a ff 00')];

  /** `frame` masked with `key` (a copy), as a server receives it, cut into pieces at `cuts`. */
  function masked(frame: Frame, key: Buffer, cuts: number[] = []): Frame[] {
    const payload = Buffer.from(frame.payload);
    applyMask(payload, key);
    const whole = withPayload(frame, payload, key);
    const bounds = [0, ...cuts, frame.length];
    const out: Frame[] = [];
    for (let i = 0; i + 1 < bounds.length; i++) out.push(withPayload(whole, payload.subarray(bounds[i], bounds[i + 1]), key, bounds[i]));
    return out;
  }

  it('§5.7 masked "Hello" in one frame, and fragmented "Hel" + "lo" with its own key per frame, at every cut', () => {
    expect(run(masked(text('Hello'), KEYS[0]!)).out).to.deep.equal([{ binary: false, data: Buffer.from('Hello') }]);
    for (let a = 0; a <= 3; a++) {
      for (let b = 0; b <= 2; b++) {
        const input = [...masked(text('Hel', false), KEYS[0]!, a > 0 && a < 3 ? [a] : []), ...masked(cont('lo'), KEYS[1]!, b === 1 ? [1] : [])];
        const { out, results } = run(input);
        expect(results.every((r) => r === null)).to.equal(true);
        expect(out, `cuts ${a}, ${b}`).to.deep.equal([{ binary: false, data: Buffer.from('Hello') }]);
      }
    }
  });

  it('joins and unmasks a binary message of masked pieces in one pass, at many piecings, with plain pieces mixed in', () => {
    const data = Buffer.alloc(200_003);
    for (let i = 0; i < data.length; i++) data[i] = (i * 29 + 3) & 0xff;
    const first = binary(data.subarray(0, 70_001), false);
    const second = cont(data.subarray(70_001, 150_000), false);
    const third = cont(data.subarray(150_000), true);
    for (const size of [1000, 4096, 65_536, 65_537]) {
      const cutsOf = (n: number): number[] => {
        const cuts: number[] = [];
        for (let at = size; at < n; at += size) cuts.push(at);
        return cuts;
      };
      const input = [
        ...masked(first, KEYS[0]!, cutsOf(first.length)),
        ...pieces(second, cutsOf(second.length)), // a plain frame among masked ones
        ...masked(third, KEYS[2]!, cutsOf(third.length)),
      ];
      const { out, results } = run(input);
      expect(results.every((r) => r === null), `pieces of ${size}`).to.equal(true);
      expect(out.length).to.equal(1);
      expect(messageOf(out[0]).data.equals(data), `pieces of ${size}`).to.equal(true);
    }
  });

  it('unmasks a lone masked piece in place, and masked pieces it streams or checks as UTF-8', () => {
    const lone = masked(binary(Buffer.from('only piece'), false), KEYS[1]!);
    const { out } = run([...lone, cont(Buffer.alloc(0))]);
    expect(messageOf(out[0]).data.toString()).to.equal('only piece');
    const pieces: Buffer[] = [];
    const core = new FragmentAssemblerCore(
      { streaming: true },
      { onMessage: () => expect.fail('streaming'), onControl: () => {}, onMessagePiece: (p) => pieces.push(Buffer.from(p.data)) },
    );
    for (const f of masked(text('héllo wörld'), KEYS[2]!, [1, 2, 5])) expect(core.write(f)).to.equal(null);
    expect(Buffer.concat(pieces).toString()).to.equal('héllo wörld');
    const bad = masked(text(hex('48 c3 28 49'), true), KEYS[0]!, [2]);
    const { results } = run(bad);
    expectError(results.find((r) => r !== null), 'WS_ERR_INVALID_UTF8', 1007);
  });
});
