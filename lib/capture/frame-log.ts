/**
 * The NDJSON frame log: one JSON object per line and per frame, for taps, `wspipe proxy --tap`
 * and `wspipe replay`.
 *
 *   {"t":"2024-01-01T00:00:00.000Z","dir":"upstream","opcode":"text","fin":true,
 *    "rsv1":false,"rsv2":false,"rsv3":false,"len":5,"text":"Hello"}
 *
 * - `t`: ISO time at which the frame's first byte was seen; `dir`: 'in' | 'out' (one endpoint's
 *   view) or 'upstream' | 'downstream' (a proxy's view; 'upstream' is client -> server);
 * - `opcode`: 'continuation' | 'text' | 'binary' | 'close' | 'ping' | 'pong';
 * - `len`: the frame's whole payload length; the payload itself as `text` (a frame of an
 *   uncompressed text message whose logged bytes are valid UTF-8) or `base64` (anything else);
 * - `truncated: true` when only the first `maxLoggedPayload` bytes are logged;
 * - close frames also carry `code` and `reason` when their payload can be read;
 * - `conn`: the connection the frame belongs to (a proxy's connection number), when known;
 * - a compressed message (permessage-deflate, RSV1 on its first frame) is logged as ONE record
 *   with `inflated: true`: its inflated payload (`len` is the inflated length, `text`/`base64`
 *   the inflated bytes), beside the wire facts: `rsv1: true`, `wireLen` (the compressed payload
 *   bytes of all its frames) and `frames` (how many frames it took on the wire).
 *
 *   {dir, frame} (whole frames or pieces) --> [FrameLogWriter] --> NDJSON lines
 *   NDJSON bytes --> [FrameLogParser] --> FrameLogEntry {t, dir, frame, len, truncated}
 *
 * The writer accepts frames in pieces (FrameSplitter's `streaming` option) and keeps at most
 * `maxLoggedPayload` bytes per direction, copied, so a huge frame never grows its memory.
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { Transform } from '../stages/streams';
import { parseClosePayload } from '../protocol/close';
import { Opcode, isKnownOpcode } from '../protocol/constants';
import { WebSocketError } from '../protocol/errors';
import { Frame, isFirstPiece, isLastPiece, makeFrame } from '../protocol/frame';
import { isValidUtf8 } from '../protocol/utf8';

/** Which way a logged frame went. 'upstream' is client -> server, 'downstream' server -> client. */
export type FrameLogDirection = 'in' | 'out' | 'upstream' | 'downstream';

const DIRECTIONS: ReadonlySet<string> = new Set(['in', 'out', 'upstream', 'downstream']);

/** Opcode names used in the log. */
export type OpcodeName = 'continuation' | 'text' | 'binary' | 'close' | 'ping' | 'pong';

const OPCODE_NAMES = new Map<Opcode, OpcodeName>([
  [Opcode.Continuation, 'continuation'],
  [Opcode.Text, 'text'],
  [Opcode.Binary, 'binary'],
  [Opcode.Close, 'close'],
  [Opcode.Ping, 'ping'],
  [Opcode.Pong, 'pong'],
]);
const OPCODES = new Map<string, Opcode>([...OPCODE_NAMES].map(([opcode, name]) => [name, opcode]));

/** The name of an opcode in the log ('text', 'close', ...); a reserved opcode gives its hex value. */
export function opcodeName(opcode: Opcode): string {
  return OPCODE_NAMES.get(opcode) ?? `0x${(opcode as number).toString(16)}`;
}

/** One line of the log, as JSON. */
export interface FrameLogRecord {
  t: string;
  dir: FrameLogDirection;
  opcode: OpcodeName;
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  /** The frame's whole payload length. */
  len: number;
  text?: string;
  base64?: string;
  /** Present (true) when only the first bytes of the payload are logged. */
  truncated?: true;
  /** Close frames: the status code (1005 for an empty payload). */
  code?: number;
  /** Close frames: the reason. */
  reason?: string;
  /** The connection (a proxy's connection number). */
  conn?: number;
  /** Present (true) when the record is a whole compressed message, shown inflated. */
  inflated?: true;
  /** With `inflated`: the compressed payload bytes on the wire (all its frames). */
  wireLen?: number;
  /** With `inflated`: how many frames the message took on the wire. */
  frames?: number;
}

