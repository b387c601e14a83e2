/**
 * The opening handshake (RFC 6455 §4) as pure functions: validate a client's request and build
 * the server's answer; build a client's request and validate the server's answer. No I/O: the
 * heads come from HandshakeParser (or from Node's http 'upgrade' event, which has the same
 * shape) and the built heads are strings for the caller to write as UTF-8.
 *
 * Validation failures are returned, never thrown, as a WebSocketError whose `status` (when it
 * has one) is the HTTP status for buildRejectResponse. Builders throw a TypeError (code
 * WS_ERR_INVALID_ARGUMENT, see invalidArgument in lib/protocol/errors.ts) for values
 * that cannot go in a header (CR, LF or another control character: header injection), because
 * that is a programming error, not a peer's fault.
 */
import { Buffer } from 'node:buffer';
import * as crypto from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { WEBSOCKET_GUID, WEBSOCKET_VERSION } from '../protocol/constants';
import { WebSocketError, invalidArgument } from '../protocol/errors';
import type { HeaderMap } from './handshake-parser';
export type { HeaderMap, UpgradeRequest, UpgradeResponse } from './handshake-parser';
import { randomBytes } from '../protocol/mask';

/** RFC 6455 §4.1: the nonce is "a randomly selected 16-byte value that has been base64-encoded". */
const KEY_BYTES = 16;
/** 16 bytes in base64: 22 characters, then '==' padding. */
const KEY_LENGTH = 24;
/** The base64 alphabet (RFC 4648 §4) by character code: the value of each digit plus 1, 0 for none. */
const BASE64_DIGIT = new Uint8Array(128);
const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
for (let i = 0; i < BASE64_ALPHABET.length; i++) BASE64_DIGIT[BASE64_ALPHABET.charCodeAt(i)] = i + 1;
const EQUALS = 0x3d;
/** Sec-WebSocket-Version: the one version we speak. */
const VERSION_13 = String(WEBSOCKET_VERSION);
/** token = 1*tchar (RFC 9110 §5.6.2). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** request-target in origin-form (RFC 9112 §3.2.1): starts with '/', visible ASCII only. */
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
/** host[:port]: visible ASCII only. */
const HOST = /^[\x21-\x7e]+$/;
const HTTP_VERSION = /^(\d+)\.(\d+)$/;
const SWITCHING_PROTOCOLS = 101;
const UPGRADE_REQUIRED = 426;

/**
 * One element of a Sec-WebSocket-Extensions list (RFC 6455 §9.1): the extension's name and its
 * parameters in order (a parameter may repeat). A parameter without a value is `true`.
 */
export interface ExtensionOffer {
  name: string;
  params: Array<[string, string | true]>;
}

/** What validateUpgradeRequest learned from a valid request. */
export interface UpgradeInfo {
  /** Sec-WebSocket-Key, as sent. */
  key: string;
  /** Sec-WebSocket-Version: always 13. */
  version: number;
  /** The subprotocols offered (Sec-WebSocket-Protocol, every header), in the client's order. */
  protocols: string[];
  /** The extensions offered (Sec-WebSocket-Extensions, every header), in order. */
  extensions: ExtensionOffer[];
  origin: string | undefined;
  host: string | undefined;
}

/** The fields of a request that validateUpgradeRequest reads: an UpgradeRequest or a Node IncomingMessage. */
export interface UpgradeRequestLike {
  method?: string | undefined;
  httpVersion: string;
  headers: HeaderMap;
  /** When given, used to refuse a repeated Sec-WebSocket-Key that the headers object would hide. */
  rawHeaders?: readonly string[] | undefined;
}

/** The fields of a response that validateUpgradeResponse reads: an UpgradeResponse or a Node IncomingMessage. */
export interface UpgradeResponseLike {
  statusCode?: number | undefined;
  statusMessage?: string | undefined;
  headers: HeaderMap;
}

/** What the client offered, for validateUpgradeResponse. */
export interface ClientOffer {
  /** The Sec-WebSocket-Key sent. */
  key: string;
  /** The subprotocols offered (may be empty). */
  protocols: readonly string[];
  /** The extensions offered (may be empty). */
  extensions: readonly ExtensionOffer[];
}

/** Extra header fields for a built head; an array value becomes one line per element. */
export type ExtraHeaders = Record<string, string | readonly string[]>;

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64 of the SHA-1 of key + GUID (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  // crypto.hash (Node 20.12+) hashes in one call, without a Hash object; it encodes a string as
  // UTF-8, which is the same bytes as latin1 for ASCII, hence the check.
  if (oneShotHash !== undefined && isAscii(key)) return oneShotHash('sha1', key + WEBSOCKET_GUID, 'base64');
  return crypto.createHash('sha1').update(key + WEBSOCKET_GUID, 'latin1').digest('base64');
}

