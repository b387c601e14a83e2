/**
 * The demo (`npm start`): one HTTP server on 127.0.0.1:8080 serving a page, and two WebSocket
 * endpoints composed onto it by hand (noServer + handleUpgrade, routed by path):
 *
 *   GET /           the page (examples/demo/page.ts)
 *   /chat           every text message goes to every tab of the same room (a topic:
 *                   /chat?room=NAME, default 'lobby'; the page takes the room from #NAME)
 *   /upload         one file as ONE binary message, streamed (streamMessages): hashed as its
 *                   pieces arrive, progress acknowledged about every 1%, size and sha256 at the end
 *
 * Every connection is tee'd: `ws.tap('frames', 'in' | 'out')` prints one line per frame in
 * this terminal, without slowing the connection down (a tap that falls behind drops lines).
 *
 *   npm start                                   (ts-node examples/demo.ts)
 *   npx ts-node examples/demo.ts --port 9000 --host 0.0.0.0
 *   node dist/examples/demo.js                  (after npm run build)
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as http from 'node:http';
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { createServer, Frame, isFirstPiece, MessageReadable, Opcode, ReadyState, WebSocket, WebSocketServer } from '../lib';
import type { UpgradeRequest } from '../lib';
import { PAGE_HTML } from './demo/page';

/** Largest upload: each frame and the whole streamed message (nothing is kept in memory). */
const MAX_UPLOAD = 1024 * 1024 * 1024;
/** Largest chat line, in bytes (a longer one fails the connection with 1009). */
const MAX_CHAT_MESSAGE = 16 * 1024;
/** Largest upload header (the JSON text message before the file). */
const MAX_HEADER = 4096;
/** Progress is acknowledged at least this many bytes apart (and about every 1% of the file). */
const MIN_ACK_STEP = 64 * 1024;
/** Characters of a payload shown in a frame line. */
const PREVIEW = 40;

export interface DemoOptions {
  /** Port to listen on. Default 8080 (0: any free port). */
  port?: number;
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Where frame and connection lines go. Default console.log. */
  log?: (line: string) => void;
}

export interface Demo {
  /** The page's address, e.g. http://127.0.0.1:8080/. */
  url: string;
  /** Closes the WebSocket connections (1001) and the HTTP server. */
  close(): Promise<void>;
}

/** One short line for a frame: `chat#1 <- text 5 B "hello"`. */
export function describeFrame(label: string, direction: 'in' | 'out', frame: Frame): string {
  const arrow = direction === 'in' ? '<-' : '->';
  const kind = (Opcode[frame.opcode] ?? `opcode ${frame.opcode}`).toLowerCase();
  const more = frame.fin ? '' : ' (more follows)';
  let preview = '';
  if (frame.opcode === Opcode.Text) preview = ` ${quote(frame.payload.toString('utf8'), frame.length > frame.payload.length)}`;
  else if (frame.opcode === Opcode.Close && frame.payload.length >= 2) {
    const reason = frame.payload.subarray(2).toString('utf8');
    preview = ` ${frame.payload.readUInt16BE(0)}${reason === '' ? '' : ` ${quote(reason, false)}`}`;
  } else if (frame.payload.length > 0) {
    preview = ` ${frame.payload.subarray(0, 8).toString('hex')}${frame.length > 8 ? '...' : ''}`;
  }
  return `${label} ${arrow} ${kind}${more} ${frame.length} B${preview}`;
}

function quote(text: string, cut: boolean): string {
  const short = text.length > PREVIEW ? `${text.slice(0, PREVIEW)}...` : cut ? `${text}...` : text;
  return JSON.stringify(short);
}

/** Prints every frame of `ws`, both ways, with `label`: the tee. */
function printFrames(ws: WebSocket, label: string, log: (line: string) => void): void {
  for (const direction of ['in', 'out'] as const) {
    // A large frame may come in several pieces (streaming); print it once, at its header.
    ws.tap('frames', direction).on('data', (frame: Frame) => {
      if (isFirstPiece(frame)) log(describeFrame(label, direction, frame));
    });
  }
}

function sendJson(ws: WebSocket, value: object): void {
  if (ws.readyState === ReadyState.OPEN) ws.send(JSON.stringify(value));
}

/** The room a /chat request asks for (?room=NAME), 'lobby' by default. */
function roomOf(req: UpgradeRequest): string {
  const room = new URL(req.url ?? '/', 'http://demo').searchParams.get('room');
  return room === null || room === '' ? 'lobby' : room.slice(0, 64);
}

/**
 * /chat: names each tab and subscribes it to its room's topic; each line is published to the
 * room once (framed once for all its tabs, see docs/fanout.md); arrivals and departures too.
 */
