/**
 * The attacks of `npm run bench:attacks`, run from the runner's process (pinned to the client
 * CPU) against one server's port. Each is bounded in count (attackers, frames, bytes) and in
 * time (`deadline`), and reports how its attackers were cut off: when (ms after each attacker
 * started) and how (a close frame's code, an HTTP status, or the TCP close).
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { constants as zlibConstants, createDeflateRaw } from 'node:zlib';

export interface AttackOutcome {
  attackers: number;
  /** Milliseconds from each cut attacker's start to its cut, in order. */
  cutMs: number[];
  /** How the cut attackers ended: '1009', 'HTTP 431', 'TCP close', ... with counts. */
  how: Record<string, number>;
  /** A figure the attack reports beside (e.g. handshakes done), or ''. */
  note: string;
}

const MASK = Buffer.from([0x12, 0x34, 0x56, 0x78]);

/** A masked client frame (RFC 6455 §5.2); `rsv1` for a compressed message. */
export function clientFrame(opcode: number, payload: Buffer, fin = true, rsv1 = false): Buffer {
  const length = payload.length;
  const extra = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + extra + 4);
  head[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  if (extra === 0) head[1] = 0x80 | length;
  else if (extra === 2) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(length, 2);
  } else {
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  MASK.copy(head, 2 + extra);
  const body = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) body[i] = payload[i]! ^ MASK[i & 3]!;
  return Buffer.concat([head, body]);
}

function request(port: number, extensions: boolean): string {
  return (
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
    (extensions ? 'Sec-WebSocket-Extensions: permessage-deflate\r\n' : '') +
    '\r\n'
  );
}

/** One attacking connection: records when and how the server ended it. */
class Attacker {
  readonly socket: net.Socket;
  readonly start = performance.now();
  cutAt = -1;
  how = '';
  upgraded = false;
  /** Bytes written since this attacker last let its event loop turn (see write()). */
  unyielded = 0;
  private pending: Buffer = Buffer.alloc(0);
  private skip = 0;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      if (this.how === '') this.how = err.code ?? 'error';
    });
    this.socket.on('data', (chunk: Buffer) => this.received(chunk));
    this.socket.on('close', () => {
      if (this.cutAt < 0) this.cutAt = performance.now();
      if (this.how === '') this.how = 'TCP close';
    });
  }

  get closed(): boolean {
    return this.cutAt >= 0;
  }

  /** Connects and completes the opening handshake (false when refused or closed). */
  async handshake(port: number, extensions = false): Promise<boolean> {
    await once(this.socket, 'connect').catch(() => undefined);
    if (this.socket.destroyed) return false;
    this.socket.write(request(port, extensions));
    while (!this.upgraded && !this.closed) await once(this.socket, 'data').catch(() => undefined);
    return this.upgraded;
  }

  /** Scans what the server sent: the HTTP answer, then frames, for a close frame's code. */
  private received(chunk: Buffer): void {
    let data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (!this.upgraded) {
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) {
        this.pending = data;
        return;
      }
      const status = data.toString('latin1', 9, 12);
      if (status !== '101') {
        // Refused: the answer is the cut (the server may read and drop a while before it closes).
        this.how = `HTTP ${status}`;
        if (this.cutAt < 0) this.cutAt = performance.now();
        this.pending = Buffer.alloc(0);
        return;
      }
      this.upgraded = true;
      data = data.subarray(end + 4);
    }
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length);
        this.skip -= n;
        data = data.subarray(n);
      }
      if (data.length < 2) break;
      const opcode = data[0]! & 0x0f;
      let length = data[1]! & 0x7f;
      let at = 2;
      if (length === 126) {
        if (data.length < 4) break;
        length = data.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (data.length < 10) break;
        length = Number(data.readBigUInt64BE(2));
        at = 10;
      }
      if (opcode === 0x8) {
        if (data.length < at + Math.min(length, 2)) break;
        if (this.how === '') this.how = length >= 2 ? String(data.readUInt16BE(at)) : 'close 1005';
        if (this.cutAt < 0) this.cutAt = performance.now();
      }
      this.skip = length;
      data = data.subarray(at);
    }
    this.pending = Buffer.from(data);
  }
}

