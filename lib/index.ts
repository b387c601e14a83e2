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
export { CloseCode, Defaults, Opcode, isValidWireCloseCode, WEBSOCKET_GUID } from './protocol/constants';
export { ERROR_TABLE, WebSocketError, isWebSocketError } from './protocol/errors';
export type { WebSocketErrorCode } from './protocol/errors';
export { makeFrame, isMessage, isFirstPiece, isLastPiece } from './protocol/frame';
export type { Frame, Message, Inbound } from './protocol/frame';
export { applyMask, randomMask } from './protocol/mask';
export type { MaskGenerator } from './protocol/mask';
export * from './handshake/handshake-parser';
export * from './handshake/handshake';
export * from './stages/frame-splitter';
export * from './stages/unmasker';
export * from './stages/fragment-assembler';
export * from './stages/control-frame-responder';
export * from './stages/message-framer';
export * from './stages/masker';
export * from './stages/frame-serializer';
// permessage-deflate (RFC 7692): the negotiation and the Inflater/Deflater stages.
export * from './deflate/permessage-deflate';
export * from './deflate/inflater';
export * from './deflate/deflater';
export { Utf8Validator, isValidUtf8 } from './protocol/utf8';
export { parseClosePayload, encodeClosePayload, checkCloseArgs } from './protocol/close';
export { WebSocket, ReadyState } from './connection/websocket';
export { MessageReadable, MessageWritable, MESSAGE_STREAM_HIGH_WATER_MARK } from './stages/message-stream';
export type { MessageWritableOptions } from './stages/message-stream';
export { Tap, TapPoint } from './stages/tap';
export type { TapOptions, TapPolicy } from './stages/tap';
export type { TapLayer, TapDirection, TappedMessage } from './connection/websocket';
export type { MessagePiece } from './stages/fragment-assembler';
export type { WebSocketOptions, HandshakeResult, Transport } from './connection/websocket';
export type { ReceiverOptions, Role } from './connection/receiver';
export type { SenderOptions } from './connection/sender';
export { WebSocketServer, createServer } from './server/server';
export type { ServerOptions, VerifyResult } from './server/server';
// The stages built onto a socket in one call, with stages inserted, replaced and tapped by name.
export { ComposedPipeline, composePipeline, PIPELINE_POINTS, REPLACEABLE_STAGES } from './compose/pipeline';
export type { PipelineOptions, PipelinePoint, PipelineTransport, ReplaceableStage, StageStream, OutboundMessage } from './compose/pipeline';
export { connect } from './client/client';
export { Reconnecting, ReconnectDefaults, backoffDelay, reconnecting } from './client/reconnect';
export type { ReconnectOptions } from './client/reconnect';
// WebSocket over HTTP/2 (RFC 8441): the handshake's pure functions (the server and the client
// take it through the `http2` options of createServer and connect).
export {
  buildConnectAnswer,
  buildConnectRefusal,
  buildConnectRequest,
  isWebSocketConnect,
  validateConnectRequest,
  validateConnectResponse,
} from './http2/handshake';
export type { ClientOptions } from './client/client';
