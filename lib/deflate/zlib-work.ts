/**
 * What DeflaterCore and InflaterCore share: the first error (after which all input is ignored),
 * the frames written and not yet handled, and zlib work under the ZlibLimiter: a raw-DEFLATE
 * stream made on first use and freed when its context is not kept (or on failure), and the
 * limiter's slot, held while zlib works on the frame at the head of the queue.
 */
import type { DeflateRaw, InflateRaw } from 'node:zlib';
import type { WebSocketError } from '../protocol/errors';
import type { Frame } from '../protocol/frame';
import { FrameQueue, type ZlibLimiter, type ZlibListeners, attachZlib, discardZlib, sharedLimiter } from './permessage-deflate';

/** Called once per written frame, when its output has been handed on (or with the error that stopped it). */
export type ZlibDone = (err: WebSocketError | null) => void;

/** The default ZlibDone. */
export function noDone(): void {}

/** Where DeflaterCore and InflaterCore send their output. */
export interface ZlibHandler {
  /**
   * A frame, in the order written: deflating, compressed, passed through, or a control frame;
   * inflating, passed through, or a chunk of an inflated message (whole, unmasked, RSV1 clear).
   */
  onFrame(frame: Frame): void;
}

export abstract class ZlibWork<Z extends DeflateRaw | InflateRaw> {
  /** The first error met; once set, all further input is ignored. */
  error: WebSocketError | null = null;

  /** Frames written and not yet handled, with their callbacks. */
  protected readonly queue = new FrameQueue<ZlibDone>();
  /** A zlib operation is under way (on the frame at the head of the queue). */
  protected busy = false;
  protected holdsSlot = false;
  protected zlib: Z | null = null;
  /** The current operation's zlib writes have called back. */
  protected zlibWritten = false;
  protected readonly limiter: ZlibLimiter;
  protected readonly handler: ZlibHandler;

  /** `limiter`: the default is the process-wide one. */
  constructor(limiter: ZlibLimiter | undefined, handler: ZlibHandler) {
    this.limiter = limiter ?? sharedLimiter();
    this.handler = handler;
  }

  /** Frames written whose `done` has not been called yet. */
  get pending(): number {
    return this.queue.length;
  }

  /** True while a zlib stream (and its memory) is held. */
  get hasContext(): boolean {
    return this.zlib !== null;
  }

  /** Sets `error` if not yet set, frees zlib, and calls back every queued frame with it. */
  fail(err: WebSocketError): void {
    if (this.error !== null) return;
    this.error = err;
    this.dropOutput();
    this.releaseZlib();
    this.releaseSlot();
    this.busy = false;
    this.queue.failAll(err);
  }

  /** A new zlib stream with this side's options. */
  protected abstract newZlib(): Z;
  /** The listeners kept on the zlib stream (each side's own, made once per instance). */
  protected abstract readonly zlibListeners: ZlibListeners;
  /** Failing: drops the output of the current operation not handed on yet. */
  protected abstract dropOutput(): void;

  protected createZlib(): Z {
    const zlib = this.newZlib();
    attachZlib(zlib, this.zlibListeners);
    return (this.zlib = zlib);
  }

  protected releaseZlib(): void {
    if (this.zlib === null) return;
    discardZlib(this.zlib, this.zlibListeners);
    this.zlib = null;
  }

  protected releaseSlot(): void {
    if (!this.holdsSlot) return;
    this.holdsSlot = false;
    this.limiter.release();
  }
}