/** Writes `bytes` unless the deadline passed or the attacker was cut; waits for 'drain' (bounded by the deadline). */
async function write(attacker: Attacker, bytes: Buffer | string, deadline: number): Promise<boolean> {
  if (attacker.closed || performance.now() > deadline) return false;
  if (attacker.socket.write(bytes)) {
    // While the kernel takes every write, the loop of awaits never leaves the microtask queue:
    // the attacker would not see the server's answer (or its own socket's end) until it stops.
    // Let the event loop turn every 64 KiB, as a real client's would.
    attacker.unyielded += bytes.length;
    if (attacker.unyielded < 65536) return true;
    attacker.unyielded = 0;
    await nextTurn();
    return !attacker.closed && performance.now() <= deadline;
  }
  const left = deadline - performance.now();
  if (left <= 0) return false;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    once(attacker.socket, 'drain').catch(() => undefined),
    once(attacker.socket, 'close').catch(() => undefined),
    new Promise((resolve) => (timer = setTimeout(resolve, left))),
  ]);
  clearTimeout(timer);
  return !attacker.closed && performance.now() <= deadline;
}

function untilDeadline(deadline: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - performance.now())));
}

function outcome(attackers: Attacker[], note = ''): AttackOutcome {
  const cutMs: number[] = [];
  const how: Record<string, number> = {};
  for (const a of attackers) {
    if (!a.closed) continue;
    cutMs.push(a.cutAt - a.start);
    how[a.how] = (how[a.how] ?? 0) + 1;
  }
  for (const a of attackers) a.socket.destroy();
  return { attackers: attackers.length, cutMs, how, note };
}

/** `n` attackers made at once (the connects are spread over the event loop's turns). */
function crowd(port: number, n: number): Attacker[] {
  return Array.from({ length: n }, () => new Attacker(port));
}

async function upgradedCrowd(port: number, n: number, extensions = false): Promise<Attacker[]> {
  const all = crowd(port, n);
  await Promise.all(all.map((a) => a.handshake(port, extensions)));
  return all;
}

/** Sends `block` again and again (at most `maxBlocks` times) on each attacker until cut or the deadline. */
async function flood(attackers: Attacker[], first: Buffer | null, block: Buffer, maxBlocks: number, deadline: number): Promise<void> {
  await Promise.all(
    attackers.map(async (a) => {
      if (!a.upgraded || (first !== null && !(await write(a, first, deadline)))) return;
      for (let i = 0; i < maxBlocks; i++) if (!(await write(a, block, deadline))) return;
    }),
  );
}

export type AttackName =
  | 'slowloris'
  | 'idle TCP'
  | 'header flood'
  | 'tiny fragments'
  | 'slow readers 64 KiB'
  | 'slow readers 16 MiB'
  | 'ping flood'
  | 'deflate bombs'
  | 'churn';

/** What each attack does, in a few words (for the table). */
export const ATTACKS: Record<AttackName, string> = {
  slowloris: '200 handshakes sending a byte every 200 ms',
  'idle TCP': '500 connections sending nothing',
  'header flood': '50 handshakes sending endless 1 KiB headers',
  'tiny fragments': '50 connections sending 1-byte fragments without FIN',
  'slow readers 64 KiB': '100 clients sending 64 KiB messages to the echo, never reading',
  'slow readers 16 MiB': '10 clients sending 16 MiB messages to the echo, never reading',
  'ping flood': '20 clients sending pings, never reading the pongs',
  'deflate bombs': '20 connections sending 1 MB that inflates to 1 GiB',
  churn: '50 at a time: connect, handshake, close or reset',
};

let bombPayload: Buffer | null = null;