const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64') => string }).hash;

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * Is `key` canonical base64 of 16 bytes: 22 digits of the base64 alphabet then '==', the last
 * digit carrying zero pad bits (so that decoding and encoding again gives `key` back)?
 */
function isKey(key: string): boolean {
  if (key.length !== KEY_LENGTH || key.charCodeAt(22) !== EQUALS || key.charCodeAt(23) !== EQUALS) return false;
  for (let i = 0; i < 22; i++) if ((BASE64_DIGIT[key.charCodeAt(i)] ?? 0) === 0) return false;
  // 22 digits are 132 bits for 128: the last digit's low 4 bits are padding and must be zero.
  return ((BASE64_DIGIT[key.charCodeAt(21)]! - 1) & 0x0f) === 0;
}

/** A fresh Sec-WebSocket-Key: 16 bytes from a strong random source, base64 (RFC 6455 §4.1). */
export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/** The value of header `name` (any case); several values are joined with ', '. */
export function headerValue(headers: HeaderMap, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The elements of a comma-separated list (RFC 9110 §5.6.1), trimmed; empty elements are skipped. */
export function parseTokenList(value: string): string[] {
  const out: string[] = [];
  for (const part of value.split(',')) {
    const element = part.trim();
    if (element.length > 0) out.push(element);
  }
  return out;
}

/** Does the comma-separated `value` contain `token`, compared case-insensitively? */
export function hasToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  const wanted = token.toLowerCase();
  return parseTokenList(value).some((element) => element.toLowerCase() === wanted);
}

/**
 * hasToken for `token`, a token (RFC 9110 §5.6.2) in lower case, with a fast path for the usual
 * case: the value is that one token (in any case), without whitespace or commas.
 */
function hasLowerCaseToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  if (value.length === token.length && (value === token || value.toLowerCase() === token)) return true;
  return hasToken(value, token);
}

/** headerValue for a name known to be lower case already. */
function field(headers: HeaderMap, lowerCaseName: string): string | undefined {
  const value = headers[lowerCaseName];
  return typeof value === 'string' || value === undefined ? value : value.join(', ');
}

/** tchar (RFC 9110 §5.6.2) by character code, for the extension parser. */
const TCHAR: boolean[] = [];
for (let c = 0; c < 128; c++) TCHAR.push(TOKEN.test(String.fromCharCode(c)));

function isTchar(text: string, i: number): boolean {
  return TCHAR[text.charCodeAt(i)] === true;
}

function skipOws(text: string, i: number): number {
  while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  return i;
}

function skipToken(text: string, i: number): number {
  while (i < text.length && isTchar(text, i)) i++;
  return i;
}

/** The extension list parser; returns a detail string on a syntax error. */
function parseExtensionList(header: string): ExtensionOffer[] | string {
  // Sec-WebSocket-Extensions = 1#extension; extension = extension-token *( ";" extension-param );
  // extension-param = token [ "=" (token | quoted-string) ] (RFC 6455 §9.1).
  const list: ExtensionOffer[] = [];
  const n = header.length;
  let i = 0;
  while (i < n) {
    i = skipOws(header, i);
    if (i === n) break;
    if (header[i] === ',') {
      i++; // an empty list element (RFC 9110 §5.6.1: recipients accept them)
      continue;
    }
    let start = i;
    i = skipToken(header, i);
    if (i === start) return `expected an extension name at offset ${i}`;
    const offer: ExtensionOffer = { name: header.slice(start, i), params: [] };
    i = skipOws(header, i);
    while (i < n && header[i] === ';') {
      i = skipOws(header, i + 1);
      start = i;
      i = skipToken(header, i);
      if (i === start) return `expected a parameter name at offset ${i}`;
      const name = header.slice(start, i);
      let value: string | true = true;
      i = skipOws(header, i);
      if (header[i] === '=') {
        i = skipOws(header, i + 1);
        if (header[i] === '"') {
          let unquoted = '';
          let closed = false;
          for (i++; i < n; i++) {
            const c = header[i]!;
            if (c === '"') {
              closed = true;
              i++;
              break;
            }
            if (c === '\\') {
              i++;
              if (i === n) break;
            }
            unquoted += header[i]!;
          }
          if (!closed) return `an unterminated quoted-string in parameter ${name}`;
          // "the value after quoted-string unescaping MUST conform to the 'token' ABNF" (§9.1)
          if (!TOKEN.test(unquoted)) return `the quoted value of parameter ${name} is not a token`;
          value = unquoted;
        } else {
          start = i;
          i = skipToken(header, i);
          if (i === start) return `expected a value for parameter ${name} at offset ${i}`;
          value = header.slice(start, i);
        }
        i = skipOws(header, i);
      }
      offer.params.push([name, value]);
    }
    list.push(offer);
    if (i < n) {
      if (header[i] !== ',') return `unexpected ${JSON.stringify(header[i])} at offset ${i}`;
      i++;
    }
  }
  return list;
}

