/**
 * HandshakeParser: the HTTP/1.1 head of the opening handshake (RFC 6455 §4; message syntax from
 * RFC 9112). Bytes in, bytes out: it reads the request (server role) or the response (client
 * role) up to the blank line, reports it once as a value shaped like Node's
 * `http.IncomingMessage`, and from then on passes every byte through untouched, so that the frame
 * parser can be piped right after it.
 *
 * The head is bounded: once `maxHeaderSize` bytes came without the blank line, or the head has
 * more than `maxHeaders` header lines, the handshake fails with WS_ERR_HEADER_TOO_LARGE (431).
 * Any syntax error fails it with WS_ERR_INVALID_HANDSHAKE (400). Only CRLF ends a line: a bare
 * LF or CR anywhere in the head is refused (RFC 9112 §2.2 allows that strictness).
 */
import { Buffer } from 'node:buffer';
import { Defaults } from '../protocol/constants';
import type { Emitting } from '../protocol/events';
import { WebSocketError } from '../protocol/errors';
import { Stage } from '../stages/stage';

/** Header fields by lower-case name, with the duplicate rules of Node's `IncomingMessage.headers`. */
export type HeaderMap = Record<string, string | string[] | undefined>;

/** A parsed request head: the same shape as the fields of Node's `http.IncomingMessage` that we use. */
export interface UpgradeRequest {
  /** The method, as sent (methods are case-sensitive). */
  method: string;
  /** The request-target, as sent. */
  url: string;
  /** "1.1" for HTTP/1.1. */
  httpVersion: string;
  headers: HeaderMap;
  /** Names and values alternately, as received (names in their original case). */
  rawHeaders: string[];
}

/** A parsed response head, shaped like the fields of Node's `http.IncomingMessage` that we use. */
export interface UpgradeResponse {
  statusCode: number;
  /** The reason phrase ('' when there is none). */
  statusMessage: string;
  /** "1.1" for HTTP/1.1. */
  httpVersion: string;
  headers: HeaderMap;
  /** Names and values alternately, as received (names in their original case). */
  rawHeaders: string[];
}

/** Options of HandshakeParserCore and HandshakeParser. */
export interface HandshakeParserOptions {
  /** 'server' reads a request line, 'client' a status line. */
  role: 'server' | 'client';
  /**
   * Largest head accepted, in bytes, counting the start line, the header lines and the blank
   * line that ends the head. Default Defaults.maxHeaderSize (16 KiB).
   */
  maxHeaderSize?: number;
  /** Most header lines accepted. Default Defaults.maxHeaders (128). */
  maxHeaders?: number;
}

/** Outputs of HandshakeParserCore. */
export interface HandshakeParserHandler {
  /** The head, once, as soon as the blank line that ends it has arrived. */
  onHead(head: UpgradeRequest | UpgradeResponse): void;
  /** Bytes after the head: the rest of the chunk that ended it, then every later chunk as is. */
  onData(rest: Buffer): void;
}

enum State {
  /** Accumulating the head, looking for CRLFCRLF. */
  Head,
  /** The head was reported; every byte is passed on. */
  Body,
}

const CRLF = '\r\n';
/** The blank line that ends the head (RFC 9112 §2.1). */
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** Two LFs in a row can never occur in a valid head: the sign of a peer using bare LF endings. */
const BARE_LF_END = Buffer.from('\n\n', 'latin1');
/** First capacity of the accumulator, for a head that spans chunks. */
const INITIAL_CAPACITY = 1024;

/** tchar (RFC 9110 §5.6.2: token = 1*tchar) by character code: 1 for a tchar. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
const CR_CODE = 0x0d;
const LF_CODE = 0x0a;
const SP_CODE = 0x20;
const HTAB_CODE = 0x09;
const DEL_CODE = 0x7f;
const DOT_CODE = 0x2e;
const ONE_CODE = 0x31;
/** What follows the request-target: SP "HTTP/", then DIGIT "." DIGIT (RFC 9112 §2.3). */
const VERSION_PREFIX = ' HTTP/';
/** status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4); the last SP may be missing. */
const STATUS_LINE = /^HTTP\/(\d)\.(\d) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

/**
 * Fields whose duplicates Node's `IncomingMessage.headers` discards (it keeps the first); all
 * others except set-cookie (an array) and cookie (joined with '; ') are joined with ', '.
 */
