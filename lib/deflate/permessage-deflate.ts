/**
 * permessage-deflate (RFC 7692 §7): the negotiation, as pure functions on ExtensionOffer values,
 * and the process-wide limit on concurrent zlib work shared by the Inflater and Deflater stages.
 *
 * Who uses which window (RFC 7692 §7.1.2):
 *
 *   server_max_window_bits / server_no_context_takeover: how the SERVER compresses
 *     (the server's Deflater, the client's Inflater).
 *   client_max_window_bits / client_no_context_takeover: how the CLIENT compresses
 *     (the client's Deflater, the server's Inflater).
 *
 * zlib cannot compress with a window of 2^8 bytes: for raw DEFLATE it silently uses 2^9 (zlib
 * 1.2.9+, and Node maps 8 to 9), whose output a peer limited to 8 bits may fail to inflate. So we
 * never agree to compress with max_window_bits=8: a server declines an offer that asks for it
 * (and tries the next offer), and a client told to compress with 8 keeps the extension but sends
 * every message uncompressed (RSV1 clear is always allowed, §6). Inflating is fine at any size; we
 * inflate with at least 9 bits, which also decodes a peer that says 8 but (like Node) uses 9.
 */
import { Buffer } from 'node:buffer';
import { WebSocketError, invalidArgument } from '../protocol/errors';
import type { Frame } from '../protocol/frame';
import type { Opcode } from '../protocol/constants';
import type { ExtensionOffer } from '../handshake/handshake';

/** The extension's registered name (RFC 7692 §7). */
export const PERMESSAGE_DEFLATE = 'permessage-deflate';

/** Smallest and largest LZ77 window, in bits, a max_window_bits parameter may name (RFC 7692 §7.1.2). */
export const MIN_WINDOW_BITS = 8;
export const MAX_WINDOW_BITS = 15;
/** Smallest window zlib can compress with (see the module comment). */
export const MIN_DEFLATE_WINDOW_BITS = 9;

/** Parameter names (RFC 7692 §7.1). */
enum Param {
  ServerNoContextTakeover = 'server_no_context_takeover',
  ClientNoContextTakeover = 'client_no_context_takeover',
  ServerMaxWindowBits = 'server_max_window_bits',
  ClientMaxWindowBits = 'client_max_window_bits',
}

/**
 * Options of permessage-deflate, for a server (`perMessageDeflate` of createServer) and for a
 * client (`perMessageDeflate` of connect). Every field is optional.
 */
export interface PerMessageDeflateOptions {
  /**
   * Messages smaller than this many bytes are sent uncompressed. Default 1024. Below about 1 KiB
   * the bytes saved rarely pay for the zlib round trip (a trip through the libuv thread pool).
   * With context takeover a small message can still compress very well, because it is coded
   * against the messages before it (a repeated small JSON shape shrinks to a few bytes), so a
   * lower threshold may pay off there; an uncompressed message does not enter the window. Without
   * context takeover each message is compressed alone and small ones barely shrink. A message
   * sent as a stream (several frames) is always compressed: its size is not known up front.
   */
  threshold?: number;
  /**
   * Server: always ask that the server compresses each message alone (server_no_context_takeover
   * in the response, even when not offered). Client: ask for it in the offer. It saves the
   * server's deflate memory between messages at the cost of ratio. Default false.
   */
  serverNoContextTakeover?: boolean;
  /**
   * Server: require the client to compress each message alone (client_no_context_takeover in the
   * response); when the client offers it anyway, the server accepts it (its inflater can then be
   * freed between messages). Client: announce in the offer that we compress each message alone.
   * Default false.
   */
  clientNoContextTakeover?: boolean;
  /**
   * Server: the largest window the server compresses with (9-15; 8 is refused because zlib cannot
   * compress with it). Client: the largest window we ask the server to use (8-15). Default
   * undefined: 15 unless the peer asks for less. Smaller windows save memory (2^(bits+2) bytes
   * for deflating, 2^bits for inflating) and lose ratio.
   */
  serverMaxWindowBits?: number;
  /**
   * Server: the largest window the client may compress with (8-15), applied only when the client
   * offers client_max_window_bits (RFC 7692 §7.1.2.2). Client: the largest window we compress
   * with (9-15), announced in the offer. Default undefined: 15 (the offer still carries
   * client_max_window_bits without a value, so that the server may ask for less).
   */
  clientMaxWindowBits?: number;
  /** zlib compression level, 0-9 (or -1, zlib's default, which is 6). Default -1. */
  level?: number;
  /** zlib memLevel, 1-9: memory for the compressor's internal state (2^(memLevel+9) bytes). Default 8. */
  memLevel?: number;
  /**
   * Most zlib operations (inflate or deflate calls) running at once in this process, shared by
   * every connection that asks for the same number. Default 10: a little more than libuv's
   * thread pool (4 threads by default) so the pool stays busy, while the buffers of operations
   * in flight stay bounded (and zlib's memory fragmentation under many parallel jobs stays low).
   */
  maxConcurrency?: number;
}

