/**
 * The load generator's view of the wire, written by hand so that it costs the same against every
 * server: a fixed opening-handshake request, masked frames built once, and a frame counter that
 * reads only headers and skips payload bytes.
 */

/** A fixed Sec-WebSocket-Key (RFC 6455 §1.3's sample nonce): every server accepts any valid key. */
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** The client's opening handshake for `path` ('/echo' or '/sink'). */
export function upgradeRequest(port: number, path: string): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\n` +
      `Host: 127.0.0.1:${port}\r\n` +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${KEY}\r\n` +
      'Sec-WebSocket-Version: 13\r\n\r\n',
    'latin1',
  );
}

const FIN_BINARY = 0x82;
const MASK_BIT = 0x80;

/** The masking key of every masked frame the bench builds (any key costs the same). */
export const MASK_KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** Bytes of extended payload length a frame of `size` payload bytes carries: 0, 2 or 8. */
function lengthBytes(size: number): 0 | 2 | 8 {
  return size < 126 ? 0 : size < 0x10000 ? 2 : 8;
}

/** Size of a binary frame's header for a payload of `size` bytes, with the key or without. */
export function frameHeaderLength(size: number, masked: boolean): number {
  return 2 + lengthBytes(size) + (masked ? 4 : 0);
}

/**
 * Writes the header of a binary frame (FIN set) of `size` payload bytes into `into` at its start,
 * with MASK_KEY when `masked`; returns the header's length.
 */
export function writeHeader(into: Buffer, size: number, masked: boolean): number {
  const form = lengthBytes(size);
  into[0] = FIN_BINARY;
  into[1] = (masked ? MASK_BIT : 0) | (form === 0 ? size : form === 2 ? 126 : 127);
  if (form === 2) into.writeUInt16BE(size, 2);
  else if (form === 8) {
    into.writeUInt16BE(0, 2);
    into.writeUIntBE(size, 4, 6);
  }
  if (!masked) return 2 + form;
  MASK_KEY.copy(into, 2 + form);
  return 2 + form + 4;
}

/** One masked binary frame (FIN set) carrying `size` bytes of a repeating pattern. */
export function maskedBinaryFrame(size: number): Buffer {
  const frame = Buffer.allocUnsafe(frameHeaderLength(size, true) + size);
  const header = writeHeader(frame, size, true);
  for (let i = 0; i < size; i++) frame[header + i] = (i & 0x7f) ^ MASK_KEY[i & 3]!;
  return frame;
}

/** `count` copies of `frame` back to back, so that any number of them up to count is one write. */
export function repeat(frame: Buffer, count: number): Buffer {
  const out = Buffer.allocUnsafe(frame.length * count);
  for (let i = 0; i < count; i++) frame.copy(out, i * frame.length);
  return out;
}

/** Longest frame header: 2 bytes, 8 of extended length, 4 of mask. */
const MAX_HEADER = 14;

/**
 * Counts whole frames in a byte stream (masked or not), reading headers only. Payload bytes are
 * skipped, never copied. Supports payload lengths up to 2^48.
 */
export class FrameCounter {
  /** Frames completed so far. */
  frames = 0;
  /** Payload bytes seen so far (of frames complete or not). */
  payloadBytes = 0;
  /** Payload length of the current frame, and the bytes of it still to come. */
  private length = 0;
  private remaining = 0;
  /** A header split across chunks, gathered here. */
  private readonly header = Buffer.alloc(MAX_HEADER);
  private headerLength = 0;

  /**
   * Feeds one chunk; returns how many frames it completed. `onPayload`, if given, sees each run
   * of payload bytes in `buf` (start and end indexes in buf, and how far into its frame's payload
   * the run begins), in order.
   */
  feed(buf: Buffer, onPayload?: (buf: Buffer, start: number, end: number, payloadOffset: number) => void): number {
    const before = this.frames;
    const length = buf.length;
    let i = 0;
    while (i < length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, length - i);
        onPayload?.(buf, i, i + n, this.length - this.remaining);
        this.remaining -= n;
        this.payloadBytes += n;
        i += n;
        if (this.remaining === 0) this.frames++;
        continue;
      }
      if (this.headerLength === 0) {
        const need = headerSize(buf, i, length);
        if (need > 0 && length - i >= need) {
          this.startPayload(payloadLength(buf, i));
          i += need;
          continue;
        }
      }
      // The header spans chunks: gather it byte by byte (rare).
      this.header[this.headerLength++] = buf[i++]!;
      const need = headerSize(this.header, 0, this.headerLength);
      if (need > 0 && this.headerLength >= need) {
        this.startPayload(payloadLength(this.header, 0));
        this.headerLength = 0;
      }
    }
    return this.frames - before;
  }

  private startPayload(length: number): void {
    this.length = length;
    if (length === 0) this.frames++;
    else this.remaining = length;
  }
}

/** Size of the header at buf[at], or 0 when its first two bytes are not there yet. */
function headerSize(buf: Buffer, at: number, end: number): number {
  if (end - at < 2) return 0;
  const b1 = buf[at + 1]!;
  const code = b1 & 0x7f;
  return 2 + (code === 126 ? 2 : code === 127 ? 8 : 0) + (b1 & MASK_BIT ? 4 : 0);
}

/** Payload length of the (complete) header at buf[at]. */
function payloadLength(buf: Buffer, at: number): number {
  const code = buf[at + 1]! & 0x7f;
  if (code === 126) return buf.readUInt16BE(at + 2);
  if (code === 127) return buf.readUIntBE(at + 4, 6);
  return code;
}

/**
 * Reads of `readSize` bytes cut from an endless stream of `frame` repeated, each in a fresh
 * buffer as a socket read is: each call returns the next.
 */
export function streamReads(frame: Buffer, readSize: number): () => Buffer {
  let at = 0;
  return () => {
    const out = Buffer.allocUnsafe(readSize);
    let filled = 0;
    while (filled < readSize) {
      const n = frame.copy(out, filled, at);
      filled += n;
      at = (at + n) % frame.length;
    }
    return out;
  };
}
