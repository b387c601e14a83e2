/**
 * Protocol constants from RFC 6455 and the IANA WebSocket registries, named once so that no
 * stage compares against a bare number.
 */

/** Frame opcodes (RFC 6455 §5.2, §11.8). Values 0x3-0x7 and 0xB-0xF are reserved. */
export enum Opcode {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xa,
}

/** Close status codes (RFC 6455 §7.4.1 and the IANA "WebSocket Close Code Number Registry"). */
export enum CloseCode {
  Normal = 1000,
  GoingAway = 1001,
  ProtocolError = 1002,
  UnsupportedData = 1003,
  /** Never on the wire: "no status code was actually present". */
  NoStatus = 1005,
  /** Never on the wire: the connection closed without a close frame. */
  Abnormal = 1006,
  InvalidPayload = 1007,
  PolicyViolation = 1008,
  MessageTooBig = 1009,
  MandatoryExtension = 1010,
  InternalError = 1011,
  ServiceRestart = 1012,
  TryAgainLater = 1013,
  BadGateway = 1014,
  /** Never on the wire: the TLS handshake failed. */
  TlsHandshake = 1015,
}

/** The GUID that RFC 6455 §1.3 appends to Sec-WebSocket-Key to build Sec-WebSocket-Accept. */
export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less". */
export const MAX_CONTROL_PAYLOAD = 125;

/** The only protocol version this library speaks (RFC 6455 §4.1, §4.4). */
export const WEBSOCKET_VERSION = 13;

/** True for Close, Ping and Pong: opcodes with the high bit set (RFC 6455 §5.5). */
export function isControlOpcode(opcode: number): boolean {
  return (opcode & 0x8) !== 0;
}

/** True for the six opcodes RFC 6455 defines; every other value is reserved. */
export function isKnownOpcode(opcode: number): boolean {
  return opcode <= Opcode.Binary || (opcode >= Opcode.Close && opcode <= Opcode.Pong);
}

/**
 * May this code be sent in, or accepted from, a close frame? RFC 6455 §7.4: 1000-1003 and
 * 1007-1011 are defined; 1012-1014 are registered with IANA; 3000-4999 belong to libraries and
 * applications. 1004 is reserved, and 1005, 1006 and 1015 MUST NOT be set in a close frame.
 */
export function isValidWireCloseCode(code: number): boolean {
  return (
    (code >= CloseCode.Normal && code <= CloseCode.UnsupportedData) ||
    (code >= CloseCode.InvalidPayload && code <= CloseCode.BadGateway) ||
    (code >= 3000 && code <= 4999)
  );
}

/** Default limits, in one place; each is documented on the option that takes it. */
export const Defaults = {
  /** Largest payload of a single frame, in bytes (100 MiB). */
  maxPayload: 100 * 1024 * 1024,
  /** Largest message delivered whole, in bytes (100 MiB). */
  maxMessageSize: 100 * 1024 * 1024,
  /**
   * Most frames (fragments, empty ones included) one message may be made of: no cap by default,
   * since frameOverhead bounds what fragments cost within maxMessageSize.
   */
  maxFragments: Number.POSITIVE_INFINITY,
  /**
   * Bytes each frame of a message after its first counts against maxMessageSize beside its
   * payload: what a frame costs to parse and keep beyond its bytes, so that a message of empty or
   * 1-byte fragments reaches its limit after at most maxMessageSize / 256 frames (409 600 at the
   * default limit) while 4 MiB in 65 536 fragments of 64 bytes (20 MiB counted) still arrives.
   */
  frameOverhead: 256,
  /** Largest HTTP header block of the opening handshake, in bytes (16 KiB). */
  maxHeaderSize: 16 * 1024,
  /** Most header lines in the opening handshake. */
  maxHeaders: 128,
  /** Milliseconds allowed for the opening handshake. */
  handshakeTimeout: 10_000,
  /** Milliseconds to wait for the peer's close frame, then for the TCP close, before destroying. */
  closeTimeout: 5_000,
  /** Bytes one connection may hold (unread received data and unsent data) before it stops reading (16 MiB). */
  memoryBudget: 16 * 1024 * 1024,
} as const;
