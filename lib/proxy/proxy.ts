/**
 * A frame-level WebSocket proxy: it relays frames between a client and an upstream server
 * without reassembling messages.
 *
 *   client --bytes--> FrameSplitter (streaming) > Unmasker (server role) > taps > Masker > FrameSerializer --> upstream
 *   client <--bytes-- FrameSerializer < taps < Unmasker (client role) < FrameSplitter (streaming) <-- upstream
 *
 * The opening handshake: the client's request is validated, then the same offers (subprotocols,
 * Sec-WebSocket-Extensions, unchanged) and the forwarded headers go to the upstream; the
 * upstream's 101 decides what the client gets. A refusal by the upstream reaches the client as
 * an HTTP error status (its own 4xx/5xx, else 502); an upstream that cannot be reached gives 502,
 * one that does not answer in time 504.
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
 * Closing: close frames are relayed both ways with their code and reason. When one side goes
 * away without a close frame, the other gets 1001; when the upstream fails (a socket error, or a
 * protocol error in what it sends) the client gets 1014; a protocol error is answered to the side
 * that caused it with the error's own code (1002, 1009, ...), and that side's socket is closed.
 */
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { CloseCode, Defaults, Opcode, isControlOpcode } from '../protocol/constants';
import { MAX_WINDOW_BITS } from '../deflate/permessage-deflate';
import { encodeClosePayload, parseClosePayload } from '../protocol/close';
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import { FragmentAssemblerCore } from '../stages/fragment-assembler';
import { Frame, Message, isFirstPiece, isLastPiece, makeFrame } from '../protocol/frame';
import { FrameSerializerCore } from '../stages/frame-serializer';
import { FrameSplitterCore } from '../stages/frame-splitter';
import {
  UpgradeInfo,
  UpgradeRequest,
  buildAcceptResponse,
  buildClientRequest,
  buildRejectResponse,
  generateKey,
  headerValue,
  parseExtensions,
  validateUpgradeRequest,
  validateUpgradeResponse,
} from '../handshake/handshake';
import { HandshakeParserCore, UpgradeResponse } from '../handshake/handshake-parser';
import { InflaterCore } from '../deflate/inflater';
import { MaskerCore } from '../stages/masker';
import { resolveUpstream, UpstreamTarget } from './target';
import { ForwardedMode, forwardingHeaders, withoutDeflate } from './forwarded';
import { shutDown } from '../connection/shutdown';
import { Tap, TapOptions, TapPoint } from '../stages/tap';
import { UnmaskerCore } from '../stages/unmasker';

/** 'upstream': client -> server; 'downstream': server -> client. */
export type ProxyDirection = 'upstream' | 'downstream';
/** Where a proxy tap observes: received bytes, relayed frames (unmasked), or reassembled messages. */
export type ProxyTapLayer = 'bytes' | 'frames' | 'messages';

/** A message as a 'messages' tap sees it: a copy reassembled for observers only. */
export interface ProxyMessage extends Message {
  /**
   * The message is shown compressed (permessage-deflate, RSV1): `data` is the compressed payload
   * and text is not UTF-8-checked. This happens only when the tap was added after compressed
   * messages with context takeover had passed: a tap added from the 'connection' event sees
   * every message inflated (through a shadow inflate context, the relayed frames unchanged).
   */
  readonly compressed: boolean;
}

/** Request headers forwarded to the upstream by default (lower case). */
export const DEFAULT_FORWARD_HEADERS: readonly string[] = [
  'authorization',
  'cookie',
  'origin',
  'user-agent',
  'accept-language',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
];

/** Headers the handshake builds itself: never forwarded. */
const NOT_FORWARDED: ReadonlySet<string> = new Set([
  'host', 'upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol',
  'sec-websocket-extensions', 'sec-websocket-accept', 'content-length', 'transfer-encoding',
]);

