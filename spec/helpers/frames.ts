/**
 * Wire fixtures built by hand, independently of lib/: a frame with any header fields (reserved
 * opcodes, RSV bits, FIN on a control frame or not), masked or not, with any declared length
 * (up to 2^64 - 1) and any actual payload (shorter than declared to truncate it), the length
 * in any of its three forms. Plus a small decoder for what a server sends (unmasked frames) and
 * the bytes of a client's opening handshake. Masking here is a plain byte loop, so that a bug in
 * lib/protocol/mask.ts cannot hide itself in both directions.
 */
import { createHash } from 'node:crypto';

/** Everything a frame header can say; every field may be out of the RFC's bounds on purpose. */
export interface WireFrameSpec {
  /** Any 4-bit value, reserved ones included. */
  opcode: number;
  /** Default: empty. A string is UTF-8 encoded. */
  payload?: Buffer | string;
  /** Default true. */
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** A 4-byte key to mask the payload with (and set the MASK bit); null for none. Default: CLIENT_KEY. */
  mask?: Buffer | null;
  /** The declared payload length; default the payload's length. May exceed it (truncated frame) or 2^53. */
  length?: number | bigint;
  /** Force the length field form; default the minimal one. 64 also allows lengths >= 2^63. */
  lengthForm?: 7 | 16 | 64;
}

/** The key client fixtures use unless told otherwise (the RFC 6455 §5.7 example key). */
export const CLIENT_KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** XORs a copy of `data` with `key` (RFC 6455 §5.3), byte by byte. */
export function maskBytes(data: Buffer, key: Buffer): Buffer {
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! ^ key[i % 4]!;
  return out;
}

/** The bytes of one frame as `spec` describes it. */
export function wireFrame(spec: WireFrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload, 'utf8') : (spec.payload ?? Buffer.alloc(0));
  const mask = spec.mask === undefined ? CLIENT_KEY : spec.mask;
  const length = BigInt(spec.length ?? payload.length);
  const form = spec.lengthForm ?? (length <= 125n ? 7 : length <= 0xffffn ? 16 : 64);
  const b0 =
    (spec.fin === false ? 0 : 0x80) |
    (spec.rsv1 === true ? 0x40 : 0) |
    (spec.rsv2 === true ? 0x20 : 0) |
    (spec.rsv3 === true ? 0x10 : 0) |
    (spec.opcode & 0x0f);
  const maskBit = mask === null ? 0 : 0x80;
  let header: Buffer;
  if (form === 7) {
    header = Buffer.from([b0, maskBit | Number(length & 0x7fn)]);
  } else if (form === 16) {
    header = Buffer.alloc(4);
    header[0] = b0;
    header[1] = maskBit | 126;
    header.writeUInt16BE(Number(length & 0xffffn), 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = b0;
    header[1] = maskBit | 127;
    header.writeBigUInt64BE(BigInt.asUintN(64, length), 2);
  }
  if (mask === null) return Buffer.concat([header, payload]);
  return Buffer.concat([header, mask, maskBytes(payload, mask)]);
}

/** A masked client frame of `opcode` with `payload` (the usual case), with other fields as given. */
export function clientFrame(opcode: number, payload: Buffer | string = Buffer.alloc(0), fields: Partial<WireFrameSpec> = {}): Buffer {
  return wireFrame({ ...fields, opcode, payload });
}

/** A masked client close frame with `code` (none: empty payload) and `reason`. */
export function clientClose(code?: number, reason = ''): Buffer {
  if (code === undefined) return clientFrame(0x8);
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2, 'utf8');
  return clientFrame(0x8, payload);
}

/** One frame as decoded by `decodeFrames`. */
export interface DecodedFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  /** Unmasked. */
  payload: Buffer;
}

/**
 * Decodes the complete frames at the start of `bytes` (unmasking masked ones); `rest` holds the
 * bytes of an incomplete last frame. No checks: it reports what is there.
 */
export function decodeFrames(bytes: Buffer): { frames: DecodedFrame[]; rest: Buffer } {
  const frames: DecodedFrame[] = [];
  let at = 0;
  for (;;) {
    if (bytes.length - at < 2) break;
    const b0 = bytes[at]!;
    const b1 = bytes[at + 1]!;
    let length = b1 & 0x7f;
    let p = at + 2;
    if (length === 126) {
      if (bytes.length - p < 2) break;
      length = bytes.readUInt16BE(p);
      p += 2;
    } else if (length === 127) {
      if (bytes.length - p < 8) break;
      length = Number(bytes.readBigUInt64BE(p));
      p += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let key: Buffer | null = null;
    if (masked) {
      if (bytes.length - p < 4) break;
      key = bytes.subarray(p, p + 4);
      p += 4;
    }
    if (bytes.length - p < length) break;
    const raw = bytes.subarray(p, p + length);
    frames.push({
      fin: (b0 & 0x80) !== 0,
      rsv: (b0 >> 4) & 0x7,
      opcode: b0 & 0x0f,
      masked,
      payload: key === null ? Buffer.from(raw) : maskBytes(raw, key),
    });
    at = p + length;
  }
  return { frames, rest: bytes.subarray(at) };
}

/** The code and reason of a close frame's payload (code undefined for an empty payload). */
export function closeOf(frame: DecodedFrame): { code: number | undefined; reason: string } {
  if (frame.payload.length < 2) return { code: undefined, reason: '' };
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.subarray(2).toString('utf8') };
}

/** A fixed Sec-WebSocket-Key (the RFC 6455 §1.3 example nonce). */
export const HANDSHAKE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** The bytes of a valid client opening handshake (RFC 6455 §4.1) for `host`. */
export function upgradeRequest(host: string, key = HANDSHAKE_KEY, path = '/'): Buffer {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\n` +
      `Host: ${host}\r\n` +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${key}\r\n` +
      'Sec-WebSocket-Version: 13\r\n' +
      '\r\n',
    'latin1',
  );
}

/** The Sec-WebSocket-Accept a server must answer `key` with, computed here (RFC 6455 §4.2.2). */
export function expectedAccept(key = HANDSHAKE_KEY): string {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
}
