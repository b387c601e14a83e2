/// <reference types="node" preserve="true" />
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
// The public API: every name is listed here on purpose (no `export *`), so that a new export is a
// decision, seen in spec/package/api.spec.ts and its snapshot (spec/package/api.snapshot.d.ts).
// What is not listed here is internal, even when a module exports it for its neighbours.

// ----- Connections: the fused WebSocket, the server, the client -----
export { WebSocket, ReadyState } from './connection/websocket';
export type {
  WebSocketOptions,
  WebSocketEvents,
  HandshakeResult,
  Transport,
  TapLayer,
  TapDirection,
  TappedMessage,
} from './connection/websocket';
export type { ReceiverOptions, Role } from './connection/receiver';
export type { SenderOptions } from './connection/sender';
export { WebSocketServer, createServer } from './server/server';
export type { ServerOptions, VerifyResult, WebSocketServerEvents } from './server/server';
export type { ListenOptions } from './server/accept';
export { connect } from './client/client';
export type { ClientOptions } from './client/client';

// ----- The stages built onto a socket in one call, with stages inserted, replaced and tapped by name -----
export { ComposedPipeline, composePipeline, PIPELINE_POINTS, REPLACEABLE_STAGES } from './compose/pipeline';
export type { PipelineOptions, PipelinePoint, PipelineTransport, ReplaceableStage, StageStream } from './compose/pipeline';

// ----- Messages as streams, and taps -----
export { MessageReadable, MessageWritable } from './stages/message-stream';
export type { MessageWritableOptions } from './stages/message-stream';
export { Tap } from './stages/tap';
export type { TapOptions, TapPolicy } from './stages/tap';

// ----- Proxy and tee -----
export { createProxy, WebSocketProxy, ProxyConnection, DEFAULT_FORWARD_HEADERS } from './proxy/proxy';
export type {
  ProxyOptions,
  ProxyDirection,
  ProxyTapLayer,
  ProxyMessage,
  SideClose,
  ProxyConnectionEvents,
  WebSocketProxyEvents,
} from './proxy/proxy';
export type { ForwardedMode } from './proxy/forwarded';
export type { RelayOptions } from './proxy/proxy';

// ----- Frame logs and replay -----
export { FrameLogWriter, FrameLogParser, readFrameLog, parseFrameLogLine, formatFrameLogRecord } from './capture/frame-log';
export type {
  FrameLogDirection,
  FrameLogRecord,
  FrameLogEntry,
  FrameLogInput,
  FrameLogWriterOptions,
  FrameLogParserOptions,
  OpcodeName,
} from './capture/frame-log';
export { replay, replayAll } from './capture/replay';
export type { ConnectionReplay, ReplayOptions, ReplayResult } from './capture/replay';

// ----- Capture of proxied connections, HAR 1.2 in and out, the live inspector (docs/capture.md) -----
export { ConnectionCapture } from './capture/capture';
export type { CapturedClose, CapturedMessage, CaptureOptions } from './capture/capture';
export { HarWriter, checkHar, harEntry, parseHar, readHar, replayHar, webSocketEntries } from './capture/har';
export type { Har, HarConnection, HarEntry, HarNameValue, HarReplayOptions, HarRequest, HarResponse, HarWebSocketMessage } from './capture/har';
export { Inspector } from './capture/inspector';
export type { InspectorOptions } from './capture/inspector';