/** One frame read back from the log. */
export interface FrameLogEntry {
  /** The ISO time of the line. */
  readonly t: string;
  readonly dir: FrameLogDirection;
  /** The frame, whole, unmasked; when `truncated`, its payload is only the bytes logged. */
  readonly frame: Frame;
  /** The original payload length. */
  readonly len: number;
  readonly truncated: boolean;
  /** The connection number of the line's `conn`, or null when the line has none. */
  readonly conn: number | null;
  /**
   * The line is a compressed message shown inflated: `frame` is the whole message, uncompressed
   * (RSV1 clear, FIN set); `wireLen` is what it took on the wire, compressed.
   */
  readonly compressed: boolean;
  readonly wireLen: number;
}

/** What FrameLogWriter takes: a frame (or piece of one) and the way it went. */
export interface FrameLogInput {
  readonly dir: FrameLogDirection;
  readonly frame: Frame;
  /** When the frame was seen; default now (taken at its first piece). */
  readonly time?: Date;
}

/** Options of FrameLogWriterCore and FrameLogWriter. */
export interface FrameLogWriterOptions {
  /** Most payload bytes logged per frame; longer payloads are cut and marked truncated. Default 65536. */
  maxLoggedPayload?: number;
  /** The clock, injectable for specs. Default `() => new Date()`. */
  now?: () => Date;
}

/** Default of FrameLogWriterOptions.maxLoggedPayload: 64 KiB. */
export const DEFAULT_MAX_LOGGED_PAYLOAD = 64 * 1024;

export interface FrameLogWriterHandler {
  /** One record per complete frame, in the order the frames ended. */
  onRecord(record: FrameLogRecord): void;
}

/** Per direction: the frame being logged and the kind of the open message. */
interface DirectionState {
  /** The open data message is text and not compressed (its frames are logged as text). */
  textMessage: boolean;
  /** The frame under way: its time, and the first bytes of its payload. */
  time: Date;
  kept: Buffer;
  keptBytes: number;
}

const EMPTY = Buffer.alloc(0);

/** The I/O-free frame log writer: frames (or pieces) in, one record per frame out. */
export class FrameLogWriterCore {
  error: WebSocketError | null = null;
  private readonly handler: FrameLogWriterHandler;
  private readonly maxLogged: number;
  private readonly now: () => Date;
  private readonly states = new Map<FrameLogDirection, DirectionState>();