/**
 * Parses a Sec-WebSocket-Extensions value (RFC 6455 §9.1). Quoted values are unquoted. Invalid
 * syntax gives WS_ERR_INVALID_EXTENSION.
 */
export function parseExtensions(header: string): ExtensionOffer[] | WebSocketError {
  const result = parseExtensionList(header);
  return typeof result === 'string' ? new WebSocketError('WS_ERR_INVALID_EXTENSION', result) : result;
}

/**
 * Formats extensions for a Sec-WebSocket-Extensions header: `name; param; param=value, ...`.
 * Throws a TypeError when a name or value is not a token.
 */
export function formatExtensions(list: readonly ExtensionOffer[]): string {
  return list
    .map(({ name, params }) => {
      if (!TOKEN.test(name)) throw invalidArgument(`Invalid extension name: ${JSON.stringify(name)}`);
      let text = name;
      for (const [param, value] of params) {
        if (!TOKEN.test(param)) throw invalidArgument(`Invalid extension parameter name: ${JSON.stringify(param)}`);
        if (value !== true && !TOKEN.test(value)) {
          throw invalidArgument(`Invalid value for extension parameter ${param}: ${JSON.stringify(value)}`);
        }
        text += value === true ? `; ${param}` : `; ${param}=${value}`;
      }
      return text;
    })
    .join(', ');
}

function invalid(detail: string): WebSocketError {
  return new WebSocketError('WS_ERR_INVALID_HANDSHAKE', detail);
}

/** How many of `rawHeaders` are named `name` (lower case), in any case. */
/** Is `version` (DIGITS.DIGITS) 1.1 or later? */
function isHttp11OrLater(version: string): boolean {
  const m = HTTP_VERSION.exec(version);
  return m !== null && (Number(m[1]) > 1 || (Number(m[1]) === 1 && Number(m[2]) >= 1));
}

function countRaw(rawHeaders: readonly string[], name: string): number {
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i]!;
    if (raw.length === name.length && (raw === name || raw.toLowerCase() === name)) count++;
  }
  return count;
}

/**
 * Checks a client's opening handshake (RFC 6455 §4.2.1). Returns what it offered, or the error
 * to answer with (its `status`: 400, or 426 for a version other than 13, to be answered with
 * buildRejectResponse, which then adds `Sec-WebSocket-Version: 13`).
 */
