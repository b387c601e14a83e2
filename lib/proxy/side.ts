/**
 * One side of a relayed connection (lib/proxy/relay.ts): its socket, the stages that parse what
 * it sends (FrameSplitterCore, UnmaskerCore) and serialize what goes to it (MaskerCore toward
 * the upstream, FrameSerializerCore), the ConnectionCore of the WebSocket connection on that
 * socket (we are its server toward the client, its client toward the upstream), and the I/O
 * that core asks for: its frames (pongs, closes) wait for the relayed frame under way, and its
 * "end the transport" waits for them.
 *
 * The core decides the side's closing handshake (close sent, close received, who ends TCP by
 * RFC 6455 §7.1.1, the close timeout), its failing (the close with the error's code, one error)
 * and its local pongs. Data frames never go through it: they are relayed as they come.
 *
 * Writes are coalesced: while the relay handles one received chunk (a batch), the small
 * buffers going out to this side (frame headers, small payloads, a flood of empty frames) are
 * gathered and written as one, so that a socket's write queue holds a few entries per received
 * chunk, not one per relayed frame (each entry costs far more than a 2-byte header). Large
 * payloads still pass as they are, without a copy.
 *
 * They are gathered in an output block shared by every side (see reserve()): a side's run of
 * bytes in it goes out as one write (a copy) at the end of the batch. A small relayed frame (whole, under
 * COALESCE_BELOW bytes) is written straight into the block, its header, a fresh masking key
 * toward the upstream (RFC 6455 §5.3: one per frame, drawn as the Masker draws it) and its
 * payload masked with it: no Frame, key or payload Buffer of its own, one pass over its bytes.
 */
import { Buffer } from 'node:buffer';
import type * as net from 'node:net';
import { CloseCode, Opcode } from '../protocol/constants';
import { maskWithFreshKey } from '../protocol/mask';
import { MAX_CLOSE_REASON } from '../protocol/close';
import { Frame, isLastPiece, makeFrame } from '../protocol/frame';
import { ConnectionCore, type ConnectionCoreHandler, type ConnectionCoreOptions } from '../connection/connection-core';
import { TURN_FRAMES } from '../connection/turn';
import { FrameSerializerCore, headerSize, writeHeader } from '../stages/frame-serializer';
import { FrameSplitterCore } from '../stages/frame-splitter';
import type { WebSocketError } from '../protocol/errors';
import { MaskerCore } from '../stages/masker';
import type { UnmaskerCore } from '../stages/unmasker';
import type { DirectionObserver } from './observer';

/** Buffers smaller than this are gathered into one write per batch. */
export const COALESCE_BELOW = 1024;
/** The MASK bit of a header's second byte, and its 7-bit length that announces a 16-bit one (RFC 6455 §5.2). */
const MASK_BIT = 0x80;
const LENGTH_16 = 126;

/**
 * Size of the output block that every side gathers its small buffers in (see Side.reserve). A
 * run goes out as a copy of its exact size, never as a view: the block is never held by a
 * socket (one that does not read would keep a whole block alive for a few bytes, unseen by
 * writableLength and the memory budget), and one block serves the process.
 */
const BLOCK_SIZE = 256 * 1024;
/** The output block and how much of it is taken: shared, bytes once taken are not written again while a side's run holds them. */
let block = Buffer.alloc(0);
let blockUsed = 0;
/** Payloads of at most this many bytes are copied into the block byte by byte. */
const SHORT_COPY = 32;
/** Sides whose run is in the block: once none is, the block is taken from its start again. */
let runs = 0;

/** The payload of the pings the relay sends to a paused side to notice that its peer left. */
const PROBE = 'wspipe-proxy-probe';

/** What a side's core tells the relay (the rest of the core's handler is the side's own I/O). */
export interface SideEvents {
  /** `side` sent its close (see ConnectionCoreHandler.onPeerClose: true answers it later, with close()). */
  onPeerClose(side: Side, code: number, reason: string): boolean;
  /** `side`'s first error, or its socket's (none once its closing handshake completed). */
  onError(side: Side, err: Error): void;
  /** `side`'s core holds reading (ReadHold.Turn, see lib/connection/turn.ts) or released it: the relay decides (updateFlow). */
  onHoldsChanged(side: Side): void;
}

