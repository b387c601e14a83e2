/**
 * replay(): plays the client -> server frames of a frame log (lib/capture/frame-log.ts) back against a
 * server with our client, frame by frame (fragmentation kept), optionally with the original
 * timing, and resolves with what came back.
 *
 *   log lines --> readFrameLog --> entries (dir 'upstream') --> connect(url) --> frames out
 *                                                                        messages, pings, close <--
 *
 * Close frames in the log close the connection with their code and reason; a log without one
 * ends with a close 1000 once every frame is sent, and the messages the server sends before its
 * close answer are still collected (RFC 6455 §7.1.2: the closing side keeps reading).
 *
 * Connections: a log written by a proxy holds several, told apart by `conn`. replay() plays one
 * (`connection`, or the only one); replayAll() plays each on its own connection, concurrently
 * (with `timing`, each starts when it started in the log).
 *
 * Compressed messages (logged inflated, `inflated: true`) are sent as messages, so the client
 * compresses them again when the server accepts permessage-deflate (offered whenever the log
 * has any); other frames are sent as they are.
 */
import { Buffer } from 'node:buffer';
import { connect, ClientOptions } from '../client/client';
import { parseClosePayload } from '../protocol/close';
import { CloseCode, Opcode } from '../protocol/constants';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import { Frame, Message, makeFrame } from '../protocol/frame';
import { FrameLogDirection, FrameLogEntry, readFrameLog } from './frame-log';
import type { Sender } from '../connection/sender';
import { ReadyState } from '../connection/websocket';
import type { WebSocket } from '../connection/websocket';

export interface ReplayOptions extends ClientOptions {
  /** Keep the original gaps between frames (from the log's `t`). Default false: send at once. */
  timing?: boolean;
  /** With `timing`, play this many times faster (2: half the gaps). Default 1. */
  speed?: number;
  /** The directions played back. Default ['upstream'] (a proxy's client -> server frames). */
  directions?: readonly FrameLogDirection[];
  /** Send truncated frames with the bytes logged (their length changes). Default false: refuse such logs. */
  allowTruncated?: boolean;
  /** The connection (`conn` of the log) to play. Default: the log's only one (replay() refuses a log of several). */
  connection?: number;
  /** @internal The log's first time (ms since the epoch), for timing across connections. */
  logStart?: number;
}

/** What replayAll() says of one connection of the log. */
export interface ConnectionReplay {
  /** The log's `conn` (null: lines without one). */
  connection: number | null;
  /** The frames of the log played for it. */
  frames: number;
  /** What the server answered, or why it could not be played. */
  result: ReplayResult | Error;
}

/** What the server answered. */
export interface ReplayResult {
  /** Frames sent (the close frame included). */
  sent: number;
  /** Data messages received, in order. */
  messages: Message[];
  /** Payloads of the pings and pongs received. */
  pings: Buffer[];
  pongs: Buffer[];
  /** The close code and reason the connection ended with (1006: no close frame). */
  code: number;
  reason: string;
  /** The subprotocol the server chose ('' for none). */
  protocol: string;
}

/** The connection's outbound chain, for frames sent as they are (no public API sends a raw frame yet). */
interface ClientInternals {
  sender: Sender | null;
  transport: { once(event: 'drain', listener: () => void): unknown } | null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Replays `source` (a file path, the log's text, its lines, or entries already read) against
 * `url`. Rejects before connecting when the log has frames that cannot be played (RSV bits set,
 * which need an extension our client does not negotiate; truncated payloads unless
 * allowTruncated), and when the handshake fails.
 */
export async function replay(
  source: string | readonly string[] | readonly FrameLogEntry[],
  url: string | URL,
  options: ReplayOptions = {},
): Promise<ReplayResult> {
  const groups = connectionsOf(entriesOf(source), options);
  let chosen: FrameLogEntry[];
  if (options.connection !== undefined) {
    const group = groups.get(options.connection);
    if (group === undefined) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `the log has no connection ${options.connection}`);
    chosen = group;
  } else if (groups.size > 1) {
    const ids = [...groups.keys()].join(', ');
    throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `the log has ${groups.size} connections (${ids}): choose one with connection, or use replayAll()`);
  } else {
    chosen = [...groups.values()][0] ?? [];
  }
  return replayEntries(chosen, url, options);
}

/**
 * Replays every connection of the log, each on its own connection, all at once (with `timing`,
 * each starts as late as it did in the log). Resolves when all are done, in the log's order;
 * a connection that cannot be played has its Error as `result`.
 */
export async function replayAll(
  source: string | readonly string[] | readonly FrameLogEntry[],
  url: string | URL,
  options: ReplayOptions = {},
): Promise<ConnectionReplay[]> {
  const all = entriesOf(source);
  const groups = connectionsOf(all, options);
  const origin = all.length > 0 ? Date.parse(all[0]!.t) : 0;
  return Promise.all(
    [...groups].map(async ([id, entries]): Promise<ConnectionReplay> => {
      const connection = id === NO_CONN ? null : id;
      try {
        return { connection, frames: entries.length, result: await replayEntries(entries, url, { ...options, logStart: origin }) };
      } catch (err) {
        return { connection, frames: entries.length, result: err as Error };
      }
    }),
  );
}