const SINGLE_VALUED = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);

/** The first byte of a TLS handshake record (RFC 8446 §5.1, ContentType handshake(22)); no HTTP head starts with it. */
const TLS_HANDSHAKE_RECORD = 0x16;

function invalid(detail: string): WebSocketError {
  return new WebSocketError('WS_ERR_INVALID_HANDSHAKE', detail);
}

/** Adds one field to `headers` by Node's rules for duplicates. */
function addHeader(headers: HeaderMap, name: string, value: string): void {
  const existing = headers[name];
  if (existing === undefined) {
    headers[name] = name === 'set-cookie' ? [value] : value;
  } else if (Array.isArray(existing)) {
    existing.push(value);
  } else if (name === 'cookie') {
    headers[name] = `${existing}; ${value}`;
  } else if (!SINGLE_VALUED.has(name)) {
    headers[name] = `${existing}, ${value}`;
  }
}

/**
 * The I/O-free HTTP head parser. Feed it bytes with `write`; it calls `onHead` once, then
 * `onData` with every byte after the head.
 */
export class HandshakeParserCore {
  /** The first error met; once set, all further input is ignored. */
  error: WebSocketError | null = null;
  /** The parsed head, once it has arrived. */
  head: UpgradeRequest | UpgradeResponse | null = null;

  private readonly handler: HandshakeParserHandler;
  private readonly role: 'server' | 'client';
  private readonly maxHeaderSize: number;
  private readonly maxHeaders: number;
  private state = State.Head;
  /** Head bytes received so far when the head spans chunks (null until then). */
  private buffer: Buffer | null = null;
  /** Bytes used in `buffer`. */
  private size = 0;

  constructor(options: HandshakeParserOptions, handler: HandshakeParserHandler) {
    this.handler = handler;
    this.role = options.role;
    this.maxHeaderSize = options.maxHeaderSize ?? Defaults.maxHeaderSize;
    this.maxHeaders = options.maxHeaders ?? Defaults.maxHeaders;
  }

  /** Stops the parser with `err` unless it already failed. */
  fail(err: WebSocketError): void {
    if (this.error === null) this.error = err;
  }

  /** Processes one chunk; returns `this.error`. */
  write(chunk: Buffer): WebSocketError | null {
    if (this.error !== null) return this.error;
    if (chunk.length === 0) return null;
    if (this.state === State.Body) {
      this.handler.onData(chunk);
      return this.error;
    }

    // Only the first maxHeaderSize - prev bytes of this chunk can belong to a head within the limit.
    const prev = this.size;
    // A TLS record (content type 22, handshake) where an HTTP head must start: TLS to a plain
    // port. Said at once instead of waiting for a head end that never comes.
    if (prev === 0 && chunk[0] === TLS_HANDSHAKE_RECORD) {
      return this.stop(invalid(this.role === 'server' ? 'a TLS handshake on a plain port (wss:// to a ws:// server?)' : 'the server answered with TLS (use wss://)'));
    }
    const take = Math.min(chunk.length, this.maxHeaderSize - prev);
    let window: Buffer;
    if (prev === 0) {
      window = chunk.subarray(0, take); // the common case: the whole head in one chunk, no copy
    } else {
      this.append(chunk, take);
      window = this.buffer!.subarray(0, prev + take);
    }
    // The terminator may start up to 3 bytes before the new ones.
    const from = prev < 3 ? 0 : prev - 3;
    const end = window.indexOf(HEAD_END, from);
    if (end === -1) {
      if (window.indexOf(BARE_LF_END, prev === 0 ? 0 : prev - 1) !== -1) {
        return this.stop(invalid('a line ended with a bare LF; only CRLF is accepted'));
      }
      if (prev + take >= this.maxHeaderSize) {
        // No head within maxHeaderSize bytes: one more byte is needed at least, over the limit.
        return this.stop(new WebSocketError('WS_ERR_HEADER_TOO_LARGE', `no end of head within ${this.maxHeaderSize} bytes`));
      }
      if (prev === 0) this.append(chunk, take); // else already appended
      return null;
    }

    const headLength = end + HEAD_END.length;
    const text = window.toString('latin1', 0, end);
    this.buffer = null;
    this.size = 0;
    const head = this.parse(text);
    if (head instanceof WebSocketError) return this.stop(head);
    this.state = State.Body;
    this.head = head;
    this.handler.onHead(head);
    const restStart = headLength - prev; // where the bytes after the head start in this chunk
    if (this.error === null && restStart < chunk.length) this.handler.onData(chunk.subarray(restStart));
    return this.error;
  }