/** The side of a connection on one socket. */
export class Side {
  readonly splitter: FrameSplitterCore;
  readonly unmasker: UnmaskerCore;
  /** Outbound to this side: masks (upstream only), then serializes. */
  readonly masker: MaskerCore | null;
  readonly serializer: FrameSerializerCore;
  /** The WebSocket connection on this socket: its closing handshake, failing and local pongs. */
  readonly core: ConnectionCore;
  peer!: Side;
  /** A relayed frame is half written to this side: injected frames must wait. */
  midFrame = false;
  /** Frames of our own (pongs, closes, probes) waiting for the end of the frame under way. */
  queued: Frame[] = [];
  /** End this socket once the queue is written. */
  endAfterQueue = false;
  /** This side's socket wants 'drain' (a write returned false). */
  needDrain = false;
  /** We paused this socket. */
  paused = false;
  /** False after this side failed: its bytes are ignored. */
  reading = true;
  closed = false;
  /** The code the other side gets when this one goes away without a close frame. */
  goneCode: CloseCode = CloseCode.GoingAway;
  /** Taps and message copies of what this side sends. */
  observer!: DirectionObserver;
  /** Frames of the data message this side is sending, so far (each after the first costs frameOverhead). */
  fragments = 0;
  /** This side's data message has begun and not ended (its last data frame had FIN clear): the next must continue it. */
  messageOpen = false;
  /** The relay's handler of this side's small whole frames (see FrameSplitterCore.scanSmall). */
  relaySmall: (chunk: Buffer, at: number, payloadAt: number, length: number) => boolean = () => false;
  /** The relay's handler of a chunk of this side: relays it as far as turnFrames allows, returns where it stopped (see turns.ts). */
  relayFrom: (chunk: Buffer) => number = (chunk) => chunk.length;
  /** Frames (or pieces) this side may still relay in this turn of the event loop (see turns.ts). */
  turnFrames = TURN_FRAMES;
  /** What this side sent that waits for its next turn (the rest of a chunk, at a frame boundary, then whole chunks), or null. */
  waiting: Buffer[] | null = null;
  /** Bytes in `waiting`. */
  waitingBytes = 0;
  /** This side got its turn while more sides waited for theirs than got one (see turns.ts): it yields after TURN_BYTES. */
  crowded = false;
  /** Probe pings sent to this side and not answered yet. */
  probes = 0;
  /** While paused: the timer of the probe pings. */
  probeTimer: NodeJS.Timeout | null = null;
  /** Milliseconds between probe pings (the relay's pausedPingInterval). */
  probeInterval = Infinity;
  /** Turns this side used up (turns.ts), and while it keeps doing so, the timer of its probe pings. */
  yields = 0;
  busyTimer: NodeJS.Timeout | null = null;

  /** Batches open (see the module comment); small outbound buffers wait in the block meanwhile. */
  private batches = 0;
  /** This side's run of gathered bytes: runBlock[runStart, runEnd), or none (null). */
  private runBlock: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;

  constructor(
    readonly name: 'client' | 'upstream',
    readonly socket: net.Socket,
    splitter: (side: Side) => FrameSplitterCore,
    unmasker: (side: Side) => UnmaskerCore,
    options: ConnectionCoreOptions,
    events: SideEvents,
  ) {
    this.splitter = splitter(this);
    this.unmasker = unmasker(this);
    const handler: ConnectionCoreHandler = {
      // Only control frames go through the core: data frames are relayed as they come.
      onMessage: () => undefined,
      onPing: () => undefined,
      onPong: () => undefined,
      onPeerClose: (code, reason) => events.onPeerClose(this, code, reason),
      sendFrame: (frame) => this.inject(frame),
      onError: (err) => events.onError(this, err),
      endTransport: () => this.endAfterQueued(),
      destroyTransport: () => this.socket.destroy(),
      // The relay pauses and resumes its sockets itself (updateFlow), for both sides together;
      // the core's holds (the turn a long chunk ends) are one of the things it weighs.
      setReading: () => events.onHoldsChanged(this),
      onClosed: () => undefined,
      unsentBytes: () => this.socket.writableLength,
      assemblingBytes: () => 0,
    };
    this.core = new ConnectionCore(name === 'client' ? 'server' : 'client', options, handler, Date.now());
    this.serializer = new FrameSerializerCore({}, { onData: (chunk: Buffer) => this.out(chunk) });
    this.masker =
      name === 'upstream' ? new MaskerCore({}, { onFrame: (frame: Frame) => this.serializer.write(frame) }) : null;
  }

  get writable(): boolean {
    return !this.closed && !this.socket.destroyed && this.socket.writable;
  }

  /** Masks (toward the upstream) and serializes one frame or piece to this socket. */
  write(frame: Frame): void {
    if (!this.writable) return;
    const err = this.masker !== null ? this.masker.write(frame) : this.serializer.write(frame);
    if (err !== null) this.socket.destroy(err);
  }