/** The key of lines without `conn`. */
const NO_CONN = -1;

function entriesOf(source: string | readonly string[] | readonly FrameLogEntry[]): readonly FrameLogEntry[] {
  return typeof source === 'string' || (source.length > 0 && typeof source[0] === 'string')
    ? readFrameLog(source as string | readonly string[])
    : (source as readonly FrameLogEntry[]);
}

/** The entries to play, by connection, in the order the connections first appear in the log. */
function connectionsOf(all: readonly FrameLogEntry[], options: ReplayOptions): Map<number, FrameLogEntry[]> {
  const directions = new Set(options.directions ?? ['upstream']);
  const groups = new Map<number, FrameLogEntry[]>();
  for (const entry of all) {
    const id = entry.conn ?? NO_CONN;
    let group = groups.get(id);
    if (group === undefined) groups.set(id, (group = []));
    if (directions.has(entry.dir)) group.push(entry);
  }
  return groups;
}

/**
 * @internal Plays entries already chosen (one connection's) against `url`: what replay(),
 * replayAll() and replayHar() share.
 */
export async function replayEntries(entries: readonly FrameLogEntry[], url: string | URL, options: ReplayOptions): Promise<ReplayResult> {
  for (const entry of entries) {
    const f = entry.frame;
    if (f.rsv1 || f.rsv2 || f.rsv3) {
      throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `a frame at ${entry.t} has RSV bits set (an extension): it cannot be replayed`);
    }
    if (entry.truncated && options.allowTruncated !== true) {
      throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `a frame at ${entry.t} is truncated in the log (allowTruncated sends it cut)`);
    }
  }

  const clockStart = Date.now();
  const logStart = options.logStart ?? (entries.length > 0 ? Date.parse(entries[0]!.t) : 0);
  if (options.timing === true && entries.length > 0) {
    const wait = (Date.parse(entries[0]!.t) - logStart) / (options.speed ?? 1);
    if (wait > 0) await sleep(wait);
  }
  const compressed = entries.some((entry) => entry.compressed);
  const ws = connect(url, compressed && options.perMessageDeflate === undefined ? { ...options, perMessageDeflate: true } : options);
  const result: ReplayResult = { sent: 0, messages: [], pings: [], pongs: [], code: CloseCode.Abnormal, reason: '', protocol: '' };
  ws.on('message', (data: string | Buffer, binary: boolean) => {
    result.messages.push({ binary, data: typeof data === 'string' ? Buffer.from(data, 'utf8') : data });
  });
  ws.on('ping', (payload: Buffer) => result.pings.push(payload));
  ws.on('pong', (payload: Buffer) => result.pongs.push(payload));
  let handshakeError: Error | null = null;
  ws.on('error', (err: Error) => {
    if (handshakeError === null) handshakeError = err;
  });
  const closed = new Promise<void>((resolve) =>
    ws.once('close', (code: number, reason: string) => {
      result.code = code;
      result.reason = reason;
      resolve();
    }),
  );
  const opened = await Promise.race([
    new Promise<boolean>((resolve) => ws.once('open', () => resolve(true))),
    closed.then(() => false),
  ]);
  if (!opened) throw handshakeError ?? new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'closed during the handshake');
  result.protocol = ws.protocol;

  await play(ws, entries, { ...options, logStart, clockStart }, result, closed);
  await closed;
  return result;
}

async function play(
  ws: WebSocket,
  entries: readonly FrameLogEntry[],
  options: ReplayOptions & { logStart: number; clockStart: number },
  result: ReplayResult,
  closed: Promise<void>,
): Promise<void> {
  const internals = ws as unknown as ClientInternals;
  let gone = false;
  void closed.then(() => (gone = true));
  const speed = options.speed ?? 1;
  const start = options.clockStart;
  const first = options.logStart;
  for (const entry of entries) {
    if (gone || ws.readyState !== ReadyState.OPEN) return;
    if (options.timing === true) {
      const due = start + (Date.parse(entry.t) - first) / speed;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      if (gone || ws.readyState !== ReadyState.OPEN) return;
    }
    const f = entry.frame;
    if (f.opcode === Opcode.Close) {
      const close = parseClosePayload(f.payload);
      result.sent++;
      if (isWebSocketError(close) || close.code === CloseCode.NoStatus) ws.close();
      else ws.close(close.code, close.reason);
      return;
    }
    if (entry.compressed) {
      // Sent as a message: compressed again when the server accepted permessage-deflate. The
      // next frame waits until it is out (zlib is asynchronous, raw frames would overtake it).
      const sent = new Promise<void>((resolve) => ws.send(f.payload, { binary: f.opcode === Opcode.Binary }, () => resolve()));
      result.sent++;
      await Promise.race([sent, closed]);
      continue;
    }
    const frame: Frame = makeFrame(f.opcode, f.payload, { fin: f.fin });
    const flowing = internals.sender!.sendFrame(frame);
    result.sent++;
    if (!flowing && internals.transport !== null) {
      const transport = internals.transport;
      await Promise.race([new Promise<void>((resolve) => transport.once('drain', resolve)), closed]);
    }
  }
  if (!gone && ws.readyState === ReadyState.OPEN) ws.close(CloseCode.Normal);
}
