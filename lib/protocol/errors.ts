/**
 * The one error type of wspipe. Every failure a stage can detect is listed in ERROR_TABLE with
 * the close code it leads to (and, for the opening handshake, the HTTP status to answer with).
 */
import { CloseCode } from './constants';

export const ERROR_TABLE = {
  // Framing (RFC 6455 §5.2)
  WS_ERR_INVALID_OPCODE: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: reserved opcode' },
  WS_ERR_UNEXPECTED_RSV: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: RSV bit set without a negotiated extension' },
  WS_ERR_CONTROL_FRAME_TOO_LONG: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: control frame payload over 125 bytes' },
  WS_ERR_FRAGMENTED_CONTROL_FRAME: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: fragmented control frame' },
  WS_ERR_INVALID_LENGTH: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: invalid payload length' },
  WS_ERR_PAYLOAD_TOO_BIG: { closeCode: CloseCode.MessageTooBig, message: 'Frame payload over maxPayload' },
  WS_ERR_EXPECTED_MASK: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: client frame is not masked' },
  WS_ERR_UNEXPECTED_MASK: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: server frame is masked' },
  // Fragmentation (RFC 6455 §5.4)
  WS_ERR_UNEXPECTED_CONTINUATION: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: continuation frame without a message to continue' },
  WS_ERR_EXPECTED_CONTINUATION: { closeCode: CloseCode.ProtocolError, message: 'Invalid WebSocket frame: new data frame before the previous message ended' },
  WS_ERR_MESSAGE_TOO_BIG: { closeCode: CloseCode.MessageTooBig, message: 'Message over maxMessageSize' },
  WS_ERR_TOO_MANY_FRAGMENTS: { closeCode: CloseCode.MessageTooBig, message: 'Message made of more frames than maxFragments, or than its size allows (frameOverhead)' },
  // Payload data (RFC 6455 §5.6, §8.1)
  WS_ERR_INVALID_UTF8: { closeCode: CloseCode.InvalidPayload, message: 'Invalid UTF-8 in a text message or close reason' },
  // permessage-deflate (RFC 7692 §6.2): a payload that does not inflate
  WS_ERR_INVALID_COMPRESSED_DATA: { closeCode: CloseCode.InvalidPayload, message: 'Invalid compressed data' },
  // Closing (RFC 6455 §5.5.1, §7.4)
  WS_ERR_INVALID_CLOSE_CODE: { closeCode: CloseCode.ProtocolError, message: 'Invalid close code' },
  WS_ERR_INVALID_CLOSE_PAYLOAD: { closeCode: CloseCode.ProtocolError, message: 'Invalid close frame: a 1-byte payload' },
  // Opening handshake (RFC 6455 §4)
  WS_ERR_HEADER_TOO_LARGE: { closeCode: CloseCode.ProtocolError, status: 431, message: 'Handshake header block too large' },
  WS_ERR_INVALID_HANDSHAKE: { closeCode: CloseCode.ProtocolError, status: 400, message: 'Invalid handshake' },
  WS_ERR_UNSUPPORTED_VERSION: { closeCode: CloseCode.ProtocolError, status: 426, message: 'Unsupported Sec-WebSocket-Version' },
  WS_ERR_HANDSHAKE_REJECTED: { closeCode: CloseCode.ProtocolError, message: 'Handshake rejected' },
  WS_ERR_INVALID_ACCEPT: { closeCode: CloseCode.ProtocolError, message: 'Invalid Sec-WebSocket-Accept' },
  WS_ERR_INVALID_SUBPROTOCOL: { closeCode: CloseCode.ProtocolError, message: 'Server chose a subprotocol that was not offered' },
  WS_ERR_INVALID_EXTENSION: { closeCode: CloseCode.MandatoryExtension, message: 'Invalid or unexpected extension' },
  WS_ERR_HANDSHAKE_TIMEOUT: { closeCode: CloseCode.Abnormal, message: 'Opening handshake timed out' },
  // Connection
  WS_ERR_CLOSE_TIMEOUT: { closeCode: CloseCode.Abnormal, message: 'Closing handshake timed out' },
  WS_ERR_CONNECTION_LOST: { closeCode: CloseCode.Abnormal, message: 'Connection closed without a close frame' },
  WS_ERR_INVALID_STATE: { closeCode: CloseCode.InternalError, message: 'WebSocket is not open' },
  WS_ERR_INVALID_ARGUMENT: { closeCode: CloseCode.InternalError, message: 'Invalid argument' },
  WS_ERR_MESSAGE_ABORTED: { closeCode: CloseCode.InternalError, message: 'A streamed message was aborted before its end' },
  WS_ERR_BUFFER_FULL: { closeCode: CloseCode.PolicyViolation, message: 'Outbound buffer over its limit' },
  WS_ERR_SERVER_MEMORY: { closeCode: CloseCode.PolicyViolation, message: 'The server is over its memory budget (serverMemoryBudget)' },
  WS_ERR_PEER_UNRESPONSIVE: { closeCode: CloseCode.Abnormal, message: 'No pong (or any data) from the peer before the heartbeat deadline' },
} as const satisfies Record<string, { closeCode: CloseCode; message: string; status?: number }>;

/** The stable string codes an error can carry. */
export type WebSocketErrorCode = keyof typeof ERROR_TABLE;

/**
 * The error every stage emits. `code` is stable and meant for programs; `closeCode` is the close
 * status the connection ends with; `status` is the HTTP status for handshake errors on a server.
 */
export class WebSocketError extends Error {
  override readonly name = 'WebSocketError';
  readonly code: WebSocketErrorCode;
  readonly closeCode: CloseCode;
  readonly status: number | undefined;

  /** `options.cause`: the error that led to this one (Error.cause). */
  constructor(code: WebSocketErrorCode, detail?: string, options?: { cause?: unknown }) {
    const entry: { closeCode: CloseCode; message: string; status?: number } = ERROR_TABLE[code];
    super(detail === undefined ? entry.message : `${entry.message}: ${detail}`, options);
    this.code = code;
    this.closeCode = entry.closeCode;
    this.status = entry.status;
  }
}

/** True for a WebSocketError, including one from another copy of this module. */
export function isWebSocketError(err: unknown): err is WebSocketError {
  return err instanceof Error && err.name === 'WebSocketError' && typeof (err as WebSocketError).closeCode === 'number';
}

/** An application's invalid argument: a TypeError or RangeError carrying a `code`, as Node's own are. */
export type ArgumentError = (TypeError | RangeError) & { readonly code: 'WS_ERR_INVALID_ARGUMENT' };

/**
 * The error thrown at the call for an invalid argument of the application (never for a peer's
 * input, which is a WebSocketError): `Kind` (TypeError by default, RangeError for a value out
 * of range) with `code` WS_ERR_INVALID_ARGUMENT, as Node throws ERR_INVALID_ARG_TYPE.
 */
export function invalidArgument(message: string, Kind: TypeErrorConstructor | RangeErrorConstructor = TypeError): ArgumentError {
  const err = new Kind(message) as ArgumentError;
  Object.defineProperty(err, 'code', { value: 'WS_ERR_INVALID_ARGUMENT', enumerable: true });
  return err;
}

/** An AbortError as Node's own APIs make it (name AbortError, code ABORT_ERR, the signal's reason as cause). */
export function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  (err as Error & { code: string }).code = 'ABORT_ERR';
  return err;
}