  /**
   * Parses and relays one chunk of this side (for the relay's relayFrom). Runs of small whole
   * data frames are relayed without Frames (relaySmall) while nothing observes them as Frames
   * and this side may still send data; the frame under way at the chunk's start, and each other
   * frame, go through the splitter (and the relay's onFrame) as usual, one frame at a time. At a
   * frame boundary where this side's turn has no frames left (turnFrames, see turns.ts) it
   * stops: returns where (chunk.length: all of it), or the splitter's error.
   */
  relayChunk(chunk: Buffer): WebSocketError | number {
    const splitter = this.splitter;
    const dest = this.peer;
    const masked = this.name === 'client';
    let at = 0;
    while (at < chunk.length) {
      // (Nothing more is relayed after the side's close: all of it to the splitter, which drops its data.)
      if (this.core.closeReceived || !this.reading) return splitter.write(at === 0 ? chunk : chunk.subarray(at)) ?? chunk.length;
      if (splitter.atFrameBoundary) {
        if (this.turnFrames <= 0) return at;
        // (What the other side may take does not change within a run: its socket's events and its
        // core's frames come in other turns, or from frames of this side that end a run.)
        if (!this.observer.wantsFrames && !dest.closed && dest.takesRaw) {
          const next = splitter.scanSmall(chunk, at, masked, COALESCE_BELOW - 1, this.relaySmall);
          if (next > at) {
            at = next;
            continue;
          }
        }
      }
      // The frame under way, or the next one, through the splitter: to its end when its header is
      // whole in the chunk, else a byte at a time until the splitter knows it.
      do {
        const next = splitter.writeFrameFrom(chunk, at);
        if (typeof next !== 'number') return next;
        at = next;
      } while (at < chunk.length && !splitter.atFrameBoundary);
    }
    return at;
  }

  /** Writes a relayed frame (or piece) to this side, unless a close already went to it. */
  relay(frame: Frame): void {
    // RFC 6455 §5.5.1: nothing is sent after a close frame (the frame under way still ends before it).
    if (this.core.closeSent && !this.midFrame) return;
    const payload = frame.payload;
    if (
      this.batches > 0 &&
      payload.length < COALESCE_BELOW &&
      payload.length === frame.length &&
      frame.offset === 0 &&
      frame.mask === null &&
      frame.opcode !== Opcode.Close &&
      this.writable
    ) {
      // A small whole frame: the masker and serializer are between frames (and stay so), and it is
      // written straight into the block (see the module comment). Relayed closes never come here.
      const masked = this.masker !== null;
      const at = this.reserve(headerSize(frame) + (masked ? 4 : 0) + payload.length);
      const end = writeHeader(frame, block, at);
      if (masked) {
        block[at + 1]! |= MASK_BIT;
        maskWithFreshKey(payload, 0, payload.length, -1, block, end, end + 4);
      } else {
        payload.copy(block, end);
      }
      this.midFrame = false;
    } else {
      this.write(frame);
      this.midFrame = !isLastPiece(frame);
    }
    if (!this.midFrame) this.flushQueue();
  }

  /** relayRaw() may write to this side now: in a batch, between frames, open, no close sent. */
  get takesRaw(): boolean {
    return this.batches > 0 && !this.midFrame && !this.core.closeSent && this.writable;
  }

  /**
   * Relays a small whole data frame (under COALESCE_BELOW bytes) as received, header byte `b0`, its payload at
   * chunk[payloadAt, payloadAt + length), with no Frame made: written straight into the block
   * like relay()'s small frames. Toward the upstream, the client's frame (masked with the key at
   * chunk[keyAt]) is unmasked and masked with a fresh key in one pass; toward the client, the
   * upstream's (plain, keyAt -1) is copied. Only when takesRaw.
   */
  relayRaw(b0: number, chunk: Buffer, payloadAt: number, length: number, keyAt: number): void {
    const masked = this.masker !== null;
    const lengthBytes = length < LENGTH_16 ? 0 : 2;
    const at = this.reserve(2 + lengthBytes + (masked ? 4 : 0) + length);
    block[at] = b0;
    block[at + 1] = (masked ? MASK_BIT : 0) | (lengthBytes === 0 ? length : LENGTH_16);
    if (lengthBytes !== 0) {
      block[at + 2] = length >>> 8;
      block[at + 3] = length & 0xff;
    }
    const end = at + 2 + lengthBytes;
    if (masked) maskWithFreshKey(chunk, payloadAt, length, keyAt, block, end, end + 4);
    else if (length > SHORT_COPY) chunk.copy(block, end, payloadAt, payloadAt + length);
    // (A few bytes are copied faster by hand than by a call into the runtime.)
    else for (let i = 0; i < length; i++) block[end + i] = chunk[payloadAt + i]!;
  }

