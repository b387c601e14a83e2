/**
 * CPU time per echoed message, in one process: steadier than `npm run bench`'s rates on this
 * shared 2-core machine, because it counts this process's CPU time rather than wall time.
 *
 *   npm run build && taskset -c 0 node dist/bench/ws-cpu.js [fake|sock|both] [messages] [size] [k]
 *
 * - fake: a server WebSocket on a transport that does no I/O: k masked frames arrive as one
 *   chunk per turn of the event loop, and each is echoed with send() from a 'message' listener.
 *   What a library's JavaScript costs per message, with no system call at all: ours, and ws's
 *   WebSocket on the same transport (through setSocket(), what ws's own server calls after its
 *   handshake; bufferutil as in sock), alternating, ROUNDS each.
 * - sock: a server and a client over 127.0.0.1 in this one process, k messages in flight, the
 *   client sending the next message for each echo: the CPU of both ends and of their system
 *   calls, per round trip. Run for ours and for ws (bufferutil loaded if installed, as ws does by
 *   default; WS_NO_BUFFER_UTIL=1 turns it off), alternating, ROUNDS each.
 *
 * Defaults: both, 200000 messages (sock: a tenth), 64 B, k = 1. Prints the median and range of
 * ROUNDS rounds in nanoseconds of CPU (user + system) per message; the first 10% of each round
 * is warm-up.
 */
import { randomFillSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocket as WsWebSocket, WebSocketServer as WsServer } from 'ws';
import { WebSocket, createServer, connect } from '../lib';
import { maskedBinaryFrame } from './wire';
import { NullTransport } from '../spec/helpers/transports';

const MODE = process.argv[2] ?? 'both';
const MESSAGES = Number(process.argv[3] ?? '200000');
const SIZE = Number(process.argv[4] ?? '64');
const K = Number(process.argv[5] ?? '1');
const ROUNDS = 5;

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

/** Makes a server-side WebSocket of `lib` on `transport` that echoes every message, counting them in `count.got`. */
function fakeEcho(lib: 'ours' | 'ws', transport: FakeTransport, count: { got: number }): void {
  let ws: Echoing;
  if (lib === 'ours') {
    const ours = new WebSocket('server', { maxPayload: 1 << 20 });
    ours.attach(transport as never, null, { protocol: '', extensions: '' });
    ws = ours as unknown as Echoing;
  } else {
    const theirs = new (WsWebSocket as unknown as new (address: null, protocols: undefined, options: object) => WsServerSide)(null, undefined, {});
    theirs.setSocket(transport, Buffer.alloc(0), { allowSynchronousEvents: true, maxPayload: 1 << 20, skipUTF8Validation: false });
    ws = theirs as unknown as Echoing;
  }
  ws.on('message', (data, isBinary) => {
    count.got++;
    ws.send(data, { binary: isBinary });
  });
}

function fakeRound(lib: 'ours' | 'ws', count: number): Promise<number> {
  const transport = new FakeTransport();
  const echoed = { got: 0 };
  fakeEcho(lib, transport, echoed);
  const chunk = Buffer.concat(Array.from({ length: K }, () => maskedBinaryFrame(SIZE)));
  const turns = Math.ceil(count / K);
  const warm = Math.floor(turns / 10);
  return new Promise((resolve, reject) => {
    let n = 0;
    let cpu = process.cpuUsage();
    const next = (): void => {
      if (n === warm) cpu = process.cpuUsage();
      if (n === turns) {
        setImmediate(() => {
          if (echoed.got !== turns * K || transport.writes < echoed.got) reject(new Error(`${lib}: ${echoed.got} messages, ${transport.writes} writes`));
          else resolve(perMessage(cpu, (turns - warm) * K));
        });
        return;
      }
      n++;
      // A fresh copy (the server unmasks in place), in a buffer of its own as a socket read is (not
      // a slice of Node's shared pool, as a small Buffer.from() would be).
      const copy = Buffer.alloc(chunk.length);
      chunk.copy(copy);
      transport.emit('data', copy);
      setImmediate(next);
    };
    setImmediate(next);
  });
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

function oursRound(count: number): Promise<number> {
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
const summary = (values: number[]): string =>
  `${Math.round(median(values))} ns CPU/msg (${Math.round(Math.min(...values))}-${Math.round(Math.max(...values))})`;

async function main(): Promise<void> {
  const what = `${SIZE} B, k=${K}`;
  if (MODE === 'fake' || MODE === 'both') {
    const ours: number[] = [];
    const ws: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(await fakeRound('ours', MESSAGES));
      ws.push(await fakeRound('ws', MESSAGES));
    }
    console.log(`fake transport, server (${what}): ours ${summary(ours)}; ws ${summary(ws)}; ws/ours ${(median(ws) / median(ours)).toFixed(2)}`);
  }
  if (MODE === 'sock' || MODE === 'both') {
    const count = MODE === 'both' ? Math.ceil(MESSAGES / 10) : MESSAGES;
    const ours: number[] = [];
    const ws: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(await oursRound(count));
      ws.push(await wsRound(count));
    }
    console.log(`loopback, server + client in one process (${what}): ours ${summary(ours)}; ws ${summary(ws)}; ws/ours ${(median(ws) / median(ours)).toFixed(2)}`);
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exitCode = 1;
});
