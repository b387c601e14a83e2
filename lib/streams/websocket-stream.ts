/**
 * WebSocketStream: the WHATWG proposal's face (Chromium ships it) on a wspipe WebSocket, for a
 * client (`new WebSocketStream(url, { protocols, signal })`, made with connect()) and for any
 * connection, the server's included (`toWebSocketStream(ws)`).
 *
 *   opened  ─► { readable: ReadableStream<string | Uint8Array>, writable: WritableStream, protocol, extensions }
 *   closed  ─► { closeCode, reason }          (rejects when the connection did not close cleanly)
 *   close({ closeCode, reason })
 *
 * Backpressure, both ways, is the WebSocket's own:
 * - the readable pulls one message at a time with read() from the WebSocket in paused mode
 *   (never a 'message' listener); while the readable's queue is full nothing is read, the
 *   WebSocket's unread messages grow to its memoryBudget, and there it stops reading from the
 *   socket, so TCP holds the peer back;
 * - the writable's write() resolves at once while send() returns true, else on 'drain'.
 *
 * Closing (as the proposal says): close() with a code and reason; writable.close() and
 * readable.cancel() close without a code (the peer sees 1005), abort()/cancel() with a reason
 * carrying a valid `closeCode` (and `reason`) close with those. An AbortSignal aborts the opening
 * handshake only; opened and closed then reject with the AbortError.
 */
import { Buffer } from 'node:buffer';
import { ReadableStream, WritableStream, CountQueuingStrategy } from 'node:stream/web';
import type { ReadableStreamDefaultController, WritableStreamDefaultController } from 'node:stream/web';
import { MAX_CLOSE_REASON, checkCloseArgs } from '../protocol/close';
import { WebSocketError, invalidArgument } from '../protocol/errors';
import { ReadyState, type WebSocket } from '../connection/websocket';
import { MessageReadable } from '../stages/message-stream';
import { type ClientOptions, connect } from '../client/client';

/** What opened resolves with. */
export interface WebSocketStreamConnection {
  /** The messages received: text as a string, binary as a Uint8Array (a Buffer). */
  readable: ReadableStream<string | Uint8Array>;
  /** Messages to send: a string is text, an ArrayBuffer or ArrayBufferView binary (copied). */
  writable: WritableStream<string | ArrayBuffer | ArrayBufferView>;
  /** The extensions agreed on ('' for none). */
  extensions: string;
  /** The subprotocol agreed on ('' for none). */
  protocol: string;
}

/** What closed resolves with, and what close() takes. */
export interface WebSocketCloseInfo {
  /** 1000 or 3000-4999 for close(); what the peer's close frame said (1005 without a code) for closed. */
  closeCode?: number;
  /** At most 123 bytes of UTF-8. */
  reason?: string;
}

export interface WebSocketStreamOptions extends Omit<ClientOptions, 'protocols' | 'streamMessages' | 'requireProtocol'> {
  /** Subprotocols to offer; when given, the server must choose one of them (as browsers require). */
  protocols?: string | string[];
  /** Aborts the opening handshake: opened and closed reject with an AbortError. Nothing after the open. */
  signal?: AbortSignal;
}

/** The closing handshake's codes an application may send (WHATWG WebSockets, close()). */
function isApplicationCloseCode(code: number): boolean {
  return Number.isInteger(code) && (code === 1000 || (code >= 3000 && code <= 4999));
}

/**
 * Checks close()'s argument as WebSocket.close() does: returns the code and reason to send
 * (1000 when only a reason is given), or throws WS_ERR_INVALID_ARGUMENT.
 */
function checkCloseInfo(info: WebSocketCloseInfo | undefined): { code?: number; reason?: string } {
  if (info === undefined || info === null) return {};
  if (typeof info !== 'object') throw invalidArgument(`the close info must be an object, not ${typeof info}`);
  const { closeCode, reason } = info;
  if (closeCode !== undefined && (typeof closeCode !== 'number' || !isApplicationCloseCode(closeCode))) {
    throw invalidArgument(`the close code must be 1000 or 3000-4999, not ${String(closeCode)}`, RangeError);
  }
  if (reason !== undefined) {
    if (typeof reason !== 'string') throw invalidArgument(`the close reason must be a string, not ${typeof reason}`);
    if (Buffer.byteLength(reason, 'utf8') > MAX_CLOSE_REASON) throw invalidArgument(`the close reason is over ${MAX_CLOSE_REASON} bytes of UTF-8`, RangeError);
  }
  if (closeCode === undefined && reason === undefined) return {};
  return { code: closeCode ?? 1000, reason };
}

/** The code and reason of an abort()/cancel() reason that carries valid ones, else none (1005). */
function closeFromReason(reason: unknown): { code?: number; reason?: string } {
  if (typeof reason !== 'object' || reason === null) return {};
  const { closeCode, reason: text } = reason as { closeCode?: unknown; reason?: unknown };
  if (typeof closeCode !== 'number' || !isApplicationCloseCode(closeCode)) return {};
  const said = typeof text === 'string' ? text : undefined;
  return checkCloseArgs(closeCode, said) === null ? { code: closeCode, reason: said } : { code: closeCode };
}

