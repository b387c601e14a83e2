/**
 * wspipe: WebSocket (RFC 6455) for Node.js as composable stream stages.
 *
 * Inbound (bytes from the peer to messages):
 *
 *   socket ─► HandshakeParser ─► FrameSplitter ─► Unmasker ─► FragmentAssembler ─► ControlFrameResponder ─► messages
 *             (bytes → bytes)    (bytes → Frame)  (Frame)     (Frame → Message)    (Message, events)
 *                                                                                         │ replies: pong, close echo,
 *                                                                                         ▼ failing close (Frame)
 * Outbound (messages to bytes for the peer):                                              │
 *                                                                                         ▼
 *   messages ─► MessageFramer ─► Masker (client role only) ─────────────────────────► FrameSerializer ─► socket
 *               (Message → Frame)  (Frame → masked Frame)                             (Frame → bytes)
 *
 * Replies enter the outbound side as whole frames, so they can fall between two fragments of a
 * message but never inside one frame's bytes. Backpressure runs right to left on both sides:
 * each stage holds at most its highWaterMark; a reader that stops reading stops the socket.
 *
 * `WebSocket` runs the same cores fused in one Duplex (no stream hop per stage); the server
 * (`createServer`) and the client (`connect`) hand out such connections.
 */
export { CloseCode, Defaults, Opcode, isValidWireCloseCode, WEBSOCKET_GUID } from './constants';
export { ERROR_TABLE, WebSocketError, isWebSocketError } from './errors';
export type { WebSocketErrorCode } from './errors';
export { makeFrame, isMessage, isFirstPiece, isLastPiece } from './frame';
export type { Frame, Message, Inbound } from './frame';
export { applyMask, randomMask } from './mask';
export type { MaskGenerator } from './mask';
export * from './handshake-parser';
export * from './handshake';
export * from './frame-splitter';
export * from './unmasker';
export * from './fragment-assembler';
export * from './control-frame-responder';
export * from './message-framer';
export * from './masker';
export * from './frame-serializer';
// permessage-deflate (RFC 7692): the negotiation and the Inflater/Deflater stages.
export * from './permessage-deflate';
export * from './inflater';
export * from './deflater';
export { Utf8Validator, isValidUtf8 } from './utf8';
export { parseClosePayload, encodeClosePayload, checkCloseArgs } from './close';
export { WebSocket, ReadyState } from './websocket';
export { MessageReadable, MessageWritable, MESSAGE_STREAM_HIGH_WATER_MARK } from './message-stream';
export type { MessageWritableOptions } from './message-stream';
export { Tap, TapPoint } from './tap';
export type { TapOptions, TapPolicy } from './tap';
export type { TapLayer, TapDirection, TappedMessage } from './websocket';
export type { MessagePiece } from './fragment-assembler';
export type { WebSocketOptions, HandshakeResult, Transport } from './websocket';
export type { ReceiverOptions, Role } from './receiver';
export type { SenderOptions } from './sender';
export { WebSocketServer, createServer } from './server';
export type { ServerOptions, VerifyResult } from './server';
export { connect } from './client';
export type { ClientOptions } from './client';
