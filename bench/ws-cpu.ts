/**
 * CPU time per message, in one process: steadier than `npm run bench`'s rates on this shared
 * 2-core machine, because it counts this process's CPU time rather than wall time.
 *
 *   npm run build && taskset -c 0 node dist/bench/ws-cpu.js [fake|sink|sock|both] [messages] [size] [k]
 *
 * - fake: a server WebSocket on a transport that does no I/O: k masked frames arrive as one
 *   chunk per turn of the event loop (WS_CPU_READS such chunks: see READS), and each is echoed
 *   with send() from a 'message' listener.
 *   What a library's JavaScript costs per message, with no system call at all: ours, and ws's
 *   WebSocket on the same transport (through setSocket(), what ws's own server calls after its
 *   handshake; bufferutil as in sock).
 * - sink: the one-way bulk case of `npm run bench` on that transport: masked frames arrive as a
 *   byte stream cut into reads of READ_SIZE bytes (64 KiB, as Node reads a socket), each in a
 *   fresh buffer, and each message is answered with an empty binary message. The same harness
 *   with no library ('feed': cutting and copying the reads) runs too, and is taken off.
 * - sock: a server and a client over 127.0.0.1 in this one process, k messages in flight, the
 *   client sending the next message for each echo: the CPU of both ends and of their system
 *   calls, per round trip. Run for ours and for ws (bufferutil loaded if installed, as ws does by
 *   default; WS_NO_BUFFER_UTIL=1 turns it off), alternating, ROUNDS each.
 *
 * fake and sink interleave the libraries: each runs a batch of about 10-20 ms in turn, in a
 * rotating order, BATCHES times, so that the machine's slow spells fall on all of them alike
 * (whole rounds one after the other differed by 15% on their own). They print each one's median
 * and range over the batches, the median (and middle half) of the per-batch ratios, and the
 * ratio of the means.
 * WS_CPU_OTHER=<another build>/dist/lib adds that build of ours as a third contender ('other',
 * made before ours with WS_CPU_OTHER_FIRST=1: whichever connection is made first runs slower;
 * WS_CPU_WITHOUT_WS=1 leaves ws out, fake and sink modes):
 * two builds compared in the same batches (sock: in the same rounds, server and client of that build).
 *
 * Defaults: both, 200000 messages (sock: a tenth), 64 B, k = 1. Figures are nanoseconds of CPU
 * (user + system) per message; the first batches (sock: the first 10% of each round) are warm-up.
 */
import { randomFillSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocket as WsWebSocket, WebSocketServer as WsServer } from 'ws';
import { WebSocket, createServer, connect } from '../lib';
import { maskedBinaryFrame, streamReads } from './wire';
import { NullTransport } from '../spec/helpers/transports';

const MODE = process.argv[2] ?? 'both';
const MESSAGES = Number(process.argv[3] ?? '200000');
const SIZE = Number(process.argv[4] ?? '64');
const K = Number(process.argv[5] ?? '1');
/**
 * Fake mode: chunks of K frames delivered per turn (WS_CPU_READS, default 1). With K = 1 and 32
 * of them, what a connection costs per read of one small message, rather than the harness's own
 * turn of the event loop (several microseconds, most of a turn with one message).
 */
const READS = Number(process.env.WS_CPU_READS ?? '1');
const ROUNDS = 5;
/** Sink mode: the size of each read (Node reads a socket 64 KiB at a time). */
const READ_SIZE = 65536;
/** The largest message the WebSockets take: 1 MiB, or the message size if larger. */
const MAX_PAYLOAD = Math.max(1 << 20, SIZE);

/** The specs' transport that does no I/O, with its writes counted and called back on the next tick. */
class FakeTransport extends NullTransport {
  writes = 0;
  override write(_chunk: Buffer, cb?: (err?: Error | null) => void): boolean {
    this.writes++;
    if (cb !== undefined) process.nextTick(cb);
    return true;
  }
  override destroy(): this {
    this.destroyed = true;
    return this;
  }
  // What ws's setSocket() calls on a net.Socket besides the above.
  setTimeout(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
}

/** ws's WebSocket as its server makes one: no address, then setSocket() (not in ws's typings). */
interface WsServerSide extends WsWebSocket {
  setSocket(socket: unknown, head: Buffer, options: { allowSynchronousEvents: boolean; maxPayload: number; skipUTF8Validation: boolean }): void;
}

/** CPU ns per message from `cpu` (taken at the end of the warm-up) to now, over `count` messages. */
function perMessage(cpu: NodeJS.CpuUsage, count: number): number {
  const used = process.cpuUsage(cpu);
  return ((used.user + used.system) * 1000) / count;
}

/** What the echo needs of either library's server-side WebSocket. */
interface Echoing {
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): unknown;
  send(data: Buffer, options: { binary: boolean }): unknown;
}

