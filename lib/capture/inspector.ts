/**
 * The live inspector of `wspipe proxy --ui PORT`: a web page on 127.0.0.1 that shows the proxied
 * connections and their messages as they pass. Plain node:http serves the page; the page opens
 * a WebSocket (our own server, on the same port, path /feed) and receives one JSON event per
 * line of news:
 *
 *   {"type":"open", "conn", "time", "client", "path", "protocol", "extensions"}
 *   {"type":"message", "conn", "dir", "time", "opcode", "size", "truncated", "compressed",
 *    "wireSize", "text" | "base64"}
 *   {"type":"close", "conn", "time", "client": {code, reason}, "upstream": {code, reason}}
 *   {"type":"dropped", "count"}   (the page fell behind: that many events were not sent to it)
 *
 *   ConnectionCapture ──events──► Inspector ──► ring per connection (for pages that join late)
 *                                          └──► each page's WebSocket (dropped when it lags)
 *
 * The feed accepts only this page (its Origin must be this server; other pages the browser has
 * open could otherwise read the traffic) or clients without an Origin (curl, scripts).
 *
 * Bounded memory, on purpose: the server keeps, per connection, only the last `ring` messages
 * (default 100) and the connection's facts, for pages that join late; closed connections are
 * forgotten beyond the last `keepClosed` (default 50). A page whose socket has more than
 * `maxPageBuffer` bytes (default 1 MiB) waiting gets no more events until it drains (it is told
 * how many it missed): a slow or paused browser never slows the relay nor grows the proxy.
 * Payloads are shown up to the capture's limit (maxLoggedPayload).
 */
import { Buffer } from 'node:buffer';
import * as http from 'node:http';
import type * as net from 'node:net';
import { createServer, WebSocketServer } from '../server/server';
import type { WebSocket } from '../connection/websocket';
import { ReadyState } from '../connection/websocket';
import { headerValue } from '../handshake/handshake';
import { Opcode } from '../protocol/constants';
import { isValidUtf8 } from '../protocol/utf8';
import type { CapturedClose, CapturedMessage, ConnectionCapture } from './capture';
import { INSPECTOR_PAGE } from './inspector-page';

/** Options of Inspector. */
export interface InspectorOptions {
  /** Port to serve on (0 picks one). */
  port: number;
  /** Address to serve on. Default '127.0.0.1' (the page shows traffic: keep it local). */
  host?: string;
  /** Messages kept per connection for pages that join late. Default 100. */
  ring?: number;
  /** Closed connections remembered (with their rings). Default 50. */
  keepClosed?: number;
  /** Bytes waiting on a page's socket beyond which events for it are dropped. Default 1 MiB. */
  maxPageBuffer?: number;
}

/** One event of the feed (see the header). */
export type InspectorEvent = Record<string, unknown> & { type: string };

interface Tracked {
  open: InspectorEvent;
  ring: InspectorEvent[];
  close: InspectorEvent | null;
}

function pairs(raw: readonly string[]): Array<{ name: string; value: string }> {
  const out: Array<{ name: string; value: string }> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push({ name: raw[i]!, value: raw[i + 1]! });
  return out;
}

/** The event of a captured message, as the page gets it. */
export function messageEvent(m: CapturedMessage): InspectorEvent {
  const event: InspectorEvent = {
    type: 'message',
    conn: m.conn,
    dir: m.dir,
    time: m.time.getTime(),
    opcode: m.opcode,
    size: m.size,
    truncated: m.truncated,
    compressed: m.compressed,
    wireSize: m.wireSize,
  };
  if (m.opcode === Opcode.Text && isValidUtf8(m.data)) event.text = m.data.toString('utf8');
  else event.base64 = m.data.toString('base64');
  return event;
}

export class Inspector {
  private readonly web: http.Server;
  private readonly feed: WebSocketServer;
  private readonly ringSize: number;
  private readonly keepClosed: number;
  private readonly maxPageBuffer: number;
  private readonly tracked = new Map<number, Tracked>();
  private readonly closedOrder: number[] = [];
  /** Events not sent to each page because it lagged, told once it catches up. */
  private readonly missed = new Map<WebSocket, number>();