  constructor(options: FrameLogWriterOptions, handler: FrameLogWriterHandler) {
    this.handler = handler;
    this.maxLogged = options.maxLoggedPayload ?? DEFAULT_MAX_LOGGED_PAYLOAD;
    this.now = options.now ?? (() => new Date());
  }

  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
  }

  /** Logs one frame or piece; a record is produced when the frame's last piece arrives. */
  write(input: FrameLogInput): WebSocketError | null {
    if (this.error !== null) return this.error;
    const { frame, dir } = input;
    if (!DIRECTIONS.has(dir)) {
      this.fail(new WebSocketError('WS_ERR_INVALID_ARGUMENT', `unknown direction ${String(dir)}`));
      return this.error;
    }
    let state = this.states.get(dir);
    if (state === undefined) {
      state = { textMessage: false, time: new Date(0), kept: EMPTY, keptBytes: 0 };
      this.states.set(dir, state);
    }
    if (isFirstPiece(frame)) {
      state.time = input.time ?? this.now();
      state.kept = Buffer.allocUnsafe(Math.min(frame.length, this.maxLogged));
      state.keptBytes = 0;
      if (frame.opcode === Opcode.Text || frame.opcode === Opcode.Binary) {
        state.textMessage = frame.opcode === Opcode.Text && !frame.rsv1;
      }
    }
    // Keep (a copy of) the payload bytes that fall within the first maxLogged bytes.
    if (frame.offset < state.kept.length && frame.payload.length > 0) {
      const take = Math.min(frame.payload.length, state.kept.length - frame.offset);
      frame.payload.copy(state.kept, frame.offset, 0, take);
      state.keptBytes = frame.offset + take;
    }
    if (!isLastPiece(frame)) return this.error;
    const shown = state.kept.subarray(0, state.keptBytes);
    state.kept = EMPTY;
    const record: FrameLogRecord = {
      t: state.time.toISOString(),
      dir,
      opcode: (OPCODE_NAMES.get(frame.opcode) ?? 'binary') as OpcodeName,
      fin: frame.fin,
      rsv1: frame.rsv1,
      rsv2: frame.rsv2,
      rsv3: frame.rsv3,
      len: frame.length,
    };
    const text =
      (frame.opcode === Opcode.Text || (frame.opcode === Opcode.Continuation && state.textMessage)) &&
      !frame.rsv1 &&
      isValidUtf8(shown);
    if (text) record.text = shown.toString('utf8');
    else record.base64 = shown.toString('base64');
    if (shown.length < frame.length) record.truncated = true;
    if (frame.opcode === Opcode.Close && shown.length === frame.length) {
      const close = parseClosePayload(shown);
      if (!(close instanceof WebSocketError)) {
        record.code = close.code;
        record.reason = close.reason;
      }
    }
    this.handler.onRecord(record);
    return this.error;
  }
}

/** Frames in (FrameLogInput, object mode), NDJSON lines out (strings, each ending with '\n'). */
export class FrameLogWriter extends Transform {
  readonly core: FrameLogWriterCore;

  constructor(options: FrameLogWriterOptions = {}) {
    super({ writableObjectMode: true });
    this.core = new FrameLogWriterCore(options, { onRecord: (record) => this.push(`${JSON.stringify(record)}\n`) });
  }

  override _transform(chunk: FrameLogInput, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    cb(this.core.write(chunk) ?? undefined);
  }
}

function bad(detail: string): WebSocketError {
  return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `frame log: ${detail}`);
}

