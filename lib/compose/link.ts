/**
 * Links between the stages of a composed pipeline: pipe() with the parts a WebSocket needs and
 * pipe() lacks, each in one place.
 *
 * - Backpressure both ways, as pipe() does: when the next stage's write() returns false the
 *   previous one is paused until 'drain'. A tap with policy 'block' that is full holds the link
 *   the same way until it is read (the two holds are kept apart, so neither releases the other).
 * - Taps: every value that crosses the link is offered to the link's tap points before the next
 *   stage sees it (a copy when the next stage will change it in place, see `copy`).
 * - Errors are not forwarded: the pipeline listens to every stage and fails the connection once.
 * - `cut()` stops a link at once (failing: nothing more is handed on).
 */
import { Buffer } from 'node:buffer';
import type { TapPoint } from '../stages/tap';
import { type Frame, withPayload } from '../protocol/frame';

/** What a stage of a composed pipeline must be: a readable and writable stream (object mode or not). */
export interface StageStream extends NodeJS.ReadWriteStream {
  destroy(error?: Error): unknown;
  readonly destroyed: boolean;
}

/** Where a link hands its values: a stage, or the pipeline itself (its readable side, the socket). */
export interface LinkTarget {
  write(value: unknown): boolean;
  end(): void;
}

// Why a link holds its source paused (bits).
const HELD_FOR_DRAIN = 1;
const HELD_FOR_TAP = 2;

export class Link {
  private held = 0;
  private live = true;

  /**
   * @param end end `to` when `from` ends (pipe()'s default); false when `to` has other sources.
   * @param copy makes the copy a tap gets, for values the next stage changes in place.
   */
  constructor(
    private readonly from: NodeJS.ReadableStream,
    private readonly to: LinkTarget,
    private readonly points: ReadonlyArray<TapPoint<unknown>>,
    end: boolean | (() => void),
    private readonly copy: ((value: unknown) => unknown) | null = null,
  ) {
    from.on('data', this.onData);
    if (end !== false) from.once('end', end === true ? () => this.live && to.end() : () => this.live && end());
  }

  /** The target has drained (its 'drain', or the pipeline's _read()). */
  readonly drained = (): void => this.release(HELD_FOR_DRAIN);

  /** A blocking tap of this link was read again. */
  tapReleased(): void {
    this.release(HELD_FOR_TAP);
  }

  /** Stops handing values on; the source is left as it is. */
  cut(): void {
    this.live = false;
    this.from.removeListener('data', this.onData);
  }

  private readonly onData = (value: unknown): void => {
    if (!this.live) return;
    for (const point of this.points) {
      if (point.active && !point.offer(this.copy === null ? value : this.copy(value))) this.hold(HELD_FOR_TAP);
    }
    if (!this.to.write(value)) this.hold(HELD_FOR_DRAIN);
  };

  private hold(reason: number): void {
    this.held |= reason;
    this.from.pause();
  }

  private release(reason: number): void {
    if ((this.held & reason) === 0) return;
    this.held &= ~reason;
    if (this.held === 0 && this.live) this.from.resume();
  }
}

/** Links `from` to a stream stage: pipe() semantics plus taps, the target's 'drain' releasing it. */
export function linkStages(
  from: NodeJS.ReadableStream,
  to: StageStream,
  points: ReadonlyArray<TapPoint<unknown>>,
  end: boolean | (() => void),
  copy: ((value: unknown) => unknown) | null = null,
): Link {
  const link = new Link(from, to, points, end, copy);
  to.on('drain', link.drained);
  return link;
}

/** A frame a tap keeps while the next stage unmasks its payload in place. */
export function copyFrame(value: unknown): unknown {
  const frame = value as Frame;
  return frame.mask === null ? frame : withPayload(frame, Buffer.from(frame.payload), frame.mask);
}

export function copyBytes(value: unknown): unknown {
  return Buffer.from(value as Buffer);
}