function chatServer(log: (line: string) => void): WebSocketServer {
  const chat = createServer({ noServer: true, maxMessageSize: MAX_CHAT_MESSAGE });
  let tabs = 0;
  chat.on('connection', (ws: WebSocket, req: UpgradeRequest) => {
    const name = `tab ${++tabs}`;
    const topic = `room:${roomOf(req)}`;
    const toRoom = (value: object): void => void chat.publish(topic, JSON.stringify(value));
    printFrames(ws, `chat#${tabs}`, log);
    ws.on('error', () => {}); // the close code says it all (see the frame lines)
    sendJson(ws, { type: 'welcome', name, room: roomOf(req) });
    // A tab that cannot keep up loses the oldest lines rather than growing the server.
    ws.subscribe(topic, { limit: 256 * 1024, policy: 'drop-oldest' });
    toRoom({ type: 'presence', text: `${name} joined`, online: chat.subscriberCount(topic) });
    ws.on('message', (data: string | Buffer, isBinary: boolean) => {
      if (isBinary) ws.close(1003, 'text only');
      else toRoom({ type: 'chat', from: name, text: data });
    });
    // (The connection has left its topics by now: its subscriptions end with it.)
    ws.once('close', () => toRoom({ type: 'presence', text: `${name} left`, online: chat.subscriberCount(topic) }));
  });
  return chat;
}

/** Reads a (small) streamed text message whole; null when it is longer than `max` bytes. */
async function readText(message: MessageReadable, max: number): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Read to the end even when too long: a message left unread would hold the connection.
  for await (const chunk of message as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= max) chunks.push(chunk);
  }
  return size > max ? null : Buffer.concat(chunks).toString('utf8');
}

/**
 * One upload connection: messages are read in order, as streams. A text message is the
 * header ({name, size}); a binary one is a file, hashed piece by piece as it arrives.
 */
async function receiveUploads(ws: WebSocket, log: (line: string) => void, label: string): Promise<void> {
  let header = { name: 'upload', size: 0 };
  // The loop runs until the connection's readable side ends (the close); leaving it early
  // would destroy the connection before our close frame goes out.
  for await (const message of ws as AsyncIterable<MessageReadable>) {
    if (ws.readyState !== ReadyState.OPEN) {
      message.resume(); // closing: drop what still comes
      continue;
    }
    if (!message.binary) {
      const text = await readText(message, MAX_HEADER);
      try {
        if (text === null) throw new Error('too long');
        header = JSON.parse(text) as typeof header;
      } catch {
        ws.close(1007, 'bad upload header');
      }
      continue;
    }
    const hash = createHash('sha256');
    const step = Math.max(MIN_ACK_STEP, Math.ceil(header.size / 100));
    let received = 0;
    let nextAck = step;
    for await (const piece of message as AsyncIterable<Buffer>) {
      hash.update(piece);
      received += piece.length;
      if (received >= nextAck) {
        nextAck = received + step - (received % step);
        sendJson(ws, { type: 'progress', received });
      }
    }
    const sha256 = hash.digest('hex');
    log(`${label} received ${JSON.stringify(header.name)}: ${received} bytes, sha256 ${sha256}`);
    sendJson(ws, { type: 'done', name: header.name, size: received, sha256 });
  }
}

/** /upload: streamed messages, up to MAX_UPLOAD bytes. */
function uploadServer(log: (line: string) => void): WebSocketServer {
  const uploads = createServer({
    noServer: true,
    streamMessages: true,
    maxPayload: MAX_UPLOAD,
    maxStreamedMessageSize: MAX_UPLOAD,
  });
  let count = 0;
  uploads.on('connection', (ws: WebSocket) => {
    const label = `upload#${++count}`;
    printFrames(ws, label, log);
    receiveUploads(ws, log, label).catch((err: Error) => log(`${label} failed: ${err.message}`));
  });
  return uploads;
}

/** Starts the demo; resolves once it listens. */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const log = options.log ?? ((line: string) => console.log(line));
  const host = options.host ?? '127.0.0.1';
  const endpoints: Record<string, WebSocketServer> = { '/chat': chatServer(log), '/upload': uploadServer(log) };

  const web = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/' || req.url === '/index.html')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(PAGE_HTML);
    } else {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
    }
  });
  // Composition: the HTTP server parses the request, the path picks the WebSocketServer.
  web.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const endpoint = Object.hasOwn(endpoints, path) ? endpoints[path]! : undefined;
    if (endpoint === undefined) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    endpoint.handleUpgrade(req as UpgradeRequest, socket as net.Socket, head, (ws) => endpoint.emit('connection', ws, req));
  });
  web.listen(options.port ?? 8080, host);
  await once(web, 'listening');
  const { port } = web.address() as net.AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    close: async () => {
      web.close();
      await Promise.all(Object.values(endpoints).map((wss) => new Promise<void>((resolve) => wss.close(resolve))));
      web.closeAllConnections();
    },
  };
}

if (require.main === module) {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' }, host: { type: 'string', default: '127.0.0.1' } } });
  startDemo({ port: Number(values.port), host: values.host }).then(
    (demo) => {
      console.log(`wspipe demo: open ${demo.url} in two or more tabs (Ctrl-C stops)`);
      console.log('frames: <- from the page, -> to the page');
      const stop = (): void => {
        demo.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
    (err: Error) => {
      console.error(`wspipe demo: ${err.message}`);
      process.exit(1);
    },
  );
}
