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
import { Transform } from 'readable-stream';
import { Defaults } from './constants';
import { WebSocketError } from './errors';

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

/** token = 1*tchar (RFC 9110 §5.6.2). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value after trimming: field-vchar (VCHAR / obs-text) with SP and HTAB inside (RFC 9110 §5.5). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** request-line = method SP request-target SP HTTP-version (RFC 9112 §3). */
const REQUEST_LINE = /^([^ ]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/;
/** status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4); the last SP may be missing. */
const STATUS_LINE = /^HTTP\/(\d)\.(\d) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/;
/** Optional whitespace around a field value (RFC 9110 §5.6.3). */
const OWS_START = /^[ \t]+/;
const OWS_END = /[ \t]+$/;

/**
 * Fields whose duplicates Node's `IncomingMessage.headers` discards (it keeps the first); all
 * others except set-cookie (an array) and cookie (joined with '; ') are joined with ', '.
 */
const SINGLE_VALUED = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host',
  'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards',
  'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent',
]);

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

  /** Parses the head without its blank line: start line CRLF *( field-line CRLF ), the last CRLF dropped. */
  private parse(text: string): UpgradeRequest | UpgradeResponse | WebSocketError {
    const lines = text.split(CRLF);
    // RFC 9112 §2.2: "A sender MUST NOT generate a bare CR"; we accept CRLF only, so any CR or LF
    // left inside a line was bare.
    for (const line of lines) {
      if (line.includes('\r') || line.includes('\n')) return invalid('a bare CR or LF in the head; only CRLF ends a line');
    }
    const fieldCount = lines.length - 1;
    if (fieldCount > this.maxHeaders) {
      return new WebSocketError('WS_ERR_HEADER_TOO_LARGE', `${fieldCount} header lines, over the limit of ${this.maxHeaders}`);
    }
    const headers: HeaderMap = Object.create(null) as HeaderMap;
    const rawHeaders: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      // RFC 9112 §5.2: obs-fold is deprecated; a server MUST reject it or unfold it. We reject.
      if (line.length === 0 || line[0] === ' ' || line[0] === '\t') {
        return invalid(line.length === 0 ? 'an empty header line' : 'a folded header line (obs-fold)');
      }
      const colon = line.indexOf(':');
      if (colon === -1) return invalid(`a header line without a colon: ${JSON.stringify(line.slice(0, 64))}`);
      const name = line.slice(0, colon);
      // RFC 9112 §5.1: "No whitespace is allowed between the field name and colon ... A server
      // MUST reject ... with a response status code of 400", hence the strict token check.
      if (!TOKEN.test(name)) return invalid(`an invalid header name: ${JSON.stringify(name.slice(0, 64))}`);
      const value = line.slice(colon + 1).replace(OWS_START, '').replace(OWS_END, '');
      if (!FIELD_VALUE.test(value)) return invalid(`an invalid character in the value of ${name}`);
      const key = name.toLowerCase();
      // RFC 9112 §3.2: "A server MUST respond with a 400 ... to any HTTP/1.1 request message that
      // ... contains more than one Host header field line".
      if (key === 'host' && headers.host !== undefined && this.role === 'server') return invalid('more than one Host header');
      rawHeaders.push(name, value);
      addHeader(headers, key, value);
    }
    const start = lines[0]!;
    if (this.role === 'server') {
      const m = REQUEST_LINE.exec(start);
      if (m === null || !TOKEN.test(m[1]!)) return invalid(`an invalid request line: ${JSON.stringify(start.slice(0, 64))}`);
      return { method: m[1]!, url: m[2]!, httpVersion: `${m[3]!}.${m[4]!}`, headers, rawHeaders };
    }
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

/**
 * The stream stage: bytes in, bytes out. Emits `'handshake'` with the parsed head
 * (UpgradeRequest for the server role, UpgradeResponse for the client role) before pushing any
 * byte that follows it; those bytes are pushed untouched. Fails with the core's WebSocketError.
 */
export class HandshakeParser extends Transform {
  readonly core: HandshakeParserCore;

  constructor(options: HandshakeParserOptions) {
    super();
    this.core = new HandshakeParserCore(options, {
      onHead: (head) => {
        this.emit('handshake', head);
      },
      onData: (rest) => {
        this.push(rest);
      },
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    cb(this.core.write(chunk) ?? undefined);
  }
}
