/**
 * Relaying one connection: frames pass between the client and the upstream without being
 * reassembled into messages.
 *
 *   client --bytes--> FrameSplitter (streaming) > Unmasker (server role) > observer > Masker > FrameSerializer --> upstream
 *   client <--bytes-- FrameSerializer < observer < Unmasker (client role) < FrameSplitter (streaming) <-- upstream
 *
 * Relaying is transparent: fragmentation, RSV bits and compressed payloads pass unchanged, and
 * large frames pass in pieces as their bytes arrive (never held whole). Only the masking changes
 * with the role: client frames are unmasked in place and masked again with a fresh key (one copy,
 * the one masking needs); upstream frames pass as views of the received chunks.
 *
 * Backpressure: when a write to one socket returns false, the other socket is paused until
 * 'drain', so the proxy holds at most about one received chunk per direction beyond the sockets'
 * own buffers. A tap with policy 'block' that is full pauses its source the same way.
 *
 * Closing: each side's ConnectionCore (side.ts; we are the server toward the client, the client
 * toward the upstream) runs that side's closing handshake, its failing and its close timeout;
 * the relay only tells each core what to send. Close frames are relayed both ways with their
 * code and reason: a side's close is sent on to the other with the other's core.close(), and
 * the answer the first side gets is the other side's close (its core defers the echo). When one
 * side goes away without a close frame, the other gets 1001; when the upstream fails (a socket
 * error, or a protocol error in what it sends) the client gets 1014; a protocol error is answered
 * to the side that caused it with the error's own code (1002, 1009, ...: its core fails), and
 * that side's socket is closed. The connection's one timer is armed at the earliest of the two
 * cores' deadlines.
 *
 * Once one side's socket is gone (closed, reset, errored), whatever the state of its closing
 * handshake, the other is closed promptly: nothing more is relayed, it is read (never paused
 * again: the side that held it will not drain) and what it sends is dropped but for its close,
 * and its closing handshake gets GONE_CLOSE_TIMEOUT (or closeTimeout if shorter). When a frame
 * relayed to it is half written, no close frame can follow: its socket is destroyed at once.
 */
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import { CloseCode, Defaults, Opcode, isControlOpcode } from '../protocol/constants';
import type { Emitting } from '../protocol/events';
import { checkCloseArgs } from '../protocol/close';
import type { WebSocketError } from '../protocol/errors';
import { Frame, isFirstPiece, isLastPiece } from '../protocol/frame';
import { FrameSplitterCore } from '../stages/frame-splitter';
import { fragmentOrderError, fragmentsOverLimit } from '../stages/fragment-assembler';
import type { UpgradeRequest } from '../handshake/handshake';
import type { UpgradeResponse } from '../handshake/handshake-parser';
import type { Tap, TapOptions } from '../stages/tap';
import { UnmaskerCore } from '../stages/unmasker';
import { CoreState, ReadHold } from '../connection/connection-core';
import { DirectionObserver, ProxyDirection, ProxyMessage, ProxyTapLayer, negotiated } from './observer';
import { Side, fitReason } from './side';
import { received, relayAllWaiting } from './turns';

/** How a relayed connection behaves (the part of ProxyOptions it reads). */
export interface RelayOptions {
  /** 'relay' (default): pings and pongs pass through; 'local': each side's pings are answered by the proxy, and pings and pongs are not relayed. */
  pingPong?: 'relay' | 'local';
  /** Largest frame payload relayed, either way, in bytes. Default 100 MiB; over it: 1009 to the sender. */
  maxPayload?: number;
  /**
   * Largest message a 'messages' tap reassembles, in bytes. Default 100 MiB (larger ones end the
   * tap). It also bounds the frames of a relayed message: each frame after the first counts
   * frameOverhead bytes against it (the relay keeps no payload, so only that count), and a
   * message of more such frames gets 1009 (WS_ERR_TOO_MANY_FRAGMENTS) to its sender.
   */
  maxMessageSize?: number;
  /** Bytes each frame of a relayed message after its first counts against maxMessageSize. Default 256 (as the server's frameOverhead). */
  frameOverhead?: number;
  /**
   * Milliseconds the closing handshake may take before both sockets are destroyed. Default 5000.
   * Once one side's socket is gone, the other has 1000 at most (see GONE_CLOSE_TIMEOUT).
   */
  closeTimeout?: number;
  /**
   * Milliseconds between the pings the proxy sends to a side it stopped reading from (its peer
   * does not read what it sends, or the memory budget holds it), or that keeps using up its share
   * of the event loop's turns (a flood: its FIN would come after its backlog, see turns.ts). A
   * paused socket does not see its peer's FIN; a write to a peer that left fails, so a client or
   * upstream that leaves while paused is noticed within about two intervals. Their pongs are not
   * relayed. Default 1000; Infinity: no pings.
   */
  pausedPingInterval?: number;
}

