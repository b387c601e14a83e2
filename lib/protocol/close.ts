/**
 * Close frame payloads (RFC 6455 §5.5.1): an optional 2-byte status code in network byte order,
 * then an optional UTF-8 reason.
 */
import { Buffer } from 'node:buffer';
import { CloseCode, MAX_CONTROL_PAYLOAD, isValidWireCloseCode } from './constants';
import { WebSocketError } from './errors';
import { isValidUtf8 } from './utf8';

/** Bytes taken by the status code at the start of a close payload. */
const CODE_LENGTH = 2;

/** The longest close reason, in UTF-8 bytes: a control payload is at most 125 bytes, 2 for the code. */
export const MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - CODE_LENGTH;

/** A close frame's status code and reason, as read from its payload. */
export interface ClosePayload {
  readonly code: number;
  readonly reason: string;
}

const EMPTY = Buffer.alloc(0);

/**
 * Reads a received close frame's payload. An empty payload gives code 1005 (CloseCode.NoStatus)
 * and reason ''. A 1-byte payload is WS_ERR_INVALID_CLOSE_PAYLOAD, a code that may not be on the
 * wire is WS_ERR_INVALID_CLOSE_CODE (both 1002), a reason that is not UTF-8 is
 * WS_ERR_INVALID_UTF8 (1007).
 */
export function parseClosePayload(payload: Buffer): ClosePayload | WebSocketError {
  // RFC 6455 §7.1.5: "If there is no such data in the Close control frame, _The WebSocket
  // Connection Close Code_ is considered to be 1005."
  if (payload.length === 0) return { code: CloseCode.NoStatus, reason: '' };
  // RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
  // unsigned integer (in network byte order) representing a status code".
  if (payload.length < CODE_LENGTH) return new WebSocketError('WS_ERR_INVALID_CLOSE_PAYLOAD');
  const code = payload.readUInt16BE(0);
  // RFC 6455 §7.4.1: 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close control
  // frame by an endpoint"; other values outside the registries are not valid either.
  if (!isValidWireCloseCode(code)) return new WebSocketError('WS_ERR_INVALID_CLOSE_CODE', String(code));
  const reason = payload.subarray(CODE_LENGTH);
  // RFC 6455 §5.5.1: the reason's "interpretation is not defined by this specification"
  // but it is UTF-8, and §8.1 requires failing on invalid UTF-8.
  if (!isValidUtf8(reason)) return new WebSocketError('WS_ERR_INVALID_UTF8', 'close reason');
  return { code, reason: reason.toString('utf8') };
}

/**
 * Checks the arguments of an application's close: no code (then no reason either), or a code
 * valid on the wire (1000-1003, 1007-1014, 3000-4999) with a reason of at most 123 UTF-8 bytes.
 * Returns WS_ERR_INVALID_ARGUMENT, or null when encodeClosePayload may be called.
 */
export function checkCloseArgs(code?: number, reason?: string): WebSocketError | null {
  if (reason !== undefined && typeof reason !== 'string') {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'the close reason must be a string');
  }
  if (code === undefined) {
    if (reason !== undefined && reason !== '') {
      return new WebSocketError('WS_ERR_INVALID_ARGUMENT', 'a close reason needs a close code');
    }
    return null;
  }
  if (typeof code !== 'number' || !Number.isInteger(code) || !isValidWireCloseCode(code)) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `invalid close code ${String(code)}`);
  }
  if (reason !== undefined && Buffer.byteLength(reason, 'utf8') > MAX_CLOSE_REASON) {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `the close reason is over ${MAX_CLOSE_REASON} bytes`);
  }
  return null;
}

/**
 * Builds a close frame's payload: empty without a code, else the code then the reason in UTF-8.
 * Assumes arguments accepted by checkCloseArgs.
 */
export function encodeClosePayload(code?: number, reason = ''): Buffer {
  if (code === undefined) return EMPTY;
  const payload = Buffer.alloc(CODE_LENGTH + Buffer.byteLength(reason, 'utf8'));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, CODE_LENGTH, 'utf8');
  return payload;
}