/** The parameters in force on a connection after negotiation. */
export interface DeflateAgreement {
  /** The response element (the server's answer), as sent or as received. */
  response: ExtensionOffer;
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  /** 8-15; 15 when the response does not name it. */
  serverMaxWindowBits: number;
  /** 8-15; 15 when the response does not name it. */
  clientMaxWindowBits: number;
}

/** How one side compresses and decompresses, derived from an agreement and a role. */
export interface DeflateSides {
  /** Options for our Inflater (how the peer compresses). */
  inflate: { windowBits: number; noContextTakeover: boolean };
  /** Options for our Deflater, or null when we may not compress (the peer requires an 8-bit window). */
  deflate: { windowBits: number; noContextTakeover: boolean } | null;
}

/** Default threshold, level, memLevel and maxConcurrency (documented on PerMessageDeflateOptions). */
export const DeflateDefaults = {
  threshold: 1024,
  level: -1,
  memLevel: 8,
  maxConcurrency: 10,
} as const;

/** Parsed parameters of one offer or response: undefined when absent, true when present without a value. */
interface Params {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number | undefined;
  clientMaxWindowBits: number | true | undefined;
}

/** "a decimal integer value without leading zeros between 8 to 15, inclusive" (RFC 7692 §7.1.2.1, §7.1.2.2). */
const WINDOW_BITS = /^(?:8|9|1[0-5])$/;

/**
 * Parses and checks the parameters of one element. `response` selects the rules for a response
 * (client_max_window_bits must then have a value). Returns a detail string when the element is
 * invalid: an unknown parameter, a repeated one, or a bad value (RFC 7692 §7, §7.1).
 */
function parseParams(element: ExtensionOffer, response: boolean): Params | string {
  const out: Params = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
  };
  const seen = new Set<string>();
  for (const [name, value] of element.params) {
    // "contains multiple extension parameters with the same name"
    if (seen.has(name)) return `parameter ${name} appears twice`;
    seen.add(name);
    switch (name as Param) {
      case Param.ServerNoContextTakeover:
      case Param.ClientNoContextTakeover:
        // §7.1.1.1, §7.1.1.2: "This parameter has no value."
        if (value !== true) return `parameter ${name} takes no value`;
        if (name === Param.ServerNoContextTakeover) out.serverNoContextTakeover = true;
        else out.clientNoContextTakeover = true;
        break;
      case Param.ServerMaxWindowBits:
        // §7.1.2.1: the parameter "has a value" in both offer and response.
        if (value === true || !WINDOW_BITS.test(value)) return `invalid ${name}: ${String(value)}`;
        out.serverMaxWindowBits = Number(value);
        break;
      case Param.ClientMaxWindowBits:
        // §7.1.2.2: "This parameter may have no value" in an offer; a response's must have one.
        if (value === true) {
          if (response) return `${name} without a value in a response`;
          out.clientMaxWindowBits = true;
        } else if (!WINDOW_BITS.test(value)) {
          return `invalid ${name}: ${value}`;
        } else {
          out.clientMaxWindowBits = Number(value);
        }
        break;
      default:
        // "contains an extension parameter not defined for use in an offer/response"
        return `unknown parameter ${name}`;
    }
  }
  return out;
}

