/**
 * The opening handshake of a WebSocket over HTTP/2 (RFC 8441, "Bootstrapping WebSockets with
 * HTTP/2") as pure functions: check an extended CONNECT request and build the server's answer;
 * build the client's request and check the server's answer. No I/O: the header blocks are the
 * plain objects of node:http2 (pseudo-header fields included) and the built ones are objects
 * for `stream.respond()` and `session.request()`.
 *
 * What changes from HTTP/1.1 (RFC 8441 §5): the method is CONNECT with a `:protocol` of
 * "websocket" instead of GET with Upgrade and Connection; "Implementations using this extended
 * CONNECT to bootstrap WebSockets do not do the processing of the Sec-WebSocket-Key and
 * Sec-WebSocket-Accept header fields of [RFC6455] as that functionality has been superseded by
 * the :protocol pseudo-header field" (a key sent anyway is ignored, never answered); success is
 * any 2xx status (we answer 200) instead of 101. What does not change: Sec-WebSocket-Version 13,
 * Origin, and the negotiation of subprotocols and extensions ("the Sec-WebSocket-Protocol ...
 * and Sec-WebSocket-Extensions ... header fields are used ... as defined in [RFC6455]").
 *
 * Failures are returned, never thrown, as a WebSocketError with the HTTP `status` to answer.
 */
import { WEBSOCKET_VERSION } from '../protocol/constants';
import { WebSocketError, invalidArgument } from '../protocol/errors';
import { type ExtensionOffer, type UpgradeInfo, checkServerChoice, parseExtensions, parseTokenList } from '../handshake/handshake';
import type { HeaderMap, UpgradeRequest } from '../handshake/handshake-parser';

/** The `:protocol` value that asks for a WebSocket (RFC 8441 §4, the HTTP Upgrade Token registry). */
export const WEBSOCKET_PROTOCOL = 'websocket';
const VERSION_13 = String(WEBSOCKET_VERSION);
/** token = 1*tchar (RFC 9110 §5.6.2). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A :path for a WebSocket: origin-form (starts with '/'), visible ASCII only. */
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
/** An :authority: visible ASCII, no userinfo (RFC 9113 §8.3.1: it "MUST NOT include the deprecated userinfo subcomponent"). */
const AUTHORITY = /^[\x21-\x3f\x41-\x7e]+$/;
const BAD_REQUEST = 400;
const NOT_IMPLEMENTED = 501;

/** The header fields a client must not set itself on an extended CONNECT: the handshake's own and HTTP/2's forbidden ones (RFC 9113 §8.2.2). */
const REQUEST_RESERVED: ReadonlySet<string> = new Set([
  'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions', 'origin',
  'connection', 'upgrade', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'host',
]);

/** The response header fields the server answer sets itself. */
const RESPONSE_RESERVED: ReadonlySet<string> = new Set([
  'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions',
  'connection', 'upgrade', 'keep-alive', 'proxy-connection', 'transfer-encoding',
]);

function invalid(detail: string, status = BAD_REQUEST): WebSocketError {
  const err = new WebSocketError('WS_ERR_INVALID_HANDSHAKE', detail);
  if (status !== err.status) Object.defineProperty(err, 'status', { value: status, enumerable: true });
  return err;
}

/** A header field's value: several values (an array) joined with ', '; node:http2 gives :status as a number. */
function field(headers: HeaderMap, name: string): string | undefined {
  const value = headers[name] as string | string[] | number | undefined;
  if (typeof value === 'string' || value === undefined) return value;
  return typeof value === 'number' ? String(value) : value.join(', ');
}

/**
 * Is this request an extended CONNECT asking for a WebSocket (`:method` CONNECT and `:protocol`
 * websocket, ASCII case-insensitive as HTTP upgrade tokens are)? Streams that are not are left to
 * the application.
 */
export function isWebSocketConnect(headers: HeaderMap): boolean {
  const protocol = field(headers, ':protocol');
  return field(headers, ':method') === 'CONNECT' && protocol !== undefined && protocol.toLowerCase() === WEBSOCKET_PROTOCOL;
}

/**
 * Checks an extended CONNECT request for a WebSocket (RFC 8441 §4 and §5). Returns what it
 * offered (`key` is '': there is none), or the error to answer with (`status` 400; 501 for a
 * `:protocol` other than websocket; 400 with Sec-WebSocket-Version: 13, see
 * buildConnectRefusal, for a version other than 13).
 */