/** Whose server-side WebSocket a contender runs: ours, ws's, ours from another build (OTHER_BUILD), or none (the feed alone). */
type Lib = 'ours' | 'ws' | 'other' | 'feed';

/** WS_CPU_OTHER: another build's dist/lib directory, run beside this one. */
const OTHER_BUILD = process.env.WS_CPU_OTHER;

/** What the contenders use of our library: as built here ('ours') or as OTHER_BUILD ('other'). */
interface OurBuild {
  WebSocket: typeof WebSocket;
  createServer: typeof createServer;
  connect: typeof connect;
}

function build(lib: 'ours' | 'other'): OurBuild {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return lib === 'ours' ? { WebSocket, createServer, connect } : (require(OTHER_BUILD!) as OurBuild);
}

/**
 * Makes a server-side WebSocket of `lib` on `transport` that answers every message (with the
 * message itself, or with `answer`), counting them in `count.got`.
 */
function answering(lib: Exclude<Lib, 'feed'>, transport: FakeTransport, count: { got: number }, answer?: Buffer): void {
  let ws: Echoing;
  if (lib === 'ws') {
    const theirs = new (WsWebSocket as unknown as new (address: null, protocols: undefined, options: object) => WsServerSide)(null, undefined, {});
    theirs.setSocket(transport, Buffer.alloc(0), { allowSynchronousEvents: true, maxPayload: MAX_PAYLOAD, skipUTF8Validation: false });
    ws = theirs as unknown as Echoing;
  } else {
    const Ours = build(lib).WebSocket;
    const ours = new Ours('server', { maxPayload: MAX_PAYLOAD, maxMessageSize: MAX_PAYLOAD });
    ours.attach(transport as never, null, { protocol: '', extensions: '' });
    ws = ours as unknown as Echoing;
  }
  ws.on('message', (data, isBinary) => {
    count.got++;
    ws.send(answer ?? data, { binary: isBinary });
  });
}

/** One contender of an interleaved run: a WebSocket (or none) on a transport of its own, fed a turn at a time. */
interface Contender {
  readonly lib: Lib;
  /** Delivers the next turn's input. */
  feed(): void;
  /** Messages received so far (for 'feed', the messages its input held). */
  delivered(): number;
  /** Throws unless every message was answered. */
  check(): void;
}

/** A contender whose turns are `turn()`'s chunks and whose input so far held `framesFed()` frames. */
function contender(lib: Lib, turn: () => Buffer[], framesFed: () => number, answer?: Buffer): Contender {
  const transport = new FakeTransport();
  const count = { got: 0 };
  if (lib !== 'feed') answering(lib, transport, count, answer);
  return {
    lib,
    feed: () => {
      for (const chunk of turn()) transport.emit('data', chunk);
    },
    delivered: () => (lib === 'feed' ? framesFed() : count.got),
    check: () => {
      if (lib !== 'feed' && (count.got !== framesFed() || transport.writes < count.got)) {
        throw new Error(`${lib}: ${count.got} of ${framesFed()} messages, ${transport.writes} writes`);
      }
    },
  };
}

/** The libraries run side by side: ours, ws, and another build of ours when WS_CPU_OTHER names one. */
function libs(): Lib[] {
  if (OTHER_BUILD === undefined) return ['ours', 'ws'];
  // Their connections are made in this order, and the one made first runs slower: compare both.
  const builds: Lib[] = process.env.WS_CPU_OTHER_FIRST === '1' ? ['other', 'ours'] : ['ours', 'other'];
  return process.env.WS_CPU_WITHOUT_WS === '1' ? builds : [...builds, 'ws'];
}

