/**
 * HAR 1.2 in and out, with the WebSocket extension Chrome DevTools writes (and HTTP Toolkit,
 * mitmproxy and others read): an entry per WebSocket connection, its request and response the
 * opening handshake (GET ... Upgrade, 101), and its messages in `_webSocketMessages`:
 *
 *   { "_resourceType": "websocket", "request": {...}, "response": { "status": 101, ... },
 *     "_webSocketMessages": [ { "type": "send" | "receive", "time": 1717236000.123,
 *                               "opcode": 1, "data": "hello" }, ... ] }
 *
 * `time` is in seconds since the epoch (a float); `data` is the text for opcode 1 and base64 for
 * any other opcode. Playwright's recordHar (1.65) writes `time` in MILLISECONDS since the epoch
 * instead (seen in its output); a time above 1e11 (the year 5138 in seconds, 1973 in
 * milliseconds) is read as milliseconds (harTime()).
 *
 * Custom fields start with "_" (HAR 1.2 §"Custom fields"); wspipe adds, when they apply:
 * `_webSocketClose` {client, upstream: {code, reason}} on the entry, and on a message `_size`
 * (its whole length) with `_truncated: true` when only the first bytes were kept.
 *
 *   readHar / parseHar: text or file -> Har (structure checked) -> webSocketEntries()
 *   harEntry(): a captured connection -> one entry;  HarWriter: entries -> a file that is valid
 *   JSON after every entry (each closed connection is written at once)
 *   replayHar(): the 'send' messages of one or all entries played against a server
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { Opcode } from '../protocol/constants';
import { WebSocketError, invalidArgument } from '../protocol/errors';
import { makeFrame } from '../protocol/frame';
import type { UpgradeRequest, UpgradeResponse } from '../handshake/handshake-parser';
import type { CapturedClose, CapturedMessage } from './capture';
import type { FrameLogEntry } from './frame-log';
import { ConnectionReplay, ReplayOptions, replayEntries } from './replay';

/** A name/value pair of HAR (headers, query string, cookies). */
export interface HarNameValue {
  name: string;
  value: string;
}

/** One message of `_webSocketMessages` (Chrome DevTools' format). */
export interface HarWebSocketMessage {
  type: 'send' | 'receive';
  /** Seconds since the epoch. */
  time: number;
  opcode: number;
  /** Text for opcode 1, base64 otherwise. */
  data: string;
  /** wspipe: the whole payload length, when only the first bytes are in `data`. */
  _size?: number;
  /** wspipe: only the first bytes of the payload are in `data`. */
  _truncated?: true;
}

export interface HarRequest {
  method: string;
  url: string;
  httpVersion: string;
  cookies: HarNameValue[];
  headers: HarNameValue[];
  queryString: HarNameValue[];
  headersSize: number;
  bodySize: number;
}

export interface HarResponse {
  status: number;
  statusText: string;
  httpVersion: string;
  cookies: HarNameValue[];
  headers: HarNameValue[];
  content: { size: number; mimeType: string; text?: string };
  redirectURL: string;
  headersSize: number;
  bodySize: number;
}

export interface HarEntry {
  startedDateTime: string;
  /** Milliseconds, the connection's whole life. */
  time: number;
  request: HarRequest;
  response: HarResponse;
  cache: Record<string, never>;
  timings: { blocked?: number; dns?: number; connect?: number; send: number; wait: number; receive: number; ssl?: number };
  serverIPAddress?: string;
  connection?: string;
  comment?: string;
  _resourceType?: string;
  _webSocketMessages?: HarWebSocketMessage[];
  _webSocketClose?: { client: { code: number; reason: string }; upstream: { code: number; reason: string } };
}

export interface Har {
  log: {
    version: string;
    creator: { name: string; version: string };
    pages?: unknown[];
    entries: HarEntry[];
    comment?: string;
  };
}

