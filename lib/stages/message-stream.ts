/**
 * Messages as streams, for payloads of any size with bounded memory.
 *
 * - MessageReadable: one incoming message, yielding its payload as it arrives. Its kind
 *   (`binary`) is known from the first frame. When its buffer is over highWaterMark the
 *   connection pauses the socket, so the peer is slowed down by TCP.
 * - MessageWritable: one outgoing message. Each chunk written becomes one frame (or more, with
 *   fragmentSize) and end() sends the final frame with FIN. Its write() returns false while the
 *   socket is not drained, so a piped source (a file, an HTTP response) pauses.
 */
import { Buffer } from 'node:buffer';
import { Readable, Writable } from './streams';

/** Default highWaterMark of message streams, in bytes. */
export const MESSAGE_STREAM_HIGH_WATER_MARK = 64 * 1024;

export class MessageReadable extends Readable {
  /** True for a binary message, false for text (UTF-8, validated as it arrives). */
  readonly binary: boolean;
  private readonly wantMore: () => void;
  private readonly consumed: ((bytes: number) => void) | null;

  /**
   * @internal Created by the connection when a message starts. `consumed` hears how many
   * buffered bytes each read() took out (the connection's memory budget counts them).
   */
  constructor(binary: boolean, wantMore: () => void, highWaterMark = MESSAGE_STREAM_HIGH_WATER_MARK, consumed?: (bytes: number) => void) {
    super({ highWaterMark });
    this.binary = binary;
    this.wantMore = wantMore;
    this.consumed = consumed ?? null;
  }

  override _read(): void {
    this.wantMore();
  }

  // Every way of consuming a buffered chunk (a 'data' listener, pipe(), for await, read())
  // goes through read(); a chunk pushed while the stream flows with an empty buffer is handed
  // to 'data' at once and was never buffered.
  override read(size?: number): Buffer | null {
    const chunk = super.read(size) as Buffer | null;
    if (chunk !== null && this.consumed !== null) this.consumed(chunk.length);
    return chunk;
  }

  // Destroyed unread: its buffered bytes are dropped, so they no longer count either.
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.consumed !== null && this.readableLength > 0) this.consumed(this.readableLength);
    callback(err);
  }
}

/** What the connection does for a MessageWritable: send one part, and call back when it may send more. */
export interface PartSink {
  sendPart(owner: MessageWritable, data: Buffer, fin: boolean, callback: (err?: Error | null) => void): void;
  /**
   * The stream was destroyed before its final part went out (its source failed, or it was
   * destroyed by hand): `cause` is its error, or null. A message already begun on the wire can
   * only end by failing the connection (its peer would wait for the rest for ever); one not begun
   * just gives the outbound side back.
   */
  abortPart?(owner: MessageWritable, cause: Error | null): void;
}

export interface MessageWritableOptions {
  /** Send a binary message (default) or a text one (chunks must then be UTF-8 as a whole). */
  binary?: boolean;
  /** Bytes buffered before write() returns false. Default 64 KiB. */
  highWaterMark?: number;
}

export class MessageWritable extends Writable {
  readonly binary: boolean;
  /** @internal Whether the first part has been sent. */
  started = false;
  /** Whether the final part has been sent (the message is complete on the wire). */
  private finished = false;
  private readonly sink: PartSink;

  /** @internal Created by WebSocket.createMessageStream(). */
  constructor(sink: PartSink, options: MessageWritableOptions = {}) {
    super({ highWaterMark: options.highWaterMark ?? MESSAGE_STREAM_HIGH_WATER_MARK });
    this.binary = options.binary ?? true;
    this.sink = sink;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (chunk.length === 0) {
      callback();
      return;
    }
    this.sink.sendPart(this, chunk, false, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.sink.sendPart(this, Buffer.alloc(0), true, (err) => {
      if (err === undefined || err === null) this.finished = true;
      callback(err);
    });
  }

  override _destroy(err: Error | null, callback: (error: Error | null) => void): void {
    if (!this.finished) this.sink.abortPart?.(this, err);
    callback(err);
  }
}