/** A promise whose rejection is not reported as unhandled when nobody awaits it (it still rejects for those who do). */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** A message to send, from what the writable accepts; throws a TypeError for anything else. */
function toMessage(chunk: unknown): { data: string | Buffer; binary: boolean } {
  if (typeof chunk === 'string') return { data: chunk, binary: false };
  if (chunk instanceof ArrayBuffer) return { data: Buffer.from(new Uint8Array(chunk)), binary: true };
  if (ArrayBuffer.isView(chunk)) return { data: Buffer.from(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)), binary: true };
  throw invalidArgument(`a WebSocketStream writes a string, an ArrayBuffer or an ArrayBufferView, not ${chunk === null ? 'null' : typeof chunk}`);
}

/** Reads a streamed message (a connection made with streamMessages) whole. */
async function wholeMessage(stream: MessageReadable): Promise<string | Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  const data = Buffer.concat(parts);
  return stream.binary ? data : data.toString('utf8');
}

/** Set by toWebSocketStream() for the constructor it calls: the connection to take instead of connecting. */
let adopting: WebSocket | null = null;

export class WebSocketStream {
  /** The URL connected to (client), or '' for a connection handed to toWebSocketStream(). */
  readonly url: string;
  /** Resolves once the connection is open; rejects if it never opens. */
  readonly opened: Promise<WebSocketStreamConnection>;
  /** Resolves with the close code and reason after a clean close; rejects otherwise. */
  readonly closed: Promise<Required<WebSocketCloseInfo>>;
  readonly #ws: WebSocket;

