/**
 * The fused inbound chain (Receiver, used by WebSocket), the same stages composed with pipe(),
 * and a whole composed pipeline (composePipeline, lib/compose/pipeline.ts) with a pass-through
 * stage of our own inserted after the splitter must give the same output for the same input:
 * messages, control events, reply bytes, error.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import { Duplex, Readable, Transform } from 'readable-stream';
import {
  ControlFrameResponder,
  FragmentAssembler,
  FrameSerializer,
  FrameSplitter,
  Message,
  Opcode,
  Unmasker,
  WebSocketError,
  makeFrame,
} from '../lib';
import { applyMask } from '../lib/protocol/mask';
import { FrameSerializerCore } from '../lib/stages/frame-serializer';
import { Receiver } from '../lib/connection/receiver';
import { composePipeline } from '../lib/compose/pipeline';
import { upgradeRequest } from './helpers/frames';
import { someChunkings } from './helpers/chunks';

interface Outcome {
  messages: Array<[boolean, string]>;
  events: string[];
  replies: string;
  error: string | null;
}

/** Client frame bytes, masked with a fixed key. */
function frame(opcode: Opcode, payload: Buffer | string, fin = true): Buffer {
  const data = Buffer.from(payload);
  const key = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(data);
  applyMask(masked, key);
  const chunks: Buffer[] = [];
  new FrameSerializerCore({}, { onData: (c) => chunks.push(Buffer.from(c)) }).write(
    makeFrame(opcode, masked, { fin, mask: key }),
  );
  return Buffer.concat(chunks);
}

function describeMessage(m: Message): [boolean, string] {
  return [m.binary, m.binary ? m.data.toString('hex') : m.data.toString('utf8')];
}

function fused(chunks: Buffer[]): Outcome {
  const out: Outcome = { messages: [], events: [], replies: '', error: null };
  const replyBytes: Buffer[] = [];
  const serializer = new FrameSerializerCore({}, { onData: (c) => replyBytes.push(Buffer.from(c)) });
  const receiver = new Receiver(
    'server',
    {},
    {
      onMessage: (m) => out.messages.push(describeMessage(m)),
      onPing: (p) => out.events.push(`ping:${p.toString('hex')}`),
      onPong: (p) => out.events.push(`pong:${p.toString('hex')}`),
      onClose: (code, reason) => {
        out.events.push(`close:${code}:${reason}`);
      },
      onReply: (f) => serializer.write(f),
    },
  );
  for (const chunk of chunks) {
    const err = receiver.write(Buffer.from(chunk));
    if (err !== null) {
      out.error = err.code;
      receiver.responder!.failConnection(err);
      break;
    }
  }
  out.replies = Buffer.concat(replyBytes).toString('hex');
  return out;
}

async function piped(chunks: Buffer[]): Promise<Outcome> {
  const out: Outcome = { messages: [], events: [], replies: '', error: null };
  const source = Readable.from(chunks.map((c) => Buffer.from(c)), { objectMode: false });
  const splitter = new FrameSplitter();
  const unmasker = new Unmasker({ role: 'server' });
  const assembler = new FragmentAssembler();
  const responder = new ControlFrameResponder();
  const serializer = new FrameSerializer();
  responder.on('ping', (p: Buffer) => out.events.push(`ping:${p.toString('hex')}`));
  responder.on('pong', (p: Buffer) => out.events.push(`pong:${p.toString('hex')}`));
  responder.on('peerclose', (code: number, reason: string) => out.events.push(`close:${code}:${reason}`));
  responder.on('data', (m: Message) => out.messages.push(describeMessage(m)));
  const replyBytes: Buffer[] = [];
  serializer.on('data', (c: Buffer) => replyBytes.push(c));
  // Every case ends in a close (received or failing), after which `replies` ends.
  const repliesDone = once(serializer, 'end');
  responder.replies.pipe(serializer);

  const failed = new Promise<void>((resolve) => {
    for (const stage of [splitter, unmasker, assembler, responder]) {
      stage.on('error', (err: WebSocketError) => {
        if (out.error === null) {
          out.error = err.code;
          responder.failConnection(err);
        }
        resolve();
      });
    }
  });
  source.pipe(splitter).pipe(unmasker).pipe(assembler).pipe(responder);
  await Promise.race([once(responder, 'end'), failed]);
  await repliesDone;
  out.replies = Buffer.concat(replyBytes).toString('hex');
  return out;
}

/** A pass-through stage, as a user would insert one. */
function passThrough(): Transform {
  return new Transform({ objectMode: true, transform: (value: unknown, _enc, cb) => cb(null, value) });
}

