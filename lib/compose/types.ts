/**
 * The types of composePipeline(): its options, its events, what it runs on and what may be
 * written to it (lib/compose/pipeline.ts builds the pipeline).
 */
import type { Buffer } from 'node:buffer';
import type { MaskGenerator } from '../protocol/mask';
import type { OutboundMessage as FramerOutbound } from '../stages/message-framer';
import type { StageStream } from './link';
import type { OpeningOptions } from './opening';
import type { PipelinePoint, ReplaceableStage } from './points';

export interface PipelineOptions extends OpeningOptions {
  /** Which end we are: 'server' reads a request and answers it; 'client' sends one. */
  role: 'server' | 'client';
  /** Streams to put at points of the pipeline (see the graph above), in order. */
  insert?: Partial<Record<PipelinePoint, StageStream | readonly StageStream[]>>;
  /** Streams to use instead of the named stages (same values in and out). */
  replace?: Partial<Record<ReplaceableStage, StageStream>>;
  /** Largest frame payload, in bytes. Default 100 MiB. */
  maxPayload?: number;
  /** Largest message, in bytes. Default 100 MiB. */
  maxMessageSize?: number;
  /** Largest handshake head, in bytes. Default 16 KiB. */
  maxHeaderSize?: number;
  /** Cut outgoing messages into frames of at most this many bytes. Default 0: never. */
  fragmentSize?: number;
  /** Milliseconds the opening handshake may take. Default 10000. */
  handshakeTimeout?: number;
  /** Milliseconds the closing handshake may take before the socket is destroyed. Default 5000. */
  closeTimeout?: number;
  /**
   * Bytes of received messages held for a reader that does not read, past the readable side's
   * readableHighWaterMark messages, before the socket is paused. Reading goes on below it so that
   * pings are answered and the peer's close is seen whatever the reader does. Default 16 MiB.
   */
  memoryBudget?: number;
  /** Client role: the masking keys (tests only; default: crypto-random, RFC 6455 §10.3). */
  generateMask?: MaskGenerator;
}

/** Events of a ComposedPipeline, besides the readable and writable ones. */
export interface ComposedPipelineEvents {
  /** The opening handshake is done (see `opening`, `request`, `response`). */
  open: () => void;
  ping: (payload: Buffer) => void;
  pong: (payload: Buffer) => void;
  /** Once the socket has closed. */
  close: (code: number, reason: string) => void;
  /** Why the connection failed (emitted only when listened for; kept in `error`). */
  error: (err: Error) => void;
}

/**
 * What a pipeline runs on: a net.Socket or tls.TLSSocket, or any Duplex of bytes that emits
 * 'close' once it is gone (a PassThrough pair in tests).
 */
export interface PipelineTransport extends StageStream {
  readonly writable: boolean;
  setNoDelay?(noDelay?: boolean): unknown;
}

/**
 * What a write of the application may be: a Message, a string (text), a Buffer or Uint8Array
 * (binary), or `{ data, binary }` (MessageFramer's OutboundMessage). Anything else throws
 * WS_ERR_INVALID_ARGUMENT at the call.
 */
export type OutboundMessage = FramerOutbound;