export interface ProxyOptions {
  /**
   * The upstream: a ws:// or wss:// URL, or a function of the client's request returning one.
   * With a URL whose path is '/' and has no query, the client's request-target (its path and query:
   * the client never chooses the scheme, host or port; a request-target that is not a path and
   * query is refused with 400) is used; otherwise the URL's own path and query. A function's URL is used as it is.
   */
  target: string | URL | ((req: UpgradeRequest) => string | URL);
  /** Listen on this port (standalone mode; 0 picks one). */
  port?: number;
  /** Address to listen on in standalone mode. Default: Node's default (all interfaces). */
  host?: string;
  /** Attach to this http/https server's 'upgrade' event instead of listening. */
  server?: http.Server;
  /** Neither listen nor attach: call relay(req, socket, head) yourself. */
  noServer?: boolean;
  /** 'relay' (default): pings and pongs pass through; 'local': each side's pings are answered by the proxy, and pings and pongs are not relayed. */
  pingPong?: 'relay' | 'local';
  /** Names of request headers forwarded to the upstream. Default DEFAULT_FORWARD_HEADERS. */
  forwardHeaders?: readonly string[];
  /** TLS options for wss:// upstreams (ca, servername, rejectUnauthorized (default true) ...). */
  tls?: tls.ConnectionOptions;
  /** Largest frame payload relayed, either way, in bytes. Default 100 MiB; over it: 1009 to the sender. */
  maxPayload?: number;
  /** Largest message a 'messages' tap reassembles, in bytes. Default 100 MiB (larger ones end the tap). */
  maxMessageSize?: number;
  /** Largest handshake head (client's or upstream's), in bytes. Default 16 KiB. */
  maxHeaderSize?: number;
  /** Milliseconds allowed for the client's request (standalone mode) and for the upstream's answer. Default 10000. */
  handshakeTimeout?: number;
  /** Milliseconds the closing handshake may take before both sockets are destroyed. Default 5000. */
  closeTimeout?: number;
  /**
   * Which headers tell the upstream about the client: 'both' (default: X-Forwarded-For, -Proto,
   * -Host and RFC 7239 Forwarded), 'x-forwarded', 'forwarded' or 'none'. See lib/proxy/forwarded.ts.
   */
  forwarded?: ForwardedMode;
  /**
   * Keep the client's own forwarding headers and append this hop (only behind proxies you trust).
   * Default false: the client's values are dropped, since any client can write them.
   */
  trustForwarded?: boolean;
  /** Take permessage-deflate out of the client's offer, so the traffic is not compressed. Default false. */
  stripDeflate?: boolean;
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

/** The side of a connection on one socket. */
class Side {
  readonly splitter: FrameSplitterCore;
  readonly unmasker: UnmaskerCore;
  /** Outbound to this side: masks (upstream only), then serializes. */
  readonly masker: MaskerCore | null;
  readonly serializer: FrameSerializerCore;
  peer!: Side;
  /** A relayed frame is half written to this side: injected frames must wait. */
  midFrame = false;
  /** Frames of our own (pongs, closes) waiting for the end of the frame under way. */
  queued: Frame[] = [];
  /** End this socket once the queue is written. */
  endAfterQueue = false;
  /** The close frame this side sent us, once it came. */
  closeFrom: SideClose | null = null;
  /** A close frame went to this side. */
  closeSent = false;
  /** This side's socket wants 'drain' (a write returned false). */
  needDrain = false;
  /** We paused this socket. */
  paused = false;
  /** False after this side failed: its bytes are ignored. */
  reading = true;
  closed = false;
  /** The code the other side gets when this one goes away without a close frame. */
  goneCode: CloseCode = CloseCode.GoingAway;
  taps: { bytes: TapPoint<Buffer>; frames: TapPoint<Frame>; messages: TapPoint<ProxyMessage> } | null = null;
  observer: FragmentAssemblerCore | null = null;
  /** The observer waits for the start of a message before it is fed. */
  observerSynced = false;
  observerCompressed = false;
  /** A compressed message has passed (a shadow inflate context can no longer start, unless no context takeover). */
  compressedSeen = false;
  /** How this side compresses (permessage-deflate), for the shadow inflate context of message taps. */
  deflate: { windowBits: number; noContextTakeover: boolean } | null = null;
  /** The shadow inflate context that gives message taps the inflated view. */
  shadow: InflaterCore | null = null;

