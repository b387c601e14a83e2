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
 */
import { Buffer } from 'node:buffer';
import type * as net from 'node:net';
import { CloseCode, Opcode } from '../protocol/constants';
import { MAX_CLOSE_REASON } from '../protocol/close';
import { Frame, isLastPiece, makeFrame } from '../protocol/frame';
import { ConnectionCore, type ConnectionCoreHandler, type ConnectionCoreOptions } from '../connection/connection-core';
import { FrameSerializerCore } from '../stages/frame-serializer';
import type { FrameSplitterCore } from '../stages/frame-splitter';
import { MaskerCore } from '../stages/masker';
import type { UnmaskerCore } from '../stages/unmasker';
import type { DirectionObserver } from './observer';

/** Buffers smaller than this are gathered into one write per batch. */
const COALESCE_BELOW = 1024;

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
  /** Probe pings sent to this side and not answered yet. */
  probes = 0;
  /** While paused: the timer of the probe pings. */
  probeTimer: NodeJS.Timeout | null = null;

  /** Batches open (see the module comment); small outbound buffers wait in `small` meanwhile. */
  private batches = 0;
  private small: Buffer[] = [];
  private smallBytes = 0;

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

  /** Writes a relayed frame (or piece) to this side, unless a close already went to it. */
  relay(frame: Frame): void {
    // RFC 6455 §5.5.1: nothing is sent after a close frame (the frame under way still ends before it).
    if (this.core.closeSent && !this.midFrame) return;
    this.write(frame);
    this.midFrame = !isLastPiece(frame);
    if (!this.midFrame) this.flushQueue();
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

  /** Stops the probe timer (resumed, or closed). */
  stopProbing(): void {
    if (this.probeTimer !== null) clearInterval(this.probeTimer);
    this.probeTimer = null;
  }

  private out(chunk: Buffer): void {
    if (this.batches > 0 && chunk.length < COALESCE_BELOW) {
      this.small.push(chunk);
      this.smallBytes += chunk.length;
      return;
    }
    this.flushSmall();
    this.send(chunk);
  }

  private flushSmall(): void {
    const small = this.small;
    if (small.length === 0) return;
    const chunk = small.length === 1 ? small[0]! : Buffer.concat(small, this.smallBytes);
    this.small = [];
    this.smallBytes = 0;
    this.send(chunk);
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