/** Default of RelayOptions.pausedPingInterval (ms): a ping a second to a paused side costs next to nothing. */
const DEFAULT_PAUSED_PING_INTERVAL = 1000;

/**
 * Milliseconds (at most; closeTimeout if shorter) the remaining side of a pair has to complete
 * its closing handshake once the other side's socket is gone: its answer to a close is read at
 * once (nothing holds reading then), so a peer that answers at all answers well within it, and
 * one that does not read, or is behind a backlog of its own, does not keep the socket for
 * the whole closeTimeout.
 */
const GONE_CLOSE_TIMEOUT = 1000;

/** @internal What the proxy-wide memory budget (lib/server/memory-budget.ts) is told of. */
export interface ProxyBudgetObserver {
  heldBytesChanged(conn: ProxyConnection): void;
}

/** How one side ended: the close frame it sent (1005: empty; 1006: none). */
export interface SideClose {
  code: number;
  reason: string;
}

/** Events of a ProxyConnection. */
export interface ProxyConnectionEvents {
  /** Both sockets are closed; what each side sent in its close frame. */
  close: (info: { client: SideClose; upstream: SideClose }) => void;
  /** A protocol error or socket error of one side (emitted only when listened for). */
  error: (err: Error, side: 'client' | 'upstream') => void;
}

/**
 * One relayed connection. `tap()` observes it; `close()` closes both sides. Emits 'close' once
 * both sockets are closed.
 */
export class ProxyConnection extends (EventEmitter as Emitting<typeof EventEmitter, ProxyConnectionEvents>) {
  /** The client's opening handshake. */
  readonly request: UpgradeRequest;
  /** The upstream's 101 answer. */
  readonly response: UpgradeResponse;
  /** The upstream URL. */
  readonly target: URL;
  /** The subprotocol the upstream chose ('' for none). */
  readonly protocol: string;
  /** The Sec-WebSocket-Extensions value the upstream accepted ('' for none). */
  readonly extensions: string;
  /** The client's address and port as the proxy's socket saw them (undefined once unknown). */
  readonly clientAddress: { address: string | undefined; port: number | undefined };
  /** The first error met on either side, if any. */
  error: Error | null = null;
  /** Frames (whole, counted at their last piece) relayed each way. */
  readonly frames = { upstream: 0, downstream: 0 };

  private readonly client: Side;
  private readonly upstream: Side;
  private readonly localPingPong: boolean;
  private readonly pausedPingInterval: number;
  private readonly maxMessageSize: number;
  private readonly frameOverhead: number;
  private readonly budget: ProxyBudgetObserver | null;
  /** The proxy-wide memory budget holds reading from both sides. */
  private heldForBudget = false;
  /** The connection's one timer, armed at the earliest of the sides' cores' deadlines (see arm()). */
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private finished = false;