function checkBits(name: string, value: number | undefined, min: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min || value > MAX_WINDOW_BITS)) {
    throw invalidArgument(`perMessageDeflate.${name} must be an integer from ${min} to ${MAX_WINDOW_BITS}, got ${value}`, RangeError);
  }
}

/**
 * Checks options for `role`; throws a RangeError (code WS_ERR_INVALID_ARGUMENT) for a value out of range. The window we
 * compress with must be 9-15 (see the module comment); the one we inflate with 8-15.
 */
export function checkDeflateOptions(options: PerMessageDeflateOptions, role: 'server' | 'client'): void {
  const server = role === 'server';
  checkBits('serverMaxWindowBits', options.serverMaxWindowBits, server ? MIN_DEFLATE_WINDOW_BITS : MIN_WINDOW_BITS);
  checkBits('clientMaxWindowBits', options.clientMaxWindowBits, server ? MIN_WINDOW_BITS : MIN_DEFLATE_WINDOW_BITS);
  const { threshold, level, memLevel, maxConcurrency } = options;
  if (threshold !== undefined && !(threshold >= 0)) throw invalidArgument(`perMessageDeflate.threshold must be >= 0, got ${threshold}`, RangeError);
  if (level !== undefined && (!Number.isInteger(level) || level < -1 || level > 9)) {
    throw invalidArgument(`perMessageDeflate.level must be an integer from -1 to 9, got ${level}`, RangeError);
  }
  if (memLevel !== undefined && (!Number.isInteger(memLevel) || memLevel < 1 || memLevel > 9)) {
    throw invalidArgument(`perMessageDeflate.memLevel must be an integer from 1 to 9, got ${memLevel}`, RangeError);
  }
  if (maxConcurrency !== undefined && (!Number.isInteger(maxConcurrency) || maxConcurrency < 1)) {
    throw invalidArgument(`perMessageDeflate.maxConcurrency must be a positive integer, got ${maxConcurrency}`, RangeError);
  }
}

// ----- Server -----

/**
 * The server's side of the negotiation (RFC 7692 §5, §7.1): looks at the permessage-deflate
 * offers in the client's order of preference and accepts the first one it can honour. An offer
 * with an unknown, repeated or invalid parameter, or one asking for a configuration we cannot
 * support (the server compressing with an 8-bit window), is declined and the next one tried
 * ("A server MUST decline an extension negotiation offer for this extension if ..." §7).
 * Returns the agreement (whose `response` goes in Sec-WebSocket-Extensions), or null when no
 * offer is acceptable: the connection then goes on without compression.
 */
export function acceptDeflateOffer(
  offers: readonly ExtensionOffer[],
  options: PerMessageDeflateOptions = {},
): DeflateAgreement | null {
  for (const offer of offers) {
    if (offer.name !== PERMESSAGE_DEFLATE) continue;
    const params = parseParams(offer, false);
    if (typeof params === 'string') continue;
    const agreement = answerOffer(params, options);
    if (agreement !== null) return agreement;
  }
  return null;
}

