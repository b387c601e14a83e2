/**
 * wspipe/ws: ws's API (its doc/ws.md) over wspipe, so that an application written for ws
 * migrates by changing one import:
 *
 *   import WebSocket, { WebSocketServer, createWebSocketStream } from 'wspipe/ws';
 *
 * What differs from ws, and why, is in docs/migrating-from-ws.md.
 */
import { WebSocket } from './websocket';
import { WebSocketServer } from './server';
import { createWebSocketStream } from './stream';

export { WebSocket, WebSocketServer, createWebSocketStream };
/** ws's older name for WebSocketServer. */
export const Server = WebSocketServer;
export type { BinaryType, RawData, SendData, UnexpectedRequest, UnexpectedResponse } from './websocket';
export type { VerifyClientCallback, VerifyClientInfo, WsServerOptions as ServerOptions } from './server';
export type { WsClientOptions as ClientOptions, WsPerMessageDeflateOptions as PerMessageDeflateOptions } from './options';
export type { WsCloseEvent as CloseEvent, WsErrorEvent as ErrorEvent, WsEvent as Event, WsMessageEvent as MessageEvent } from './event-target';
export default WebSocket;
