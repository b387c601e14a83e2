/**
 * A mutation fuzzer for the inbound chain (the fused Receiver: splitter, unmasker, assembler,
 * responder), both roles.
 *
 *   npm run fuzz                        (FUZZ_SECONDS=60 by default; FUZZ_SEED to repeat a run)
 *
 * Seeds are valid frame sequences built with our own serializer; each execution mutates one
 * (bit flips, byte changes, insertions, deletions, truncation, splicing, length-field and
 * opcode tweaks), cuts it at random chunk boundaries and feeds it in. Invariants checked:
 * - nothing throws;
 * - an error is a WebSocketError whose close code is one a peer may be failed with (1002,
 *   1007, 1009);
 * - every text message delivered is valid UTF-8, no message exceeds the limits;
 * - a frame that fails is the last thing processed (nothing is delivered after the error).
 * An input that breaks one is written to spec/fuzz-corpus/ (replayed by spec/fuzz.spec.ts)
 * and the run exits 1. With FUZZ_COLLECT=1 the first input met for each distinct outcome (each
 * error code, per role) is kept there too, named after its outcome, as regression inputs.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CloseCode, Opcode } from '../lib/protocol/constants';
import { isWebSocketError } from '../lib/protocol/errors';
import { makeFrame } from '../lib/protocol/frame';
import { FrameSerializerCore } from '../lib/stages/frame-serializer';
import { applyMask } from '../lib/protocol/mask';
import { Receiver, Role } from '../lib/connection/receiver';

export const CORPUS_DIR = path.join(__dirname, '..', 'spec', 'fuzz-corpus');
const ALLOWED_CLOSE_CODES = new Set<number>([CloseCode.ProtocolError, CloseCode.InvalidPayload, CloseCode.MessageTooBig]);
const LIMITS = { maxPayload: 64 * 1024, maxMessageSize: 128 * 1024, maxFragments: 64 };

/** A small deterministic PRNG (mulberry32), so that a seed repeats a run exactly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function encode(opcode: Opcode, payload: Buffer, fin: boolean, masked: boolean): Buffer {
  const out: Buffer[] = [];
  const serializer = new FrameSerializerCore({}, { onData: (c) => out.push(Buffer.from(c)) });
  let mask: Buffer | null = null;
  let data = payload;
  if (masked) {
    mask = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
    data = Buffer.from(payload);
    applyMask(data, mask);
  }
  serializer.write(makeFrame(opcode, data, { fin, mask }));
  return Buffer.concat(out);
}

/** Valid frame sequences for one role's peer (masked when the peer is a client). */
export function seeds(role: Role): Buffer[] {
  const masked = role === 'server';
  const f = (op: Opcode, p: string | Buffer, fin = true): Buffer => encode(op, Buffer.from(p), fin, masked);
  return [
    f(Opcode.Text, 'Hello'),
    Buffer.concat([f(Opcode.Text, 'Hel', false), f(Opcode.Ping, 'p'), f(Opcode.Continuation, 'lo')]),
    Buffer.concat([f(Opcode.Binary, Buffer.alloc(300, 1)), f(Opcode.Pong, '')]),
    f(Opcode.Text, 'κόσμε — 😀 ok'),
    f(Opcode.Binary, Buffer.alloc(70000, 2)),
    Buffer.concat([f(Opcode.Text, '', false), f(Opcode.Continuation, '', false), f(Opcode.Continuation, 'x')]),
    f(Opcode.Close, Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65])),
  ];
}

function mutate(input: Buffer, rand: () => number, pool: Buffer[]): Buffer {
  let b = Buffer.from(input);
  const n = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(rand() * Math.max(1, b.length));
    switch (Math.floor(rand() * 8)) {
      case 0: // flip a bit
        if (b.length > 0) b[at] = b[at]! ^ (1 << Math.floor(rand() * 8));
        break;
      case 1: // random byte
        if (b.length > 0) b[at] = Math.floor(rand() * 256);
        break;
      case 2: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 8) }, () => Math.floor(rand() * 256))), b.subarray(at)]);
        break;
      case 3: // delete a range
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(rand() * 8))]);
        break;
      case 4: // truncate
        b = b.subarray(0, at);
        break;
      case 5: // splice another seed in
        b = Buffer.concat([b.subarray(0, at), pool[Math.floor(rand() * pool.length)]!]);
        break;
      case 6: // interesting length bytes in the second byte
        if (b.length > 1) b[1] = (b[1]! & 0x80) | [0, 1, 125, 126, 127][Math.floor(rand() * 5)]!;
        break;
      default: // interesting first byte: every opcode, FIN and RSV combination
        if (b.length > 0) b[0] = Math.floor(rand() * 256);
        break;
    }
  }
  return b;
}

export interface Verdict {
  /** The invariant broken, or null. */
  violation: string | null;
  /** The error code the input ended in, or 'ok'. */
  outcome: string;
}

