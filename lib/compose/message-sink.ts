/**
 * MessageSink: where the last inbound stage of a composed pipeline hands its messages, in front
 * of the pipeline's own readable side.
 *
 * Only data backpressures (RFC 6455 §5.5.2 wants pings answered and §7.1 the peer's close seen
 * whatever the application does with data): a reader that stops reading must not stop the
 * stages, or a ping or close behind the unread messages would never be read. So when the
 * readable side is full (readableHighWaterMark messages), further messages wait here, counted in
 * bytes (plus a fixed cost per message kept), and the link into the sink holds its source, and
 * so the socket, only once they reach `budget`. Then TCP slows the peer. Once our close is sent,
 * messages past the budget are dropped: the application chose to close, and only the peer's
 * close is still awaited (it must be found behind them).
 */
import { Buffer } from 'node:buffer';
import type { Readable } from '../stages/streams';
import type { LinkTarget } from './link';

/** What one kept message costs beside its bytes (its object and the queue's slot). */
export const KEPT_MESSAGE_OVERHEAD = 64;

/** The bytes a message (or any value an inserted stream passes on) holds. */
function sizeOf(value: unknown): number {
  if (Buffer.isBuffer(value)) return value.length;
  if (typeof value === 'string') return value.length;
  const data = (value as { data?: unknown } | null)?.data;
  return KEPT_MESSAGE_OVERHEAD + (Buffer.isBuffer(data) ? data.length : 0);
}

export interface MessageSinkOwner {
  readonly readable: Readable;
  /** Whether our close frame has gone out (messages past the budget are dropped then). */
  closeSent(): boolean;
}

export class MessageSink implements LinkTarget {
  private readonly waiting: unknown[] = [];
  private head = 0;
  /** Bytes (and per-message costs) of the messages waiting here. */
  heldBytes = 0;
  /** Messages dropped past the budget after our close. */
  dropped = 0;
  private ended = false;

  /** @param onRoom called when the held bytes fall back under the budget (the link may go on). */
  constructor(
    private readonly owner: MessageSinkOwner,
    private readonly budget: number,
    private readonly onRoom: () => void,
  ) {}

  write(value: unknown): boolean {
    const readable = this.owner.readable;
    if (this.head === this.waiting.length && readable.readableLength < readable.readableHighWaterMark) {
      readable.push(value);
      return true;
    }
    const size = sizeOf(value);
    if (this.heldBytes + size > this.budget && this.owner.closeSent()) {
      this.dropped++;
      return true;
    }
    this.waiting.push(value);
    this.heldBytes += size;
    return this.heldBytes < this.budget;
  }

  end(): void {
    this.ended = true;
    this.flush();
  }

  /**
   * The reader wants more (the readable's _read()): what waits here goes first. At least one
   * value is pushed when any waits (a _read() that pushes nothing is never called again), then
   * more while the readable side has room.
   */
  flush(): void {
    const readable = this.owner.readable;
    const wasFull = this.heldBytes >= this.budget;
    let first = true;
    while (this.head < this.waiting.length && (first || readable.readableLength < readable.readableHighWaterMark)) {
      first = false;
      const value = this.waiting[this.head];
      this.waiting[this.head++] = undefined;
      this.heldBytes -= sizeOf(value);
      readable.push(value);
    }
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.head = 0;
      if (this.ended) {
        this.ended = false;
        readable.push(null);
      }
    }
    if (wasFull && this.heldBytes < this.budget) this.onRoom();
  }
}
