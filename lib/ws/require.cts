/**
 * The CommonJS entry of wspipe/ws (package.json exports, "require"): as ws's, the module is the
 * WebSocket class, with the rest as its properties, so that each of ws's forms works:
 * `const WebSocket = require('wspipe/ws')`, `new WebSocket.Server(...)`,
 * `const { WebSocketServer } = require('wspipe/ws')`.
 */
import { WebSocket } from './websocket';
import { WebSocketServer } from './server';
import { createWebSocketStream } from './stream';

const entry = Object.assign(WebSocket, {
  WebSocket,
  WebSocketServer,
  Server: WebSocketServer,
  createWebSocketStream,
  default: WebSocket,
});

export = entry;
