/**
 * ConnectionCapture: what `wspipe proxy --tap/--print/--har/--ui` record of one proxied
 * connection, taken from its frame taps, both directions:
 *
 *   ProxyConnection ──frames tap ('block')──► [InflaterCore, when that side compresses] ──►
 *       ├─► 'record'  FrameLogRecord per frame (a compressed message: one record, inflated,
 *       │             with its wire facts: rsv1, wireLen, frames; see frame-log.ts)
 *       └─► 'message' CapturedMessage per data message (text or binary, inflated)
 *   'close' once the connection and every capture of it are done.
 *
 * Bounded memory: of each frame and each message only the first `maxLoggedPayload` bytes are
 * kept (copied), and the length is counted; nothing else is held. The inflater is our
 * permessage-deflate receiving core, run on a copy of the traffic (RFC 7692 §7.2.2); the relayed
 * frames are never changed. While it has work queued beyond a few frames the taps pause, and
 * being 'block' taps they pause the relay: a capture is complete, and a slow capture slows the
 * relay instead of growing.
 */
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { Opcode, isControlOpcode } from '../protocol/constants';
import { isWebSocketError } from '../protocol/errors';
import { Frame, isFirstPiece, isLastPiece } from '../protocol/frame';
import { parseExtensions } from '../handshake/handshake';
import { InflaterCore } from '../deflate/inflater';
import { MAX_WINDOW_BITS } from '../deflate/permessage-deflate';
import type { ProxyConnection, ProxyDirection, SideClose } from '../proxy/proxy';
import type { Tap } from '../stages/tap';
import { DEFAULT_MAX_LOGGED_PAYLOAD, FrameLogWriterCore, inflatedRecord } from './frame-log';

/** A data message as captured. */
export interface CapturedMessage {
  /** The connection's number. */
  readonly conn: number;
  /** 'upstream': client -> server ('send' in HAR terms); 'downstream': server -> client. */
  readonly dir: ProxyDirection;
  /** When its first frame was seen. */
  readonly time: Date;
  readonly opcode: Opcode.Text | Opcode.Binary;
  /** The first bytes of the (inflated) payload: at most maxLoggedPayload. */
  readonly data: Buffer;
  /** The whole (inflated) payload length. */
  readonly size: number;
  /** Only the first `data.length` of `size` bytes are kept. */
  readonly truncated: boolean;
  /** It was compressed on the wire (permessage-deflate). */
  readonly compressed: boolean;
  /** Payload bytes it took on the wire (compressed, when compressed). */
  readonly wireSize: number;
}

/** How a captured connection ended. */
export interface CapturedClose {
  readonly client: SideClose;
  readonly upstream: SideClose;
  /** When the last socket closed. */
  readonly time: Date;
}

/** Options of ConnectionCapture. */
export interface CaptureOptions {
  /** Most payload bytes kept per frame and per message. Default 65536 (DEFAULT_MAX_LOGGED_PAYLOAD). */
  maxLoggedPayload?: number;
  /** The clock. Default `() => new Date()`. */
  now?: () => Date;
}

/** Frames the inflater may have queued before the taps are paused. */
const MAX_INFLATE_PENDING = 8;

/** A data message under way in one direction. */
interface Pending {
  time: Date;
  opcode: Opcode.Text | Opcode.Binary;
  compressed: boolean;
  wireSize: number;
  frames: number;
  kept: Buffer[];
  keptBytes: number;
  size: number;
}

/** One direction: its tap, its optional inflater, and the messages in flight through it. */
interface Way {
  readonly dir: ProxyDirection;
  readonly tap: Tap<Frame>;
  readonly inflater: InflaterCore | null;
  /** Data messages whose first frame went in, oldest first (the inflater hands them on in order). */
  readonly incoming: Pending[];
  /** The message whose frames are coming out now. */
  current: Pending | null;
  /** When each frame went in (the inflater passes uncompressed frames on as the same objects). */
  readonly seen: WeakMap<Frame, Date>;
  pending: number;
  ended: boolean;
}

/** The permessage-deflate parameters of one side's compressor, from the accepted extensions. */
function deflateOf(extensions: string, side: 'client' | 'server'): { windowBits: number; noContextTakeover: boolean } | null {
  if (extensions === '') return null;
  const accepted = parseExtensions(extensions);
  if (isWebSocketError(accepted)) return null;
  const pmd = accepted.find((e) => e.name.toLowerCase() === 'permessage-deflate');
  if (pmd === undefined) return null;
  const params = new Map(pmd.params);
  const bits = params.get(`${side}_max_window_bits`);
  // RFC 7692 §7.1: client_* parameters describe how the client compresses, server_* the server.
  return {
    windowBits: typeof bits === 'string' && /^\d+$/.test(bits) ? Number(bits) : MAX_WINDOW_BITS,
    noContextTakeover: params.has(`${side}_no_context_takeover`),
  };
}

/**
 * Captures one proxied connection. Create it from the proxy's 'connection' event (before any
 * frame passes), listen for 'record' (a FrameLogRecord), 'message' (a CapturedMessage) and
 * 'close' (a CapturedClose, last).
 */
export class ConnectionCapture extends EventEmitter {
  readonly conn: ProxyConnection;
  readonly id: number;
  /** When the capture started (the connection opened). */
  readonly started: Date;
  private readonly maxKept: number;
  private readonly now: () => Date;
  private readonly writer: FrameLogWriterCore;
  private readonly ways: Way[];
  private closeInfo: { client: SideClose; upstream: SideClose } | null = null;
  private done = false;
  private holds = 0;