  /** @internal Created by the listener (WebSocketProxy) once both handshakes are done. */
  constructor(
    init: {
      request: UpgradeRequest;
      response: UpgradeResponse;
      target: URL;
      clientSocket: net.Socket;
      upstreamSocket: net.Socket;
      protocol: string;
      extensions: string;
    },
    options: RelayOptions,
    budget: ProxyBudgetObserver | null = null,
  ) {
    super();
    this.request = init.request;
    this.response = init.response;
    this.target = init.target;
    this.protocol = init.protocol;
    this.extensions = init.extensions;
    this.clientAddress = { address: init.clientSocket.remoteAddress, port: init.clientSocket.remotePort };
    this.localPingPong = options.pingPong === 'local';
    this.pausedPingInterval = options.pausedPingInterval ?? DEFAULT_PAUSED_PING_INTERVAL;
    this.frameOverhead = options.frameOverhead ?? Defaults.frameOverhead;
    this.budget = budget;
    const { bits, clientDeflate, upstreamDeflate } = negotiated(init.extensions);
    const maxPayload = options.maxPayload ?? Defaults.maxPayload;
    const makeSide = (name: 'client' | 'upstream', socket: net.Socket): Side =>
      new Side(
        name,
        socket,
        (side) =>
          new FrameSplitterCore(
            { ...bits, maxPayload, streaming: true },
            {
              onFrame: (frame) => {
                const err = side.unmasker.write(frame);
                if (err !== null) side.splitter.fail(err);
              },
            },
          ),
        (side) => new UnmaskerCore({ role: name === 'client' ? 'server' : 'client' }, { onFrame: (frame) => this.onFrame(side, frame) }),
        // 'local': each side's core answers its pings (RFC 6455 §5.5.2); 'relay': the far side does.
        { closeTimeout: options.closeTimeout ?? Defaults.closeTimeout, autoPong: this.localPingPong },
        {
          onPeerClose: (side, code, reason) => this.onPeerClose(side, code, reason),
          onError: (side, err) => this.reportError(err, side),
          onHoldsChanged: (side) => this.updateFlow(side),
        },
      );
    this.client = makeSide('client', init.clientSocket);
    this.upstream = makeSide('upstream', init.upstreamSocket);
    for (const side of [this.client, this.upstream]) {
      side.relaySmall = (chunk, at, payloadAt, length) => this.relaySmall(side, chunk, at, payloadAt, length);
      side.relayFrom = (chunk) => this.relayFrom(side, chunk);
      side.probeInterval = this.pausedPingInterval;
    }
    this.client.peer = this.upstream;
    this.upstream.peer = this.client;
    const maxMessageSize = (this.maxMessageSize = options.maxMessageSize ?? Defaults.maxMessageSize);
    this.client.observer = new DirectionObserver(clientDeflate, maxMessageSize, () => this.updateFlow(this.client));
    this.upstream.observer = new DirectionObserver(upstreamDeflate, maxMessageSize, () => this.updateFlow(this.upstream));
  }

  /** @internal Starts relaying; `clientHead`/`upstreamHead` are bytes that came with the handshakes. */
  start(clientHead: Buffer | null, upstreamHead: Buffer | null): void {
    for (const side of [this.client, this.upstream]) {
      const socket = side.socket;
      socket.setNoDelay(true);
      socket.setTimeout(0);
      socket.on('data', (chunk: Buffer) => this.onData(side, chunk));
      socket.on('drain', () => {
        side.needDrain = false;
        this.updateFlow(side.peer);
        if (this.localPingPong) this.updateFlow(side);
        this.budget?.heldBytesChanged(this);
      });
      socket.on('error', (err: Error) => this.onSocketError(side, err));
      // The peer sends nothing more: our side ends too (as a WebSocket does, and as Node does by
      // itself for a socket without allowHalfOpen). An http server's sockets allow half-open:
      // without this, a client's FIN would leave its socket open, and the other side waiting.
      socket.on('end', () => side.end());
      socket.on('close', () => this.onSocketClose(side));
    }
    // Bytes that came with the handshakes are relayed once the 'connection'
    // listeners (even those awaiting the event) have attached their taps.
    setImmediate(() => {
      if (upstreamHead !== null && upstreamHead.length > 0) this.onData(this.upstream, upstreamHead);
      if (clientHead !== null && clientHead.length > 0) this.onData(this.client, clientHead);
      this.client.socket.resume();
      this.upstream.socket.resume();
    });
  }

  /** Bytes buffered by the proxy for this connection (sockets' write buffers, partial frames, bytes waiting for their side's next turn). */
  get bufferedBytes(): number {
    const { client, upstream } = this;
    return (
      client.socket.writableLength +
      upstream.socket.writableLength +
      client.splitter.bufferedBytes +
      upstream.splitter.bufferedBytes +
      client.waitingBytes +
      upstream.waitingBytes
    );
  }

  /** @internal What the connection holds for the memory budget: bufferedBytes and the sockets' unread received bytes. */
  get heldBytes(): number {
    return this.bufferedBytes + this.client.socket.readableLength + this.upstream.socket.readableLength;
  }

  /** @internal The proxy-wide memory budget holds (true) or releases (false) reading from both sides. */
  holdForServer(hold: boolean): void {
    this.heldForBudget = hold;
    this.updateFlow(this.client);
    this.updateFlow(this.upstream);
  }