  constructor(
    readonly name: 'client' | 'upstream',
    readonly socket: net.Socket,
    splitter: (side: Side) => FrameSplitterCore,
    unmasker: (side: Side) => UnmaskerCore,
  ) {
    this.splitter = splitter(this);
    this.unmasker = unmasker(this);
    this.serializer = new FrameSerializerCore(
      {},
      {
        onData: (chunk: Buffer) => {
          if (!this.socket.write(chunk)) this.needDrain = true;
        },
      },
    );
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

  tapsBlocked(): boolean {
    const taps = this.taps;
    return taps !== null && (taps.bytes.blocked || taps.frames.blocked || taps.messages.blocked);
  }
}

const MAX_REASON = 123;
/** Frames the shadow inflate context may fall behind the relay before its messages tap is ended. */
const MAX_SHADOW_PENDING = 1024;

function closeFrameOf(code: number, reason: string): Frame {
  let text = reason;
  while (Buffer.byteLength(text, 'utf8') > MAX_REASON) text = text.slice(0, -1);
  return makeFrame(Opcode.Close, encodeClosePayload(code, text));
}

/**
 * One relayed connection. `tap()` observes it; `close()` closes both sides. Emits 'close' once
 * both sockets are closed.
 */
export class ProxyConnection extends EventEmitter {
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
  private readonly closeTimeout: number;
  private readonly maxMessageSize: number;
  private readonly compression: boolean;
  private closeTimer: NodeJS.Timeout | null = null;
  private finished = false;

