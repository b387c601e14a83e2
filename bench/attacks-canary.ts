/**
 * The well-behaved connection of `npm run bench:attacks` (a child process on the client CPU):
 * on 'start' it connects (ws's client, no compression) and echoes 64-byte messages one at a
 * time until 'stop', then reports the round trips' p50, p99 and maximum, and whether its
 * connection survived.
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

export type CanaryCommand = { cmd: 'start'; port: number } | { cmd: 'stop' } | { cmd: 'exit' };
export interface CanaryResult {
  count: number;
  p50: number;
  p99: number;
  max: number;
  /** The connection closed (or never opened) during the attack. */
  lost: boolean;
}

const PAYLOAD = Buffer.alloc(64, 0x63);
let ws: WebSocket | null = null;
let rtts: number[] = [];
let lost = false;
let sentAt = 0;

function send(): void {
  sentAt = performance.now();
  ws!.send(PAYLOAD);
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

process.on('message', (command: CanaryCommand) => {
  if (command.cmd === 'start') {
    rtts = [];
    lost = false;
    const socket = (ws = new WebSocket(`ws://127.0.0.1:${command.port}/`, { perMessageDeflate: false }));
    socket.on('error', () => undefined);
    socket.on('open', () => {
      process.send!({ type: 'ready', port: command.port });
      send();
    });
    socket.on('message', () => {
      rtts.push(performance.now() - sentAt);
      if (ws === socket) send();
    });
    socket.on('close', () => {
      if (ws === socket) lost = true;
    });
  } else if (command.cmd === 'stop') {
    const socket = ws;
    ws = null;
    // The round trip in flight when the attack ends counts too, as long as it has taken so far.
    if (!lost && sentAt > 0) rtts.push(performance.now() - sentAt);
    socket?.terminate();
    const sorted = rtts.sort((a, b) => a - b);
    const result: CanaryResult = { count: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] ?? NaN, lost };
    process.send!({ type: 'canary', result });
  } else {
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready', port: 0 });
