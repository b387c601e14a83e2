/**
 * The client direction: our client (connect) or ws's client, echoing against the same server.
 * BENCH_CLIENT=ours|ws chooses the library (for ws, WS_NO_BUFFER_UTIL=1 turns bufferutil off).
 * Driven over IPC by bench/run.ts: one ClientCommand in, one ChildReply out.
 */
import { performance } from 'node:perf_hooks';
import { WebSocket as WsWebSocket } from 'ws';
import { connect } from '../lib';
import type { ChildReply, ExitCommand, ServerMessage, ClientCommand, Measurement } from './ipc';

/** The little both clients have in common, as used here. */
interface EchoClient {
  send(data: Buffer): void;
  onMessage(listener: () => void): void;
  opened: Promise<void>;
  terminate(): void;
}

function ours(url: string): EchoClient {
  const ws = connect(url, { maxPayload: 128 * 1024 * 1024 });
  ws.on('error', () => {});
  return {
    send: (data) => ws.send(data),
    onMessage: (listener) => ws.on('message', listener),
    opened: new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('close', () => reject(new Error('closed before open')));
    }),
    terminate: () => ws.terminate(),
  };
}

function wsClient(url: string): EchoClient {
  const ws = new WsWebSocket(url, { perMessageDeflate: false, maxPayload: 128 * 1024 * 1024 });
  ws.on('error', () => {});
  return {
    send: (data) => ws.send(data),
    onMessage: (listener) => ws.on('message', listener),
    opened: new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('close', () => reject(new Error('closed before open')));
    }),
    terminate: () => ws.terminate(),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function run(c: ClientCommand): Promise<Measurement> {
  const url = `ws://127.0.0.1:${c.port}/echo`;
  const client = process.env.BENCH_CLIENT === 'ws' ? wsClient(url) : ours(url);
  await client.opened;
  const payload = Buffer.alloc(c.size, 0x61);
  let counting = false;
  let running = true;
  let replies = 0;
  client.onMessage(() => {
    if (counting) replies++;
    if (running) client.send(payload);
  });
  for (let i = 0; i < c.inflight; i++) client.send(payload);
  await sleep(c.warmupMs);
  const cpuBefore = process.cpuUsage();
  counting = true;
  const start = performance.now();
  await sleep(c.durationMs);
  counting = false;
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  running = false;
  client.terminate();
  return { messages: replies, bytes: replies * c.size, seconds, cpu: (cpu.user + cpu.system) / 1e6 / seconds };
}

process.on('message', (command: ClientCommand | ExitCommand) => {
  if (command.cmd === 'exit') process.exit(0);
  run(command).then(
    (result) => process.send?.({ ok: true, result } satisfies ChildReply),
    (err: Error) => process.send?.({ ok: false, error: err.message } satisfies ChildReply),
  );
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready', port: 0 } satisfies ServerMessage);
