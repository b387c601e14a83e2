/**
 * composePipeline(): a WebSocket connection built from its stages onto a socket, in one call,
 * with any stage replaced, any Transform inserted between two stages, and taps at every point.
 *
 *   socket ─► HandshakeParser ─► FrameSplitter ─► Unmasker ─► [Inflater] ─► FragmentAssembler ─► ControlFrameResponder ─► messages (read)
 *              afterHandshake     afterSplitter    afterUnmasker afterInflater  afterAssembler        │ replies       afterResponder
 *                                                                                                    ▼ (pong, close)
 *   messages (write) ─► MessageFramer ─► [Deflater] ─────────────────────────► ⊕ ─► [Masker] ─► FrameSerializer ─► socket
 *                        afterFramer      afterDeflater                             afterMasker   afterSerializer
 *
 * Each name under the graph is a point: `insert: { afterSplitter: stream }` puts streams there
 * (in order), `pipeline.tap('afterSplitter')` observes what passes there (before inserted
 * streams). [Inflater] and [Deflater] are there with permessage-deflate, [Masker] for the client
 * role; their points stay usable without them. Replies join the outbound frames at ⊕, whole
 * frames between data frames, never inside one.
 *
 * Backpressure runs right to left, as with pipe(): a reader that stops reading the messages
 * pauses the responder, and so on back to the socket, which is paused; a socket that does not
 * drain holds the writes. Closing and failing, as the fused WebSocket does them:
 * - close(code, reason) sends the close frame after the messages already written; the peer's
 *   close is echoed after the messages written before it arrived. Once close frames went both
 *   ways, the server ends the TCP connection, the client waits for the server to end it.
 * - A stage that fails (a protocol error: WebSocketError) fails the connection: a close frame
 *   with the error's close code (1002, 1007, 1009 ...) goes out, nothing more is read, the
 *   socket is ended; one 'error'. An error that is not a WebSocketError (from an inserted
 *   stream) closes with 1011.
 * - closeTimeout bounds every closing handshake; then the socket is destroyed ('close' 1006).
 * 'close' (code, reason) comes once, when the socket has closed: the peer's close code, or the
 * failing one, or 1006.
 */
import { Buffer } from 'node:buffer';
import { Duplex } from '../stages/streams';
import { CloseCode, Defaults, Opcode } from '../protocol/constants';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import type { Message } from '../protocol/frame';
import { checkCloseArgs } from '../protocol/close';
import { buildRejectResponse } from '../handshake/handshake';
import { HandshakeParser, type UpgradeRequest, type UpgradeResponse } from '../handshake/handshake-parser';
import { ControlFrameResponder } from '../stages/control-frame-responder';
import { FragmentAssembler } from '../stages/fragment-assembler';
import { FrameSerializer } from '../stages/frame-serializer';
import { FrameSplitter } from '../stages/frame-splitter';
import { Masker } from '../stages/masker';
import { MessageFramer, toMessage } from '../stages/message-framer';
import { Unmasker } from '../stages/unmasker';
import { Tap, type TapOptions, TapPoint } from '../stages/tap';
import { Inflater } from '../deflate/inflater';
import { Deflater } from '../deflate/deflater';
import { Link, type LinkTarget, type StageStream, copyBytes, copyFrame, linkStages } from './link';
import { MessageSink } from './message-sink';
import { type Opening, answerRequest, openAsClient } from './opening';
import type { OutboundMessage, PipelineOptions, PipelineTransport } from './types';
import { PIPELINE_POINTS, type PipelinePoint, type ReplaceableStage, checkPipelineOptions } from './points';

export { PIPELINE_POINTS, REPLACEABLE_STAGES } from './points';
export type { PipelinePoint, ReplaceableStage } from './points';
export type { StageStream } from './link';
export type { ComposedPipelineEvents, OutboundMessage, PipelineOptions, PipelineTransport } from './types';

/** The status of a request that cannot be parsed or is not a valid upgrade. */
const BAD_REQUEST = 400;

/**
 * A composed connection: a Duplex of messages (read Message values; write Message values,
 * strings as text or Buffers as binary). See the module comment and composePipeline().
 */