  /**
   * Opens a client connection (connect() with these options). Throws at the call for a URL that
   * is not ws:// or wss:// and for invalid or repeated protocols.
   */
  constructor(url: string | URL, options: WebSocketStreamOptions = {}) {
    if (adopting !== null) {
      this.url = '';
      this.#ws = adopting;
    } else {
      const target = checkUrl(url);
      const protocols = options.protocols === undefined ? [] : typeof options.protocols === 'string' ? [options.protocols] : options.protocols;
      if (!Array.isArray(protocols) || protocols.some((p) => typeof p !== 'string')) throw invalidArgument('protocols must be a string or an array of strings');
      if (new Set(protocols).size !== protocols.length) throw invalidArgument('a protocol is offered twice');
      this.url = target.href;
      this.#ws = connect(target, { ...options, protocols, requireProtocol: protocols.length > 0, streamMessages: false });
    }
    const binding = new Binding(this.#ws);
    this.opened = binding.opened;
    this.closed = binding.closed;
  }

  /**
   * Closes the connection: with `closeCode` (1000 or 3000-4999) and `reason` (at most 123 bytes
   * of UTF-8; a reason alone closes with 1000), or without a code. Throws at the call for
   * anything else. Before the open, the opening fails (opened and closed reject).
   */
  close(info?: WebSocketCloseInfo): void {
    const { code, reason } = checkCloseInfo(info);
    closeSocket(this.#ws, code, reason);
  }
}

/**
 * The WebSocketStream face of a connection (a server's, or one from connect()), opened or still
 * opening. The connection must not be read otherwise: a 'message' or 'data' listener (flowing
 * mode) throws WS_ERR_INVALID_ARGUMENT here.
 */
export function toWebSocketStream(ws: WebSocket): WebSocketStream {
  if (ws === null || typeof ws !== 'object' || typeof ws.read !== 'function' || typeof ws.close !== 'function') throw invalidArgument('toWebSocketStream takes a WebSocket');
  if (ws.readableFlowing === true) throw invalidArgument('the connection is already read in flowing mode (a message or data listener)');
  adopting = ws;
  try {
    return new WebSocketStream('');
  } finally {
    adopting = null;
  }
}

function checkUrl(url: string | URL): URL {
  let target: URL;
  try {
    target = new URL(String(url));
  } catch {
    throw invalidArgument(`invalid URL ${String(url)}`);
  }
  if (target.protocol !== 'ws:' && target.protocol !== 'wss:') throw invalidArgument(`a WebSocketStream URL is ws:// or wss://, not ${target.protocol}`);
  if (target.hash !== '') throw invalidArgument('a WebSocket URL has no fragment');
  return target;
}

/** Starts the closing handshake, or fails the opening; nothing once closing. */
function closeSocket(ws: WebSocket, code?: number, reason?: string): void {
  if (ws.readyState === ReadyState.OPEN || ws.readyState === ReadyState.CONNECTING) ws.close(code, reason);
}

/** The web streams and the two promises of one connection. */
class Binding {
  readonly opened: Promise<WebSocketStreamConnection>;
  readonly closed: Promise<Required<WebSocketCloseInfo>>;
  private readableController: ReadableStreamDefaultController<string | Uint8Array> | null = null;
  private writableController: WritableStreamDefaultController | null = null;
  /** The pull waiting for a message ('readable' or 'end' settles it). */
  private pending: (() => void) | null = null;
  /** The write waiting for 'drain'. */
  private draining: { resolve: () => void; reject: (err: unknown) => void } | null = null;
  private readableDone = false;
  private firstError: Error | null = null;

  constructor(private readonly ws: WebSocket) {
    ws.on('error', (err: Error) => (this.firstError ??= err));
    ws.on('readable', () => this.wake());
    ws.on('end', () => this.wake());
    ws.on('drain', () => {
      const waiting = this.draining;
      this.draining = null;
      waiting?.resolve();
    });
    this.opened = quiet(
      new Promise<WebSocketStreamConnection>((resolve, reject) => {
        const open = (): void => resolve(this.connection());
        if (ws.readyState === ReadyState.OPEN) open();
        else if (ws.readyState === ReadyState.CONNECTING) {
          ws.once('open', open);
          ws.once('close', () => reject(this.failure()));
        } else reject(new WebSocketError('WS_ERR_INVALID_STATE', 'the connection is closing or closed'));
      }),
    );
    this.closed = quiet(
      new Promise<Required<WebSocketCloseInfo>>((resolve, reject) => {
        const onClose = (code: number, reason: string): void => {
          // Clean: a closing handshake and no failure (a connection we failed, e.g. 1009, is not).
          const clean = code !== 1006 && this.firstError === null && this.ws.error === null;
          const err = clean ? new WebSocketError('WS_ERR_INVALID_STATE', 'the connection is closed') : this.failure();
          if (!this.readableDone && !clean) {
            this.readableDone = true;
            this.readableController?.error(err);
          }
          this.writableController?.error(err);
          const waiting = this.draining;
          this.draining = null;
          waiting?.reject(err);
          this.wake();
          if (clean) resolve({ closeCode: code, reason });
          else reject(err);
        };
        if (ws.readyState === ReadyState.CLOSED) reject(new WebSocketError('WS_ERR_INVALID_STATE', 'the connection is closed'));
        else ws.once('close', onClose);
      }),
    );
  }

  /** Why the connection failed: its first error, or a lost connection. */
  private failure(): Error {
    return this.firstError ?? this.ws.error ?? new WebSocketError('WS_ERR_CONNECTION_LOST');
  }

  /** A message may be readable (or the end reached): the waiting pull tries again. */
  private wake(): void {
    const pending = this.pending;
    this.pending = null;
    pending?.();
  }

  private connection(): WebSocketStreamConnection {
    const ws = this.ws;
    const readable = new ReadableStream<string | Uint8Array>(
      {
        start: (controller) => void (this.readableController = controller),
        pull: (controller) => this.pull(controller),
        cancel: (reason: unknown) => {
          this.readableDone = true;
          const { code, reason: text } = closeFromReason(reason);
          closeSocket(ws, code, text);
        },
      },
      new CountQueuingStrategy({ highWaterMark: 1 }),
    );
    const writable = new WritableStream<string | ArrayBuffer | ArrayBufferView>(
      {
        start: (controller) => void (this.writableController = controller),
        write: (chunk) => this.write(chunk),
        close: () => closeSocket(ws),
        abort: (reason: unknown) => {
          const { code, reason: text } = closeFromReason(reason);
          closeSocket(ws, code, text);
        },
      },
      new CountQueuingStrategy({ highWaterMark: 1 }),
    );
    return { readable, writable, extensions: ws.extensions, protocol: ws.protocol };
  }

  /** One message into the readable's queue, once there is one. */
  private pull(controller: ReadableStreamDefaultController<string | Uint8Array>): Promise<void> | void {
    if (this.readableDone) return;
    const value = this.ws.read() as string | Buffer | MessageReadable | null;
    if (value instanceof MessageReadable) {
      return wholeMessage(value).then(
        (data) => controller.enqueue(data),
        (err: unknown) => controller.error(err),
      );
    }
    if (value !== null) {
      controller.enqueue(value);
      return;
    }
    if (this.ws.readableEnded) {
      // Ended by the peer's close frame: done; by a failure of the connection: errored with it.
      this.readableDone = true;
      const failed = this.firstError ?? this.ws.error;
      if (failed === null) controller.close();
      else controller.error(failed);
      return;
    }
    return new Promise<void>((resolve) => {
      this.pending = () => resolve(this.pull(controller));
    });
  }

  /** Sends one message: resolves at once while the connection takes more, else on 'drain'. */
  private write(chunk: unknown): Promise<void> | void {
    const { data, binary } = toMessage(chunk);
    const ws = this.ws;
    if (ws.readyState !== ReadyState.OPEN) throw new WebSocketError('WS_ERR_INVALID_STATE', 'the connection is closing or closed');
    if (ws.send(data, { binary })) return;
    return new Promise<void>((resolve, reject) => (this.draining = { resolve, reject }));
  }
}
