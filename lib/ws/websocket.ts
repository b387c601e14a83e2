/**
 * wspipe/ws WebSocket: ws's WebSocket API (an EventEmitter) over one wspipe connection.
 *
 *   new WebSocket('ws://host/path', ['chat'], { maxPayload })   a client: connect() underneath
 *   server.on('connection', (ws, req) => ...)                    a server's connection
 *
 * Events as ws emits them: 'open'; 'message' (data, isBinary) with data a Buffer, an ArrayBuffer
 * or a Buffer[] as binaryType says, text included; 'ping' and 'pong' (Buffer); 'close' (code,
 * reason as a Buffer); 'error'; 'upgrade' (the 101 response) and 'unexpected-response' (request,
 * response) on a client. Differences from ws are listed in docs/migrating-from-ws.md.
 */
import { Buffer } from 'node:buffer';
import { Readable } from 'node:stream';
import { connect, RefusedResponse } from '../client/client';
import { ReadyState, WebSocket as Connection } from '../connection/websocket';
import { WebSocketError } from '../protocol/errors';
import { clientOptions, invalidArgument, WsClientOptions } from './options';
import { BrowserEvents } from './event-target';

export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments';
/** What 'message' carries, by binaryType: Buffer, ArrayBuffer, or Buffer[]. */
export type RawData = Buffer | ArrayBuffer | Buffer[];
/** What send() accepts (a number is sent as its decimal text, as ws does). */
export type SendData = string | Buffer | ArrayBuffer | ArrayBufferView | number;
type Callback = (err?: Error | null) => void;

const BINARY_TYPES: readonly BinaryType[] = ['nodebuffer', 'arraybuffer', 'fragments'];

/** What 'unexpected-response' gives as the request: what was asked (ws gives its http.ClientRequest). */
export interface UnexpectedRequest {
  method: 'GET';
  host: string;
  path: string;
}

/** The refusal as a readable of its body, with the fields of Node's IncomingMessage that apply. */
export type UnexpectedResponse = Readable & Pick<RefusedResponse, 'statusCode' | 'statusMessage' | 'headers' | 'rawHeaders' | 'httpVersion'>;

function notOpen(state: ReadyState): WebSocketError {
  return new WebSocketError('WS_ERR_INVALID_STATE', `WebSocket is not open: readyState ${state} (${ReadyState[state]})`);
}

/** A view of `data` as a Buffer (no copy), or the string itself. */
function toPayload(data: SendData): string | Buffer {
  if (typeof data === 'string') return data;
  if (typeof data === 'number') return String(data);
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw invalidArgument('The data argument must be a string, a Buffer, an ArrayBuffer, a TypedArray, a DataView or a number');
}

export class WebSocket extends BrowserEvents {
  static readonly CONNECTING = ReadyState.CONNECTING;
  static readonly OPEN = ReadyState.OPEN;
  static readonly CLOSING = ReadyState.CLOSING;
  static readonly CLOSED = ReadyState.CLOSED;
  readonly CONNECTING = ReadyState.CONNECTING;
  readonly OPEN = ReadyState.OPEN;
  readonly CLOSING = ReadyState.CLOSING;
  readonly CLOSED = ReadyState.CLOSED;

  /** The wspipe connection underneath (a Duplex of messages, with taps and the rest). */
  readonly connection: Connection;
  /** The URL given to the constructor (a client); undefined on a server's connection. */
  readonly url: string | undefined;
  private type: BinaryType = 'nodebuffer';