/** Runs one input through a Receiver and checks the invariants. */
export function check(role: Role, input: Buffer, cuts: number[]): Verdict {
  let delivered = 0;
  let afterError = false;
  let violation: string | null = null;
  const note = (): void => {
    delivered++;
    if (afterError) violation ??= 'output after the error';
  };
  const receiver = new Receiver(role, LIMITS, {
    onMessage: (m) => {
      note();
      if (!m.binary && !isUtf8(m.data)) violation ??= 'invalid UTF-8 delivered as text';
      if (m.data.length > LIMITS.maxMessageSize) violation ??= 'message over maxMessageSize';
    },
    onPing: note,
    onPong: note,
    onClose: note,
    onReply: () => {},
  });
  let outcome = 'ok';
  try {
    let from = 0;
    for (const to of [...cuts, input.length]) {
      if (to < from) continue;
      // Feed copies: the unmasker works in place and the input is reused.
      const err = receiver.write(Buffer.from(input.subarray(from, to)));
      from = to;
      if (err !== null) {
        afterError = true;
        if (!isWebSocketError(err)) return { violation: 'error is not a WebSocketError', outcome: 'thrown' };
        outcome = err.code;
        if (!ALLOWED_CLOSE_CODES.has(err.closeCode)) {
          return { violation: `unexpected close code ${err.closeCode} (${err.code})`, outcome };
        }
      }
    }
  } catch (thrown) {
    return { violation: `threw: ${(thrown as Error).stack ?? String(thrown)}`, outcome: 'thrown' };
  }
  void delivered;
  return { violation, outcome };
}

/** A corpus file's name: role, expected outcome, a digest of the input. */
export function corpusName(role: Role, outcome: string, input: Buffer): string {
  return `${role}-${outcome}-${createHash('sha256').update(input).digest('hex').slice(0, 16)}.bin`;
}

function randomCuts(length: number, rand: () => number): number[] {
  const count = Math.floor(rand() * 6);
  const cuts: number[] = [];
  for (let i = 0; i < count; i++) cuts.push(Math.floor(rand() * (length + 1)));
  return cuts.sort((a, b) => a - b);
}

export interface FuzzResult {
  executions: number;
  failures: Array<{ role: Role; file: string; why: string }>;
  /** How many inputs ended in each outcome. */
  outcomes: Record<string, number>;
}

/**
 * Fuzzes for `seconds`; failing inputs are saved to the corpus unless `save` is false, and with
 * `collect` the first input of each outcome too.
 */
export function fuzz(seconds: number, seed: number, save = true, collect = false): FuzzResult {
  const rand = prng(seed);
  const roles: Role[] = ['server', 'client'];
  const pools = { server: seeds('server'), client: seeds('client') };
  const until = Date.now() + seconds * 1000;
  const result: FuzzResult = { executions: 0, failures: [], outcomes: {} };
  const keep = (name: string, input: Buffer): void => {
    fs.mkdirSync(CORPUS_DIR, { recursive: true });
    fs.writeFileSync(path.join(CORPUS_DIR, name), input);
  };
  while (Date.now() < until && result.failures.length < 10) {
    for (let i = 0; i < 200; i++) {
      const role = roles[Math.floor(rand() * 2)]!;
      const pool = pools[role];
      const input = mutate(pool[Math.floor(rand() * pool.length)]!, rand, pool);
      const { violation, outcome } = check(role, input, randomCuts(input.length, rand));
      result.executions++;
      const key = `${role}-${outcome}`;
      const firstOfItsKind = result.outcomes[key] === undefined;
      result.outcomes[key] = (result.outcomes[key] ?? 0) + 1;
      const name = corpusName(role, outcome, input);
      if (violation !== null) {
        if (save) keep(`FAIL-${name}`, input);
        result.failures.push({ role, file: name, why: violation });
      } else if (collect && firstOfItsKind) {
        keep(name, input);
      }
    }
  }
  return result;
}

if (require.main === module) {
  const seconds = Number(process.env.FUZZ_SECONDS ?? 60);
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
  process.stderr.write(`fuzzing the inbound chain for ${seconds} s (FUZZ_SEED=${seed})\n`);
  const started = Date.now();
  const result = fuzz(seconds, seed, true, process.env.FUZZ_COLLECT === '1');
  const elapsed = (Date.now() - started) / 1000;
  process.stdout.write(`${result.executions} executions in ${elapsed.toFixed(1)} s (${Math.round(result.executions / elapsed)}/s), ${result.failures.length} failures\n`);
  for (const [key, count] of Object.entries(result.outcomes).sort()) process.stdout.write(`  ${key}: ${count}\n`);
  for (const f of result.failures) process.stdout.write(`  FAILED ${f.file}: ${f.why.split('\n')[0]}\n`);
  process.exit(result.failures.length === 0 ? 0 : 1);
}