export function validateConnectRequest(headers: HeaderMap): UpgradeInfo | WebSocketError {
  // §4: "A new pseudo-header field :protocol MAY be included on request HEADERS indicating the
  // desired protocol to be spoken on the tunnel created by CONNECT."
  if (field(headers, ':method') !== 'CONNECT') return invalid(`the method must be CONNECT, not ${String(field(headers, ':method'))}`);
  const protocol = field(headers, ':protocol');
  if (protocol === undefined) return invalid('the :protocol pseudo-header field is missing');
  if (protocol.toLowerCase() !== WEBSOCKET_PROTOCOL) return invalid(`unsupported :protocol ${JSON.stringify(protocol)}`, NOT_IMPLEMENTED);
  // §4: "On requests that contain the :protocol pseudo-header field, the :scheme and :path
  // pseudo-header fields of the target URI (see Section 5) MUST also be included."
  const scheme = field(headers, ':scheme');
  if (scheme !== 'https' && scheme !== 'http') return invalid(`the :scheme must be https or http, not ${JSON.stringify(scheme)}`);
  const path = field(headers, ':path');
  if (path === undefined || !ORIGIN_FORM.test(path)) return invalid(`the :path must be a path starting with /, not ${JSON.stringify(path)}`);
  // §4: "On requests bearing the :protocol pseudo-header field, the :authority pseudo-header
  // field is interpreted according to Section 8.1.2.3 of [RFC7540] instead of Section 8.3 of
  // that document": the target's authority, required here as for any CONNECT.
  const authority = field(headers, ':authority');
  if (authority === undefined || !AUTHORITY.test(authority)) return invalid(`the :authority must be the target's host[:port], not ${JSON.stringify(authority)}`);
  // §5: the Sec-WebSocket-Version header field is still "13" (RFC 6455 §4.1).
  const version = field(headers, 'sec-websocket-version');
  if (version !== VERSION_13) {
    return new WebSocketError(
      'WS_ERR_UNSUPPORTED_VERSION',
      version === undefined ? 'the Sec-WebSocket-Version header is missing' : `Sec-WebSocket-Version ${JSON.stringify(version)}; only 13 is supported`,
    );
  }
  // Subprotocols (RFC 6455 §4.1): "non-empty strings with characters in the range U+0021 to
  // U+007E not including separator characters ... and MUST all be unique strings."
  const offeredProtocols = field(headers, 'sec-websocket-protocol');
  const protocols = offeredProtocols === undefined ? [] : parseTokenList(offeredProtocols);
  for (let i = 0; i < protocols.length; i++) {
    const one = protocols[i]!;
    if (!TOKEN.test(one)) return invalid(`an invalid Sec-WebSocket-Protocol element: ${JSON.stringify(one)}`);
    if (protocols.indexOf(one) !== i) return invalid(`a repeated Sec-WebSocket-Protocol element: ${one}`);
  }
  const offeredExtensions = field(headers, 'sec-websocket-extensions');
  const extensions = offeredExtensions === undefined ? [] : parseExtensions(offeredExtensions);
  if (extensions instanceof WebSocketError) return invalid(`an invalid Sec-WebSocket-Extensions header: ${extensions.message}`);
  return { key: '', version: WEBSOCKET_VERSION, protocols, extensions, origin: field(headers, 'origin'), host: authority };
}

/**
 * The request as handed to verifyClient and 'connection' listeners, shaped like an HTTP/1.1
 * UpgradeRequest: `method` CONNECT, `url` the :path, `httpVersion` "2.0", the header fields
 * (pseudo-header fields included, and `host` set from :authority when absent, so code written
 * for HTTP/1.1 finds it).
 */
export function toUpgradeRequest(headers: HeaderMap, rawHeaders: readonly string[] = []): UpgradeRequest {
  const copy: HeaderMap = Object.create(null) as HeaderMap;
  for (const name of Object.keys(headers)) copy[name] = headers[name];
  const authority = field(headers, ':authority');
  if (copy.host === undefined && authority !== undefined) copy.host = authority;
  return { method: field(headers, ':method') ?? '', url: field(headers, ':path') ?? '', httpVersion: '2.0', headers: copy, rawHeaders: [...rawHeaders] };
}

/** Extra header fields for a built block; an array value is kept as several values. */
export type Http2ExtraHeaders = Record<string, string | readonly string[]>;

/** A header value may hold anything but CR, LF, NUL and the other controls (HTAB is fine). */
function checkValue(name: string, value: string): string {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw invalidArgument(`Invalid character in the value of header ${name}`);
  }
  return value;
}