/** "; ws/ours <ratios>" when ws ran (see batchRatios). */
function wsRatio(r: Map<Lib, number[]>, base?: number[]): string {
  const ws = r.get('ws');
  return ws === undefined ? '' : `; ws/ours ${batchRatios(ws, r.get('ours')!, base)}`;
}

/**
 * Fake mode's contender: K masked frames of SIZE bytes as one chunk per turn, in a fresh buffer
 * as a socket read is (not a slice of Node's shared pool), each message echoed.
 */
function echoContender(lib: Lib): Contender {
  const chunk = Buffer.concat(Array.from({ length: K }, () => maskedBinaryFrame(SIZE)));
  let turns = 0;
  const copy = (): Buffer => {
    const out = Buffer.alloc(chunk.length);
    chunk.copy(out);
    return out;
  };
  return contender(
    lib,
    () => {
      turns++;
      return Array.from({ length: READS }, copy);
    },
    () => turns * K * READS,
  );
}

const EMPTY = Buffer.alloc(0);

/**
 * Sink mode's contender: masked frames of SIZE bytes as a byte stream cut into reads of
 * READ_SIZE bytes, each in a fresh buffer, K reads a turn; each message answered with an empty one.
 */
function sinkContender(lib: Lib): Contender {
  const frame = maskedBinaryFrame(SIZE);
  const next = streamReads(frame, READ_SIZE);
  let bytes = 0;
  const read = (): Buffer => {
    bytes += READ_SIZE;
    return next();
  };
  return contender(lib, () => Array.from({ length: K }, read), () => Math.floor(bytes / frame.length), EMPTY);
}

const BATCHES = 40;
const WARM_BATCHES = 4;
const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs the contenders in turn, a batch of `turns` turns each (about 10-20 ms), in a rotating
 * order, BATCHES times: a slow spell of the machine falls on all of them alike. Returns each
 * contender's CPU ns per message in each batch after the warm-up ones.
 */
async function interleaved(contenders: Contender[], turns: number): Promise<Map<Lib, number[]>> {
  const results = new Map<Lib, number[]>(contenders.map((c) => [c.lib, []]));
  for (let b = 0; b < BATCHES; b++) {
    for (let j = 0; j < contenders.length; j++) {
      const c = contenders[(b + j) % contenders.length]!;
      const before = c.delivered();
      const cpu = process.cpuUsage();
      for (let t = 0; t < turns; t++) {
        c.feed();
        await immediate();
      }
      if (b >= WARM_BATCHES) results.get(c.lib)!.push(perMessage(cpu, c.delivered() - before));
    }
  }
  for (const c of contenders) c.check();
  return results;
}

/** The median and middle half of the per-batch ratios a/b, and the ratio of the means (each less `base`'s figures of the same batch). */
function batchRatios(a: number[], b: number[], base?: number[]): string {
  const ratios = a.map((x, i) => (x - (base?.[i] ?? 0)) / (b[i]! - (base?.[i] ?? 0)));
  const mean = (values: number[]): number => values.reduce((sum, x) => sum + x, 0) / values.length;
  const overall = (mean(a) - (base === undefined ? 0 : mean(base))) / (mean(b) - (base === undefined ? 0 : mean(base)));
  return `${median(ratios).toFixed(2)} (${quartiles(ratios)}; of the means ${overall.toFixed(2)})`;
}

/** The little the round trip needs of either library. */
interface Side {
  send(data: Buffer): void;
  close(): void;
}

/** An echo round: `client(port, onMessage)` connects and returns a Side once open. */
function sockRound(
  count: number,
  listen: (ready: (port: number) => void) => { close(): void },
  client: (port: number, onMessage: () => void, open: (side: Side) => void, fail: (err: Error) => void) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = listen((port) => {
      const payload = randomFillSync(Buffer.alloc(SIZE));
      const warm = Math.floor(count / 10);
      let got = 0;
      let cpu = process.cpuUsage();
      let side: Side | null = null;
      client(
        port,
        () => {
          got++;
          if (got === warm) cpu = process.cpuUsage();
          if (got === count) {
            const result = perMessage(cpu, count - warm);
            side!.close();
            server.close();
            resolve(result);
            return;
          }
          if (got <= count - K) side!.send(payload);
        },
        (opened) => {
          side = opened;
          for (let i = 0; i < K; i++) opened.send(payload);
        },
        reject,
      );
    });
  });
}