// ----- The stages, to compose with pipe() -----
export { HandshakeParser } from './handshake/handshake-parser';
export type { HandshakeParserOptions } from './handshake/handshake-parser';
export { FrameSplitter } from './stages/frame-splitter';
export type { FrameSplitterOptions, FrameSplitterStreamOptions, ExtensionBits } from './stages/frame-splitter';
export { Unmasker } from './stages/unmasker';
export type { UnmaskerOptions } from './stages/unmasker';
export { FragmentAssembler } from './stages/fragment-assembler';
export type { FragmentAssemblerOptions, MessagePiece } from './stages/fragment-assembler';
export { ControlFrameResponder } from './stages/control-frame-responder';
export type { ControlFrameResponderOptions } from './stages/control-frame-responder';
export { MessageFramer } from './stages/message-framer';
export type { MessageFramerOptions, OutboundData, OutboundMessage } from './stages/message-framer';
export { Masker } from './stages/masker';
export type { MaskerOptions } from './stages/masker';
export { FrameSerializer } from './stages/frame-serializer';
export type { FrameSerializerOptions } from './stages/frame-serializer';
export { Inflater } from './deflate/inflater';
export type { InflaterOptions } from './deflate/inflater';
export { Deflater } from './deflate/deflater';
export type { DeflaterOptions } from './deflate/deflater';

// ----- The opening handshake and permessage-deflate negotiation, for composed pipelines -----
export {
  acceptKey,
  generateKey,
  validateUpgradeRequest,
  selectProtocol,
  buildAcceptResponse,
  buildRejectResponse,
  buildClientRequest,
  validateUpgradeResponse,
  parseExtensions,
  formatExtensions,
} from './handshake/handshake';
export type {
  HeaderMap,
  UpgradeRequest,
  UpgradeResponse,
  UpgradeInfo,
  ClientOffer,
  ExtraHeaders,
  ExtensionOffer,
} from './handshake/handshake';
export { acceptDeflateOffer, buildDeflateOffer, acceptDeflateResponse, deflateSides } from './deflate/permessage-deflate';
export type { PerMessageDeflateOptions, DeflateAgreement, DeflateSides } from './deflate/permessage-deflate';

// ----- Protocol values: opcodes, close codes, frames, errors -----
export { CloseCode, Defaults, Opcode, isValidWireCloseCode, WEBSOCKET_GUID } from './protocol/constants';
export { ERROR_TABLE, WebSocketError, isWebSocketError } from './protocol/errors';
export type { WebSocketErrorCode } from './protocol/errors';
export { makeFrame, isMessage, isFirstPiece, isLastPiece } from './protocol/frame';
export type { Frame, Message, Inbound } from './protocol/frame';
export { parseClosePayload, encodeClosePayload } from './protocol/close';
export type { ClosePayload } from './protocol/close';
export type { MaskGenerator } from './protocol/mask';

// ----- Fan-out: topics, bounded per-subscriber delivery, adapters to other processes (docs/fanout.md) -----
export { FanoutHub } from './fanout/hub';
export type { FanoutOptions, PublishOptions, BroadcastOptions, HubCounters } from './fanout/hub';
export { DeliveryQueue, FanoutDefaults } from './fanout/queue';
export type { DeliverySink, FanoutCounters, OverflowPolicy, SubscriptionOptions } from './fanout/queue';
export { LocalBus, localAdapter, encodeEnvelope, decodeEnvelope } from './fanout/adapter';
export type { AdapterEvent, AdapterMessage, AdapterNode, FanoutAdapter } from './fanout/adapter';
export { FanoutChannels } from './fanout/channels';

// ----- Reconnecting clients (docs/reconnect.md) -----
export { Reconnecting, ReconnectDefaults, backoffDelay, reconnecting } from './client/reconnect';
export type { ReconnectOptions } from './client/reconnect';

// ----- WebSocketStream, the WHATWG proposal's face on a connection (docs/websocket-stream.md) -----
export { WebSocketStream, toWebSocketStream } from './streams/websocket-stream';
export type { WebSocketStreamConnection, WebSocketCloseInfo, WebSocketStreamOptions } from './streams/websocket-stream';

// ----- WebSocket over HTTP/2, RFC 8441 (docs/http2.md): the handshake's pure functions; the
// server and the client take HTTP/2 through the `http2` options of createServer and connect -----
export {
  buildConnectAnswer,
  buildConnectRefusal,
  buildConnectRequest,
  isWebSocketConnect,
  validateConnectRequest,
  validateConnectResponse,
} from './http2/handshake';