function addExtra(out: Record<string, string | string[]>, extra: Http2ExtraHeaders | undefined, reserved: ReadonlySet<string>): void {
  if (extra === undefined) return;
  for (const name of Object.keys(extra)) {
    const lower = name.toLowerCase();
    if (!TOKEN.test(name)) throw invalidArgument(`Invalid header name: ${JSON.stringify(name)}`);
    if (reserved.has(lower)) throw invalidArgument(`Header ${name} is set by the handshake itself`);
    const value = extra[name]!;
    out[lower] = typeof value === 'string' ? checkValue(name, value) : value.map((one) => checkValue(name, one));
  }
}

/** The server's success answer (RFC 8441 §5: a 2xx; we send 200) with the chosen subprotocol and accepted extensions. */
export function buildConnectAnswer(options: {
  protocol?: string | undefined;
  extensions?: string | undefined;
  headers?: Http2ExtraHeaders | undefined;
}): Record<string, string | string[] | number> {
  const out: Record<string, string | string[]> = {};
  addExtra(out, options.headers, RESPONSE_RESERVED);
  if (options.protocol !== undefined && options.protocol !== '') out['sec-websocket-protocol'] = checkValue('Sec-WebSocket-Protocol', options.protocol);
  if (options.extensions !== undefined && options.extensions !== '') out['sec-websocket-extensions'] = checkValue('Sec-WebSocket-Extensions', options.extensions);
  return { ':status': 200, ...out };
}

/**
 * A refusal: the status and a text/plain content type, plus `Sec-WebSocket-Version: 13` for a
 * version error (RFC 6455 §4.4; answer it with 400: the 426 of HTTP/1.1 is about the Upgrade
 * header field, which HTTP/2 does not have, RFC 9113 §8.6).
 */
export function buildConnectRefusal(status: number, headers?: Http2ExtraHeaders, versionError = false): Record<string, string | string[] | number> {
  const out: Record<string, string | string[]> = {};
  addExtra(out, headers, RESPONSE_RESERVED);
  if (versionError) out['sec-websocket-version'] = VERSION_13;
  return { ':status': status, 'content-type': 'text/plain; charset=utf-8', ...out };
}

/** The client's extended CONNECT request (RFC 8441 §4, §5). Throws a TypeError for a value that cannot go in a header. */
export function buildConnectRequest(options: {
  scheme: 'https' | 'http';
  authority: string;
  path: string;
  protocols?: readonly string[] | undefined;
  extensions?: string | undefined;
  origin?: string | undefined;
  headers?: Http2ExtraHeaders | undefined;
}): Record<string, string | string[]> {
  if (!AUTHORITY.test(options.authority)) throw invalidArgument(`Invalid :authority ${JSON.stringify(options.authority)}`);
  if (!ORIGIN_FORM.test(options.path)) throw invalidArgument(`Invalid :path ${JSON.stringify(options.path)}`);
  const out: Record<string, string | string[]> = {
    ':method': 'CONNECT',
    ':protocol': WEBSOCKET_PROTOCOL,
    ':scheme': options.scheme,
    ':authority': options.authority,
    ':path': options.path,
    'sec-websocket-version': VERSION_13,
  };
  const protocols = options.protocols ?? [];
  for (let i = 0; i < protocols.length; i++) {
    if (!TOKEN.test(protocols[i]!)) throw invalidArgument(`Invalid subprotocol ${JSON.stringify(protocols[i])}`);
    if (protocols.indexOf(protocols[i]!) !== i) throw invalidArgument(`Repeated subprotocol ${protocols[i]!}`);
  }
  if (protocols.length > 0) out['sec-websocket-protocol'] = protocols.join(', ');
  if (options.extensions !== undefined && options.extensions !== '') out['sec-websocket-extensions'] = checkValue('Sec-WebSocket-Extensions', options.extensions);
  if (options.origin !== undefined) out.origin = checkValue('Origin', options.origin);
  addExtra(out, options.headers, REQUEST_RESERVED);
  return out;
}

/**
 * Checks the server's answer to an extended CONNECT: a 2xx status (RFC 8441 §5, RFC 9110 §9.3.6)
 * and the same subprotocol and extension rules as RFC 6455 §4.1 (nothing that was not offered).
 * Returns the subprotocol (undefined for none) and the accepted extensions, or the error.
 */
export function validateConnectResponse(
  headers: HeaderMap,
  offer: { protocols: readonly string[]; extensions: readonly ExtensionOffer[] },
): { protocol: string | undefined; extensions: ExtensionOffer[] } | WebSocketError {
  const status = Number(field(headers, ':status'));
  if (!(status >= 200 && status < 300)) return new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `unexpected status ${String(field(headers, ':status'))}`);
  return checkServerChoice(field(headers, 'sec-websocket-protocol'), field(headers, 'sec-websocket-extensions'), offer);
}