  constructor(private readonly options: InspectorOptions) {
    this.ringSize = options.ring ?? 100;
    this.keepClosed = options.keepClosed ?? 50;
    this.maxPageBuffer = options.maxPageBuffer ?? 1024 * 1024;
    this.web = http.createServer((req, res) => this.onRequest(req, res));
    // Any web page the user opens may try ws://127.0.0.1:PORT/feed (WebSockets are not held to
    // the same-origin policy): only our own page (its Origin is this server), or a client that
    // sends no Origin (not a browser), may read the traffic.
    this.feed = createServer({
      server: this.web,
      path: '/feed',
      perMessageDeflate: false,
      verifyClient: (req) => {
        const origin = req.headers.origin;
        if (origin === undefined) return true;
        // The Host too must be a loopback name, or a DNS-rebound name would pass the Origin check.
        const host = String(req.headers.host ?? '');
        const loopback = /^(127\.0\.0\.1|localhost|\[::1\]):\d+$/.test(host);
        return loopback && origin === `http://${host}` ? true : { status: 403, message: "not this inspector's page" };
      },
    });
    this.feed.on('connection', (ws: WebSocket) => {
      ws.on('error', () => {});
      ws.resume(); // the page sends nothing we read
      // A page that joins late gets what the rings hold.
      for (const t of this.tracked.values()) {
        this.sendTo(ws, t.open);
        for (const event of t.ring) this.sendTo(ws, event);
        if (t.close !== null) this.sendTo(ws, t.close);
      }
    });
  }

  /** Starts serving; resolves with the address. */
  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.web.once('error', reject);
      this.web.listen(this.options.port, this.options.host ?? '127.0.0.1', () => {
        this.web.removeListener('error', reject);
        resolve(this.web.address() as net.AddressInfo);
      });
    });
  }

  /** Shows one captured connection: its opening, its messages and its close. */
  add(capture: ConnectionCapture): void {
    const conn = capture.conn;
    const open: InspectorEvent = {
      type: 'open',
      conn: capture.id,
      time: capture.started.getTime(),
      client: `${conn.clientAddress.address ?? '?'}:${conn.clientAddress.port ?? '?'}`,
      path: conn.request.url,
      url: `ws://${headerValue(conn.request.headers, 'host') ?? conn.target.host}${conn.request.url}`,
      target: conn.target.href,
      requestHeaders: pairs(conn.request.rawHeaders),
      responseHeaders: pairs(conn.response.rawHeaders),
      protocol: conn.protocol,
      extensions: conn.extensions,
    };
    const t: Tracked = { open, ring: [], close: null };
    this.tracked.set(capture.id, t);
    this.broadcast(open);
    capture.on('message', (m: CapturedMessage) => {
      const event = messageEvent(m);
      t.ring.push(event);
      if (t.ring.length > this.ringSize) t.ring.shift();
      this.broadcast(event);
    });
    capture.once('close', (c: CapturedClose) => {
      t.close = { type: 'close', conn: capture.id, time: c.time.getTime(), client: c.client, upstream: c.upstream };
      this.broadcast(t.close);
      this.closedOrder.push(capture.id);
      while (this.closedOrder.length > this.keepClosed) this.tracked.delete(this.closedOrder.shift()!);
    });
  }

  /** Stops serving: the pages' feeds are closed with 1001. */
  close(callback?: () => void): void {
    this.feed.close(() => {
      this.web.close(() => callback?.());
      this.web.closeAllConnections();
    });
  }

  private broadcast(event: InspectorEvent): void {
    if (this.feed.clients.size === 0) return;
    const text = JSON.stringify(event);
    for (const ws of this.feed.clients) this.sendTo(ws, event, text);
  }

  private sendTo(ws: WebSocket, event: InspectorEvent, text = JSON.stringify(event)): void {
    if (ws.readyState !== ReadyState.OPEN) return;
    if (ws.bufferedAmount > this.maxPageBuffer) {
      this.missed.set(ws, (this.missed.get(ws) ?? 0) + 1);
      if (this.missed.get(ws) === 1) ws.once('drain', () => this.tellMissed(ws));
      return;
    }
    ws.send(text);
  }

  private tellMissed(ws: WebSocket): void {
    const count = this.missed.get(ws) ?? 0;
    this.missed.delete(ws);
    if (count > 0 && ws.readyState === ReadyState.OPEN) ws.send(JSON.stringify({ type: 'dropped', count }));
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.method !== 'GET' || (req.url !== '/' && !req.url?.startsWith('/?'))) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    const body = Buffer.from(INSPECTOR_PAGE, 'utf8');
    res.writeHead(200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Length': body.length,
      'Cache-Control': 'no-store',
      // The page runs only its own inline script and talks only to its own origin.
      'Content-Security-Policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src data:",
      'X-Content-Type-Options': 'nosniff',
    });
    res.end(body);
  }
}
