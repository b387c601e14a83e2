/**
 * What every bench server shares: it reports its port to the runner over IPC, answers memory
 * requests (after a full GC when run with --expose-gc) and exits on request, so that a
 * --cpu-prof profile is written.
 */
import { getHeapSpaceStatistics } from 'node:v8';
import type { MemoryFigures, ServerCommand, ServerMessage } from '../ipc';

/** Largest message the bench sends (16 MiB) with room to spare. */
export const MAX_MESSAGE = 128 * 1024 * 1024;

/** The answer to each message on a '/sink' connection. */
export const ACK = Buffer.alloc(0);

/**
 * Whether a request target asks for sink mode (one empty message per message) rather than echo.
 * The load generator asks for '/sink?bytes=N', N being the wire size of one message (raw TCP uses it).
 */
export function isSink(url: string | undefined): boolean {
  return url !== undefined && url.startsWith('/sink');
}

function send(message: ServerMessage): void {
  process.send?.(message);
}

function memory(): MemoryFigures {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  const young = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space');
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, newSpace: young?.physical_space_size ?? NaN };
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Call once the server listens. Errors that reach the top are fatal and reported. */
export function ready(port: number): void {
  process.on('message', (command: ServerCommand) => {
    if (command.cmd === 'mem') send({ type: 'mem', mem: memory() });
    else if (command.cmd === 'cpu') send({ type: 'cpu', micros: cpuMicros() });
    else if (command.cmd === 'exit') process.exit(0);
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', port });
}

/** Swallows errors of connections the load generator resets on purpose. */
export function ignore(): void {}