  /** @internal Created by WebSocketProxy once both handshakes are done. */
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
    options: ProxyOptions,
  ) {
    super();
    this.request = init.request;
    this.response = init.response;
    this.target = init.target;
    this.protocol = init.protocol;
    this.extensions = init.extensions;
    this.clientAddress = { address: init.clientSocket.remoteAddress, port: init.clientSocket.remotePort };
    this.localPingPong = options.pingPong === 'local';
    this.closeTimeout = options.closeTimeout ?? Defaults.closeTimeout;
    this.maxMessageSize = options.maxMessageSize ?? Defaults.maxMessageSize;
    // RSV bits: permessage-deflate claims RSV1 (RFC 7692 §6); an extension we do not know may
    // claim any of them, and the endpoints that negotiated it check them.
    const accepted = init.extensions === '' ? [] : parseExtensions(init.extensions);
    const names = isWebSocketError(accepted) ? [] : accepted.map((e) => e.name.toLowerCase());
    this.compression = names.includes('permessage-deflate');
    const unknown = names.some((name) => name !== 'permessage-deflate');
    const bits = { rsv1: this.compression || unknown, rsv2: unknown, rsv3: unknown };
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
      );
    this.client = makeSide('client', init.clientSocket);
    this.upstream = makeSide('upstream', init.upstreamSocket);
    this.client.peer = this.upstream;
    this.upstream.peer = this.client;
    if (this.compression && !isWebSocketError(accepted)) {
      const params = new Map(accepted.find((e) => e.name.toLowerCase() === 'permessage-deflate')!.params);
      const bits = (name: string): number => {
        const value = params.get(name);
        return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : MAX_WINDOW_BITS;
      };
      // RFC 7692 §7.1: the client_* parameters describe how the client compresses, server_* the server.
      this.client.deflate = { windowBits: bits('client_max_window_bits'), noContextTakeover: params.has('client_no_context_takeover') };
      this.upstream.deflate = { windowBits: bits('server_max_window_bits'), noContextTakeover: params.has('server_no_context_takeover') };
    }
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
      });
      socket.on('error', (err: Error) => this.onSocketError(side, err));
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

  /** Bytes buffered by the proxy for this connection (sockets' write buffers and partial frames). */
  get bufferedBytes(): number {
    return (
      this.client.socket.writableLength +
      this.upstream.socket.writableLength +
      this.client.splitter.bufferedBytes +
      this.upstream.splitter.bufferedBytes
    );
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
    if (side.taps === null) {
      const point = (): TapPoint<never> => new TapPoint(() => this.updateFlow(side));
      side.taps = { bytes: point(), frames: point(), messages: point() };
    }
    if (layer === 'messages' && side.observer === null) this.startObserver(side);
    const tap = (side.taps[layer] as TapPoint<unknown>).add(options);
    if (this.finished) process.nextTick(() => tap.push(null));
    return tap;
  }

  /**
   * Closes both sides with `code` (default 1001) and `reason`: each gets a close frame (after
   * the frame under way, if any) and the sockets are destroyed if the closing handshake has not
   * ended within closeTimeout.
   */
  close(code: number = CloseCode.GoingAway, reason = ''): void {
    for (const side of [this.client, this.upstream]) {
      if (!side.closeSent && side.writable) this.inject(side, closeFrameOf(code, reason), false);
    }
    this.armCloseTimer();
  }

  // ----- Relaying -----

  private onData(source: Side, chunk: Buffer): void {
    if (!source.reading) return;
    const taps = source.taps;
    // The client's bytes are unmasked in place below, so a bytes tap gets a copy of them.
    if (taps !== null && taps.bytes.active) taps.bytes.offer(source.name === 'client' ? Buffer.from(chunk) : chunk);
    const dest = source.peer.socket;
    dest.cork();
    const err = source.splitter.write(chunk);
    dest.uncork();
    if (err !== null) this.failSide(source, err);
    this.updateFlow(source);
  }

  private onFrame(source: Side, frame: Frame): void {
    // RFC 6455 §5.5.1: nothing is sent after a close frame; whatever follows is ignored.
    if (source.closeFrom !== null) return;
    if (frame.rsv1 && frame.opcode !== Opcode.Continuation && isFirstPiece(frame)) source.compressedSeen = true;
    if (source.taps !== null) this.observe(source, frame);
    const control = isControlOpcode(frame.opcode);
    if (control && frame.opcode === Opcode.Close) {
      this.onCloseFrame(source, frame);
      return;
    }
    if (control && this.localPingPong) {
      // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
      // response ... with identical Application data".
      if (frame.opcode === Opcode.Ping && !source.closeSent) this.inject(source, makeFrame(Opcode.Pong, Buffer.from(frame.payload)), false);
      return;
    }
    this.relay(source.peer, frame);
    if (isLastPiece(frame)) this.frames[source.name === 'client' ? 'upstream' : 'downstream']++;
  }

  /** Writes a relayed frame (or piece) to `dest`, unless a close already went to it. */
  private relay(dest: Side, frame: Frame): void {
    if (dest.closeSent && !dest.midFrame) return;
    dest.write(frame);
    if (isLastPiece(frame)) {
      dest.midFrame = false;
      this.flushQueue(dest);
    } else {
      dest.midFrame = true;
    }
  }

  /** Sends a frame of our own to `dest`: now, or after the relayed frame under way. */
  private inject(dest: Side, frame: Frame, end: boolean): void {
    if (frame.opcode === Opcode.Close) {
      if (dest.closeSent || dest.queued.some((f) => f.opcode === Opcode.Close)) return;
    }
    dest.queued.push(frame);
    if (end) dest.endAfterQueue = true;
    if (!dest.midFrame) this.flushQueue(dest);
  }

  private flushQueue(dest: Side): void {
    while (dest.queued.length > 0 && !dest.midFrame) {
      const frame = dest.queued.shift()!;
      if (dest.closeSent) continue;
      dest.write(frame);
      if (frame.opcode === Opcode.Close) {
        dest.closeSent = true;
        this.afterCloseExchange(dest);
      }
    }
    if (dest.endAfterQueue && dest.queued.length === 0) dest.socket.end();
  }

  private onCloseFrame(source: Side, frame: Frame): void {
    const parsed = parseClosePayload(frame.payload);
    source.closeFrom = isWebSocketError(parsed) ? { code: CloseCode.NoStatus, reason: '' } : { code: parsed.code, reason: parsed.reason };
    this.armCloseTimer();
    const dest = source.peer;
    if (!dest.closeSent && dest.writable) {
      // Relayed as is: the far side sees the same code and reason.
      this.relay(dest, frame);
      dest.closeSent = true;
      this.afterCloseExchange(dest);
    } else if (!source.closeSent) {
      // The other side is closing or gone already: answer this close ourselves (RFC 6455 §5.5.1).
      this.inject(source, closeFrameOf(source.closeFrom.code === CloseCode.NoStatus ? CloseCode.Normal : source.closeFrom.code, ''), false);
    }
    this.afterCloseExchange(source);
  }

  /**
   * When close frames went both ways on a side: RFC 6455 §7.1.1, the server (us, toward the
   * client) closes the TCP connection at once; toward the upstream we are the client and wait
   * for the server to close it (its 'end' ends ours; the close timer bounds the wait).
   */
  private afterCloseExchange(side: Side): void {
    if (side.closeFrom === null || !side.closeSent) return;
    if (side.name === 'client') side.socket.end();
  }

  // ----- Observers -----

  private observe(source: Side, frame: Frame): void {
    const taps = source.taps!;
    if (taps.frames.active) taps.frames.offer(frame);
    const observer = source.observer;
    if (observer === null || isControlOpcode(frame.opcode)) return;
    if (!taps.messages.active) {
      source.observer = null;
      source.shadow?.destroy();
      source.shadow = null;
      return;
    }
    const shadow = source.shadow;
    if (shadow === null) {
      this.feedObserver(source, frame);
      return;
    }
    // RFC 7692 §7.2.2: the shadow context inflates a copy for observers, never the relayed frames.
    // It must not hold the relay: when zlib falls behind, the tap is ended instead.
    if (shadow.write(frame) !== null || shadow.pending > MAX_SHADOW_PENDING) this.stopObserver(source);
  }

  /** A messages tap starts: the side assembler, behind a shadow inflate context when possible. */
  private startObserver(side: Side): void {
    side.observerSynced = false;
    const deflate = side.deflate;
    const inflate = deflate !== null && (!side.compressedSeen || deflate.noContextTakeover);
    side.observer = new FragmentAssemblerCore(
      { maxMessageSize: this.maxMessageSize, skipUtf8Validation: deflate !== null && !inflate },
      {
        onMessage: (message) => {
          const copy: ProxyMessage = { binary: message.binary, data: message.data, compressed: side.observerCompressed };
          side.taps?.messages.offer(copy);
        },
        onControl: () => {},
      },
    );
    side.shadow = inflate
      ? new InflaterCore(
          { ...deflate, maxMessageSize: this.maxMessageSize, maxPayload: this.maxMessageSize },
          { onFrame: (frame: Frame) => this.feedObserver(side, frame) },
        )
      : null;
  }

  private feedObserver(side: Side, frame: Frame): void {
    const observer = side.observer;
    if (observer === null || isControlOpcode(frame.opcode)) return;
    if (frame.opcode !== Opcode.Continuation && isFirstPiece(frame)) {
      side.observerSynced = true;
      side.observerCompressed = frame.rsv1;
    }
    if (!side.observerSynced) return;
    // The copy for observers failed (e.g. over maxMessageSize): end the messages taps only.
    if (observer.write(frame) !== null) this.stopObserver(side);
  }

  private stopObserver(side: Side): void {
    side.observer = null;
    side.shadow?.destroy();
    side.shadow = null;
    side.taps?.messages.end();
  }

  // ----- Flow control -----

  /** Pauses `source` while its destination wants 'drain' or one of its blocking taps is full. */
  private updateFlow(source: Side): void {
    const hold = source.peer.needDrain || source.tapsBlocked();
    if (hold && !source.paused) {
      source.paused = true;
      source.socket.pause();
    } else if (!hold && source.paused) {
      source.paused = false;
      source.socket.resume();
    }
  }

  // ----- Failing and closing -----

  /** A protocol error in what `source` sent: it gets a close with the error's code; the other side 1001 or 1014. */
  private failSide(source: Side, err: WebSocketError): void {
    this.reportError(err, source);
    source.reading = false;
    if (source.paused) {
      source.paused = false;
      source.socket.resume(); // its bytes are read and dropped until the socket closes
    }
    if (!source.closeSent && source.writable) this.inject(source, closeFrameOf(err.closeCode, err.message), true);
    else source.socket.end();
    const other = source.peer;
    const code = source.name === 'upstream' ? CloseCode.BadGateway : CloseCode.GoingAway;
    if (other.writable) this.inject(other, closeFrameOf(code, `${source.name} protocol error`), false);
    this.armCloseTimer();
  }

  private onSocketError(side: Side, err: Error): void {
    this.reportError(err, side);
    if (side.name === 'upstream') side.goneCode = CloseCode.BadGateway;
  }

  private onSocketClose(side: Side): void {
    side.closed = true;
    side.queued = [];
    const other = side.peer;
    if (!other.closed) {
      if (side.closeFrom === null && !other.closeSent && other.writable) {
        // Gone without a close frame. A frame of it half relayed can never end: just end the other socket.
        if (other.midFrame) other.socket.end();
        else this.inject(other, closeFrameOf(side.goneCode, `${side.name} went away`), false);
      } else if (side.closeFrom !== null && other.closeFrom !== null) {
        other.socket.end();
      }
      this.armCloseTimer();
      if (other.paused) {
        other.paused = false;
        other.socket.resume();
      }
      return;
    }
    this.finish();
  }

  private armCloseTimer(): void {
    if (this.closeTimer !== null || this.finished) return;
    this.closeTimer = setTimeout(() => {
      this.client.socket.destroy();
      this.upstream.socket.destroy();
    }, this.closeTimeout);
    this.closeTimer.unref();
  }

  private reportError(err: Error, side: Side): void {
    if (this.error === null) this.error = err;
    if (this.listenerCount('error') > 0) this.emit('error', err, side.name);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    for (const side of [this.client, this.upstream]) {
      side.shadow?.destroy();
      side.shadow = null;
      if (side.taps !== null) {
        side.taps.bytes.end();
        side.taps.frames.end();
        side.taps.messages.end();
      }
    }
    const none: SideClose = { code: CloseCode.Abnormal, reason: '' };
    this.emit('close', { client: this.client.closeFrom ?? none, upstream: this.upstream.closeFrom ?? none });
  }
}