export class ComposedPipeline extends Duplex {
  readonly role: 'server' | 'client';
  /** The stages in use, by name, once built (frame stages after the opening handshake). */
  readonly stages: Partial<Record<'handshake' | 'responder' | ReplaceableStage, StageStream>> = {};
  /** What the opening handshake agreed, once done. */
  opening: Opening | null = null;
  /** The client's request (server role) or the server's answer (client role), once read. */
  head: UpgradeRequest | UpgradeResponse | null = null;
  /** The first error, if any. */
  error: Error | null = null;

  private readonly socket: PipelineTransport;
  private readonly options: PipelineOptions;
  private readonly points = new Map<PipelinePoint, TapPoint<unknown>>();
  private readonly links = new Map<TapPoint<unknown>, Link[]>();
  private readonly allLinks: Link[] = [];
  /** socket > HandshakeParser: cut when the connection fails (nothing more is read). */
  private socketLink: Link | null = null;
  /** The last inbound stage > our readable side (through `sink`). */
  private tailLink: Link | null = null;
  /** Messages waiting for a reader that does not read, within memoryBudget. */
  private sink: MessageSink | null = null;
  /** Answers the peer's close if the reader has not read up to it in half of closeTimeout. */
  private answerTimer: NodeJS.Timeout | null = null;
  /** The outbound data frames > the merge with the replies: cut when failing. */
  private dataLink: Link | null = null;
  /** Ends the merge once both its sources have ended. */
  private mergeSourceEnded: () => void = () => {};
  private responder: ControlFrameResponder | null = null;
  /** The first outbound stage, where the application's messages go. */
  private entry: StageStream | null = null;
  /** A write made before the opening handshake was done. */
  private queued: { message: Message; cb: (err?: Error | null) => void } | null = null;
  /** The callback of a write the first stage took but asked to wait for 'drain'. */
  private drainCallback: ((err?: Error | null) => void) | null = null;
  private pendingClose: { code?: number; reason?: string } = {};
  private peerClose: { code: number; reason: string } | null = null;
  private closeCode: { code: number; reason: string } | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  private outboundEnded = false;
  private serializerEnded = false;
  private failed = false;
  private finished = false;

  constructor(socket: PipelineTransport, options: PipelineOptions) {
    // emitClose off: 'close' is ours, with (code, reason); autoDestroy off: messages received
    // before the close stay readable. (@types/readable-stream lacks both, hence the cast.)
    const streamOptions = { objectMode: true, allowHalfOpen: true, emitClose: false, autoDestroy: false, decodeStrings: false };
    super(streamOptions as ConstructorParameters<typeof Duplex>[0]);
    checkPipelineOptions(options);
    this.role = options.role;
    this.socket = socket;
    this.options = options;
    for (const point of PIPELINE_POINTS) {
      const tapPoint = new TapPoint<unknown>(() => {
        for (const link of this.links.get(tapPoint) ?? []) link.tapReleased();
      });
      this.points.set(point, tapPoint);
    }
    const client = options.role === 'client' ? openAsClient(options) : null;
    const handshake = new HandshakeParser({ role: options.role, maxHeaderSize: options.maxHeaderSize });
    this.stages.handshake = handshake;
    this.watch(handshake);
    handshake.once('handshake', (head: UpgradeRequest | UpgradeResponse) => this.onHead(head, client?.check ?? null));
    socket.setNoDelay?.(true);
    socket.on('error', this.onSocketError);
    socket.once('close', () => this.finish());
    this.socketLink = this.link(socket, handshake, [], true);
    this.armTimer(options.handshakeTimeout ?? Defaults.handshakeTimeout, 'WS_ERR_HANDSHAKE_TIMEOUT');
    if (client !== null) socket.write(client.request);
  }

  /** Observes the values that pass `point` (before any stream inserted there). */
  tap(point: PipelinePoint, options: TapOptions = {}): Tap<unknown> {
    const tapPoint = this.points.get(point);
    if (tapPoint === undefined) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', `unknown pipeline point ${String(point)}`);
    const tap = tapPoint.add(options);
    if (this.finished) process.nextTick(() => tap.push(null));
    return tap;
  }

