/**
 * The shutdown that the WebSocket server and the proxy share: drop the connections still in
 * their opening handshake, close the open ones with 1001 (going away, RFC 6455 §7.4.1), stop
 * listening, and call back once every one of them has finished.
 */
import type { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import { CloseCode } from '../protocol/constants';

/** An open connection: emits 'close' once when it is finished. */
export interface GoingAway extends EventEmitter {
  close(code: number, reason: string): void;
}

export interface ShutdownParts {
  /**
   * Sockets whose handshake is still being read (a Set, or a Map keyed by them): destroyed, and
   * the collection emptied.
   */
  handshaking: { keys(): Iterable<net.Socket>; clear(): void };
  /** Open connections: each closed with 1001 and `reason`. */
  open: Iterable<GoingAway>;
  reason: string;
  /** The listening server of the standalone mode, if any. */
  listener: net.Server | null;
}

export function shutDown(parts: ShutdownParts, done: () => void): void {
  for (const socket of parts.handshaking.keys()) socket.destroy();
  parts.handshaking.clear();
  // One count per open connection, one for the listener, one for this call.
  let waiting = 1;
  const settle = (): void => {
    if (--waiting === 0) done();
  };
  for (const connection of parts.open) {
    waiting++;
    connection.once('close', settle);
    connection.close(CloseCode.GoingAway, parts.reason);
  }
  if (parts.listener !== null) {
    waiting++;
    parts.listener.close(() => settle());
  }
  process.nextTick(settle);
}
