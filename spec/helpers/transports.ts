import { EventEmitter } from 'node:events';

/**
 * A transport (what WebSocket.attach() takes) that does nothing: every write is accepted and
 * dropped, nothing is ever emitted. Specs extend it for what they need to see.
 */
export class NullTransport extends EventEmitter {
  destroyed = false;
  writableLength = 0;
  write(_chunk: Buffer, _callback?: (err?: Error | null) => void): boolean {
    return true;
  }
  cork(): void {}
  uncork(): void {}
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  end(): this {
    return this;
  }
  destroy(): this {
    return this;
  }
}