  /**
   * Starts the closing handshake: the messages already written go first, then a close frame
   * with `code` and `reason` (none: an empty close). Throws WS_ERR_INVALID_ARGUMENT for a code
   * or reason that may not be sent.
   */
  close(code?: number, reason?: string): void {
    const invalid = checkCloseArgs(code, reason);
    if (invalid !== null) throw invalid;
    if (this.outboundEnded || this.finished) return;
    this.pendingClose = { code, reason };
    this.end();
  }

  override write(chunk: OutboundMessage, cb?: (err?: Error | null) => void): boolean;
  override write(chunk: OutboundMessage, encoding?: BufferEncoding, cb?: (err?: Error | null) => void): boolean;
  override write(chunk: OutboundMessage, a?: BufferEncoding | ((err?: Error | null) => void), b?: (err?: Error | null) => void): boolean {
    const cb = typeof a === 'function' ? a : b;
    if (this.writableEnded || this.outboundEnded || this.failed || this.finished) {
      // As WebSocket.send() once closing: the callback hears of it, the stream is not destroyed.
      const err = new WebSocketError('WS_ERR_INVALID_STATE', 'the pipeline is closing');
      process.nextTick(() => cb?.(err));
      return false;
    }
    const message = toMessage(chunk);
    if (isWebSocketError(message)) throw message;
    return cb === undefined ? super.write(message) : super.write(message, cb);
  }

  override _write(message: Message, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.entry === null) this.queued = { message, cb };
    else this.send(message, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.endOutbound();
    cb();
  }

  override _read(): void {
    this.sink?.flush();
  }

  /** Bytes of received messages waiting for the reader beyond the readable side's own buffer. */
  get heldBytes(): number {
    return this.sink?.heldBytes ?? 0;
  }

  /**
   * Sends a ping (the peer answers with a pong, 'pong'), between data frames, never inside one.
   * Throws WS_ERR_INVALID_ARGUMENT for a payload over 125 bytes, WS_ERR_INVALID_STATE before the
   * opening handshake is done or once a close frame was sent.
   */
  ping(payload: string | Buffer = Buffer.alloc(0)): void {
    this.sendControl(Opcode.Ping, payload);
  }

  /** Sends an unsolicited pong (a one-way heartbeat, RFC 6455 §5.5.3); as ping(). */
  pong(payload: string | Buffer = Buffer.alloc(0)): void {
    this.sendControl(Opcode.Pong, payload);
  }

