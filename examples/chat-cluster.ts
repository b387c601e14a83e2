/**
 * A chat served by several processes that share one Redis: a browser connected to one process
 * chats with browsers connected to the others. Each process serves the page and /chat; every
 * connection subscribes to the topic 'chat'; a line is published once, framed once for the
 * process's own subscribers, and carried by Redis pub/sub to the other processes (see
 * docs/fanout.md for what Redis guarantees: at most once).
 *
 *   redis-server --port 6379 --save '' --appendonly no          (any Redis will do)
 *   npx ts-node examples/chat-cluster.ts --redis redis://127.0.0.1:6379 --ports 8081,8082
 *   open http://127.0.0.1:8081/ and http://127.0.0.1:8082/ and chat
 *
 *   node dist/examples/chat-cluster.js ...                       (after npm run build)
 *
 * The first process forks one process per port (itself, with --node PORT) and stops them all on
 * Ctrl-C. The Redis adapter needs ioredis (`npm install ioredis`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as http from 'node:http';
import type * as net from 'node:net';
import { parseArgs } from 'node:util';
import { createServer, ReadyState, WebSocket } from '../lib';
import type { UpgradeRequest } from '../lib';
import { redisAdapter } from '../lib/fanout/redis';

const MAX_LINE = 4096;

const PAGE = (label: string): string => `<!doctype html>
<meta charset="utf-8"><title>wspipe chat cluster: ${label}</title>
<style>body{font:15px system-ui,sans-serif;max-width:640px;margin:2em auto}#log{height:300px;overflow-y:auto;border:1px solid #ccd;padding:8px}
.via{color:#889;font-size:12px}.me{color:#168a4a}</style>
<h1>Chat, served by ${label}</h1><p id="me">connecting...</p><div id="log"></div>
<form id="f"><input id="line" autocomplete="off" placeholder="say something" maxlength="${MAX_LINE}"> <button>Send</button></form>
<script>
'use strict';
var ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/chat');
var me = '';
function add(text, cls) { var d = document.createElement('div'); d.textContent = text; if (cls) d.className = cls; var log = document.getElementById('log'); log.appendChild(d); log.scrollTop = log.scrollHeight; }
ws.onmessage = function (e) {
  var m = JSON.parse(e.data);
  if (m.type === 'welcome') { me = m.name; document.getElementById('me').textContent = 'you are ' + m.name; }
  else if (m.type === 'chat') add(m.from + ': ' + m.text + '  (via ' + m.via + ')', m.from === me ? 'me' : '');
};
ws.onclose = function (e) { document.getElementById('me').textContent = 'disconnected (' + e.code + ')'; };
document.getElementById('f').onsubmit = function (e) { e.preventDefault(); var i = document.getElementById('line'); if (i.value && ws.readyState === 1) ws.send(i.value); i.value = ''; };
</script>`;

export interface ChatNode {
  url: string;
  close(): Promise<void>;
}

/** One chat process: the page at /, the chat at /chat, topics shared through Redis at `redisUrl`. */
export async function startChatNode(options: { port: number; host?: string; redisUrl: string }): Promise<ChatNode> {
  const host = options.host ?? '127.0.0.1';
  const web = http.createServer();
  const chat = createServer({ noServer: true, maxMessageSize: MAX_LINE, adapter: redisAdapter({ url: options.redisUrl, prefix: 'chat-cluster' }) });
  web.on('request', (req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(PAGE(label));
    } else {
      res.writeHead(404).end();
    }
  });
  web.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    chat.handleUpgrade(req as UpgradeRequest, socket, head, (ws) => chat.emit('connection', ws, req));
  });
  let label = '';
  let visitors = 0;
  chat.on('adapter', (e) => console.log(`${label}: Redis ${e.event}${e.event === 'up' && e.unsent ? ` (${e.unsent} lines of ours not sent meanwhile)` : ''}`));
  chat.on('lost', (info) => console.log(`${label}: ${info.count} lines of another process lost (Redis was away)`));
  chat.on('connection', (ws: WebSocket) => {
    const name = `${label}#${++visitors}`;
    ws.on('error', () => {});
    ws.send(JSON.stringify({ type: 'welcome', name }));
    ws.subscribe('chat', { limit: 256 * 1024, policy: 'drop-oldest' });
    ws.on('message', (data: string | Buffer, isBinary: boolean) => {
      if (isBinary) ws.close(1003, 'text only');
      else if (ws.readyState === ReadyState.OPEN) chat.publish('chat', JSON.stringify({ type: 'chat', from: name, text: data, via: label }));
    });
  });
  web.listen(options.port, host);
  await once(web, 'listening');
  const { port } = web.address() as net.AddressInfo;
  label = `port ${port} (pid ${process.pid})`;
  return {
    url: `http://${host}:${port}/`,
    close: async () => {
      web.close();
      await new Promise<void>((resolve) => chat.close(() => resolve()));
      web.closeAllConnections();
    },
  };
}

function runNode(port: number, host: string, redisUrl: string): void {
  startChatNode({ port, host, redisUrl }).then(
    (node) => {
      console.log(`chat node: open ${node.url}`);
      const stop = (): void => void node.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      process.once('disconnect', stop);
    },
    (err: Error) => {
      console.error(`chat node on port ${port}: ${err.message}`);
      process.exit(1);
    },
  );
}

if (require.main === module) {
  const { values } = parseArgs({
    options: {
      redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
      ports: { type: 'string', default: '8081,8082' },
      host: { type: 'string', default: '127.0.0.1' },
      node: { type: 'string' },
    },
  });
  if (values.node !== undefined) {
    runNode(Number(values.node), values.host, values.redis);
  } else {
    const ports = values.ports.split(',').map((p) => Number(p.trim()));
    console.log(`wspipe chat cluster: ${ports.length} processes, Redis at ${values.redis} (Ctrl-C stops)`);
    const children: ChildProcess[] = ports.map((port) =>
      fork(__filename, ['--node', String(port), '--host', values.host, '--redis', values.redis], {
        stdio: 'inherit',
        // Run by ts-node (examples/chat-cluster.ts): the children load it too.
        execArgv: __filename.endsWith('.ts') ? [...process.execArgv, '-r', 'ts-node/register'] : process.execArgv,
      }),
    );
    let left = children.length;
    for (const child of children) {
      child.once('exit', (code) => {
        if (code !== 0 && code !== null) process.exitCode = code;
        if (--left === 0) process.exit();
      });
    }
    const stop = (): void => {
      for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
}
