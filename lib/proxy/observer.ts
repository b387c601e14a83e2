/**
 * What the proxy shows of one direction without changing it: taps at three layers, and the
 * reassembled (and, with permessage-deflate, inflated) copy of each message for 'messages' taps.
 *
 *   relayed frames ─► DirectionObserver.frame() ─► frames tap
 *                                              └─► [shadow InflaterCore] ─► FragmentAssemblerCore ─► messages tap
 *   received bytes ─► DirectionObserver.bytes() ─► bytes tap
 *
 * The relay never waits for an observer, except through a 'block' tap that is full (the relay
 * asks `blocked` and pauses the source). The shadow inflate context and the assembler work on
 * copies: when they fail or fall behind, the messages taps end and the relay goes on.
 */
import { Buffer } from 'node:buffer';
import { Opcode, isControlOpcode } from '../protocol/constants';
import { Frame, Message, isFirstPiece } from '../protocol/frame';
import { FragmentAssemblerCore } from '../stages/fragment-assembler';
import { InflaterCore } from '../deflate/inflater';
import { MAX_WINDOW_BITS } from '../deflate/permessage-deflate';
import { parseExtensions } from '../handshake/handshake';
import { isWebSocketError } from '../protocol/errors';
import { Tap, TapOptions, TapPoint } from '../stages/tap';

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

/** How one side compresses (permessage-deflate), for the shadow inflate context. */
export interface DeflateSide {
  readonly windowBits: number;
  readonly noContextTakeover: boolean;
}

/**
 * What the extensions the upstream accepted (its Sec-WebSocket-Extensions) mean for the relay:
 * the RSV bits frames may carry, and how each side compresses (for the shadow inflate contexts).
 */
export function negotiated(extensions: string): {
  bits: { rsv1: boolean; rsv2: boolean; rsv3: boolean };
  clientDeflate: DeflateSide | null;
  upstreamDeflate: DeflateSide | null;
} {
  // RSV bits: permessage-deflate claims RSV1 (RFC 7692 §6); an extension we do not know may
  // claim any of them, and the endpoints that negotiated it check them.
  const accepted = extensions === '' ? [] : parseExtensions(extensions);
  const names = isWebSocketError(accepted) ? [] : accepted.map((e) => e.name.toLowerCase());
  const compression = names.includes('permessage-deflate');
  const unknown = names.some((name) => name !== 'permessage-deflate');
  const bits = { rsv1: compression || unknown, rsv2: unknown, rsv3: unknown };
  if (!compression || isWebSocketError(accepted)) return { bits, clientDeflate: null, upstreamDeflate: null };
  const params = new Map(accepted.find((e) => e.name.toLowerCase() === 'permessage-deflate')!.params);
  const windowBits = (name: string): number => {
    const value = params.get(name);
    return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : MAX_WINDOW_BITS;
  };
  // RFC 7692 §7.1: the client_* parameters describe how the client compresses, server_* the server.
  return {
    bits,
    clientDeflate: { windowBits: windowBits('client_max_window_bits'), noContextTakeover: params.has('client_no_context_takeover') },
    upstreamDeflate: { windowBits: windowBits('server_max_window_bits'), noContextTakeover: params.has('server_no_context_takeover') },
  };
}

/** Frames the shadow inflate context may fall behind the relay before its messages tap is ended. */
const MAX_SHADOW_PENDING = 1024;

/** The observers of one direction of a relayed connection. */
export class DirectionObserver {
  /** A compressed message has passed (a shadow inflate context can no longer start, unless no context takeover). */
  private compressedSeen = false;
  private taps: { bytes: TapPoint<Buffer>; frames: TapPoint<Frame>; messages: TapPoint<ProxyMessage> } | null = null;
  private assembler: FragmentAssemblerCore | null = null;
  /** The assembler waits for the start of a message before it is fed. */
  private synced = false;
  private compressed = false;
  /** The shadow inflate context that gives message taps the inflated view. */
  private shadow: InflaterCore | null = null;

  /**
   * @param deflate how this direction's sender compresses, or null.
   * @param maxMessageSize largest message reassembled for a messages tap.
   * @param onFlow called when a blocking tap fills or drains (the relay rechecks `blocked`).
   */
  constructor(
    private readonly deflate: DeflateSide | null,
    private readonly maxMessageSize: number,
    private readonly onFlow: () => void,
  ) {}

