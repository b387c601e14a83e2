/** Messages between the bench runner and its child processes (servers, load generator, clients). */

/** Path of the request: '/echo' echoes every message; '/sink' answers each message with an empty one. */
export type ServerPath = '/echo' | '/sink';

/** A measurement the load generator runs. Times in milliseconds. */
export type LoadCommand =
  | {
      cmd: 'echo';
      port: number;
      conns: number;
      inflight: number;
      size: number;
      warmupMs: number;
      durationMs: number;
      /** Record each round trip (meaningful with 1 connection, 1 in flight). */
      latency: boolean;
    }
  | { cmd: 'bulk'; port: number; size: number; inflight: number; warmupMs: number; durationMs: number }
  | { cmd: 'handshakes'; port: number; concurrency: number; warmupMs: number; durationMs: number }
  | { cmd: 'idle-open'; port: number; n: number; concurrency: number }
  | { cmd: 'idle-close' };

/** A client-side measurement (our client or ws's client against one server). */
export interface ClientCommand {
  cmd: 'client-echo';
  port: number;
  size: number;
  inflight: number;
  warmupMs: number;
  durationMs: number;
}

/** What a measurement found. `messages` and `bytes` count replies within the measured window. */
export interface Measurement {
  messages: number;
  bytes: number;
  seconds: number;
  /** Round-trip percentiles in microseconds (latency runs only). */
  p50?: number;
  p99?: number;
  /** CPU time of the measuring process over the window, as a share of one core (0..1). */
  cpu?: number;
  /** The window on the monotonic clock, in microseconds (to cut a server's CPU profile to it). */
  windowUs?: [number, number];
}

export type ChildReply = { ok: true; result: Measurement } | { ok: false; error: string };

/** Asks any child to exit cleanly (a server then writes its --cpu-prof profile). */
export interface ExitCommand {
  cmd: 'exit';
}

/** Server control: the runner asks for memory figures (after a full GC) and for a clean exit. */
export type ServerCommand = { cmd: 'mem' } | { cmd: 'cpu' } | ExitCommand;

export interface MemoryFigures {
  rss: number;
  heapUsed: number;
  external: number;
  /** What V8 has committed for its young generation (new space), empty or not: part of rss (NaN if V8 has no such space). */
  newSpace: number;
}

export type ServerMessage =
  | { type: 'ready'; port: number }
  | { type: 'mem'; mem: MemoryFigures }
  /** CPU time used so far (user + system), in microseconds. */
  | { type: 'cpu'; micros: number };