function answerOffer(offered: Params, options: PerMessageDeflateOptions): DeflateAgreement | null {
  const response: ExtensionOffer = { name: PERMESSAGE_DEFLATE, params: [] };
  // §7.1.1.1: "A server accepting an extension negotiation offer with this parameter MUST include
  // the "server_no_context_takeover" extension parameter in the extension negotiation response."
  const serverNoContextTakeover = offered.serverNoContextTakeover || options.serverNoContextTakeover === true;
  if (serverNoContextTakeover) response.params.push([Param.ServerNoContextTakeover, true]);
  // §7.1.1.2: the server MAY include client_no_context_takeover; when offered, echoing it lets
  // our inflater be freed between messages.
  const clientNoContextTakeover = offered.clientNoContextTakeover || options.clientNoContextTakeover === true;
  if (clientNoContextTakeover) response.params.push([Param.ClientNoContextTakeover, true]);
  // §7.1.2.1: an offered server_max_window_bits caps our window; the response MUST then name a
  // value no larger. Without it, we may still announce a smaller window of our own.
  let serverBits = MAX_WINDOW_BITS;
  const ownServerBits = options.serverMaxWindowBits;
  if (offered.serverMaxWindowBits !== undefined) {
    serverBits = Math.min(offered.serverMaxWindowBits, ownServerBits ?? MAX_WINDOW_BITS);
    // zlib cannot compress with an 8-bit window: "The server doesn't support the offered configuration."
    if (serverBits < MIN_DEFLATE_WINDOW_BITS) return null;
    response.params.push([Param.ServerMaxWindowBits, String(serverBits)]);
  } else if (ownServerBits !== undefined) {
    serverBits = ownServerBits;
    response.params.push([Param.ServerMaxWindowBits, String(serverBits)]);
  }
  // §7.1.2.2: client_max_window_bits may be answered only when offered ("If a received extension
  // negotiation offer doesn't have the "client_max_window_bits" extension parameter, the
  // corresponding extension negotiation response to the offer MUST NOT include" it).
  let clientBits = MAX_WINDOW_BITS;
  if (offered.clientMaxWindowBits !== undefined) {
    const limit = Math.min(
      offered.clientMaxWindowBits === true ? MAX_WINDOW_BITS : offered.clientMaxWindowBits,
      options.clientMaxWindowBits ?? MAX_WINDOW_BITS,
    );
    if (limit < MAX_WINDOW_BITS) {
      clientBits = limit;
      response.params.push([Param.ClientMaxWindowBits, String(clientBits)]);
    }
  }
  return {
    response,
    serverNoContextTakeover,
    clientNoContextTakeover,
    serverMaxWindowBits: serverBits,
    clientMaxWindowBits: clientBits,
  };
}

// ----- Client -----

/** The client's offer (RFC 7692 §7.1): one permessage-deflate element built from `options`. */
export function buildDeflateOffer(options: PerMessageDeflateOptions = {}): ExtensionOffer {
  const params: Array<[string, string | true]> = [];
  if (options.serverNoContextTakeover === true) params.push([Param.ServerNoContextTakeover, true]);
  if (options.clientNoContextTakeover === true) params.push([Param.ClientNoContextTakeover, true]);
  if (options.serverMaxWindowBits !== undefined) params.push([Param.ServerMaxWindowBits, String(options.serverMaxWindowBits)]);
  // Always offered, so that a server that wants a smaller window can say so (§7.1.2.2).
  params.push([Param.ClientMaxWindowBits, options.clientMaxWindowBits === undefined ? true : String(options.clientMaxWindowBits)]);
  return { name: PERMESSAGE_DEFLATE, params };
}

/**
 * The client's check of the server's answer (RFC 7692 §5, §7.1). `accepted` is the list of
 * extensions the server accepted (validateUpgradeResponse's `extensions`). Returns null when the
 * server did not accept permessage-deflate, the agreement when the answer is acceptable, and
 * WS_ERR_INVALID_EXTENSION (close 1010) otherwise: "A client MUST _Fail the WebSocket
 * Connection_ if ... the negotiation response contains an extension parameter not defined for
 * use in a response ... with an invalid value ... multiple extension parameters with the same
 * name ... [or] the client does not support the configuration that the response represents."
 */
