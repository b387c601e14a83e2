/**
 * Stage: the base of every synchronous stage (HandshakeParser, FrameSplitter, Unmasker,
 * FragmentAssembler, ControlFrameResponder, MessageFramer, Masker, FrameSerializer). Each is a
 * readable-stream Transform around a core that handles one input before it returns; the subclass
 * says how in `step()`, and hands the core's outputs to `deliver()`.
 *
 * Why not a plain Transform: in a pipe() chain of seven stages, readable-stream's bookkeeping for
 * one write (the write request, the Transform callback closure, two process.nextTick per hop: one
 * for the write's callback, one to read ahead) cost about twice what the cores themselves do for
 * a small message (profile of bench/servers/stages.ts, 64 B echo at 100 connections). A step is
 * synchronous, so when nothing is queued on either side a write can skip that bookkeeping
 * without changing what anyone observes:
 *
 * - write(chunk) with no callback (what pipe() does), while both sides are idle (the writable
 *   side has nothing pending or buffered, is not corked, ending or failed; the readable side holds
 *   nothing), runs the step at once. Anything else (a callback, an encoding, a string, a queue on
 *   either side) takes Transform's usual path, so order and backpressure are kept: a chunk is
 *   never overtaken, and once a consumer falls behind, writes go the usual way until it catches
 *   up. (The one difference: when a single step fills the readable side past its mark, the next
 *   write's step still runs before the writes after it wait, where Transform would hold that one
 *   too. The readable side then holds at most two steps' outputs past its mark.)
 * - deliver(output), while the readable side is flowing and empty, emits 'data' directly, as
 *   push() would in that state, without push()'s read-ahead tick (a Transform's read-ahead only
 *   releases a held write callback, and a step that delivered this way holds none).
 * - an error from a step destroys the stage with it, as Transform's usual path does (autoDestroy).
 *
 * These checks read readable-stream's state objects (`_readableState`, `_writableState`), through
 * ./stream-internals, which checks them when wspipe loads; package.json pins readable-stream
 * exactly, and spec/stages/stage.spec.ts pins the behaviour on that version.
 */
import { Buffer } from 'node:buffer';
import { type Readable, Transform, type TransformOptions, type Writable } from './streams';
import type { WebSocketError } from '../protocol/errors';
import type { Frame } from '../protocol/frame';
import { readableState, writableState } from './stream-internals';

/**
 * Hands `value` to the 'data' listeners at once, as push() would, when the readable side of
 * `stream` is flowing and holds nothing (and nothing else makes push() buffer it: a 'data' call
 * already on the stack (sync), an end, a failure, a string decoder, a pipe waiting for 'drain',
 * an empty Buffer, which push() drops). Returns false, having done nothing, otherwise: the
 * caller then push()es it.
 *
 * What it leaves out of push() is the read-ahead tick (maybeReadMore: a read(0) on the next
 * tick, which calls _read() when the buffer is still low). The caller must be one for whom that
 * read-ahead is not needed: a source that does not wait for _read() to produce (WebSocket,
 * MessageReadable: the socket feeds them, and _read() only resumes a socket they paused, which
 * a stream that just took a value at once did not), or a Stage whose step runs inside write().
 */
export function emitIfFlowing(stream: Readable, value: unknown): boolean {
  const r = readableState(stream);
  if (
    r.flowing !== true ||
    r.length !== 0 ||
    r.sync ||
    r.ended ||
    r.destroyed ||
    r.errored !== null ||
    r.decoder !== null ||
    r.awaitDrainWriters !== null ||
    (!r.objectMode && (value as Buffer).length === 0) ||
    stream.listenerCount('data') === 0
  ) {
    return false;
  }
  // As push() does: a value arrived, so no _read() is outstanding any more.
  r.reading = false;
  r.dataEmitted = true;
  stream.emit('data', value);
  return true;
}

/**
 * Whether a write() to `stream` now would reach _write() at once: nothing written and pending,
 * nothing buffered, not corked, not ending, not failed. (Used by the write fast paths of Stage and
 * WebSocket: only then may a write skip the Writable's machinery without overtaking anything.)
 */
export function writableIdle(stream: Writable): boolean {
  const w = writableState(stream);
  return w.length === 0 && !w.writing && w.corked === 0 && !w.ending && !w.destroyed && w.errored === null && w.constructed;
}

/**
 * The stage whose write() is running its step itself, or null: only that stage's deliver() may
 * skip push(). One variable for all stages, not a field of each: a stage's write() may run
 * another's (pipe() writes downstream from inside 'data'), so each saves and restores the one
 * before, as on a stack. A field would be set by this base class's constructor on objects of
 * every stage class, a store that V8 cannot specialise (about 1 µs per stage constructed).
 */
let directStage: Stage | null = null;

/** A Transform whose step is synchronous, with the fast paths described above. */
export abstract class Stage extends Transform {
  constructor(options?: TransformOptions) {
    super(options);
  }

  /**
   * Handles one written chunk: the core's outputs go to deliver() (or push()) before it returns.
   * Returns the error that fails the stage, or null.
   */
  protected abstract step(chunk: unknown): WebSocketError | null;

  override _transform(chunk: unknown, _enc: BufferEncoding, cb: (error?: Error | null) => void): void {
    cb(this.step(chunk) ?? undefined);
  }

  override write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (encoding === undefined && cb === undefined && this.idle(chunk)) {
      const outer = directStage;
      // eslint-disable-next-line @typescript-eslint/no-this-alias -- the running stage, see directStage
      directStage = this;
      let err: WebSocketError | null;
      try {
        err = this.step(chunk);
      } finally {
        directStage = outer;
      }
      if (err === null) return true;
      this.destroy(err);
      return false;
    }
    return (super.write as (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean)(chunk, encoding, cb);
  }

  /**
   * Hands one output to the readable side: emitted as 'data' at once when write() runs the step
   * itself and the readable side is flowing and empty (what push() would do then), else push().
   * @internal For the stage's own core handler.
   */
  deliver(output: Buffer | object): void {
    if (directStage !== this || !emitIfFlowing(this, output)) this.push(output);
  }

  /** Whether a write of `chunk` may run the step at once (see the top of this file). */
  private idle(chunk: unknown): boolean {
    const r = readableState(this);
    return (
      writableIdle(this) &&
      (writableState(this).objectMode ? chunk !== null && chunk !== undefined : Buffer.isBuffer(chunk)) &&
      r.length === 0 &&
      !r.ended &&
      !r.destroyed
    );
  }
}

/**
 * The handler a stage gives its core when all the core puts out is frames (onFrame) or bytes
 * (onData): each goes to the stage's deliver(). One small object per stage with its methods on
 * the prototype: a closure per stage costs more to make and to keep (every connection of a
 * hand-composed server makes seven stages).
 */
export class StageOutput {
  constructor(private readonly stage: Stage) {}

  onFrame(frame: Frame): void {
    this.stage.deliver(frame);
  }

  onData(chunk: Buffer): void {
    this.stage.deliver(chunk);
  }
}
