/**
 * Taps: observers of the values that pass one point of a pipeline (bytes, frames or messages,
 * in either direction), each a Readable that yields a copy of the traffic without changing it.
 *
 * A tap that is not read fast enough follows its policy:
 * - 'drop' (default): the value is not queued for the tap and `dropped` counts it; the main
 *   path never waits for the tap.
 * - 'block': the value is queued and the main path waits (the socket is paused, or writes wait
 *   for 'drain') until the tap is read again. Use it for logs that must be complete.
 *
 * Values are handed over as they are, not copied: a tap must not modify a Buffer it receives.
 */
import { Readable } from './streams';

export type TapPolicy = 'block' | 'drop';

export interface TapOptions {
  /** What to do when the tap's buffer is full. Default 'drop'. */
  policy?: TapPolicy;
  /** How many values the tap buffers before its policy applies. Default 1024. */
  highWaterMark?: number;
}

export class Tap<T = unknown> extends Readable {
  readonly policy: TapPolicy;
  /** Values not delivered to this tap because it was full (policy 'drop'). */
  dropped = 0;
  /** True while this tap (policy 'block') holds up the main path. */
  private blocking = false;
  private readonly onRelease: () => void;

  /** @internal Created by TapPoint.add (WebSocket.tap, Proxy.tap). */
  constructor(options: TapOptions, onRelease: () => void) {
    super({ objectMode: true, highWaterMark: options.highWaterMark ?? 1024 });
    this.policy = options.policy ?? 'drop';
    this.onRelease = onRelease;
  }

  /** Hands a value to the tap. Returns false when the main path should wait (policy 'block'). */
  offer(value: T): boolean {
    if (this.destroyed || this.readableEnded) return true;
    if (this.policy === 'drop') {
      if (this.readableLength >= this.readableHighWaterMark) this.dropped++;
      else this.push(value);
      return true;
    }
    if (this.push(value)) return true;
    this.blocking = true;
    return false;
  }

  /** True while this tap holds up the main path. */
  get isBlocking(): boolean {
    return this.blocking;
  }

  override _read(): void {
    if (this.blocking) {
      this.blocking = false;
      this.onRelease();
    }
  }
}

/** The taps attached to one point; offer() reaches them all. */
export class TapPoint<T> {
  private taps: Array<Tap<T>> = [];

  /** `onRelease` runs when a blocking tap that held up the main path is read again. */
  constructor(private readonly onRelease: () => void) {}

  get active(): boolean {
    return this.taps.length > 0;
  }

  add(options: TapOptions = {}): Tap<T> {
    const tap = new Tap<T>(options, this.onRelease);
    this.taps.push(tap);
    const remove = (): void => {
      this.taps = this.taps.filter((t) => t !== tap);
      if (tap.isBlocking) this.onRelease();
    };
    tap.once('close', remove);
    tap.once('end', remove);
    return tap;
  }

  /** Offers `value` to every tap; false when a blocking tap is full. */
  offer(value: T): boolean {
    let ok = true;
    for (const tap of this.taps) if (!tap.offer(value)) ok = false;
    return ok;
  }

  /** True when a blocking tap still holds up the main path. */
  get blocked(): boolean {
    for (const tap of this.taps) if (tap.isBlocking) return true;
    return false;
  }

  /** Ends every tap (the connection is gone). */
  end(): void {
    for (const tap of this.taps) if (!tap.destroyed) tap.push(null);
    this.taps = [];
  }
}