  /**
   * @internal The proxy-wide memory budget cuts this connection: both sides get a close with
   * `err`'s code (1008), nothing more is read or relayed, and a side that does not read (bytes
   * still queued for it) has its socket destroyed at once.
   */
  failForServer(err: WebSocketError): void {
    if (this.finished) return;
    this.reportError(err, this.client);
    for (const side of [this.client, this.upstream]) {
      side.reading = false;
      if (side.paused) {
        side.paused = false;
        side.stopProbing();
        side.socket.resume(); // its bytes are read and dropped until the socket closes
      }
    }
    this.close(err.closeCode, err.message);
    for (const side of [this.client, this.upstream]) {
      if (side.socket.writableLength > 0) side.socket.destroy();
    }
  }

  /**
   * Observes one direction ('upstream': client -> server) at one layer without changing the
   * traffic: 'bytes' yields the Buffers received (as sent on the wire, masked for 'upstream'),
   * 'frames' the Frames relayed, unmasked (large frames in pieces, see lib/protocol/frame.ts),
   * 'messages' ProxyMessage copies reassembled on the side (with permessage-deflate, inflated by a
   * shadow inflate context, see ProxyMessage.compressed). Policy 'drop' (default) never slows the relay and counts its drops; 'block'
   * pauses the source while the tap is full. The tap ends when the connection closes.
   */
  tap(layer: 'bytes', direction: ProxyDirection, options?: TapOptions): Tap<Buffer>;
  tap(layer: 'frames', direction: ProxyDirection, options?: TapOptions): Tap<Frame>;
  tap(layer: 'messages', direction: ProxyDirection, options?: TapOptions): Tap<ProxyMessage>;
  tap(layer: ProxyTapLayer, direction: ProxyDirection, options: TapOptions = {}): Tap<unknown> {
    const side = direction === 'upstream' ? this.client : this.upstream;
    const tap = side.observer.tap(layer, options);
    if (this.finished) process.nextTick(() => tap.push(null));
    return tap;
  }

  /**
   * Closes both sides with `code` (default 1001) and `reason` (cut to 123 bytes): each gets a
   * close frame (after the frame under way, if any) and the sockets are destroyed if the closing
   * handshake has not ended within closeTimeout. Throws WS_ERR_INVALID_ARGUMENT for a code that
   * may not be on the wire (RFC 6455 §7.4).
   */
  close(code: number = CloseCode.GoingAway, reason = ''): void {
    reason = fitReason(reason);
    const invalid = checkCloseArgs(code, reason);
    if (invalid !== null) throw invalid;
    const now = Date.now();
    // Each core sends its close unless one went already (after the peer's close, as the answer).
    for (const side of [this.client, this.upstream]) if (side.writable) side.core.close(code, reason, now);
    this.arm();
  }

  // ----- Relaying -----

  private onData(source: Side, chunk: Buffer): void {
    if (!source.reading) return;
    // The client's bytes are unmasked in place below, so a bytes tap gets a copy of them.
    source.observer.bytes(chunk, source.name === 'client');
    // Relayed now, or at the side's next turn (turns.ts: fairness between connections).
    received(source, chunk);
  }

  /** Relays `chunk` of `source` as far as its turn allows (turns.ts); returns where it stopped (chunk.length: all of it). */
  private relayFrom(source: Side, chunk: Buffer): number {
    // What goes out while this chunk is relayed (to the peer, and pongs or closes to the source) is written in one piece each way.
    const dest = source.peer;
    dest.beginBatch();
    source.beginBatch();
    const relayed = source.relayChunk(chunk);
    dest.endBatch();
    source.endBatch();
    let at = chunk.length;
    if (typeof relayed === 'number') at = relayed;
    else this.failSide(source, relayed);
    // Closing began (close frames, a failure): the close timeout runs.
    if (source.core.state !== CoreState.Open || dest.core.state !== CoreState.Open) this.arm();
    this.updateFlow(source);
    this.budget?.heldBytesChanged(this);
    return at;
  }