/** The chunks through composePipeline (server role) on an in-memory transport, after an opening handshake. */
async function composed(chunks: Buffer[]): Promise<Outcome> {
  const out: Outcome = { messages: [], events: [], replies: '', error: null };
  const written: Buffer[] = [];
  const transport = new Duplex({
    read() {},
    write(chunk: Buffer, _enc: BufferEncoding, cb: () => void) {
      written.push(Buffer.from(chunk));
      cb();
    },
  });
  const pipeline = composePipeline(transport, { role: 'server', insert: { afterSplitter: passThrough() } });
  pipeline.on('ping', (p: Buffer) => out.events.push(`ping:${p.toString('hex')}`));
  pipeline.on('pong', (p: Buffer) => out.events.push(`pong:${p.toString('hex')}`));
  pipeline.on('error', (err: WebSocketError) => (out.error ??= err.code));
  pipeline.on('data', (m: Message) => out.messages.push(describeMessage(m)));
  pipeline.once('open', () => pipeline.stages.responder!.on('peerclose', (code: number, reason: string) => out.events.push(`close:${code}:${reason}`)));
  // Every case ends in a close (received or failing), after which the server ends the transport.
  const ended = once(transport, 'finish');
  transport.push(upgradeRequest('127.0.0.1'));
  for (const chunk of chunks) transport.push(Buffer.from(chunk));
  await ended;
  const bytes = Buffer.concat(written);
  out.replies = bytes.subarray(bytes.indexOf('\r\n\r\n') + 4).toString('hex');
  transport.destroy();
  return out;
}

const closePayload = Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65]); // 1000 "bye"

const CASES: Array<[string, Buffer]> = [
  [
    'text, binary, a fragmented message with a ping inside, a pong, and a close',
    Buffer.concat([
      frame(Opcode.Text, 'Hello, wörld'),
      frame(Opcode.Binary, Buffer.from([0, 1, 2, 255])),
      frame(Opcode.Text, 'frag', false),
      frame(Opcode.Ping, 'ping!'),
      frame(Opcode.Continuation, 'ment', false),
      frame(Opcode.Continuation, 'ed', true),
      frame(Opcode.Pong, 'unsolicited'),
      frame(Opcode.Binary, Buffer.alloc(70000, 9)),
      frame(Opcode.Close, closePayload),
    ]),
  ],
  ['invalid UTF-8 in the middle of a fragmented message', Buffer.concat([frame(Opcode.Text, 'ok'), frame(Opcode.Text, 'a', false), frame(Opcode.Continuation, Buffer.from([0xc0, 0xaf]), false)])],
  ['a continuation without a start', Buffer.concat([frame(Opcode.Binary, 'x'), frame(Opcode.Continuation, 'y')])],
  ['an invalid close code', frame(Opcode.Close, Buffer.from([0x03, 0xed]))],
  // The fused receiver takes messages in one small frame, whole in a chunk, without the splitter
  // (Receiver.writeTakingWhole): the same output, whatever the chunks.
  [
    'messages in one frame each around pings, a fragmented message, a 16-bit length, and after the close',
    Buffer.concat([
      frame(Opcode.Text, 'a'),
      frame(Opcode.Binary, Buffer.from([1, 2])),
      frame(Opcode.Ping, 'p1'),
      frame(Opcode.Text, ''),
      frame(Opcode.Text, 'b', false),
      frame(Opcode.Ping, 'p2'),
      frame(Opcode.Continuation, 'c'),
      frame(Opcode.Binary, Buffer.alloc(300, 5)),
      frame(Opcode.Text, 'd'),
      frame(Opcode.Close, closePayload),
      frame(Opcode.Text, 'after the close'),
    ]),
  ],
  ['invalid UTF-8 in a message of one small frame', Buffer.concat([frame(Opcode.Text, 'ok'), frame(Opcode.Text, Buffer.from([0xed, 0xa0, 0x80])), frame(Opcode.Text, 'never')])],
  ['a message of one frame while a fragmented one is open', Buffer.concat([frame(Opcode.Text, 'x', false), frame(Opcode.Binary, 'y'), frame(Opcode.Text, 'z')])],
];

describe('fused connection, pipe() composition and composePipeline give identical output', () => {
  for (const [title, input] of CASES) {
    describe(title, () => {
      for (const { name, chunks } of someChunkings(input, [1, 5, 1000])) {
        it(`fed ${name}`, async () => {
          const a = fused(chunks);
          const b = await piped(chunks);
          expect(b).to.deep.equal(a);
          expect(await composed(chunks)).to.deep.equal(a);
          expect(a.replies).to.not.equal(''); // every case ends with a close frame sent back
        });
      }
    });
  }
});