export function validateUpgradeRequest(req: UpgradeRequestLike): UpgradeInfo | WebSocketError {
  const { headers } = req;
  // §4.2.1 1: "An HTTP/1.1 or higher GET request"
  if (req.method !== 'GET') return invalid(`the method must be GET, not ${String(req.method)}`);
  if (req.httpVersion !== '1.1' && !isHttp11OrLater(req.httpVersion)) {
    return invalid(`HTTP/1.1 or later is required, not HTTP/${req.httpVersion}`);
  }
  // §4.2.1 2: "A |Host| header field containing the server's authority."
  const host = field(headers, 'host');
  if (host === undefined) return invalid('the Host header is missing');
  // §4.2.1 3: "An |Upgrade| header field containing the value "websocket", treated as an ASCII
  // case-insensitive value."
  const upgrade = field(headers, 'upgrade');
  if (!hasLowerCaseToken(upgrade, 'websocket')) return invalid(`the Upgrade header must contain "websocket", not ${JSON.stringify(upgrade)}`);
  // §4.2.1 4: "A |Connection| header field that includes the token "Upgrade", treated as an
  // ASCII case-insensitive value."
  const connection = field(headers, 'connection');
  if (!hasLowerCaseToken(connection, 'upgrade')) return invalid(`the Connection header must contain "Upgrade", not ${JSON.stringify(connection)}`);
  // §4.2.1 6: "A |Sec-WebSocket-Version| header field, with a value of 13." Checked before the
  // key so that an older client (without Sec-WebSocket-Key) learns the version we speak (§4.4).
  const wsVersion = field(headers, 'sec-websocket-version');
  if (wsVersion !== VERSION_13) {
    return new WebSocketError(
      'WS_ERR_UNSUPPORTED_VERSION',
      wsVersion === undefined ? 'the Sec-WebSocket-Version header is missing' : `Sec-WebSocket-Version ${JSON.stringify(wsVersion)}; only 13 is supported`,
    );
  }
  // §4.2.1 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value that, when decoded,
  // is 16 bytes in length." Strict: canonical base64 with '==' padding and zero pad bits.
  const key = field(headers, 'sec-websocket-key');
  if (key === undefined) return invalid('the Sec-WebSocket-Key header is missing');
  if (req.rawHeaders !== undefined && countRaw(req.rawHeaders, 'sec-websocket-key') > 1) {
    return invalid('more than one Sec-WebSocket-Key header');
  }
  if (!isKey(key)) {
    return invalid(`the Sec-WebSocket-Key header is not 16 bytes in base64: ${JSON.stringify(key.slice(0, 64))}`);
  }
  // §4.1: subprotocol elements "MUST be non-empty strings with characters in the range U+0021 to
  // U+007E not including separator characters ... and MUST all be unique strings."
  const offeredProtocols = field(headers, 'sec-websocket-protocol');
  const protocols = offeredProtocols === undefined ? [] : parseTokenList(offeredProtocols);
  for (let i = 0; i < protocols.length; i++) {
    const protocol = protocols[i]!;
    if (!TOKEN.test(protocol)) return invalid(`an invalid Sec-WebSocket-Protocol element: ${JSON.stringify(protocol)}`);
    if (protocols.indexOf(protocol) !== i) return invalid(`a repeated Sec-WebSocket-Protocol element: ${protocol}`);
  }
  const offered = field(headers, 'sec-websocket-extensions');
  const extensions = offered === undefined ? [] : parseExtensionList(offered);
  if (typeof extensions === 'string') return invalid(`an invalid Sec-WebSocket-Extensions header: ${extensions}`);
  return {
    key,
    version: WEBSOCKET_VERSION,
    protocols,
    extensions,
    origin: field(headers, 'origin'),
    host,
  };
}

/**
 * The subprotocol to answer with: with a list, the first protocol of `supported` (the server's
 * order of preference) that the client offered; with a function, its answer. Never a protocol
 * that was not offered: an unoffered answer from the function gives undefined (no subprotocol).
 */
export function selectProtocol(
  offered: readonly string[],
  supported: readonly string[] | ((offered: string[]) => string | undefined | false),
): string | undefined {
  if (typeof supported === 'function') {
    const chosen = supported([...offered]);
    return typeof chosen === 'string' && offered.includes(chosen) ? chosen : undefined;
  }
  return supported.find((protocol) => offered.includes(protocol));
}

const HTAB = 0x09;
const SPACE = 0x20;
const DEL = 0x7f;

/** A built header value may hold anything but CR, LF and the other controls (HTAB is fine). */
function checkValue(name: string, value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < SPACE && c !== HTAB) || c === DEL) throw invalidArgument(`Invalid character in the value of header ${name}`);
  }
  return value;
}

/** Formats extra header lines; names in `reserved` (lower case) are set by the builder itself. */
function formatHeaders(headers: ExtraHeaders | undefined, reserved: ReadonlySet<string>): string {
  if (headers === undefined) return '';
  let text = '';
  for (const name of Object.keys(headers)) {
    if (!TOKEN.test(name)) throw invalidArgument(`Invalid header name: ${JSON.stringify(name)}`);
    if (reserved.has(name.toLowerCase())) throw invalidArgument(`Header ${name} is set by the handshake itself`);
    const value = headers[name]!;
    for (const one of typeof value === 'string' ? [value] : value) text += `${name}: ${checkValue(name, one)}\r\n`;
  }
  return text;
}

const ACCEPT_RESERVED: ReadonlySet<string> = new Set([
  'upgrade', 'connection', 'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions',
]);

/**
 * The server's 101 answer (RFC 6455 §4.2.2) for a request with Sec-WebSocket-Key `key`, with the
 * chosen subprotocol and the accepted extensions (formatted, e.g. by formatExtensions) if any,
 * and extra header fields. Throws a TypeError for a value with CR, LF or another control
 * character, and for an extra header that the handshake sets itself.
 */