  /** A 'block' tap of this direction is full: the relay must pause the source. */
  get blocked(): boolean {
    const taps = this.taps;
    return taps !== null && (taps.bytes.blocked || taps.frames.blocked || taps.messages.blocked);
  }

  /** Adds a tap (see ProxyConnection.tap). */
  tap(layer: ProxyTapLayer, options: TapOptions): Tap<unknown> {
    if (this.taps === null) {
      const point = (): TapPoint<never> => new TapPoint(this.onFlow);
      this.taps = { bytes: point(), frames: point(), messages: point() };
    }
    if (layer === 'messages' && this.assembler === null) this.startAssembler();
    return (this.taps[layer] as TapPoint<unknown>).add(options);
  }

  /** Bytes received, before they are parsed; `mutable`: the relay will change them in place (unmasking). */
  bytes(chunk: Buffer, mutable: boolean): void {
    const taps = this.taps;
    if (taps !== null && taps.bytes.active) taps.bytes.offer(mutable ? Buffer.from(chunk) : chunk);
  }

  /** A tap wants the Frames of this direction (frames, or messages to reassemble): the relay must make them (see rawFrame). */
  get wantsFrames(): boolean {
    const taps = this.taps;
    return taps !== null && (taps.frames.active || this.assembler !== null);
  }

  /** A whole data frame relayed in this direction without a Frame (wantsFrames false); `b0`: its first header byte. */
  rawFrame(b0: number): void {
    // As frame() does: RSV1 on a message's first frame (opcode not continuation) marks it compressed.
    if ((b0 & 0x40) !== 0 && (b0 & 0x0f) !== Opcode.Continuation) this.compressedSeen = true;
  }

  /** A frame (or piece) relayed in this direction, unmasked. */
  frame(frame: Frame): void {
    if (frame.rsv1 && frame.opcode !== Opcode.Continuation && isFirstPiece(frame)) this.compressedSeen = true;
    const taps = this.taps;
    if (taps === null) return;
    if (taps.frames.active) taps.frames.offer(frame);
    if (this.assembler === null || isControlOpcode(frame.opcode)) return;
    if (!taps.messages.active) {
      this.dropAssembler();
      return;
    }
    const shadow = this.shadow;
    if (shadow === null) {
      this.assemble(frame);
      return;
    }
    // RFC 7692 §7.2.2: the shadow context inflates a copy for observers, never the relayed frames.
    // It must not hold the relay: when zlib falls behind, the tap is ended instead.
    if (shadow.write(frame) !== null || shadow.pending > MAX_SHADOW_PENDING) this.stopMessages();
  }

  /** The connection has closed: every tap ends. */
  end(): void {
    this.dropAssembler();
    if (this.taps === null) return;
    this.taps.bytes.end();
    this.taps.frames.end();
    this.taps.messages.end();
  }

  /** A messages tap starts: the assembler, behind a shadow inflate context when possible. */
  private startAssembler(): void {
    this.synced = false;
    const deflate = this.deflate;
    const inflate = deflate !== null && (!this.compressedSeen || deflate.noContextTakeover);
    this.assembler = new FragmentAssemblerCore(
      { maxMessageSize: this.maxMessageSize, skipUtf8Validation: deflate !== null && !inflate },
      {
        onMessage: (message) => {
          const copy: ProxyMessage = { binary: message.binary, data: message.data, compressed: this.compressed };
          this.taps?.messages.offer(copy);
        },
        onControl: () => {},
      },
    );
    this.shadow = inflate
      ? new InflaterCore(
          { ...deflate, maxMessageSize: this.maxMessageSize, maxPayload: this.maxMessageSize },
          { onFrame: (frame: Frame) => this.assemble(frame) },
        )
      : null;
  }

  private assemble(frame: Frame): void {
    const assembler = this.assembler;
    if (assembler === null || isControlOpcode(frame.opcode)) return;
    if (frame.opcode !== Opcode.Continuation && isFirstPiece(frame)) {
      this.synced = true;
      this.compressed = frame.rsv1;
    }
    if (!this.synced) return;
    // The copy for observers failed (e.g. over maxMessageSize): end the messages taps only.
    if (assembler.write(frame) !== null) this.stopMessages();
  }

  private dropAssembler(): void {
    this.assembler = null;
    this.shadow?.destroy();
    this.shadow = null;
  }

  private stopMessages(): void {
    this.dropAssembler();
    this.taps?.messages.end();
  }
}