  /** Sends a frame of our own (the core's pongs and closes, probe pings): now, or after the relayed frame under way. */
  inject(frame: Frame): void {
    this.queued.push(frame);
    if (!this.midFrame) this.flushQueue();
  }

  /** Ends this socket once the frames of our own are written (after the relayed frame under way). */
  endAfterQueued(): void {
    this.endAfterQueue = true;
    if (!this.midFrame) this.flushQueue();
  }

  private flushQueue(): void {
    // The core sends nothing after its close, so the queue never holds a frame after one.
    while (this.queued.length > 0 && !this.midFrame) this.write(this.queued.shift()!);
    if (this.endAfterQueue && this.queued.length === 0) this.end();
  }

  /** Starts gathering small outbound buffers (batches nest). */
  beginBatch(): void {
    this.batches++;
  }

  /** Ends a batch: the gathered buffers go out as one write. */
  endBatch(): void {
    if (--this.batches === 0) this.flushSmall();
  }

  /** Ends this socket after what was gathered. */
  end(): void {
    this.flushSmall();
    this.socket.end();
  }

  /** The frame of a probe ping (a fresh payload: the masker may mask it in place). */
  probe(): Frame {
    this.probes++;
    return makeFrame(Opcode.Ping, Buffer.from(PROBE));
  }

  /** `frame` (a control frame of this side) is the pong answering one of our probes: it stops here. */
  answersProbe(frame: Frame): boolean {
    if (this.probes === 0 || frame.opcode !== Opcode.Pong || frame.payload.length !== PROBE.length) return false;
    if (frame.payload.toString('latin1') !== PROBE) return false;
    this.probes--;
    return true;
  }

  /**
   * While this side is paused, a ping every `interval` ms (the relay's pausedPingInterval): a
   * write to a peer that has gone fails (EPIPE, ECONNRESET) and closes the socket, which the
   * paused socket would not notice by itself. None while the side has bytes queued (a write
   * under way fails just the same). (Not the core's heartbeat: that pings a peer that is silent
   * and gives it up after a timeout, and takes silence for nothing while reading is held; these
   * ping a side we do not read from, only for the write to fail, and their pongs are ours, not
   * the core's.)
   */
  startProbing(interval: number): void {
    if (this.probeTimer !== null || !Number.isFinite(interval) || this.closed) return;
    this.probeTimer = setInterval(() => this.probeNow(), interval);
    this.probeTimer.unref();
  }

  /** Sends a probe ping, unless the side cannot take one now (or a write is under way: it fails just the same). */
  probeNow(): void {
    if (!this.writable || this.core.closeSent || this.needDrain || this.queued.length > 0) return;
    this.inject(this.probe());
  }

  /** Stops the probe timer (resumed, or closed). */
  stopProbing(): void {
    if (this.probeTimer !== null) clearInterval(this.probeTimer);
    this.probeTimer = null;
  }

  private out(chunk: Buffer): void {
    if (this.batches > 0 && chunk.length < COALESCE_BELOW) {
      const at = this.reserve(chunk.length); // (first: it may start a new block)
      chunk.copy(block, at);
      return;
    }
    this.flushSmall();
    this.send(chunk);
  }

  /**
   * Where in the block `bytes` (at most BLOCK_SIZE) may be written to go out at the end of this
   * side's run: right after it, unless another side took bytes since or the block is full; then
   * the run goes out now and a new one starts (in a new block if need be).
   */
  private reserve(bytes: number): number {
    if (this.runBlock !== block || this.runEnd !== blockUsed || blockUsed + bytes > block.length) {
      this.flushSmall();
      if (blockUsed + bytes > block.length) {
        block = Buffer.allocUnsafe(BLOCK_SIZE);
        blockUsed = 0;
      }
      this.runBlock = block;
      this.runStart = blockUsed;
      runs++;
    }
    const at = blockUsed;
    this.runEnd = blockUsed += bytes;
    return at;
  }

  /** Sends this side's run of gathered bytes (see reserve()). */
  private flushSmall(): void {
    const runBlock = this.runBlock;
    if (runBlock === null) return;
    this.runBlock = null;
    if (--runs === 0 && runBlock === block) blockUsed = 0;
    this.send(Buffer.from(runBlock.subarray(this.runStart, this.runEnd)));
  }

  private send(chunk: Buffer): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    if (!this.socket.write(chunk)) this.needDrain = true;
  }
}

/** `reason` cut to fit a close frame (123 bytes of UTF-8, RFC 6455 §5.5). */
export function fitReason(reason: string): string {
  let text = reason;
  while (Buffer.byteLength(text, 'utf8') > MAX_CLOSE_REASON) text = text.slice(0, -1);
  return text;
}
