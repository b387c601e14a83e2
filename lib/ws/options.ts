/**
 * ws's option names and value forms, translated into wspipe's (see docs/migrating-from-ws.md
 * for what has no counterpart).
 */
import type * as tls from 'node:tls';
import type { PerMessageDeflateOptions } from '../deflate/permessage-deflate';
import type { WebSocketOptions } from '../connection/websocket';
import type { MaskGenerator } from '../protocol/mask';

/** ws's permessage-deflate options; zlibInflateOptions is accepted and not used. */
export interface WsPerMessageDeflateOptions {
  serverNoContextTakeover?: boolean;
  clientNoContextTakeover?: boolean;
  serverMaxWindowBits?: number;
  clientMaxWindowBits?: number;
  /** Payloads under this many bytes are sent uncompressed. */
  threshold?: number;
  /** Most zlib operations at once (wspipe: maxConcurrency). */
  concurrencyLimit?: number;
  /** Only `level` and `memLevel` are used. */
  zlibDeflateOptions?: { level?: number; memLevel?: number };
  zlibInflateOptions?: object;
}

/** Options both ends share: ws's names, and wspipe's own limits (memoryBudget ...) as they are. */
export interface WsCommonOptions extends Omit<WebSocketOptions, 'maxPayload' | 'skipUtf8Validation' | 'generateMask'> {
  /** Largest message, in bytes (ws: 100 MiB; 0: no limit). Bounds each frame and each whole message. */
  maxPayload?: number;
  /** Skip the UTF-8 check of text messages and close reasons (trusted peers only). Default false. */
  skipUTF8Validation?: boolean;
  /** Answer pings with pongs. Default true. */
  autoPong?: boolean;
  /** ws's event timing option: accepted; wspipe's events are always emitted as data is parsed. */
  allowSynchronousEvents?: boolean;
}

/** The options of `new WebSocket(address, protocols, options)`. */
export interface WsClientOptions extends WsCommonOptions, tls.ConnectionOptions {
  /** Milliseconds allowed for the connect and the opening handshake. */
  handshakeTimeout?: number;
  /** permessage-deflate: offered by default, as ws does. */
  perMessageDeflate?: boolean | WsPerMessageDeflateOptions;
  /** Only 13 (RFC 6455); anything else throws. */
  protocolVersion?: number;
  origin?: string;
  headers?: Record<string, string>;
  /** Not supported: true throws at the constructor. */
  followRedirects?: boolean;
  maxRedirects?: number;
  /** Pins the masks (tests): called with a 4-byte buffer to fill. */
  generateMask?: MaskGenerator;
  /** Aborts the opening handshake (wspipe's; ws has none). */
  signal?: AbortSignal;
}

/** Keys of WsClientOptions that are not TLS options. */
const CLIENT_KEYS: ReadonlySet<string> = new Set([
  'handshakeTimeout', 'perMessageDeflate', 'protocolVersion', 'origin', 'headers', 'followRedirects', 'maxRedirects',
  'generateMask', 'signal', 'maxPayload', 'skipUTF8Validation', 'autoPong', 'allowSynchronousEvents',
]);

/** ws's maxPayload (0: none) as wspipe's two limits. */
function payloadLimits(maxPayload: number | undefined): { maxPayload?: number; maxMessageSize?: number } {
  if (maxPayload === undefined) return {};
  const limit = maxPayload === 0 ? Number.MAX_SAFE_INTEGER : maxPayload;
  return { maxPayload: limit, maxMessageSize: limit };
}

export function deflateOptions(value: boolean | WsPerMessageDeflateOptions | undefined): boolean | PerMessageDeflateOptions | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  const out: PerMessageDeflateOptions = {};
  if (value.serverNoContextTakeover !== undefined) out.serverNoContextTakeover = value.serverNoContextTakeover;
  if (value.clientNoContextTakeover !== undefined) out.clientNoContextTakeover = value.clientNoContextTakeover;
  if (value.serverMaxWindowBits !== undefined) out.serverMaxWindowBits = value.serverMaxWindowBits;
  if (value.clientMaxWindowBits !== undefined) out.clientMaxWindowBits = value.clientMaxWindowBits;
  if (value.threshold !== undefined) out.threshold = value.threshold;
  if (value.concurrencyLimit !== undefined) out.maxConcurrency = value.concurrencyLimit;
  if (value.zlibDeflateOptions?.level !== undefined) out.level = value.zlibDeflateOptions.level;
  if (value.zlibDeflateOptions?.memLevel !== undefined) out.memLevel = value.zlibDeflateOptions.memLevel;
  return out;
}

/** The connection options in wspipe's names (ws's names dropped, wspipe's passed through). */
export function connectionOptions(options: WsCommonOptions): WebSocketOptions {
  const { maxPayload, skipUTF8Validation, allowSynchronousEvents, ...rest } = options;
  void allowSynchronousEvents;
  const out: WebSocketOptions = { ...rest, ...payloadLimits(maxPayload) };
  if (skipUTF8Validation !== undefined) out.skipUtf8Validation = skipUTF8Validation;
  return out;
}

/** Splits ws's client options into wspipe's connect() options; throws for what cannot be honoured. */
export function clientOptions(options: WsClientOptions): {
  connection: WebSocketOptions;
  tls: tls.ConnectionOptions;
  handshakeTimeout?: number;
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  origin?: string;
  headers?: Record<string, string>;
  generateMask?: MaskGenerator;
  signal?: AbortSignal;
} {
  if (options.protocolVersion !== undefined && options.protocolVersion !== 13) {
    throw invalidArgument(`Unsupported protocol version: ${options.protocolVersion} (supported versions: 13)`);
  }
  if (options.followRedirects === true) {
    throw invalidArgument('followRedirects is not supported by wspipe/ws: connect to the final URL');
  }
  const tlsOptions: Record<string, unknown> = {};
  const common: Record<string, unknown> = {};
  const wspipeKeys = new Set(['closeTimeout', 'readableHighWaterMark', 'writableHighWaterMarkBytes', 'writableHighWaterMark', 'memoryBudget',
    'heartbeat', 'idleTimeout', 'maxBufferedAmount', 'outboundOverflow', 'maxMessageSize', 'maxFragments', 'streamMessages',
    'maxStreamedMessageSize', 'fragmentSize']);
  for (const [key, value] of Object.entries(options)) {
    if (CLIENT_KEYS.has(key)) continue;
    if (wspipeKeys.has(key)) common[key] = value;
    else tlsOptions[key] = value;
  }
  const connection = connectionOptions({
    ...(common as WsCommonOptions),
    maxPayload: options.maxPayload,
    skipUTF8Validation: options.skipUTF8Validation,
    ...(options.autoPong === undefined ? {} : { autoPong: options.autoPong }),
  });
  return {
    connection,
    tls: tlsOptions as tls.ConnectionOptions,
    handshakeTimeout: options.handshakeTimeout,
    perMessageDeflate: deflateOptions(options.perMessageDeflate),
    origin: options.origin,
    headers: options.headers,
    generateMask: options.generateMask,
    signal: options.signal,
  };
}

/** An invalid argument, thrown at the call with a code, as Node does. */
export function invalidArgument(message: string): TypeError {
  const err = new TypeError(message);
  (err as TypeError & { code: string }).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}