export function buildAcceptResponse(options: {
  key: string;
  protocol?: string | undefined;
  extensions?: string | undefined;
  headers?: ExtraHeaders | undefined;
}): string {
  let text =
    'HTTP/1.1 101 Switching Protocols\r\n' +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptKey(options.key)}\r\n`;
  if (options.protocol !== undefined) {
    if (!TOKEN.test(options.protocol)) throw invalidArgument(`Invalid subprotocol: ${JSON.stringify(options.protocol)}`);
    text += `Sec-WebSocket-Protocol: ${options.protocol}\r\n`;
  }
  if (options.extensions !== undefined && options.extensions !== '') {
    text += `Sec-WebSocket-Extensions: ${checkValue('Sec-WebSocket-Extensions', options.extensions)}\r\n`;
  }
  return `${text}${formatHeaders(options.headers, ACCEPT_RESERVED)}\r\n`;
}

const REJECT_RESERVED: ReadonlySet<string> = new Set(['connection', 'content-length']);

/**
 * A complete HTTP/1.1 refusal: status line, `Connection: close`, `Content-Type: text/plain;
 * charset=utf-8` (extra headers may replace it), `Content-Length`, and `message` as the body
 * (default: the reason phrase). A 426 carries `Sec-WebSocket-Version: 13` (RFC 6455 §4.2.2, §4.4)
 * unless the extra headers name versions themselves. Write the string as UTF-8. Throws a
 * TypeError for a status outside 100-599 or an invalid header.
 */
export function buildRejectResponse(
  status: number,
  options: { message?: string | undefined; headers?: ExtraHeaders | undefined } = {},
): string {
  if (!Number.isInteger(status) || status < 100 || status > 599) throw invalidArgument(`Invalid HTTP status: ${status}`);
  const reason = STATUS_CODES[status] ?? 'Unknown';
  const body = options.message ?? reason;
  const extra = options.headers ?? {};
  const names = new Set(Object.keys(extra).map((name) => name.toLowerCase()));
  // RFC 9110 §15.5.22: a 426 MUST carry Upgrade, and §7.8: then Connection names "upgrade".
  const upgradeRequired = status === UPGRADE_REQUIRED;
  let text = `HTTP/1.1 ${status} ${reason}\r\n${upgradeRequired ? 'Upgrade: websocket\r\nConnection: Upgrade, close' : 'Connection: close'}\r\n`;
  if (!names.has('content-type')) text += 'Content-Type: text/plain; charset=utf-8\r\n';
  text += `Content-Length: ${Buffer.byteLength(body, 'utf8')}\r\n`;
  if (upgradeRequired && !names.has('sec-websocket-version')) text += `Sec-WebSocket-Version: ${WEBSOCKET_VERSION}\r\n`;
  return `${text}${formatHeaders(extra, REJECT_RESERVED)}\r\n${body}`;
}

const REQUEST_RESERVED: ReadonlySet<string> = new Set([
  'host', 'upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol',
  'sec-websocket-extensions', 'origin',
]);

/**
 * A client's opening handshake (RFC 6455 §4.1) for `host` (host[:port]) and `path` (origin-form,
 * with any query). Throws a TypeError for a path or host with spaces or controls, a subprotocol
 * that is not a token or is repeated, an invalid header, or an extra header the handshake sets.
 */
export function buildClientRequest(options: {
  host: string;
  path: string;
  key: string;
  protocols?: readonly string[] | undefined;
  extensions?: string | undefined;
  origin?: string | undefined;
  headers?: ExtraHeaders | undefined;
}): string {
  if (!ORIGIN_FORM.test(options.path)) throw invalidArgument(`Invalid request path: ${JSON.stringify(options.path)}`);
  if (!HOST.test(options.host)) throw invalidArgument(`Invalid host: ${JSON.stringify(options.host)}`);
  let text =
    `GET ${options.path} HTTP/1.1\r\n` +
    `Host: ${options.host}\r\n` +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${checkValue('Sec-WebSocket-Key', options.key)}\r\n` +
    `Sec-WebSocket-Version: ${WEBSOCKET_VERSION}\r\n`;
  const protocols = options.protocols ?? [];
  for (let i = 0; i < protocols.length; i++) {
    const protocol = protocols[i]!;
    if (!TOKEN.test(protocol)) throw invalidArgument(`Invalid subprotocol: ${JSON.stringify(protocol)}`);
    if (protocols.indexOf(protocol) !== i) throw invalidArgument(`Repeated subprotocol: ${protocol}`);
  }
  if (protocols.length > 0) text += `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n`;
  if (options.extensions !== undefined && options.extensions !== '') {
    text += `Sec-WebSocket-Extensions: ${checkValue('Sec-WebSocket-Extensions', options.extensions)}\r\n`;
  }
  if (options.origin !== undefined) text += `Origin: ${checkValue('Origin', options.origin)}\r\n`;
  return `${text}${formatHeaders(options.headers, REQUEST_RESERVED)}\r\n`;
}