// ----- The proxy server -----

/** Events of WebSocketProxy. */
export interface WebSocketProxyEvents {
  connection: (conn: ProxyConnection, req: UpgradeRequest) => void;
  /** A client's handshake was refused (by us or by the upstream), with the HTTP status answered. */
  rejected: (err: WebSocketError, req: UpgradeRequest | null, status: number) => void;
  listening: () => void;
  error: (err: Error) => void;
  close: () => void;
}

const BAD_GATEWAY = 502;
const GATEWAY_TIMEOUT = 504;
const SERVICE_UNAVAILABLE = 503;
const INTERNAL_SERVER_ERROR = 500;
const FIRST_ERROR_STATUS = 400;
/** How long a refused socket may linger half-closed before it is destroyed. */
const REFUSED_LINGER_MS = 2000;

function refuseSocket(socket: net.Socket, status: number, message: string): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(buildRejectResponse(status, { message }));
  const linger = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
  socket.resume();
}

function ignore(): void {}

export class WebSocketProxy extends EventEmitter {
  /** The open connections. */
  readonly connections = new Set<ProxyConnection>();
  private readonly options: ProxyOptions;
  private readonly netServer: net.Server | null = null;
  private readonly httpServer: http.Server | null = null;
  /** Client sockets whose handshake (ours or the upstream's) is under way. */
  private readonly pending = new Set<net.Socket>();
  private closed = false;