  /**
   * One small whole data frame of `source` (see FrameSplitterCore.scanSmall), relayed as
   * onFrame() would relay it, without a Frame: the same count against maxMessageSize, the same
   * observer (no tap wants Frames); relayChunk checked the other side (takesRaw). False: not
   * here (it is parsed and relayed, or refused, by the usual path).
   */
  private relaySmall(source: Side, chunk: Buffer, at: number, payloadAt: number, length: number): boolean {
    // This turn's frames are relayed: the rest waits (relayChunk stops at this frame).
    if (source.turnFrames <= 0) return false;
    const b0 = chunk[at]!;
    // Out of order, or one fragment too many: onFrame refuses it.
    if (this.startFrame(source, b0 & 0x0f, (b0 & 0x80) !== 0) !== null) return false;
    source.turnFrames--;
    source.observer.rawFrame(b0);
    // A client's frame carries its key right before its payload; the upstream's carry none.
    source.peer.relayRaw(b0, chunk, payloadAt, length, source.name === 'client' ? payloadAt - 4 : -1);
    this.frames[source.name === 'client' ? 'upstream' : 'downstream']++;
    return true;
  }

  /**
   * The start of a data frame of `source` (opcode, FIN), checked as the server's assembler
   * checks it, without assembling: its place in the message (RFC 6455 §5.4; relayed one by one, a
   * continuation with no message open or an interleaved message would reach the other side as it
   * came), and its cost (a flood of empty fragments is cut after maxMessageSize / frameOverhead
   * frames). The error, or null once the side's message has moved on to this frame.
   */
  private startFrame(source: Side, opcode: number, fin: boolean): WebSocketError | null {
    const outOfOrder = fragmentOrderError(opcode, source.messageOpen);
    if (outOfOrder !== null) return outOfOrder;
    const fragments = opcode === Opcode.Continuation ? source.fragments + 1 : 1;
    if ((fragments - 1) * this.frameOverhead > this.maxMessageSize) return fragmentsOverLimit(fragments, this.frameOverhead, this.maxMessageSize);
    source.fragments = fragments;
    source.messageOpen = !fin;
    return null;
  }

  private onFrame(source: Side, frame: Frame): void {
    source.turnFrames--;
    // RFC 6455 §5.5.1: nothing is sent after a close frame; whatever follows is ignored.
    if (source.core.closeReceived || !source.reading) return;
    const control = isControlOpcode(frame.opcode);
    if (!control && isFirstPiece(frame)) {
      const err = this.startFrame(source, frame.opcode, frame.fin);
      if (err !== null) {
        source.splitter.fail(err);
        return;
      }
    }
    source.observer.frame(frame);
    if (control) {
      // The pong answering one of our probe pings (see pausedPingInterval) is ours.
      if (source.answersProbe(frame)) return;
      // The side's core takes its closes (onPeerClose relays them) and, with 'local', answers its pings.
      const err = source.core.receive(frame, Date.now());
      if (err !== null) source.splitter.fail(err);
      if (frame.opcode === Opcode.Close || this.localPingPong) return;
    }
    // The other side is gone: what comes from this one is dropped (but for its close, above).
    if (source.peer.closed) return;
    source.peer.relay(frame);
    if (isLastPiece(frame)) this.frames[source.name === 'client' ? 'upstream' : 'downstream']++;
  }

  /**
   * `source`'s core received its close. The close goes on to the other side, as it is (the far
   * side sees the same code and reason), and `source`'s answer waits for the other side's close
   * (true: its core defers the echo). When the other side is closing or gone already, `source`
   * is answered now with its own code (1000 for an empty close), without a reason.
   */
  private onPeerClose(source: Side, code: number, reason: string): boolean {
    const dest = source.peer;
    const now = Date.now();
    if (!dest.core.closeSent && dest.writable) {
      if (code === CloseCode.NoStatus) dest.core.close(undefined, undefined, now);
      else dest.core.close(code, reason, now);
      return true;
    }
    // (Once a close went to `source` already, its core ends its socket by role, RFC 6455 §7.1.1.)
    source.core.close(code === CloseCode.NoStatus ? CloseCode.Normal : code, '', now);
    return false;
  }

  // ----- Flow control -----

