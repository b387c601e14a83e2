/**
 * The ES module entry of wspipe/ws (package.json exports, "import"): `import WebSocket, {
 * WebSocketServer, createWebSocketStream } from 'wspipe/ws'`, as with ws. (Node gives an ES
 * module the whole CommonJS module as its default import: require.cjs is the class itself.)
 */
import entry from './require.cjs';

export const WebSocket = entry.WebSocket;
export const WebSocketServer = entry.WebSocketServer;
export const Server = entry.Server;
export const createWebSocketStream = entry.createWebSocketStream;
export default entry.WebSocket;