  constructor(options: ProxyOptions, onListening?: () => void) {
    super();
    this.options = options;
    if (options.server !== undefined) {
      this.httpServer = options.server;
      this.httpServer.on('upgrade', this.onHttpUpgrade);
    } else if (options.noServer !== true) {
      const server = net.createServer((socket) => this.onRawSocket(socket));
      server.on('error', (err) => this.emit('error', err));
      server.on('listening', () => this.emit('listening'));
      server.listen(options.port ?? 0, options.host);
      this.netServer = server;
    }
    if (onListening !== undefined) this.once('listening', onListening);
  }

  /** The address the standalone proxy listens on (null in the other modes). */
  address(): net.AddressInfo | null {
    const addr = this.netServer?.address() ?? this.httpServer?.address();
    return addr !== null && typeof addr === 'object' ? addr : null;
  }

  /**
   * Relays one client whose upgrade request has been parsed (Node's http 'upgrade' event has
   * this shape): validates it, opens the upstream, and answers the client with the upstream's
   * decision. Emits 'connection' once both handshakes are done.
   */
  relay(req: UpgradeRequest, socket: net.Socket, head: Buffer = Buffer.alloc(0)): void {
    socket.on('error', ignore);
    socket.pause();
    if (this.closed) {
      this.refuse(socket, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the proxy is closing'), req, SERVICE_UNAVAILABLE);
      return;
    }
    const info = validateUpgradeRequest(req);
    if (isWebSocketError(info)) {
      this.refuse(socket, info, req, info.status ?? FIRST_ERROR_STATUS);
      return;
    }
    let configured: URL;
    try {
      const chosen = typeof this.options.target === 'function' ? this.options.target(req) : this.options.target;
      configured = new URL(String(chosen));
    } catch (cause) {
      const err = new WebSocketError('WS_ERR_INVALID_ARGUMENT', `no valid upstream: ${(cause as Error).message}`);
      this.refuse(socket, err, req, INTERNAL_SERVER_ERROR);
      return;
    }
    // The client's request-target contributes a path and query only, never scheme, host or port.
    const usePath = typeof this.options.target !== 'function' && configured.pathname === '/' && configured.search === '';
    const target = resolveUpstream(configured, req.url ?? '', usePath);
    if (isWebSocketError(target)) {
      this.refuse(socket, target, req, target.status ?? INTERNAL_SERVER_ERROR);
      return;
    }
    this.openUpstream(req, info, socket, head, target);
  }

  /**
   * Stops accepting clients, closes every connection with 1001 on both sides, and calls back
   * (and emits 'close') once all are closed. A server given as `server` is left running.
   */
  close(callback?: () => void): void {
    if (this.closed) {
      if (callback !== undefined) process.nextTick(callback);
      return;
    }
    this.closed = true;
    this.httpServer?.removeListener('upgrade', this.onHttpUpgrade);
    const parts = { handshaking: this.pending, open: this.connections, reason: 'proxy shutting down', listener: this.netServer };
    shutDown(parts, () => {
      this.emit('close');
      callback?.();
    });
  }

  private readonly onHttpUpgrade = (req: http.IncomingMessage, socket: net.Socket, head: Buffer): void => {
    this.relay(req as UpgradeRequest, socket, head);
  };

  /** Standalone mode: read the request with the HandshakeParser core. */
  private onRawSocket(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.on('error', ignore);
    this.pending.add(socket);
    const timer = setTimeout(() => socket.destroy(), this.options.handshakeTimeout ?? Defaults.handshakeTimeout);
    let request: UpgradeRequest | null = null;
    const rest: Buffer[] = [];
    const parser = new HandshakeParserCore(
      { role: 'server', maxHeaderSize: this.options.maxHeaderSize },
      { onHead: (h) => (request = h as UpgradeRequest), onData: (bytes: Buffer) => rest.push(bytes) },
    );
    const cleanup = (): void => {
      this.pending.delete(socket);
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', cleanup);
    };
    const onData = (chunk: Buffer): void => {
      const err = parser.write(chunk);
      if (err !== null) {
        cleanup();
        this.refuse(socket, err, null, err.status ?? FIRST_ERROR_STATUS);
        return;
      }
      if (request === null) return;
      cleanup();
      socket.pause();
      this.relay(request, socket, rest.length === 1 ? rest[0]! : Buffer.concat(rest));
    };
    socket.on('data', onData);
    socket.on('close', cleanup);
  }

  private openUpstream(req: UpgradeRequest, info: UpgradeInfo, client: net.Socket, head: Buffer, resolved: UpstreamTarget): void {
    const target = resolved.url;
    this.pending.add(client);
    const secure = target.protocol === 'wss:';
    const port = target.port === '' ? (secure ? 443 : 80) : Number(target.port);
    const hostname = target.hostname.startsWith('[') ? target.hostname.slice(1, -1) : target.hostname;
    const key = generateKey();
    const forwarded: Record<string, string> = {};
    let origin: string | undefined;
    for (const name of this.options.forwardHeaders ?? DEFAULT_FORWARD_HEADERS) {
      const lower = name.toLowerCase();
      if (NOT_FORWARDED.has(lower)) continue;
      const value = headerValue(req.headers, lower);
      if (value === undefined) continue;
      if (lower === 'origin') origin = value;
      else forwarded[lower] = value;
    }
    const hop = { address: client.remoteAddress, secure: (client as tls.TLSSocket).encrypted === true };
    for (const [name, value] of Object.entries(forwardingHeaders(req.headers, hop, { mode: this.options.forwarded, trust: this.options.trustForwarded }))) {
      if (value === '') delete forwarded[name];
      else forwarded[name] = value;
    }
    const offer = headerValue(req.headers, 'sec-websocket-extensions');
    const offeredExtensions = this.options.stripDeflate === true ? withoutDeflate(offer) : offer;
    let request: string;
    try {
      request = buildClientRequest({
        host: target.host,
        path: resolved.path,
        key,
        protocols: info.protocols,
        extensions: offeredExtensions,
        origin,
        headers: forwarded,
      });
    } catch (cause) {
      this.pending.delete(client);
      this.refuse(client, new WebSocketError('WS_ERR_INVALID_ARGUMENT', (cause as Error).message), req, BAD_GATEWAY);
      return;
    }
    const upstream: net.Socket = secure
      ? tls.connect({ servername: net.isIP(hostname) === 0 ? hostname : undefined, ...this.options.tls, host: hostname, port })
      : net.connect({ host: hostname, port });
    let settled = false;
    let response: UpgradeResponse | null = null;
    const rest: Buffer[] = [];
    const parser = new HandshakeParserCore(
      { role: 'client', maxHeaderSize: this.options.maxHeaderSize },
      { onHead: (h) => (response = h as UpgradeResponse), onData: (bytes: Buffer) => rest.push(bytes) },
    );
    const timer = setTimeout(
      () => fail(GATEWAY_TIMEOUT, new WebSocketError('WS_ERR_HANDSHAKE_TIMEOUT', `the upstream ${target.host} did not answer`)),
      this.options.handshakeTimeout ?? Defaults.handshakeTimeout,
    );
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      this.pending.delete(client);
      upstream.removeListener('data', onData);
      upstream.removeListener('error', onError);
      upstream.removeListener('close', onUpstreamClose);
      client.removeListener('close', onClientClose);
    };
    const fail = (status: number, err: WebSocketError): void => {
      if (settled) return;
      cleanup();
      upstream.on('error', ignore);
      upstream.destroy();
      this.refuse(client, err, req, status);
    };
    const onError = (err: Error): void =>
      fail(BAD_GATEWAY, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `the upstream ${target.host} cannot be reached: ${err.message}`));
    const onUpstreamClose = (): void =>
      fail(BAD_GATEWAY, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `the upstream ${target.host} closed during the handshake`));
    const onClientClose = (): void => {
      if (settled) return;
      cleanup();
      upstream.on('error', ignore);
      upstream.destroy();
    };
    const onData = (chunk: Buffer): void => {
      const err = parser.write(chunk);
      if (err !== null) {
        fail(BAD_GATEWAY, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `invalid answer from the upstream: ${err.message}`));
        return;
      }
      if (response === null) return;
      const res: UpgradeResponse = response;
      if (res.statusCode !== 101) {
        // The upstream's refusal reaches the client as an HTTP error status.
        const status = res.statusCode >= FIRST_ERROR_STATUS && res.statusCode <= 599 ? res.statusCode : BAD_GATEWAY;
        fail(status, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `the upstream answered ${res.statusCode} ${res.statusMessage}`.trim()));
        return;
      }
      const offered = validateUpgradeResponse(res, {
        key,
        protocols: info.protocols,
        extensions: this.options.stripDeflate === true ? info.extensions.filter((e) => e.name.toLowerCase() !== 'permessage-deflate') : info.extensions,
      });
      if (isWebSocketError(offered)) {
        fail(BAD_GATEWAY, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', `invalid answer from the upstream: ${offered.message}`));
        return;
      }
      if (this.closed || client.destroyed || !client.writable) {
        fail(SERVICE_UNAVAILABLE, new WebSocketError('WS_ERR_HANDSHAKE_REJECTED', 'the proxy is closing'));
        return;
      }
      cleanup();
      upstream.pause();
      const extensions = headerValue(res.headers, 'sec-websocket-extensions') ?? '';
      client.write(buildAcceptResponse({ key: info.key, protocol: offered.protocol, extensions }));
      const conn = new ProxyConnection(
        { request: req, response: res, target, clientSocket: client, upstreamSocket: upstream, protocol: offered.protocol ?? '', extensions },
        this.options,
      );
      client.removeListener('error', ignore);
      this.connections.add(conn);
      conn.once('close', () => this.connections.delete(conn));
      conn.start(head, rest.length === 0 ? null : Buffer.concat(rest));
      this.emit('connection', conn, req);
    };
    upstream.on(secure ? 'secureConnect' : 'connect', () => {
      if (!settled) upstream.write(request);
    });
    upstream.on('data', onData);
    upstream.on('error', onError);
    upstream.on('close', onUpstreamClose);
    client.on('close', onClientClose);
  }

  private refuse(socket: net.Socket, err: WebSocketError, req: UpgradeRequest | null, status: number): void {
    refuseSocket(socket, status, err.message);
    this.emit('rejected', err, req, status);
  }
}

/**
 * Creates a proxy: standalone (`{ target, port }`), on an http server (`{ target, server }`), or
 * by hand (`{ target, noServer: true }` and `proxy.relay(req, socket, head)`).
 */
export function createProxy(options: ProxyOptions, onListening?: () => void): WebSocketProxy {
  return new WebSocketProxy(options, onListening);
}