  /**
   * Pauses `source` while its destination wants 'drain', one of its blocking taps is full, the
   * memory budget holds the connection, or (with local ping/pong) the pongs we answer it with
   * fill its own socket: a side that does not read cannot make us queue without bound. A paused
   * side gets a probe ping every pausedPingInterval, so that its peer leaving is noticed. Also
   * for the rest of the event loop's turn once the side had its share of it (fairness between
   * connections, ReadHold.Turn: see turns.ts), even once the other side is gone (what it sent
   * waits for its next turn, in order, and must not grow meanwhile); no probe for that.
   */
  private updateFlow(source: Side): void {
    if (!source.reading) return;
    // Once the other side is gone nothing else holds this one: its answer to our close must be read.
    const gone = source.peer.closed;
    const held =
      !gone && (source.peer.needDrain || source.observer.blocked || this.heldForBudget || (this.localPingPong && source.needDrain));
    const hold = held || (source.core.holds & ReadHold.Turn) !== 0;
    if (held) source.startProbing(this.pausedPingInterval);
    if (hold && !source.paused) {
      source.paused = true;
      source.socket.pause();
    } else if (!hold && source.paused) {
      source.paused = false;
      source.stopProbing();
      source.socket.resume();
    }
  }

  // ----- Failing and closing -----

  /** A protocol error in what `source` sent: it gets a close with the error's code; the other side 1001 or 1014. */
  private failSide(source: Side, err: WebSocketError): void {
    source.reading = false;
    if (source.paused) {
      source.paused = false;
      source.stopProbing();
      source.socket.resume(); // its bytes are read and dropped until the socket closes
    }
    // The core reports the error once, sends the close with its code (unless one went already)
    // and ends the socket after it; a close frame that failed it did all that already.
    const now = Date.now();
    source.core.fail(err, now);
    const other = source.peer;
    const code = source.name === 'upstream' ? CloseCode.BadGateway : CloseCode.GoingAway;
    if (other.writable) other.core.close(code, `${source.name} protocol error`, now);
    this.arm();
  }

  private onSocketError(side: Side, err: Error): void {
    // Not an error once the side's closing handshake completed (a reset after it).
    side.core.transportError(err);
    if (side.name === 'upstream') side.goneCode = CloseCode.BadGateway;
  }

  private onSocketClose(side: Side): void {
    // What it sent and waits for its next turn goes on first: nothing more comes from it.
    relayAllWaiting(side);
    side.closed = true;
    side.needDrain = false; // it never drains now
    side.stopProbing();
    side.queued = [];
    side.core.transportClosed();
    const other = side.peer;
    if (other.closed) {
      this.finish();
      return;
    }
    if (other.midFrame) {
      // A frame relayed to the other side is half written and can never end: no close frame can
      // follow it, and its peer would wait for the rest of the frame. Its 'close' finishes.
      other.socket.destroy();
      return;
    }
    const now = Date.now();
    if (!side.core.closeReceived && !other.core.closeSent && other.writable) {
      // Gone without a close frame.
      other.core.close(side.goneCode, `${side.name} went away`, now);
    } else if (side.core.closeReceived && other.core.closeReceived) {
      other.end();
    }
    // Whatever the other side still owes, it gets a short time for it (see GONE_CLOSE_TIMEOUT),
    // and it is read meanwhile, whatever held it but its turn: its answer may be behind data it sent.
    other.core.closeWithin(now, GONE_CLOSE_TIMEOUT);
    this.arm();
    this.updateFlow(other);
  }

  /**
   * Arms the connection's one timer at the earlier of the two cores' deadlines (the close
   * timeouts), unless it is armed for that time or earlier already. When it fires, both cores
   * tick (each destroys its socket when its closing handshake is late) and it is armed again.
   */
  private arm(): void {
    if (this.finished) return;
    const at = Math.min(this.client.core.deadline, this.upstream.core.deadline);
    if (at === Infinity || (this.timer !== null && this.timerAt <= at)) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      const now = Date.now();
      this.client.core.tick(now);
      this.upstream.core.tick(now);
      this.arm();
    }, Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private reportError(err: Error, side: Side): void {
    if (this.error === null) this.error = err;
    if (this.listenerCount('error') > 0) this.emit('error', err, side.name);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.client.observer.end();
    this.upstream.observer.end();
    this.emit('close', { client: closeOf(this.client), upstream: closeOf(this.upstream) });
  }
}

/** The close frame `side` sent (1005: empty), or 1006 without one. */
function closeOf(side: Side): SideClose {
  const core = side.core;
  return core.closeReceived ? { code: core.closeCode, reason: core.closeReason } : { code: CloseCode.Abnormal, reason: '' };
}