  constructor(conn: ProxyConnection, id: number, options: CaptureOptions = {}) {
    super();
    this.conn = conn;
    this.id = id;
    this.maxKept = options.maxLoggedPayload ?? DEFAULT_MAX_LOGGED_PAYLOAD;
    this.now = options.now ?? (() => new Date());
    this.started = this.now();
    this.writer = new FrameLogWriterCore(
      { maxLoggedPayload: this.maxKept, now: this.now },
      { onRecord: (record) => this.emit('record', { ...record, conn: id }) },
    );
    this.ways = (['upstream', 'downstream'] as const).map((dir) => this.openWay(dir));
    conn.once('close', (info: { client: SideClose; upstream: SideClose }) => {
      this.closeInfo = info;
      this.maybeDone();
    });
  }

  private openWay(dir: ProxyDirection): Way {
    const deflate = deflateOf(this.conn.extensions, dir === 'upstream' ? 'client' : 'server');
    const tap = this.conn.tap('frames', dir, { policy: 'block' });
    const way: Way = {
      dir,
      tap,
      inflater: null,
      incoming: [],
      current: null,
      seen: new WeakMap(),
      pending: 0,
      ended: false,
    };
    if (deflate !== null) {
      // The captured copy only: no limit beyond the relay's own (what is kept is bounded here).
      const unlimited = Number.MAX_SAFE_INTEGER;
      (way as { inflater: InflaterCore | null }).inflater = new InflaterCore(
        { ...deflate, maxMessageSize: unlimited, maxPayload: unlimited, maxFragments: unlimited },
        { onFrame: (frame) => this.onOutput(way, frame) },
      );
    }
    tap.on('data', (frame: Frame) => this.onInput(way, frame));
    tap.on('end', () => {
      way.ended = true;
      this.maybeDone();
    });
    return way;
  }

  /** A relayed frame (or piece) as the tap saw it. */
  private onInput(way: Way, frame: Frame): void {
    const time = this.now();
    if (isFirstPiece(frame)) way.seen.set(frame, time);
    if (!isControlOpcode(frame.opcode)) {
      if (frame.opcode !== Opcode.Continuation && isFirstPiece(frame)) {
        way.incoming.push({
          time,
          opcode: frame.opcode === Opcode.Text ? Opcode.Text : Opcode.Binary,
          compressed: frame.rsv1 && way.inflater !== null,
          wireSize: 0,
          frames: 0,
          kept: [],
          keptBytes: 0,
          size: 0,
        });
      }
      const message = way.incoming[way.incoming.length - 1];
      if (message !== undefined) {
        message.wireSize += frame.payload.length;
        if (isLastPiece(frame)) message.frames++;
      }
    }
    if (way.inflater === null) {
      this.onOutput(way, frame);
      return;
    }
    way.pending++;
    if (way.pending > MAX_INFLATE_PENDING) way.tap.pause();
    const err = way.inflater.write(frame, () => {
      way.pending--;
      if (way.pending <= MAX_INFLATE_PENDING / 2 && this.holds === 0 && way.tap.isPaused()) way.tap.resume();
      this.maybeDone();
    });
    if (err !== null) {
      // The copy cannot be inflated (the endpoints will see the same error): stop capturing it.
      way.inflater.destroy();
      (way as { inflater: InflaterCore | null }).inflater = null;
      if (this.holds === 0) way.tap.resume();
    }
  }

  /** A frame after the inflater (or straight from the tap): logged, and added to its message. */
  private onOutput(way: Way, frame: Frame): void {
    const control = isControlOpcode(frame.opcode);
    if (!control && frame.opcode !== Opcode.Continuation && isFirstPiece(frame)) way.current = way.incoming.shift() ?? null;
    const message = control ? null : way.current;
    if (message === null || !message.compressed) {
      this.writer.write({ dir: way.dir, frame, time: way.seen.get(frame) ?? message?.time });
    }
    if (message === null) return;
    message.size += frame.payload.length;
    if (message.keptBytes < this.maxKept && frame.payload.length > 0) {
      const take = frame.payload.subarray(0, this.maxKept - message.keptBytes);
      message.kept.push(Buffer.from(take));
      message.keptBytes += take.length;
    }
    if (!(frame.fin && isLastPiece(frame))) return;
    way.current = null;
    const data = Buffer.concat(message.kept, message.keptBytes);
    if (message.compressed) {
      const { time, opcode, size, wireSize, frames } = message;
      this.emit('record', inflatedRecord({ time, dir: way.dir, opcode, kept: data, size, wireLen: wireSize, frames, conn: this.id }));
    }
    const captured: CapturedMessage = {
      conn: this.id,
      dir: way.dir,
      time: message.time,
      opcode: message.opcode,
      data,
      size: message.size,
      truncated: data.length < message.size,
      compressed: message.compressed,
      wireSize: message.wireSize,
    };
    this.emit('message', captured);
  }

  /**
   * Holds the capture (its 'block' taps, and so the relay) until resume(): for a consumer whose
   * output is full. Calls nest: as many resume() as pause().
   */
  pause(): void {
    if (this.holds++ === 0) for (const way of this.ways) way.tap.pause();
  }

  resume(): void {
    if (this.holds === 0 || --this.holds > 0) return;
    for (const way of this.ways) if (way.pending <= MAX_INFLATE_PENDING) way.tap.resume();
  }

  /** 'close' once the connection closed, both taps ended and nothing is left to inflate. */
  private maybeDone(): void {
    if (this.done || this.closeInfo === null) return;
    if (this.ways.some((way) => !way.ended || way.pending > 0)) return;
    this.done = true;
    for (const way of this.ways) way.inflater?.destroy();
    this.emit('close', { ...this.closeInfo, time: this.now() });
  }
}
