/**
 * Publication: one published message, encoded once for all its subscribers.
 *
 * Server frames are not masked (RFC 6455 §5.1: "A server MUST NOT mask any frames"), so the
 * bytes of a frame are the same for every connection: the header is built once and the header
 * and payload Buffers are written to every subscriber's socket as they are (small payloads are
 * copied after their header once, so that each socket gets one write).
 *
 * permessage-deflate (RFC 7692): a message compressed from a fresh raw deflate stream refers to
 * nothing sent before, so any peer can inflate it, whatever it keeps of its own window. Whether
 * we may send it depends on our side: a connection whose sending side has no context takeover
 * (server_no_context_takeover) starts each message from a fresh stream anyway, so it can share
 * the one compressed frame; a connection with context takeover must compress through its own
 * stream (its peer's window must follow ours), or send the message uncompressed, which enters
 * neither window (§6.1, a message sent with RSV1 clear is not compressed). One compression per
 * distinct (window bits, level, memLevel), usually one per publish, on the calling thread.
 */
import { Buffer } from 'node:buffer';
import { constants as zlibConstants, deflateRawSync } from 'node:zlib';
import { Opcode } from '../protocol/constants';
import { type Frame, type Message, makeFrame } from '../protocol/frame';
import { COALESCE_LIMIT, encodeHeader } from '../stages/frame-serializer';
import { DEFLATE_TRAILER, DeflateDefaults, type DeflateSides, type PerMessageDeflateOptions } from '../deflate/permessage-deflate';

/** How one connection compresses what it sends (see WebSocket.outboundCompression). */
export interface Compression {
  side: NonNullable<DeflateSides['deflate']>;
  options: PerMessageDeflateOptions;
}

/** RFC 7692 §7.2.3.6: an empty message compresses to the single byte 0x00. */
const EMPTY_BLOCK = Buffer.from([0x00]);

/** Frame bytes for `payload`: one Buffer when small, else the header and the payload itself. */
function frameBytes(opcode: Opcode, payload: Buffer, rsv1: boolean): Buffer[] {
  const header = encodeHeader(makeFrame(opcode, payload, { rsv1 }));
  if (payload.length <= COALESCE_LIMIT) return [Buffer.concat([header, payload], header.length + payload.length)];
  return [header, payload];
}

export class Publication {
  /** Bytes of the uncompressed frame: what a subscriber's queue counts for it. */
  readonly size: number;
  /** How many frames were encoded for this message (1 plain, plus one per compression). */
  encodings = 0;
  private plainBytes: Buffer[] | null = null;
  private compressed: Map<string, { bytes: Buffer[]; payload: Buffer }> | null = null;

  constructor(
    readonly topic: string | null,
    readonly data: Buffer,
    readonly binary: boolean,
    readonly key: string | null,
  ) {
    const length = data.length;
    this.size = length + (length <= 125 ? 2 : length <= 0xffff ? 4 : 10);
  }

  /** The uncompressed frame, built on first use. */
  plain(): Buffer[] {
    if (this.plainBytes === null) {
      this.plainBytes = frameBytes(this.binary ? Opcode.Binary : Opcode.Text, this.data, false);
      this.encodings++;
    }
    return this.plainBytes;
  }

  /** What taps see of the plain frame (the frame and the message). */
  readonly tappedPlain = (): { frame: Frame; message: Message } => ({
    frame: makeFrame(this.binary ? Opcode.Binary : Opcode.Text, this.data),
    message: { data: this.data, binary: this.binary },
  });

  /** What taps see of the compressed frame with `c`'s parameters (built by deflated() first). */
  tappedDeflated(c: Compression): () => { frame: Frame; message: Message } {
    return () => {
      const payload = this.compress(c).payload;
      return { frame: makeFrame(this.binary ? Opcode.Binary : Opcode.Text, payload, { rsv1: true }), message: { data: this.data, binary: this.binary } };
    };
  }

  /** True when a connection compressing with `c` sends this message compressed (at or over its threshold). */
  compressible(c: Compression): boolean {
    return this.data.length >= (c.options.threshold ?? DeflateDefaults.threshold);
  }

  /** The compressed frame (RSV1 set) from a fresh raw deflate stream with `c`'s parameters, built once per parameters. */
  deflated(c: Compression): Buffer[] {
    return this.compress(c).bytes;
  }

  private compress(c: Compression): { bytes: Buffer[]; payload: Buffer } {
    const level = c.options.level ?? DeflateDefaults.level;
    const memLevel = c.options.memLevel ?? DeflateDefaults.memLevel;
    const id = `${c.side.windowBits}/${level}/${memLevel}`;
    const cache = (this.compressed ??= new Map());
    let done = cache.get(id);
    if (done === undefined) {
      const out = deflateRawSync(this.data, { windowBits: c.side.windowBits, level, memLevel, finishFlush: zlibConstants.Z_SYNC_FLUSH });
      // §7.2.1: remove the 00 00 ff ff that ends the sync flush.
      const ends = out.length >= 4 && out.subarray(out.length - 4).equals(DEFLATE_TRAILER);
      let payload = ends ? out.subarray(0, out.length - 4) : out;
      if (payload.length === 0) payload = EMPTY_BLOCK;
      done = { bytes: frameBytes(this.binary ? Opcode.Binary : Opcode.Text, payload, true), payload };
      cache.set(id, done);
      this.encodings++;
    }
    return done;
  }
}