function oursRound(count: number, lib: 'ours' | 'other' = 'ours'): Promise<number> {
  const { createServer, connect } = build(lib);
  return sockRound(
    count,
    (ready) => {
      const server = createServer({ host: '127.0.0.1', port: 0 });
      server.on('connection', (ws: WebSocket) => {
        ws.on('error', () => {});
        ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
      });
      server.on('listening', () => ready(server.address()!.port));
      return server;
    },
    (port, onMessage, open, fail) => {
      const ws = connect(`ws://127.0.0.1:${port}`);
      ws.on('message', onMessage);
      ws.on('error', fail);
      ws.on('open', () => open({ send: (data) => ws.send(data), close: () => ws.terminate() }));
    },
  );
}

function wsRound(count: number): Promise<number> {
  return sockRound(
    count,
    (ready) => {
      const server = new WsServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
      server.on('connection', (ws: WsWebSocket) => {
        ws.on('error', () => {});
        ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }));
      });
      server.on('listening', () => ready((server.address() as AddressInfo).port));
      return server;
    },
    (port, onMessage, open, fail) => {
      const ws = new WsWebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
      ws.on('message', onMessage);
      ws.on('error', fail);
      ws.on('open', () => open({ send: (data) => ws.send(data), close: () => ws.terminate() }));
    },
  );
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
/** The middle half of `values` (25th to 75th percentile), as "low-high". */
function quartiles(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.floor(q * (sorted.length - 1))]!;
  return `${at(0.25).toFixed(2)}-${at(0.75).toFixed(2)}`;
}
const summary = (values: number[]): string =>
  `${Math.round(median(values))} ns CPU/msg (${Math.round(Math.min(...values))}-${Math.round(Math.max(...values))})`;

async function main(): Promise<void> {
  const what = `${SIZE} B, k=${K}${READS === 1 ? '' : `, ${READS} reads a turn`}`;
  if (MODE === 'fake' || MODE === 'both') {
    const contenders = libs().map(echoContender);
    const r = await interleaved(contenders, Math.max(1, Math.round(MESSAGES / BATCHES / K / READS)));
    const parts = libs().map((lib) => `${lib} ${summary(r.get(lib)!)}`);
    const other = OTHER_BUILD === undefined ? '' : `; other/ours ${batchRatios(r.get('other')!, r.get('ours')!)}`;
    console.log(`fake transport, server (${what}), interleaved: ${parts.join('; ')}${wsRatio(r)}${other}`);
  }
  if (MODE === 'sink') {
    const contenders = ['feed' as const, ...libs()].map(sinkContender);
    const readsPerMessage = (SIZE + 14) / READ_SIZE;
    const r = await interleaved(contenders, Math.max(1, Math.round((MESSAGES * readsPerMessage) / BATCHES / K)));
    const feed = r.get('feed')!;
    const parts = libs().map((lib) => `${lib} ${summary(r.get(lib)!)}`);
    const other = OTHER_BUILD === undefined ? '' : `; other/ours ${batchRatios(r.get('other')!, r.get('ours')!, feed)}`;
    console.log(
      `fake transport, server, one-way (${SIZE} B in ${READ_SIZE} B reads, ${K} a turn), interleaved: feed alone ${summary(feed)}; ` +
        `${parts.join('; ')}; less the feed${wsRatio(r, feed)}${other}`,
    );
  }
  if (MODE === 'sock' || MODE === 'both') {
    const count = MODE === 'both' ? Math.ceil(MESSAGES / 10) : MESSAGES;
    const ours: number[] = [];
    const other: number[] = [];
    const ws: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(await oursRound(count));
      if (OTHER_BUILD !== undefined) other.push(await oursRound(count, 'other'));
      ws.push(await wsRound(count));
    }
    const others = OTHER_BUILD === undefined ? '' : `; other ${summary(other)}; other/ours ${(median(other) / median(ours)).toFixed(2)}`;
    console.log(`loopback, server + client in one process (${what}): ours ${summary(ours)}; ws ${summary(ws)}; ws/ours ${(median(ws) / median(ours)).toFixed(2)}${others}`);
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
