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
  const all: readonly FrameLogEntry[] =
    typeof source === 'string' || (source.length > 0 && typeof source[0] === 'string')
      ? readFrameLog(source as string | readonly string[])
      : (source as readonly FrameLogEntry[]);
  const directions = new Set(options.directions ?? ['upstream']);
  const entries = all.filter((entry) => directions.has(entry.dir));
  for (const entry of entries) {
    const f = entry.frame;
    if (f.rsv1 || f.rsv2 || f.rsv3) {
      throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `a frame at ${entry.t} has RSV bits set (an extension): it cannot be replayed`);
    }
    if (entry.truncated && options.allowTruncated !== true) {
      throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `a frame at ${entry.t} is truncated in the log (allowTruncated sends it cut)`);
    }
  }

  const ws = connect(url, options);
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

  await play(ws, entries, options, result, closed);
  await closed;
  return result;
}

async function play(
  ws: WebSocket,
  entries: readonly FrameLogEntry[],
  options: ReplayOptions,
  result: ReplayResult,
  closed: Promise<void>,
): Promise<void> {
  const internals = ws as unknown as ClientInternals;
  let gone = false;
  void closed.then(() => (gone = true));
  const speed = options.speed ?? 1;
  const start = Date.now();
  const first = entries.length > 0 ? Date.parse(entries[0]!.t) : 0;
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
