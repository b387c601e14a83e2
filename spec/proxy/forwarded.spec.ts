/**
 * The forwarding headers (X-Forwarded-*, RFC 7239 Forwarded) and the deflate-free offer: the pure
 * functions, then through a real proxy, as the upstream sees the request.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocketServer as WsServer } from 'ws';
import { connect, WebSocket } from '../../lib';
import { forwardingHeaders, withoutDeflate } from '../../lib/proxy/forwarded';
import { ProxyOptions, createProxy, WebSocketProxy } from '../../lib/proxy/proxy';

const LOCAL = '127.0.0.1';

describe('proxy forwarding headers', () => {
  describe('forwardingHeaders()', () => {
    it('RFC 7239 §4: for, proto and host of this hop; X-Forwarded-For with the address', () => {
      const h = forwardingHeaders({ host: 'example.com:8080' }, { address: '192.0.2.60', secure: false });
      expect(h.forwarded).to.equal('for=192.0.2.60;proto=http;host="example.com:8080"');
      expect(h['x-forwarded-for']).to.equal('192.0.2.60');
      expect(h['x-forwarded-proto']).to.equal('http');
      expect(h['x-forwarded-host']).to.equal('example.com:8080');
    });

    it('RFC 7239 §6: an IPv6 node is bracketed and quoted; a v4-mapped address is shown as IPv4', () => {
      expect(forwardingHeaders({}, { address: '2001:db8::1', secure: true }).forwarded).to.equal('for="[2001:db8::1]";proto=https');
      const mapped = forwardingHeaders({}, { address: '::ffff:10.0.0.1', secure: false });
      expect(mapped.forwarded).to.equal('for=10.0.0.1;proto=http');
      expect(mapped['x-forwarded-for']).to.equal('10.0.0.1');
      expect(forwardingHeaders({}, { address: undefined, secure: false }).forwarded).to.equal('for=unknown;proto=http');
    });

    it('does not trust the client by default: its own values are replaced', () => {
      const spoofed = { 'x-forwarded-for': '1.2.3.4', forwarded: 'for=1.2.3.4', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil' };
      const h = forwardingHeaders({ ...spoofed, host: 'h' }, { address: '10.1.1.1', secure: false });
      expect(h['x-forwarded-for']).to.equal('10.1.1.1');
      expect(h.forwarded).to.equal('for=10.1.1.1;proto=http;host=h');
      expect(h['x-forwarded-proto']).to.equal('http');
      expect(h['x-forwarded-host']).to.equal('h');
    });

    it('with trust, appends this hop to the client\'s values and keeps proto and host', () => {
      const incoming = { 'x-forwarded-for': '1.2.3.4', forwarded: 'for=1.2.3.4', 'x-forwarded-proto': 'https', host: 'h' };
      const h = forwardingHeaders(incoming, { address: '10.1.1.1', secure: false }, { trust: true });
      expect(h['x-forwarded-for']).to.equal('1.2.3.4, 10.1.1.1');
      expect(h.forwarded).to.equal('for=1.2.3.4, for=10.1.1.1;proto=http;host=h');
      expect(h['x-forwarded-proto']).to.equal('https');
    });

    it("mode 'none' sets nothing and still drops the client's values unless trusted", () => {
      const h = forwardingHeaders({ 'x-forwarded-for': '1.2.3.4' }, { address: '10.1.1.1', secure: false }, { mode: 'none' });
      expect(h['x-forwarded-for']).to.equal('');
      expect(h.forwarded).to.equal('');
      const kept = forwardingHeaders({ 'x-forwarded-for': '1.2.3.4' }, { address: '10.1.1.1', secure: false }, { mode: 'none', trust: true });
      expect(kept['x-forwarded-for']).to.equal('1.2.3.4');
    });

    it("mode 'forwarded' or 'x-forwarded' sets only that family", () => {
      const f = forwardingHeaders({}, { address: '10.1.1.1', secure: false }, { mode: 'forwarded' });
      expect(f['x-forwarded-for']).to.equal('');
      expect(f.forwarded).to.equal('for=10.1.1.1;proto=http');
      const x = forwardingHeaders({}, { address: '10.1.1.1', secure: false }, { mode: 'x-forwarded' });
      expect(x.forwarded).to.equal('');
      expect(x['x-forwarded-for']).to.equal('10.1.1.1');
    });
  });

  describe('withoutDeflate()', () => {
    it('takes permessage-deflate out of the offer and keeps the rest', () => {
      expect(withoutDeflate('permessage-deflate; client_max_window_bits')).to.equal(undefined);
      expect(withoutDeflate('x-foo; a=1, permessage-deflate, PerMessage-Deflate; server_no_context_takeover')).to.equal('x-foo; a=1');
      expect(withoutDeflate(undefined)).to.equal(undefined);
    });
  });

  describe('through the proxy', () => {
    const cleanups: Array<() => Promise<unknown>> = [];
    afterEach(async () => {
      while (cleanups.length > 0) await cleanups.pop()!();
    });

    async function setUp(options: Partial<ProxyOptions>): Promise<{ proxyUrl: string; seen: Promise<http.IncomingMessage> }> {
      const server = new WsServer({ port: 0, host: LOCAL });
      await once(server, 'listening');
      cleanups.push(() => new Promise((r) => server.close(r)));
      server.on('connection', (ws) => ws.on('message', (d, binary) => ws.send(d, { binary })));
      const seen = (once(server, 'connection') as Promise<[unknown, http.IncomingMessage]>).then(([, req]) => req);
      const proxy: WebSocketProxy = createProxy({ target: `ws://${LOCAL}:${(server.address() as net.AddressInfo).port}`, port: 0, host: LOCAL, ...options });
      cleanups.push(() => new Promise<void>((r) => proxy.close(r)));
      await once(proxy, 'listening');
      return { proxyUrl: `ws://${LOCAL}:${proxy.address()!.port}`, seen };
    }

    async function finish(client: WebSocket): Promise<void> {
      if (client.readyState === 0) await once(client, 'open');
      client.close();
      await once(client, 'close');
    }

    it('adds X-Forwarded-For and Forwarded with the client address, replacing a spoofed one', async () => {
      const { proxyUrl, seen } = await setUp({});
      const client = connect(proxyUrl, { headers: { 'X-Forwarded-For': '6.6.6.6', Forwarded: 'for=6.6.6.6' } });
      const req = await seen;
      expect(req.headers['x-forwarded-for']).to.equal(LOCAL);
      expect(req.headers.forwarded).to.match(/^for=127\.0\.0\.1;proto=http;host="127\.0\.0\.1:\d+"$/);
      await finish(client);
    });

    it('trustForwarded appends the client address to the incoming chain', async () => {
      const { proxyUrl, seen } = await setUp({ trustForwarded: true });
      const client = connect(proxyUrl, { headers: { 'X-Forwarded-For': '203.0.113.9' } });
      expect((await seen).headers['x-forwarded-for']).to.equal(`203.0.113.9, ${LOCAL}`);
      await finish(client);
    });

    it("forwarded: 'none' sends no forwarding headers", async () => {
      const { proxyUrl, seen } = await setUp({ forwarded: 'none' });
      const client = connect(proxyUrl, { headers: { 'X-Forwarded-For': '6.6.6.6' } });
      const req = await seen;
      expect(req.headers['x-forwarded-for']).to.equal(undefined);
      expect(req.headers.forwarded).to.equal(undefined);
      await finish(client);
    });

    it('stripDeflate: the upstream gets no permessage-deflate offer, and none is negotiated', async () => {
      const { proxyUrl, seen } = await setUp({ stripDeflate: true });
      const client = connect(proxyUrl, { perMessageDeflate: true });
      const req = await seen;
      expect(req.headers['sec-websocket-extensions']).to.equal(undefined);
      await once(client, 'open');
      expect(client.extensions).to.equal('');
      await finish(client);
    });
  });
});