/** ~1 MB of DEFLATE data inflating to 1 GiB of zeros (the trailer removed, RFC 7692 §7.2.1). */
async function bomb(): Promise<Buffer> {
  if (bombPayload !== null) return bombPayload;
  const deflate = createDeflateRaw({ level: 9 });
  const parts: Buffer[] = [];
  let current: Buffer[] = [];
  deflate.on('data', (chunk: Buffer) => current.push(chunk));
  const zeros = Buffer.alloc(1 << 20);
  for (let i = 0; i < 2; i++) {
    deflate.write(zeros);
    await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
    parts.push(Buffer.concat(current));
    current = [];
  }
  deflate.destroy();
  const blocks = [parts[0]!];
  for (let i = 1; i < 1024; i++) blocks.push(parts[1]!);
  const body = Buffer.concat(blocks);
  return (bombPayload = body.subarray(0, body.length - 4));
}

/** Runs one attack against `port` until `deadline` (performance.now() ms). */
export async function runAttack(name: AttackName, port: number, deadline: number): Promise<AttackOutcome> {
  switch (name) {
    case 'slowloris': {
      const all = crowd(port, 200);
      for (const a of all) a.socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `);
      while (performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        for (const a of all) if (!a.closed) a.socket.write('a');
      }
      return outcome(all);
    }
    case 'idle TCP': {
      const all = crowd(port, 500);
      await untilDeadline(deadline);
      return outcome(all);
    }
    case 'header flood': {
      const all = crowd(port, 50);
      const line = `X-Flood: ${'a'.repeat(1014)}\r\n`;
      await Promise.all(
        all.map(async (a) => {
          if (!(await write(a, `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`, deadline))) return;
          for (let i = 0; i < 100_000; i++) if (!(await write(a, line, deadline))) return;
        }),
      );
      await untilDeadline(deadline);
      return outcome(all);
    }
    case 'tiny fragments': {
      const all = await upgradedCrowd(port, 50);
      const one = clientFrame(0x0, Buffer.from('x'), false);
      const block = Buffer.concat(Array.from({ length: 8192 }, () => one));
      // At most 2 M fragments each (244 blocks).
      await flood(all, clientFrame(0x2, Buffer.from('x'), false), block, 244, deadline);
      await untilDeadline(deadline);
      return outcome(all);
    }
    case 'slow readers 64 KiB':
    case 'slow readers 16 MiB': {
      const large = name === 'slow readers 16 MiB';
      const all = await upgradedCrowd(port, large ? 10 : 100);
      for (const a of all) a.socket.pause();
      const message = clientFrame(0x2, Buffer.alloc(large ? 16 << 20 : 64 << 10, 0x61));
      // At most 64 MiB each.
      await flood(all, null, message, large ? 4 : 1024, deadline);
      await untilDeadline(deadline);
      return outcome(all);
    }
    case 'ping flood': {
      const all = await upgradedCrowd(port, 20);
      for (const a of all) a.socket.pause();
      const ping = clientFrame(0x9, Buffer.alloc(125, 0x70));
      const block = Buffer.concat(Array.from({ length: 512 }, () => ping));
      // At most 5 M pings each.
      await flood(all, null, block, 10_000, deadline);
      await untilDeadline(deadline);
      return outcome(all);
    }
    case 'deflate bombs': {
      const frame = clientFrame(0x2, await bomb(), true, true);
      const all = await upgradedCrowd(port, 20, true);
      await flood(all, null, frame, 1, deadline);
      await untilDeadline(deadline);
      return outcome(all);
    }
    case 'churn': {
      let done = 0;
      const close = clientFrame(0x8, Buffer.from([0x03, 0xe8]));
      await Promise.all(
        Array.from({ length: 50 }, async (_, worker) => {
          for (let i = 0; performance.now() < deadline && i < 100_000; i++) {
            const a = new Attacker(port);
            if (await a.handshake(port)) done++;
            if ((i + worker) % 2 === 0 && !a.closed) {
              a.socket.write(close);
              await Promise.race([once(a.socket, 'close'), untilDeadline(deadline)]).catch(() => undefined);
            }
            a.socket.destroy();
          }
        }),
      );
      return { attackers: done, cutMs: [], how: {}, note: `${done} handshakes completed` };
    }
  }
}