  private sendControl(opcode: Opcode.Ping | Opcode.Pong, payload: string | Buffer): void {
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (!Buffer.isBuffer(data)) throw new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'a ping or pong payload is a string or a Buffer');
    const responder = this.responder;
    const closing = responder === null || this.finished || this.outboundEnded || this.failed;
    const err = closing ? new WebSocketError('WS_ERR_INVALID_STATE', 'the pipeline is not open') : responder.sendControl(opcode, data);
    if (err !== null) throw err;
  }

  // ----- Building -----

  private onHead(head: UpgradeRequest | UpgradeResponse, check: ((res: UpgradeResponse) => Opening | WebSocketError) | null): void {
    this.head = head;
    const result = check === null ? answerRequest(head as UpgradeRequest, this.options) : check(head as UpgradeResponse);
    if (isWebSocketError(result)) {
      this.fail(result);
      return;
    }
    const opening = 'answer' in result ? result.opening : result;
    if ('answer' in result) this.socket.write(result.answer);
    this.opening = opening;
    this.clearTimer();
    this.build(opening);
    this.emit('open');
    const queued = this.queued;
    if (queued !== null) {
      this.queued = null;
      this.send(queued.message, queued.cb);
    }
    if (this.outboundEnded) this.entry!.end();
  }

  /** The stages after the handshake, linked (synchronously: the bytes after the head follow at once). */
  private build(opening: Opening): void {
    const o = this.options;
    const server = o.role === 'server';
    const deflate = opening.deflate;
    const responder = new ControlFrameResponder({ closeAnswer: 'manual' });
    this.responder = responder;
    this.stages.responder = responder;
    responder.on('ping', (payload: Buffer) => this.emit('ping', payload));
    responder.on('pong', (payload: Buffer) => this.emit('pong', payload));
    responder.on('peerclose', (code: number, reason: string) => this.onPeerClose(code, reason));
    const maxPayload = o.maxPayload ?? Defaults.maxPayload;
    const maxMessageSize = o.maxMessageSize ?? Defaults.maxMessageSize;
    const stage = (name: ReplaceableStage, make: () => StageStream): StageStream => {
      const chosen = o.replace?.[name] ?? make();
      this.stages[name] = chosen;
      return chosen;
    };
    const inbound: Array<[PipelinePoint, StageStream | null]> = [
      ['afterSplitter', stage('splitter', () => new FrameSplitter({ maxPayload, rsv1: deflate !== null }))],
      ['afterUnmasker', stage('unmasker', () => new Unmasker({ role: o.role }))],
      ['afterInflater', deflate === null ? null : stage('inflater', () => new Inflater({ ...deflate.inflate, maxPayload, maxMessageSize }))],
      ['afterAssembler', stage('assembler', () => new FragmentAssembler({ maxMessageSize }))],
      ['afterResponder', responder],
    ];
    const outbound: Array<[PipelinePoint, StageStream | null]> = [
      ['afterFramer', stage('framer', () => new MessageFramer({ fragmentSize: o.fragmentSize }))],
      ['afterDeflater', deflate === null || deflate.deflate === null ? null : stage('deflater', () => new Deflater({ ...deflate.deflate!, ...deflateTuning(o) }))],
    ];
    const toPeer: Array<[PipelinePoint, StageStream | null]> = [
      ['afterMasker', server ? null : stage('masker', () => new Masker({ generateMask: o.generateMask }))],
      ['afterSerializer', stage('serializer', () => new FrameSerializer())],
    ];
    // Inbound: handshake ... responder, then the pipeline's readable side.
    const tail = this.chain(this.stages.handshake!, 'afterHandshake', inbound, server);
    const sink = new MessageSink(
      { readable: this, closeSent: () => responder.core.closeSent },
      o.memoryBudget ?? Defaults.memoryBudget,
      () => this.tailLink?.drained(),
    );
    this.sink = sink;
    this.tailLink = this.link(tail.last, sink, tail.points, true);
    // Outbound: the application's messages ... (deflater), merged with the replies, ... socket.
    const data = this.chain(null, null, outbound, false);
    this.entry = data.first;
    const peer = this.chain(null, null, toPeer, false);
    const merge = peer.first!;
    let sources = 2;
    this.mergeSourceEnded = (): void => {
      if (--sources === 0) merge.end();
    };
    this.dataLink = this.link(data.last, merge, [...data.points, ...peer.entryPoints], () => {
      this.onDataEnded();
      this.mergeSourceEnded();
    });
    this.link(responder.replies, merge, peer.entryPoints, () => this.mergeSourceEnded());
    this.link(peer.last, this.socket, peer.points, () => {
      this.serializerEnded = true;
      this.maybeEndSocket();
    });
  }

  /**
   * Links `steps` after `start` (or from the first step's stream), each followed by the streams
   * inserted after it. Returns the first and last streams, the points on the edge into the first
   * (when `start` is null), and those on the edge leaving the last. `server`: the frames are
   * masked up to the Unmasker, which unmasks in place: taps before it get copies.
   */
  private chain(
    start: StageStream | null,
    startPoint: PipelinePoint | null,
    steps: Array<[PipelinePoint, StageStream | null]>,
    server: boolean,
  ): { first: StageStream | null; last: StageStream; entryPoints: Array<TapPoint<unknown>>; points: Array<TapPoint<unknown>> } {
    let first = start;
    let last = start;
    let pending: PipelinePoint[] = startPoint === null ? [] : [startPoint];
    let entry: PipelinePoint[] = [];
    const add = (stream: StageStream, point: PipelinePoint | null): void => {
      if (last === null) {
        first = stream;
        entry = pending;
      } else {
        const copy = !server ? null : pending.includes('afterHandshake') ? copyBytes : pending.includes('afterSplitter') ? copyFrame : null;
        this.link(last, stream, this.tapPoints(pending), true, copy);
      }
      this.watch(stream);
      last = stream;
      pending = point === null ? [] : [point];
    };
    const addInserted = (point: PipelinePoint): void => {
      const extra = this.options.insert?.[point];
      for (const stream of extra === undefined ? [] : Array.isArray(extra) ? extra : [extra as StageStream]) add(stream, null);
    };
    if (startPoint !== null) addInserted(startPoint);
    for (const [point, stream] of steps) {
      if (stream !== null) add(stream, point);
      else pending.push(point);
      addInserted(point);
    }
    return { first, last: last!, entryPoints: this.tapPoints(entry), points: this.tapPoints(pending) };
  }

  private tapPoints(names: readonly PipelinePoint[]): Array<TapPoint<unknown>> {
    return names.map((name) => this.points.get(name)!);
  }

  private link(
    from: NodeJS.ReadableStream,
    to: LinkTarget | StageStream,
    points: Array<TapPoint<unknown>>,
    end: boolean | (() => void),
    copy: ((value: unknown) => unknown) | null = null,
  ): Link {
    const link = to instanceof MessageSink ? new Link(from, to, points, end, copy) : linkStages(from, to as StageStream, points, end, copy);
    this.allLinks.push(link);
    for (const point of points) this.links.set(point, [...(this.links.get(point) ?? []), link]);
    return link;
  }

  /** A stage's error fails the connection. */
  private watch(stream: StageStream): void {
    stream.on('error', (err: Error) => this.fail(err));
  }

  // ----- Sending -----

  private send(message: Message, cb: (err?: Error | null) => void): void {
    const entry = this.entry!;
    if ((entry as NodeJS.WritableStream).write(message as never)) {
      cb();
      return;
    }
    this.drainCallback = cb;
    entry.once('drain', () => {
      const waiting = this.drainCallback;
      this.drainCallback = null;
      waiting?.();
    });
  }

  /** The application's side ends (close(), end(), the peer's close): the framer gets no more. */
  private endOutbound(): void {
    if (this.outboundEnded) return;
    this.outboundEnded = true;
    this.entry?.end();
  }

  /** Every data frame has gone to the merge: now the close frame (ours, or the echo). */
  private onDataEnded(): void {
    const responder = this.responder!;
    if (this.failed) return;
    if (this.peerClose !== null) responder.answerClose();
    else responder.close(this.pendingClose.code, this.pendingClose.reason);
    this.armTimer(this.options.closeTimeout ?? Defaults.closeTimeout, 'WS_ERR_CLOSE_TIMEOUT');
  }

  /**
   * The peer's close: answered after what the application writes in answer to the messages that
   * came before it, i.e. once a reader has read them all (the readable side's 'end'), or at once
   * when nobody reads.
   */
  private onPeerClose(code: number, reason: string): void {
    this.peerClose = { code, reason };
    this.closeCode ??= { code, reason };
    const reading = this.listenerCount('data') > 0 || this.listenerCount('readable') > 0;
    if (reading && !this.readableEnded) {
      this.once('end', () => this.end());
      // A reader that stopped for good must not hang the handshake: half of closeTimeout later
      // the close is answered anyway (what it has not read stays readable).
      this.answerTimer = setTimeout(() => this.end(), (this.options.closeTimeout ?? Defaults.closeTimeout) / 2);
      this.answerTimer.unref?.();
    } else {
      this.end();
    }
    this.maybeEndSocket();
  }

  /**
   * RFC 6455 §7.1.1: once the close frames went both ways, the server closes the TCP connection
   * first; the client waits for it (the close timer bounds the wait). After failing, either end.
   */
  private maybeEndSocket(): void {
    if (!this.serializerEnded || this.socket.destroyed) return;
    if (this.failed || (this.peerClose !== null && this.role === 'server')) this.socket.end();
  }

  // ----- Failing and finishing -----

  private fail(err: Error): void {
    if (this.failed || this.finished) return;
    this.failed = true;
    this.report(err);
    const protocolError = isWebSocketError(err);
    if (this.peerClose === null) this.closeCode = { code: protocolError ? err.closeCode : CloseCode.InternalError, reason: '' };
    // Nothing more is read: the socket's bytes are dropped until it closes.
    this.socketLink?.cut();
    this.socket.resume();
    this.armTimer(this.options.closeTimeout ?? Defaults.closeTimeout, 'WS_ERR_CLOSE_TIMEOUT');
    const responder = this.responder;
    if (responder === null) {
      // The opening handshake failed: a server answers with the error's HTTP status.
      if (this.role === 'server' && protocolError && this.socket.writable) {
        this.socket.end(buildRejectResponse(err.status ?? BAD_REQUEST, { message: err.message }));
      } else {
        this.socket.destroy();
      }
      return;
    }
    // No more data frames: the failing close frame is the last thing sent (RFC 6455 §7.1.7).
    this.outboundEnded = true;
    if (this.dataLink !== null) {
      this.dataLink.cut();
      this.dataLink = null;
      this.mergeSourceEnded();
    }
    if (!protocolError) responder.close(CloseCode.InternalError, '');
    responder.failConnection(protocolError ? err : new WebSocketError('WS_ERR_INVALID_STATE', `a stage failed: ${err.message}`));
    // A failure on the way to the socket leaves nothing to send the close frame with.
    if (this.stages.serializer?.destroyed === true || this.stages.masker?.destroyed === true) this.socket.destroy();
  }

  private readonly onSocketError = (err: Error): void => {
    // A reset once the closing handshake is complete is not an error (RFC 6455 §7.1.1).
    if (this.peerClose !== null && this.responder?.core.closeSent === true) return;
    this.report(err);
  };

  private report(err: Error): void {
    if (this.error !== null) return;
    this.error = err;
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  private armTimer(ms: number, code: 'WS_ERR_HANDSHAKE_TIMEOUT' | 'WS_ERR_CLOSE_TIMEOUT'): void {
    this.clearTimer();
    this.closeTimer = setTimeout(() => {
      if (code === 'WS_ERR_HANDSHAKE_TIMEOUT') this.report(new WebSocketError(code));
      this.socket.destroy();
    }, ms);
    this.closeTimer.unref?.();
  }

  private clearTimer(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
  }

  /** The socket has closed: every stage goes, the readable side ends, 'close' once. */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.clearTimer();
    if (this.answerTimer !== null) clearTimeout(this.answerTimer);
    for (const link of this.allLinks) link.cut();
    for (const stream of Object.values(this.stages)) if (!stream.destroyed) stream.destroy();
    for (const list of Object.values(this.options.insert ?? {})) {
      for (const stream of Array.isArray(list) ? list : [list]) if (!(stream as StageStream).destroyed) (stream as StageStream).destroy();
    }
    for (const point of this.points.values()) point.end();
    const lost = new WebSocketError('WS_ERR_CONNECTION_LOST', 'the socket closed before the message was sent');
    for (const cb of [this.queued?.cb, this.drainCallback]) cb?.(lost);
    this.queued = null;
    this.drainCallback = null;
    this.push(null);
    const closed = this.closeCode ?? { code: CloseCode.Abnormal, reason: '' };
    this.emit('close', closed.code, closed.reason);
  }
}

function deflateTuning(o: PipelineOptions): { threshold?: number; level?: number; memLevel?: number } {
  const p = typeof o.perMessageDeflate === 'object' ? o.perMessageDeflate : {};
  return { threshold: p.threshold, level: p.level, memLevel: p.memLevel };
}

/**
 * Builds the stages of a WebSocket connection onto `socket` (a net.Socket, or see
 * PipelineTransport; the opening handshake included) and
 * returns the connection as a Duplex of messages. Throws WS_ERR_INVALID_ARGUMENT at the call for
 * options it cannot use (an unknown point or stage, a value that is not a stream, a role that is
 * neither 'server' nor 'client').
 *
 *   const ws = composePipeline(socket, { role: 'server', insert: { afterSplitter: logFrames } });
 *   ws.on('data', (message) => ws.write(message)); // an echo
 */
export function composePipeline(socket: PipelineTransport, options: PipelineOptions): ComposedPipeline {
  return new ComposedPipeline(socket, options);
}
