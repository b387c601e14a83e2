/** Real loopback TCP sockets for connection-level specs (127.0.0.1 only). */
import * as net from 'node:net';
import { once } from 'node:events';

/** Two connected TCP sockets: [the accepted side, the connecting side]. */
export async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [serverSide] = await accepted;
  server.close();
  return [serverSide, client];
}

/** Reads from `socket` until at least `n` bytes came (or it closes); returns what came. */
export function readBytes(socket: net.Socket, n: number, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', done);
      resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= n) done();
    };
    const timer = setTimeout(() => {
      socket.removeListener('data', onData);
      reject(new Error(`timed out with ${total} of ${n} bytes`));
    }, timeoutMs);
    socket.on('data', onData);
    socket.on('close', done);
  });
}

/** Everything `socket` sends until the peer closes it. */
export function readAll(socket: net.Socket, timeoutMs = 5000): Promise<Buffer> {
  return readBytes(socket, Number.POSITIVE_INFINITY, timeoutMs);
}

export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/**
 * Resolves once `socket` has closed, whether or not it errored first. (events.once(socket,
 * 'close') rejects on an 'error' before the 'close': a peer that hangs up with data unread may
 * reset the connection, and a spec that expects the hang-up must not fail on ECONNRESET.)
 */
export function closed(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/**
 * Reads an HTTP response head from `socket` (up to the empty line), then pauses it: the head as
 * text, and the bytes that came after it (the start of the frames after a 101).
 */
export async function readResponseHead(socket: net.Socket): Promise<{ response: string; head: Buffer }> {
  let got = Buffer.alloc(0);
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    got = Buffer.concat([got, chunk]);
    const end = got.indexOf('\r\n\r\n');
    if (end >= 0) {
      socket.pause();
      return { response: got.toString('latin1', 0, end), head: got.subarray(end + 4) };
    }
  }
}

/** A port with nothing listening on it on 127.0.0.1 (it was free a moment ago). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