export function acceptDeflateResponse(
  accepted: readonly ExtensionOffer[],
  options: PerMessageDeflateOptions = {},
): DeflateAgreement | null | WebSocketError {
  const elements = accepted.filter((element) => element.name === PERMESSAGE_DEFLATE);
  if (elements.length === 0) return null;
  if (elements.length > 1) return new WebSocketError('WS_ERR_INVALID_EXTENSION', 'permessage-deflate accepted twice');
  const response = elements[0]!;
  const params = parseParams(response, true);
  if (typeof params === 'string') return new WebSocketError('WS_ERR_INVALID_EXTENSION', params);
  // We asked for server_no_context_takeover: a server accepting our offer MUST include it (§7.1.1.1).
  if (options.serverNoContextTakeover === true && !params.serverNoContextTakeover) {
    return new WebSocketError('WS_ERR_INVALID_EXTENSION', 'server_no_context_takeover was requested and not granted');
  }
  // We capped the server's window: the response MUST name a value no larger (§7.1.2.1).
  if (options.serverMaxWindowBits !== undefined) {
    if (params.serverMaxWindowBits === undefined || params.serverMaxWindowBits > options.serverMaxWindowBits) {
      return new WebSocketError('WS_ERR_INVALID_EXTENSION', `server_max_window_bits over the ${options.serverMaxWindowBits} offered`);
    }
  }
  // client_max_window_bits answered: a value, and (when we offered one) no larger than ours.
  let clientBits = options.clientMaxWindowBits ?? MAX_WINDOW_BITS;
  if (typeof params.clientMaxWindowBits === 'number') {
    if (params.clientMaxWindowBits > clientBits) {
      return new WebSocketError('WS_ERR_INVALID_EXTENSION', `client_max_window_bits over the ${clientBits} offered`);
    }
    clientBits = params.clientMaxWindowBits;
  }
  return {
    response,
    serverNoContextTakeover: params.serverNoContextTakeover,
    clientNoContextTakeover: params.clientNoContextTakeover || options.clientNoContextTakeover === true,
    serverMaxWindowBits: params.serverMaxWindowBits ?? MAX_WINDOW_BITS,
    clientMaxWindowBits: clientBits,
  };
}

/**
 * How `role` inflates and deflates under `agreement`. Our inflater uses the peer's window, at
 * least 9 bits (a 9-bit window decodes 8-bit data, and some peers say 8 but use 9). Our deflater
 * is null when the agreed window is 8 bits (zlib cannot honour it): messages then go uncompressed.
 */
export function deflateSides(agreement: DeflateAgreement, role: 'server' | 'client'): DeflateSides {
  const server = role === 'server';
  const peerBits = server ? agreement.clientMaxWindowBits : agreement.serverMaxWindowBits;
  const ownBits = server ? agreement.serverMaxWindowBits : agreement.clientMaxWindowBits;
  return {
    inflate: {
      windowBits: Math.max(peerBits, MIN_DEFLATE_WINDOW_BITS),
      noContextTakeover: server ? agreement.clientNoContextTakeover : agreement.serverNoContextTakeover,
    },
    deflate:
      ownBits < MIN_DEFLATE_WINDOW_BITS
        ? null
        : { windowBits: ownBits, noContextTakeover: server ? agreement.serverNoContextTakeover : agreement.clientNoContextTakeover },
  };
}

// ----- Concurrency -----

/**
 * A counting semaphore for zlib operations. `acquire(task)` runs `task` now when a slot is free,
 * else when one is released (first come, first served); every `acquire` is matched by one
 * `release`. No closure is kept beyond the queue.
 */
export class ZlibLimiter {
  readonly concurrency: number;
  private running = 0;
  private readonly queue: Array<() => void> = [];
  private queueHead = 0;

  constructor(concurrency: number) {
    this.concurrency = concurrency;
  }

  /** Operations holding a slot. */
  get active(): number {
    return this.running;
  }

  /** Operations waiting for a slot. */
  get waiting(): number {
    return this.queue.length - this.queueHead;
  }

  acquire(task: () => void): void {
    if (this.running < this.concurrency) {
      this.running++;
      task();
    } else {
      this.queue.push(task);
    }
  }

  release(): void {
    if (this.queueHead < this.queue.length) {
      const task = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = noop;
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      }
      // The slot passes straight to the next task.
      task();
    } else {
      this.running--;
    }
  }
}

function noop(): void {}

