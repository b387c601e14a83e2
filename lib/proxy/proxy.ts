/**
 * A frame-level WebSocket proxy: it relays frames between a client and an upstream server
 * without reassembling messages. The entry point of lib/proxy/; three parts:
 *
 *   listener.ts  WebSocketProxy, createProxy: accepts clients (reading and refusing requests with
 *                lib/server/accept.ts), resolves the upstream (target.ts), dials it and relays the
 *                opening handshake (lib/client/dial.ts), then hands both sockets to a ProxyConnection.
 *   relay.ts     ProxyConnection: frames passed through both ways, masking per role, backpressure
 *                between the sockets, the closing handshake on each side, failing.
 *   observer.ts  DirectionObserver: taps (bytes, frames, messages) and the shadow inflate context
 *                that shows messages inflated without touching the relayed frames.
 */
export { DEFAULT_FORWARD_HEADERS, WebSocketProxy, createProxy } from './listener';
export type { ProxyOptions, WebSocketProxyEvents } from './listener';
export { ProxyConnection } from './relay';
export type { ProxyConnectionEvents, RelayOptions, SideClose } from './relay';
export type { ProxyDirection, ProxyMessage, ProxyTapLayer } from './observer';