function bad(detail: string): WebSocketError {
  return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `HAR: ${detail}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNameValues = (v: unknown): boolean => Array.isArray(v) && v.every((p) => isObject(p) && typeof p.name === 'string' && typeof p.value === 'string');

/**
 * The structural check of HAR 1.2 (the fields the spec marks required, with their types) and of
 * `_webSocketMessages`. Returns the problems found, [] for a valid file.
 */
export function checkHar(value: unknown): string[] {
  const problems: string[] = [];
  const need = (ok: boolean, what: string): void => {
    if (!ok) problems.push(what);
  };
  if (!isObject(value) || !isObject(value.log)) return ['no "log" object'];
  const log = value.log;
  need(typeof log.version === 'string', 'log.version is not a string');
  need(isObject(log.creator) && typeof log.creator.name === 'string' && typeof log.creator.version === 'string', 'log.creator needs name and version');
  if (!Array.isArray(log.entries)) return [...problems, 'log.entries is not an array'];
  log.entries.forEach((e: unknown, i: number) => {
    const at = `log.entries[${i}]`;
    if (!isObject(e)) return problems.push(`${at} is not an object`);
    need(typeof e.startedDateTime === 'string' && !Number.isNaN(Date.parse(e.startedDateTime)), `${at}.startedDateTime is not an ISO 8601 date`);
    need(typeof e.time === 'number', `${at}.time is not a number`);
    need(isObject(e.cache), `${at}.cache is not an object`);
    const t = e.timings;
    need(isObject(t) && typeof t.send === 'number' && typeof t.wait === 'number' && typeof t.receive === 'number', `${at}.timings needs send, wait and receive`);
    const q = e.request;
    if (!isObject(q)) problems.push(`${at}.request is not an object`);
    else {
      need(typeof q.method === 'string' && typeof q.url === 'string' && typeof q.httpVersion === 'string', `${at}.request needs method, url and httpVersion`);
      need(isNameValues(q.cookies) && isNameValues(q.headers) && isNameValues(q.queryString), `${at}.request needs cookies, headers and queryString lists`);
      need(typeof q.headersSize === 'number' && typeof q.bodySize === 'number', `${at}.request needs headersSize and bodySize`);
    }
    const r = e.response;
    if (!isObject(r)) problems.push(`${at}.response is not an object`);
    else {
      need(typeof r.status === 'number' && typeof r.statusText === 'string' && typeof r.httpVersion === 'string', `${at}.response needs status, statusText and httpVersion`);
      need(isNameValues(r.cookies) && isNameValues(r.headers), `${at}.response needs cookies and headers lists`);
      need(isObject(r.content) && typeof r.content.size === 'number' && typeof r.content.mimeType === 'string', `${at}.response.content needs size and mimeType`);
      need(typeof r.redirectURL === 'string' && typeof r.headersSize === 'number' && typeof r.bodySize === 'number', `${at}.response needs redirectURL, headersSize and bodySize`);
    }
    if (e._webSocketMessages !== undefined) {
      if (!Array.isArray(e._webSocketMessages)) problems.push(`${at}._webSocketMessages is not an array`);
      else
        e._webSocketMessages.forEach((m: unknown, j: number) => {
          const ok =
            isObject(m) && (m.type === 'send' || m.type === 'receive') && typeof m.time === 'number' && typeof m.opcode === 'number' && typeof m.data === 'string';
          need(ok, `${at}._webSocketMessages[${j}] needs type "send"|"receive", time, opcode and data`);
        });
    }
    return undefined;
  });
  return problems;
}

/** Parses HAR text (or a value already parsed) and checks its structure; throws a WebSocketError naming the first problem. */
export function parseHar(source: string | unknown): Har {
  let value: unknown = source;
  if (typeof source === 'string') {
    try {
      value = JSON.parse(source.charCodeAt(0) === 0xfeff ? source.slice(1) : source);
    } catch (err) {
      throw bad(`not JSON (${(err as Error).message})`);
    }
  }
  const problems = checkHar(value);
  if (problems.length > 0) throw bad(`${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`);
  return value as Har;
}

/** Reads a HAR file (or HAR text: a string starting with "{"). */
export function readHar(fileOrText: string): Har {
  return parseHar(fileOrText.trimStart().startsWith('{') ? fileOrText : fs.readFileSync(fileOrText, 'utf8'));
}

/** The WebSocket entries of a HAR: `_resourceType` "websocket", or `_webSocketMessages`, or a ws(s):// URL. */
export function webSocketEntries(har: Har): HarEntry[] {
  return har.log.entries.filter(
    (e) => e._resourceType === 'websocket' || Array.isArray(e._webSocketMessages) || /^wss?:/i.test(e.request.url),
  );
}

// ----- Writing -----

/** The version in our package.json, for log.creator. */
function ourVersion(): string {
  // lib/capture/har.ts and dist/lib/capture/har.js: the package.json is two or three levels up.
  for (const up of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(require.resolve(up), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'wspipe' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: the next level
    }
  }
  return 'unknown';
}

/** An empty HAR 1.2 log created by wspipe. */
export function emptyHar(): Har {
  return { log: { version: '1.2', creator: { name: 'wspipe', version: ourVersion() }, entries: [] } };
}

function headerList(raw: readonly string[] | undefined, headers: Record<string, string | string[] | undefined>): HarNameValue[] {
  if (raw !== undefined && raw.length > 0) {
    const out: HarNameValue[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) out.push({ name: raw[i]!, value: raw[i + 1]! });
    return out;
  }
  const out: HarNameValue[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push({ name, value: v });
  }
  return out;
}

function queryOf(url: URL): HarNameValue[] {
  return [...url.searchParams].map(([name, value]) => ({ name, value }));
}

/** A captured message in Chrome's format. */
export function harMessage(m: CapturedMessage): HarWebSocketMessage {
  const out: HarWebSocketMessage = {
    type: m.dir === 'upstream' ? 'send' : 'receive',
    time: m.time.getTime() / 1000,
    opcode: m.opcode,
    data: m.opcode === Opcode.Text ? m.data.toString('utf8') : m.data.toString('base64'),
  };
  if (m.truncated) {
    out._size = m.size;
    out._truncated = true;
  }
  return out;
}

/** What harEntry() needs to know of a connection. */
export interface HarConnection {
  readonly id: number;
  readonly request: UpgradeRequest;
  readonly response: UpgradeResponse;
  /** The URL the client asked for (scheme ws or wss, its Host, its request-target). */
  readonly url: string;
  readonly started: Date;
  readonly messages: readonly HarWebSocketMessage[];
  readonly close: CapturedClose | null;
  readonly serverIPAddress?: string | undefined;
}

/** One HAR entry for a proxied connection: the handshake as request and response, its messages. */
export function harEntry(c: HarConnection): HarEntry {
  const url = new URL(c.url);
  const ended = c.close?.time ?? new Date();
  const duration = Math.max(0, ended.getTime() - c.started.getTime());
  const entry: HarEntry = {
    startedDateTime: c.started.toISOString(),
    time: duration,
    request: {
      method: c.request.method,
      url: c.url,
      httpVersion: `HTTP/${c.request.httpVersion}`,
      cookies: [],
      headers: headerList(c.request.rawHeaders, c.request.headers),
      queryString: queryOf(url),
      headersSize: -1,
      bodySize: 0,
    },
    response: {
      status: c.response.statusCode,
      statusText: c.response.statusMessage,
      httpVersion: `HTTP/${c.response.httpVersion ?? '1.1'}`,
      cookies: [],
      headers: headerList((c.response as { rawHeaders?: string[] }).rawHeaders, c.response.headers),
      content: { size: 0, mimeType: 'x-unknown' },
      redirectURL: '',
      headersSize: -1,
      bodySize: 0,
    },
    cache: {},
    timings: { blocked: -1, dns: -1, connect: -1, send: 0, wait: 0, receive: duration, ssl: -1 },
    connection: String(c.id),
    _resourceType: 'websocket',
    _webSocketMessages: [...c.messages],
  };
  if (c.serverIPAddress !== undefined) entry.serverIPAddress = c.serverIPAddress;
  if (c.close !== null) entry._webSocketClose = { client: c.close.client, upstream: c.close.upstream };
  return entry;
}

/**
 * Writes a HAR file entry by entry: the file is valid JSON after each add() (the entries array
 * is rewritten in place at its end), so a proxy stopped at any time between two connections
 * leaves a complete file. Writes are synchronous and in order.
 */
export class HarWriter {
  readonly path: string;
  private readonly fd: number;
  /** Where the closing "]}}" starts. */
  private end: number;
  private count = 0;
  private closed = false;

  constructor(path: string, har: Har = emptyHar()) {
    this.path = path;
    const { entries: _ignored, ...rest } = har.log;
    const head = JSON.stringify({ ...har, log: { ...rest, entries: [] } }, null, 2);
    // The entries array is the last member of "log": split the text there.
    const cut = head.lastIndexOf('[]');
    if (cut === -1 || !head.slice(cut + 2).replace(/\s/g, '').startsWith('}}')) throw invalidArgument('HarWriter: the HAR given cannot be appended to (its log must be a plain object)');
    const opening = `${head.slice(0, cut)}[\n`;
    this.fd = fs.openSync(path, 'w');
    fs.writeSync(this.fd, opening);
    this.end = Buffer.byteLength(opening);
    fs.writeSync(this.fd, '\n]}}\n', this.end);
  }

  /** Entries written. */
  get entries(): number {
    return this.count;
  }

  add(entry: HarEntry): void {
    if (this.closed) throw new WebSocketError('WS_ERR_INVALID_STATE', 'HarWriter is closed');
    const text = `${this.count === 0 ? '' : ',\n'}${JSON.stringify(entry)}`;
    const bytes = Buffer.from(`${text}\n]}}\n`);
    fs.writeSync(this.fd, bytes, 0, bytes.length, this.end);
    this.end += Buffer.byteLength(text);
    this.count++;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

// ----- Replaying -----

/** Options of replayHar. */
export interface HarReplayOptions extends ReplayOptions {
  /** The server; default: each entry's own request URL. */
  url?: string | URL;
  /** The entry to play (0-based among the WebSocket entries). Default: all, each on its own connection, concurrently. */
  entry?: number;
}

/**
 * Plays the client's ('send') messages of the WebSocket entries of a HAR (a Har, its text or a
 * file) against a server: each entry on its own connection, concurrently; with `timing`, with
 * the original gaps (scaled by `speed`), entries starting as late as they did. The subprotocols
 * the entry's request offered are offered again; messages are sent as messages (compressed when
 * the server accepts permessage-deflate, which is offered). Opcodes other than 1 and 2 are skipped.
 */
export async function replayHar(source: Har | string, options: HarReplayOptions = {}): Promise<ConnectionReplay[]> {
  const har = typeof source === 'string' ? readHar(source) : parseHar(source);
  const all = webSocketEntries(har);
  let chosen: Array<[number, HarEntry]> = all.map((e, i) => [i, e]);
  if (options.entry !== undefined) {
    const e = all[options.entry];
    if (e === undefined) throw bad(`no WebSocket entry ${options.entry} (it has ${all.length})`);
    chosen = [[options.entry, e]];
  }
  const plays = chosen.map(([index, e]) => ({ index, e, entries: toEntries(e, index) }));
  const times = plays.flatMap((p) => p.entries.map((x) => Date.parse(x.t)));
  const logStart = times.length > 0 ? Math.min(...times) : 0;
  return Promise.all(
    plays.map(async ({ index, e, entries }): Promise<ConnectionReplay> => {
      const offered = e.request.headers.find((h) => h.name.toLowerCase() === 'sec-websocket-protocol')?.value;
      const protocols = offered === undefined ? undefined : offered.split(',').map((p) => p.trim()).filter((p) => p !== '');
      const url = options.url ?? e.request.url;
      try {
        const result = await replayEntries(entries, url, { protocols, ...options, logStart });
        return { connection: index, frames: entries.length, result };
      } catch (err) {
        return { connection: index, frames: entries.length, result: err as Error };
      }
    }),
  );
}

/** A `_webSocketMessages` time in milliseconds since the epoch: seconds (Chrome), or milliseconds (Playwright). */
export function harTime(time: number): number {
  return time > 1e11 ? time : time * 1000;
}

/** An entry's 'send' messages as frame-log entries sent as messages. */
function toEntries(e: HarEntry, index: number): FrameLogEntry[] {
  const out: FrameLogEntry[] = [];
  for (const m of e._webSocketMessages ?? []) {
    if (m.type !== 'send' || (m.opcode !== Opcode.Text && m.opcode !== Opcode.Binary)) continue;
    const payload = m.opcode === Opcode.Text ? Buffer.from(m.data, 'utf8') : Buffer.from(m.data, 'base64');
    const truncated = m._truncated === true;
    out.push({
      t: new Date(harTime(m.time)).toISOString(),
      dir: 'upstream',
      frame: makeFrame(m.opcode, payload),
      len: truncated && typeof m._size === 'number' ? m._size : payload.length,
      truncated,
      conn: index,
      compressed: true,
      wireLen: payload.length,
    });
  }
  return out;
}