  private stop(err: WebSocketError): WebSocketError {
    this.buffer = null;
    this.fail(err);
    return this.error!;
  }

  /** Copies the first `count` bytes of `chunk` after the accumulated ones, growing by doubling. */
  private append(chunk: Buffer, count: number): void {
    const needed = this.size + count;
    if (this.buffer === null || this.buffer.length < needed) {
      let capacity = this.buffer === null ? INITIAL_CAPACITY : this.buffer.length * 2;
      while (capacity < needed) capacity *= 2;
      const grown = Buffer.allocUnsafe(Math.min(capacity, this.maxHeaderSize));
      if (this.buffer !== null) this.buffer.copy(grown, 0, 0, this.size);
      this.buffer = grown;
    }
    chunk.copy(this.buffer, this.size, 0, count);
    this.size = needed;
  }

  /**
   * Parses the head without its blank line: start line CRLF *( field-line CRLF ), the last CRLF
   * dropped. One pass over the characters for the line endings, then one per field line, with
   * index arithmetic and character tables instead of split() and regular expressions (this runs
   * once per connection).
   */
  private parse(text: string): UpgradeRequest | UpgradeResponse | WebSocketError {
    const n = text.length;
    // RFC 9112 §2.2: "A sender MUST NOT generate a bare CR"; we accept CRLF only, so any CR or LF
    // that is not a CRLF pair was bare.
    let fieldCount = 0;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === CR_CODE) {
        if (text.charCodeAt(i + 1) !== LF_CODE) return bareLineEnd();
        fieldCount++;
        i++;
      } else if (c === LF_CODE) {
        return bareLineEnd();
      }
    }
    if (fieldCount > this.maxHeaders) {
      return new WebSocketError('WS_ERR_HEADER_TOO_LARGE', `${fieldCount} header lines, over the limit of ${this.maxHeaders}`);
    }
    const headers: HeaderMap = Object.create(null) as HeaderMap;
    const rawHeaders: string[] = [];
    const startEnd = fieldCount === 0 ? n : text.indexOf(CRLF);
    for (let s = startEnd + 2; s <= n; ) {
      let e = text.indexOf(CRLF, s);
      if (e === -1) e = n;
      const first = text.charCodeAt(s);
      // RFC 9112 §5.2: obs-fold is deprecated; a server MUST reject it or unfold it. We reject.
      if (s === e || first === SP_CODE || first === HTAB_CODE) {
        return invalid(s === e ? 'an empty header line' : 'a folded header line (obs-fold)');
      }
      const colon = text.indexOf(':', s);
      if (colon === -1 || colon > e) {
        return invalid(`a header line without a colon: ${JSON.stringify(text.slice(s, Math.min(e, s + 64)))}`);
      }
      // RFC 9112 §5.1: "No whitespace is allowed between the field name and colon ... A server
      // MUST reject ... with a response status code of 400", hence the strict token check.
      let upper = false;
      let i = s;
      for (; i < colon; i++) {
        const c = text.charCodeAt(i);
        if (TCHAR[c] !== 1) break;
        if (c >= 0x41 && c <= 0x5a) upper = true;
      }
      const name = text.slice(s, colon);
      if (i < colon || colon === s) return invalid(`an invalid header name: ${JSON.stringify(name.slice(0, 64))}`);
      // The value without optional whitespace around it (RFC 9110 §5.6.3).
      let vs = colon + 1;
      while (vs < e && isOws(text.charCodeAt(vs))) vs++;
      let ve = e;
      while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
      // field-vchar (VCHAR / obs-text) with SP and HTAB inside (RFC 9110 §5.5).
      for (let j = vs; j < ve; j++) {
        const c = text.charCodeAt(j);
        if ((c < SP_CODE && c !== HTAB_CODE) || c === DEL_CODE) return invalid(`an invalid character in the value of ${name}`);
      }
      const value = text.slice(vs, ve);
      const key = upper ? name.toLowerCase() : name;
      // RFC 9112 §3.2: "A server MUST respond with a 400 ... to any HTTP/1.1 request message that
      // ... contains more than one Host header field line".
      if (key === 'host' && headers.host !== undefined && this.role === 'server') return invalid('more than one Host header');
      rawHeaders.push(name, value);
      addHeader(headers, key, value);
      s = e + 2;
    }
    if (this.role === 'server') return parseRequestLine(text, startEnd, headers, rawHeaders);
    const start = text.slice(0, startEnd);
    const m = STATUS_LINE.exec(start);
    if (m === null) return invalid(`an invalid status line: ${JSON.stringify(start.slice(0, 64))}`);
    return {
      statusCode: Number(m[3]!),
      statusMessage: m[4] ?? '',
      httpVersion: `${m[1]!}.${m[2]!}`,
      headers,
      rawHeaders,
    };
  }
}