  /**
   * A client: `new WebSocket(address, protocols?, options?)`, address a ws:// or wss:// URL
   * (string or URL), protocols a string or a list. An invalid URL or option is reported as
   * 'error' and 'close' (1006) on a later tick (ws throws some of them at the call).
   */
  constructor(address: string | URL, protocols?: string | string[] | WsClientOptions, options?: WsClientOptions);
  /** @internal A server's connection: wraps an open wspipe connection. */
  constructor(address: null, connection: Connection);
  constructor(address: string | URL | null, a?: string | string[] | WsClientOptions | Connection, b?: WsClientOptions) {
    super();
    if (address === null) {
      this.connection = a as Connection;
      this.url = undefined;
    } else {
      const offered = typeof a === 'string' ? [a] : Array.isArray(a) ? a : [];
      const options = (typeof a === 'object' && !Array.isArray(a) ? a : b) as WsClientOptions | undefined;
      const mapped = clientOptions(options ?? {});
      this.url = typeof address === 'string' ? address : address.href;
      this.connection = connect(address, {
        ...mapped.connection,
        protocols: offered,
        tls: mapped.tls,
        handshakeTimeout: mapped.handshakeTimeout,
        perMessageDeflate: mapped.perMessageDeflate,
        origin: mapped.origin,
        headers: mapped.headers,
        generateMask: mapped.generateMask,
        signal: mapped.signal,
        // ws (like browsers) refuses a 101 that selects none of the protocols offered.
        requireProtocol: true,
      });
      this.connection.on('open', () => this.emit('open'));
      this.connection.on('upgrade', (response: unknown) => this.emit('upgrade', response));
      this.connection.on('unexpected-response', (response: RefusedResponse) => this.unexpectedResponse(response));
    }
    const connection = this.connection;
    connection.on('message', (data: string | Buffer, isBinary: boolean) => this.emitMessage(data, isBinary));
    connection.on('ping', (payload: Buffer) => this.emit('ping', payload));
    connection.on('pong', (payload: Buffer) => this.emit('pong', payload));
    connection.on('error', (err: Error) => this.onError(err));
    connection.on('close', (code: number, reason: string) => this.emit('close', code, Buffer.from(reason)));
  }

  /**
   * 'nodebuffer' (default), 'arraybuffer' or 'fragments' (a list with one Buffer: wspipe joins a
   * message's frames as it receives them): the type of binary messages' data; text messages
   * are Buffers whatever it says, as in ws. Other values are ignored, as in ws.
   */
  get binaryType(): BinaryType {
    return this.type;
  }
  set binaryType(type: BinaryType) {
    if (BINARY_TYPES.includes(type)) this.type = type;
  }

  get readyState(): ReadyState {
    return this.connection.readyState;
  }

  /** Bytes accepted by send() and not yet handed to the socket. */
  get bufferedAmount(): number {
    return this.connection.bufferedAmount;
  }

  /** The subprotocol the server selected ('' for none). */
  get protocol(): string {
    return this.connection.protocol;
  }

  /** The extensions in use, by name ('permessage-deflate' or ''). */
  get extensions(): string {
    const agreed = this.connection.extensions;
    return agreed === '' ? '' : agreed.split(',').map((e) => e.split(';')[0]!.trim()).join();
  }

  /** True while pause() holds the incoming messages. */
  get isPaused(): boolean {
    return this.connection.isPaused();
  }

  /**
   * Sends a message: a string as text, anything else as binary unless `options.binary` says.
   * `cb` is called once the message is handed to the socket, or with the error. Throws while
   * CONNECTING, as ws does; once closing, `cb` gets the error. `options.compress` is accepted
   * (permessage-deflate's threshold decides); `options.fin: false` (a fragmented message) is not
   * supported and throws: use `ws.connection.createMessageStream()`.
   */
  send(data: SendData, cb?: Callback): void;
  send(data: SendData, options?: { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean }, cb?: Callback): void;
  send(data: SendData, a?: { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean } | Callback, b?: Callback): void {
    const options = typeof a === 'function' || a === undefined ? {} : a;
    const cb = typeof a === 'function' ? a : b;
    const state = this.readyState;
    if (state === ReadyState.CONNECTING) throw notOpen(state);
    const payload = toPayload(data);
    if (options.fin === false) {
      throw invalidArgument("send() with fin: false is not supported by wspipe/ws: use ws.connection.createMessageStream()");
    }
    if (state !== ReadyState.OPEN) {
      if (cb !== undefined) process.nextTick(cb, notOpen(state));
      return;
    }
    const binary = options.binary ?? typeof payload !== 'string';
    if (cb === undefined) this.connection.send(payload, { binary });
    else this.connection.send(payload, { binary }, (err) => cb(err ?? undefined));
  }