/**
 * Checks the server's answer to our opening handshake (RFC 6455 §4.1, "the client MUST validate
 * the server's response"). Returns the subprotocol chosen (undefined for none) and the
 * extensions accepted, or the error to fail the connection with.
 */
export function validateUpgradeResponse(
  res: UpgradeResponseLike,
  offer: ClientOffer,
): { protocol: string | undefined; extensions: ExtensionOffer[] } | WebSocketError {
  const { headers } = res;
  // "If the status code received from the server is not 101, the client handles the response per
  // HTTP [RFC2616] procedures."
  if (res.statusCode !== SWITCHING_PROTOCOLS) {
    const reason = res.statusMessage === undefined || res.statusMessage === '' ? '' : ` ${res.statusMessage}`;
    return new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `unexpected status ${String(res.statusCode)}${reason}`);
  }
  // "If the response lacks an |Upgrade| header field or the |Upgrade| header field contains a
  // value that is not an ASCII case-insensitive match for the value "websocket", the client MUST
  // _Fail the WebSocket Connection_." Likewise for |Connection| and "Upgrade".
  const upgrade = headerValue(headers, 'upgrade');
  if (!hasToken(upgrade, 'websocket')) return invalid(`the Upgrade header must contain "websocket", not ${JSON.stringify(upgrade)}`);
  const connection = headerValue(headers, 'connection');
  if (!hasToken(connection, 'upgrade')) return invalid(`the Connection header must contain "Upgrade", not ${JSON.stringify(connection)}`);
  // "If the response lacks a |Sec-WebSocket-Accept| header field or the |Sec-WebSocket-Accept|
  // contains a value other than the base64-encoded SHA-1 of the concatenation of the
  // |Sec-WebSocket-Key| ... with the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" ... the client
  // MUST _Fail the WebSocket Connection_."
  const accept = headerValue(headers, 'sec-websocket-accept');
  if (accept === undefined) return new WebSocketError('WS_ERR_INVALID_ACCEPT', 'the Sec-WebSocket-Accept header is missing');
  if (accept !== acceptKey(offer.key)) {
    return new WebSocketError('WS_ERR_INVALID_ACCEPT', `${JSON.stringify(accept.slice(0, 64))} does not match the key sent`);
  }
  // "If the response includes a |Sec-WebSocket-Protocol| header field and this header field
  // indicates the use of a subprotocol that was not present in the client's handshake ... the
  // client MUST _Fail the WebSocket Connection_."
  // "If the response includes a |Sec-WebSocket-Extensions| header field and this header field
  // indicates the use of an extension that was not present in the client's handshake ... the
  // client MUST _Fail the WebSocket Connection_."
  return checkServerChoice(headerValue(headers, 'sec-websocket-protocol'), field(headers, 'sec-websocket-extensions'), offer);
}

/**
 * The server's choice of subprotocol and extensions against what the client offered (RFC 6455
 * §4.1), the same over HTTP/1.1 and HTTP/2 (RFC 8441 §5): a subprotocol or an extension that was
 * not offered fails the connection.
 */
export function checkServerChoice(
  protocol: string | undefined,
  acceptedExtensions: string | undefined,
  offer: { protocols: readonly string[]; extensions: readonly ExtensionOffer[] },
): { protocol: string | undefined; extensions: ExtensionOffer[] } | WebSocketError {
  if (protocol !== undefined && !offer.protocols.includes(protocol)) {
    return new WebSocketError('WS_ERR_INVALID_SUBPROTOCOL', `the server chose ${JSON.stringify(protocol)}`);
  }
  const extensions = acceptedExtensions === undefined ? [] : parseExtensions(acceptedExtensions);
  if (extensions instanceof WebSocketError) return extensions;
  for (const extension of extensions) {
    if (!offer.extensions.some((offered) => offered.name === extension.name)) {
      return new WebSocketError('WS_ERR_INVALID_EXTENSION', `the server accepted ${extension.name}, which was not offered`);
    }
  }
  return { protocol, extensions };
}