function bareLineEnd(): WebSocketError {
  return invalid('a bare CR or LF in the head; only CRLF ends a line');
}

function isOws(c: number): boolean {
  return c === SP_CODE || c === HTAB_CODE;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * request-line = method SP request-target SP HTTP-version (RFC 9112 §3), in text[0, end):
 * method a token, the target visible ASCII (0x21-0x7E), the version HTTP/DIGIT.DIGIT.
 */
function parseRequestLine(text: string, end: number, headers: HeaderMap, rawHeaders: string[]): UpgradeRequest | WebSocketError {
  const sp1 = text.indexOf(' ');
  let ok = sp1 > 0 && sp1 < end;
  for (let i = 0; ok && i < sp1; i++) ok = TCHAR[text.charCodeAt(i)] === 1;
  let sp2 = sp1 + 1;
  if (ok) {
    while (sp2 < end && isVisible(text.charCodeAt(sp2))) sp2++;
    // The target is not empty, and ' HTTP/d.d' ends the line.
    ok =
      sp2 > sp1 + 1 &&
      end - sp2 === VERSION_PREFIX.length + 3 &&
      text.startsWith(VERSION_PREFIX, sp2) &&
      isDigit(text.charCodeAt(end - 3)) &&
      text.charCodeAt(end - 2) === DOT_CODE &&
      isDigit(text.charCodeAt(end - 1));
  }
  if (!ok) return invalid(`an invalid request line: ${JSON.stringify(text.slice(0, Math.min(end, 64)))}`);
  const major = text.charCodeAt(end - 3);
  const minor = text.charCodeAt(end - 1);
  return {
    method: text.slice(0, sp1),
    url: text.slice(sp1 + 1, sp2),
    httpVersion: major === ONE_CODE && minor === ONE_CODE ? '1.1' : `${text[end - 3]!}.${text[end - 1]!}`,
    headers,
    rawHeaders,
  };
}

function isVisible(c: number): boolean {
  return c >= 0x21 && c <= 0x7e;
}

/** The core's head as the stage's 'handshake' event, the bytes after it pushed (prototype methods, not closures per stage). */
class HeadToStream implements HandshakeParserHandler {
  constructor(private readonly stream: Stage) {}

  onHead(head: UpgradeRequest | UpgradeResponse): void {
    this.stream.emit('handshake', head);
  }

  onData(rest: Buffer): void {
    this.stream.deliver(rest);
  }
}

/** Events of a HandshakeParser, besides a Transform's own. */
export interface HandshakeParserEvents {
  /** The parsed head: an UpgradeRequest for the server role, an UpgradeResponse for the client role. */
  handshake: (head: UpgradeRequest | UpgradeResponse) => void;
}

/**
 * The stream stage: bytes in, bytes out. Emits `'handshake'` with the parsed head
 * (UpgradeRequest for the server role, UpgradeResponse for the client role) before pushing any
 * byte that follows it; those bytes are pushed untouched. Fails with the core's WebSocketError.
 */
export class HandshakeParser extends (Stage as Emitting<typeof Stage, HandshakeParserEvents>) {
  readonly core: HandshakeParserCore;

  constructor(options: HandshakeParserOptions) {
    super();
    this.core = new HandshakeParserCore(options, new HeadToStream(this));
  }

  protected override step(chunk: Buffer): WebSocketError | null {
    return this.core.write(chunk);
  }
}