  /** Sends a ping (data at most 125 bytes); `mask` is ignored (the role decides). */
  ping(data?: SendData | Callback, mask?: boolean | Callback, cb?: Callback): void {
    this.control('ping', data, mask, cb);
  }

  /** Sends a pong (data at most 125 bytes); `mask` is ignored (the role decides). */
  pong(data?: SendData | Callback, mask?: boolean | Callback, cb?: Callback): void {
    this.control('pong', data, mask, cb);
  }

  private control(kind: 'ping' | 'pong', data: SendData | Callback | undefined, mask: boolean | Callback | undefined, cb: Callback | undefined): void {
    const callback = typeof data === 'function' ? data : typeof mask === 'function' ? mask : cb;
    const payload = typeof data === 'function' || data === undefined ? Buffer.alloc(0) : toPayload(data);
    const state = this.readyState;
    if (state === ReadyState.CONNECTING) throw notOpen(state);
    if (state !== ReadyState.OPEN) {
      if (callback !== undefined) process.nextTick(callback, notOpen(state));
      return;
    }
    if (callback === undefined) this.connection[kind](payload);
    else this.connection[kind](payload, undefined, callback);
  }

  /**
   * Starts the closing handshake (code 1000 or 3000-4999 and the others RFC 6455 allows;
   * reason at most 123 bytes). While CONNECTING, the handshake is abandoned: 'error', then
   * 'close' 1006.
   */
  close(code?: number, reason?: string | Buffer): void {
    this.connection.close(code, Buffer.isBuffer(reason) ? reason.toString() : reason);
  }

  /** Destroys the socket at once ('close' 1006); while CONNECTING, 'error' first, as in ws. */
  terminate(): void {
    if (this.readyState === ReadyState.CONNECTING) {
      this.connection.abortHandshake(new WebSocketError('WS_ERR_INVALID_STATE', 'WebSocket was closed before the connection was established'));
    } else {
      this.connection.terminate();
    }
  }

  /** Stops emitting 'message' (the socket is paused once the buffer fills). */
  pause(): void {
    if (this.readyState !== ReadyState.CONNECTING) this.connection.pause();
  }

  resume(): void {
    if (this.readyState !== ReadyState.CONNECTING) this.connection.resume();
  }

  private emitMessage(data: string | Buffer, isBinary: boolean): void {
    // Text comes out of wspipe as a string: ws gives its UTF-8 bytes.
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    // binaryType applies to binary messages; text is always a Buffer, as in ws.
    const type = isBinary ? this.type : 'nodebuffer';
    const value: RawData =
      type === 'nodebuffer'
        ? bytes
        : type === 'fragments'
          ? [bytes]
          : bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
            ? (bytes.buffer as ArrayBuffer)
            : (bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
    this.emit('message', value, isBinary);
  }

  /** An 'unexpected-response' listener takes the refusal; without one, the error reports it. */
  private unexpectedResponse(response: RefusedResponse): void {
    if (this.listenerCount('unexpected-response') === 0) return;
    this.refusalTaken = true;
    const url = new URL(this.url!);
    const request: UnexpectedRequest = { method: 'GET', host: url.host, path: `${url.pathname}${url.search}` };
    const res = Object.assign(Readable.from([response.body]), {
      statusCode: response.statusCode,
      statusMessage: response.statusMessage,
      headers: response.headers,
      rawHeaders: response.rawHeaders,
      httpVersion: response.httpVersion,
    });
    this.emit('unexpected-response', request, res satisfies UnexpectedResponse);
  }

  private refusalTaken = false;

  /**
   * Errors go to 'error' listeners; without one, wspipe does not throw (it keeps the error in
   * `connection.error`, and 'close' follows), where ws would crash the process.
   */
  private onError(err: Error): void {
    if (this.refusalTaken && err instanceof WebSocketError && err.code === 'WS_ERR_HANDSHAKE_REJECTED') return;
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