/** Reads one line of the log (without its newline). */
export function parseFrameLogLine(line: string): FrameLogEntry | WebSocketError {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return bad(`not JSON: ${JSON.stringify(line.slice(0, 64))}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('a line is not a JSON object');
  const r = value as Record<string, unknown>;
  if (typeof r.t !== 'string' || Number.isNaN(Date.parse(r.t))) return bad('"t" is not an ISO time');
  if (typeof r.dir !== 'string' || !DIRECTIONS.has(r.dir)) return bad(`unknown "dir" ${JSON.stringify(r.dir)}`);
  const opcode = typeof r.opcode === 'string' ? OPCODES.get(r.opcode) : undefined;
  if (opcode === undefined || !isKnownOpcode(opcode)) return bad(`unknown "opcode" ${JSON.stringify(r.opcode)}`);
  for (const flag of ['fin', 'rsv1', 'rsv2', 'rsv3'] as const) {
    if (typeof r[flag] !== 'boolean') return bad(`"${flag}" is not a boolean`);
  }
  if (typeof r.len !== 'number' || !Number.isSafeInteger(r.len) || r.len < 0) return bad('"len" is not a length');
  let payload: Buffer;
  if (typeof r.text === 'string') payload = Buffer.from(r.text, 'utf8');
  else if (typeof r.base64 === 'string') payload = Buffer.from(r.base64, 'base64');
  else return bad('neither "text" nor "base64"');
  const truncated = r.truncated === true;
  if (truncated ? payload.length > r.len : payload.length !== r.len) {
    return bad(`the payload has ${payload.length} bytes, "len" says ${r.len}`);
  }
  if (r.conn !== undefined && (typeof r.conn !== 'number' || !Number.isSafeInteger(r.conn))) return bad('"conn" is not a connection number');
  const conn = typeof r.conn === 'number' ? r.conn : null;
  if (r.inflated === true) {
    if (opcode !== Opcode.Text && opcode !== Opcode.Binary) return bad('an "inflated" line is not a text or binary message');
    if (typeof r.wireLen !== 'number' || !Number.isSafeInteger(r.wireLen) || r.wireLen < 0) return bad('"wireLen" is not a length');
    const frame = makeFrame(opcode, payload, { fin: true });
    return { t: r.t, dir: r.dir as FrameLogDirection, frame, len: r.len, truncated, conn, compressed: true, wireLen: r.wireLen };
  }
  const frame = makeFrame(opcode, payload, { fin: r.fin as boolean, rsv1: r.rsv1 as boolean, rsv2: r.rsv2 as boolean, rsv3: r.rsv3 as boolean });
  return { t: r.t, dir: r.dir as FrameLogDirection, frame, len: r.len, truncated, conn, compressed: false, wireLen: r.len };
}

/** Options of FrameLogParserCore and FrameLogParser. */
export interface FrameLogParserOptions {
  /** Longest line accepted, in bytes. Default 16 MiB. */
  maxLineLength?: number;
}

export interface FrameLogParserHandler {
  onEntry(entry: FrameLogEntry): void;
}

const NEWLINE = 0x0a;
const DEFAULT_MAX_LINE = 16 * 1024 * 1024;

/** The I/O-free log reader: bytes in, one entry per non-empty line out. */
export class FrameLogParserCore {
  error: WebSocketError | null = null;
  private readonly handler: FrameLogParserHandler;
  private readonly maxLine: number;
  /** Bytes of the line under way, from earlier chunks. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private lineNumber = 0;

  constructor(options: FrameLogParserOptions, handler: FrameLogParserHandler) {
    this.handler = handler;
    this.maxLine = options.maxLineLength ?? DEFAULT_MAX_LINE;
  }

  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
    this.partial = [];
  }

  write(chunk: Buffer): WebSocketError | null {
    let start = 0;
    while (this.error === null) {
      const end = chunk.indexOf(NEWLINE, start);
      if (end === -1) {
        if (start < chunk.length) {
          this.partial.push(chunk.subarray(start));
          this.partialBytes += chunk.length - start;
          if (this.partialBytes > this.maxLine) this.fail(bad(`line ${this.lineNumber + 1} is over ${this.maxLine} bytes`));
        }
        break;
      }
      let line = chunk.subarray(start, end);
      if (this.partial.length > 0) {
        this.partial.push(line);
        line = Buffer.concat(this.partial, this.partialBytes + line.length);
        this.partial = [];
        this.partialBytes = 0;
      }
      this.line(line);
      start = end + 1;
    }
    return this.error;
  }

  /** The input has ended: a last line without its newline is read too. */
  end(): WebSocketError | null {
    if (this.error === null && this.partial.length > 0) {
      const line = Buffer.concat(this.partial, this.partialBytes);
      this.partial = [];
      this.partialBytes = 0;
      this.line(line);
    }
    return this.error;
  }

  private line(bytes: Buffer): void {
    this.lineNumber++;
    if (bytes.length > this.maxLine) {
      this.fail(bad(`line ${this.lineNumber} is over ${this.maxLine} bytes`));
      return;
    }
    const text = bytes.toString('utf8').trim();
    if (text === '') return;
    const entry = parseFrameLogLine(text);
    if (entry instanceof WebSocketError) {
      this.fail(new WebSocketError('WS_ERR_INVALID_ARGUMENT', `line ${this.lineNumber}: ${entry.message}`));
      return;
    }
    this.handler.onEntry(entry);
  }
}

/** NDJSON bytes in, FrameLogEntry values out (object mode). */
export class FrameLogParser extends Transform {
  readonly core: FrameLogParserCore;

  constructor(options: FrameLogParserOptions = {}) {
    super({ readableObjectMode: true });
    this.core = new FrameLogParserCore(options, { onEntry: (entry) => this.push(entry) });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    cb(this.core.write(chunk) ?? undefined);
  }

  override _flush(cb: (error?: Error | null) => void): void {
    cb(this.core.end() ?? undefined);
  }
}

/**
 * Reads a whole log: its text, its lines, or (a string without a newline that names a file)
 * the file. Throws the WebSocketError of the first bad line.
 */
export function readFrameLog(source: string | readonly string[]): FrameLogEntry[] {
  const entries: FrameLogEntry[] = [];
  const core = new FrameLogParserCore({}, { onEntry: (entry) => entries.push(entry) });
  if (typeof source === 'string') {
    const bytes = source.includes('\n') || source.trimStart().startsWith('{') ? Buffer.from(source) : readFileSync(source);
    core.write(bytes);
  } else {
    for (const line of source) core.write(Buffer.from(`${line}\n`));
  }
  const err = core.end();
  if (err !== null) throw err;
  return entries;
}

/** One readable line for a record (`wspipe proxy --print`): time, direction, opcode, flags, payload. */
export function formatFrameLogRecord(record: FrameLogRecord, maxShown = 80): string {
  const flags = [record.fin ? 'fin' : 'more', record.rsv1 ? 'rsv1' : '', record.rsv2 ? 'rsv2' : '', record.rsv3 ? 'rsv3' : '']
    .filter((f) => f !== '')
    .join(',');
  const arrow = record.dir === 'upstream' || record.dir === 'out' ? '>' : '<';
  let shown: string;
  if (record.code !== undefined) shown = `${record.code} ${JSON.stringify(record.reason ?? '')}`;
  else if (record.text !== undefined) shown = JSON.stringify(record.text.length > maxShown ? `${record.text.slice(0, maxShown)}...` : record.text);
  else {
    const b64 = record.base64 ?? '';
    shown = `base64:${b64.length > maxShown ? `${b64.slice(0, maxShown)}...` : b64}`;
  }
  const cut = record.truncated === true ? ` (truncated: ${byteLength(record)} of ${record.len} bytes shown)` : '';
  const conn = record.conn === undefined ? '' : ` #${record.conn}`;
  const inflated = record.inflated === true ? ` inflated from ${record.wireLen ?? 0} bytes in ${record.frames ?? 1} frame(s)` : '';
  return `${record.t}${conn} ${arrow} ${record.dir} ${record.opcode} ${flags} len=${record.len}${inflated} ${shown}${cut}`;
}

function byteLength(record: FrameLogRecord): number {
  return record.text !== undefined ? Buffer.byteLength(record.text, 'utf8') : Buffer.from(record.base64 ?? '', 'base64').length;
}

/**
 * The record of a whole compressed message, shown inflated (see the header): `kept` is the first
 * bytes of the inflated payload (at most the log's limit), `size` its whole inflated length.
 */
export function inflatedRecord(m: {
  time: Date;
  dir: FrameLogDirection;
  opcode: Opcode.Text | Opcode.Binary;
  kept: Buffer;
  size: number;
  wireLen: number;
  frames: number;
  conn?: number;
}): FrameLogRecord {
  const record: FrameLogRecord = {
    t: m.time.toISOString(),
    dir: m.dir,
    opcode: m.opcode === Opcode.Text ? 'text' : 'binary',
    fin: true,
    rsv1: true,
    rsv2: false,
    rsv3: false,
    len: m.size,
  };
  if (m.opcode === Opcode.Text && isValidUtf8(m.kept)) record.text = m.kept.toString('utf8');
  else record.base64 = m.kept.toString('base64');
  if (m.kept.length < m.size) record.truncated = true;
  if (m.conn !== undefined) record.conn = m.conn;
  record.inflated = true;
  record.wireLen = m.wireLen;
  record.frames = m.frames;
  return record;
}