const limiters = new Map<number, ZlibLimiter>();

/** The process-wide limiter for `concurrency` (one per distinct value; default 10). */
/**
 * The frames an asynchronous zlib stage has accepted and not finished, each with the callback
 * to call when it is: an array with a head index (no shift() per frame), emptied once drained.
 */
export class FrameQueue<Done extends (err: WebSocketError | null) => void> {
  private frames: Frame[] = [];
  private dones: Done[] = [];
  private head = 0;

  get length(): number {
    return this.frames.length - this.head;
  }

  /** The oldest unfinished frame, or undefined. */
  peek(): Frame | undefined {
    return this.head < this.frames.length ? this.frames[this.head] : undefined;
  }

  /** The `index`-th unfinished frame (0 is the oldest), or undefined. */
  at(index: number): Frame | undefined {
    const i = this.head + index;
    return i < this.frames.length ? this.frames[i] : undefined;
  }

  /** Whether an unfinished frame has `opcode`. */
  has(opcode: Opcode): boolean {
    for (let i = this.head; i < this.frames.length; i++) if (this.frames[i]!.opcode === opcode) return true;
    return false;
  }

  push(frame: Frame, done: Done): void {
    this.frames.push(frame);
    this.dones.push(done);
  }

  /**
   * Removes the `count` oldest frames, then calls their callbacks with `err`, in order (all are
   * removed before any callback runs, so a callback that writes again finds none of them).
   */
  finish(err: WebSocketError | null, count = 1): void {
    if (count === 1) {
      const done = this.dones[this.head]!;
      this.frames[this.head] = undefined as unknown as Frame;
      this.dones[this.head] = undefined as unknown as Done;
      this.head++;
      if (this.head === this.frames.length) this.clear();
      done(err);
      return;
    }
    const dones = this.dones.slice(this.head, this.head + count);
    for (let i = this.head; i < this.head + count; i++) {
      this.frames[i] = undefined as unknown as Frame;
      this.dones[i] = undefined as unknown as Done;
    }
    this.head += count;
    if (this.head === this.frames.length) this.clear();
    for (const done of dones) done(err);
  }

  /** Empties the queue and calls every callback with `err`. */
  failAll(err: WebSocketError): void {
    const dones = this.dones;
    const head = this.head;
    this.clear();
    for (let i = head; i < dones.length; i++) dones[i]!(err);
  }

  private clear(): void {
    this.frames = [];
    this.dones = [];
    this.head = 0;
  }
}

/** Listeners a deflate or inflate stage keeps on its zlib stream. */
export interface ZlibListeners {
  onData(chunk: Buffer): void;
  onError(err: Error): void;
}

/** Starts listening to a fresh zlib stream. */
export function attachZlib<Z extends NodeJS.EventEmitter>(zlib: Z, listeners: ZlibListeners): Z {
  zlib.on('data', listeners.onData);
  zlib.on('error', listeners.onError);
  return zlib;
}

/**
 * Stops listening to a zlib stream that is no longer used and destroys it. An error it may still
 * emit concerns nobody, and must not go unhandled.
 */
export function discardZlib(zlib: NodeJS.EventEmitter & { destroy(): void }, listeners: ZlibListeners): void {
  zlib.removeListener('data', listeners.onData);
  zlib.removeListener('error', listeners.onError);
  zlib.on('error', ignoreError);
  zlib.destroy();
}

function ignoreError(): void {}

export function sharedLimiter(concurrency: number = DeflateDefaults.maxConcurrency): ZlibLimiter {
  let limiter = limiters.get(concurrency);
  if (limiter === undefined) {
    limiter = new ZlibLimiter(concurrency);
    limiters.set(concurrency, limiter);
  }
  return limiter;
}

/** The 4 bytes a sync flush ends with; removed by the sender, appended by the receiver (RFC 7692 §7.2.1, §7.2.2). */
export const DEFLATE_TRAILER: Buffer = Buffer.from([0x00, 0x00, 0xff, 0xff]);
