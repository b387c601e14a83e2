/**
 * Where the proxy connects, decided without I/O. The configured target alone chooses the scheme,
 * host and port; the client's request-target may contribute a path and a query and nothing else.
 *
 * RFC 6455 §4.1 sends the resource name as the request-target of a GET, which is origin-form
 * (RFC 9112 §3.2.1: absolute-path [ "?" query ]). Resolving it against the target as a URL
 * reference would let `//host:port/p` or `ws://host/p` replace the configured authority, so the
 * request-target is never parsed as a URL: it is checked to be origin-form and used as it is.
 */
import { WebSocketError } from '../protocol/errors';

/** The upstream to dial and the request-target to send it. */
export interface UpstreamTarget {
  /** The configured target: its scheme, host and port are the ones dialled. */
  readonly url: URL;
  /** The request-target of the upstream request: origin-form, visible ASCII. */
  readonly path: string;
}

/**
 * origin-form = absolute-path [ "?" query ] (RFC 9112 §3.2.1, RFC 3986 §3.3-3.4): "/" then pchar,
 * "/" and "?" only; pchar = unreserved / pct-encoded / sub-delims / ":" / "@". No "#", no "\\",
 * no space, nothing outside visible ASCII.
 */
const ORIGIN_FORM = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/;

/**
 * The upstream for one client request.
 * @param configured the proxy's target (ws: or wss:).
 * @param requestTarget the client's request-target, as sent.
 * @param useRequestPath take the path and query from the request-target (the configured target's
 *   path is '/' with no query) instead of the target's own.
 * @returns the upstream, or a WebSocketError: WS_ERR_INVALID_HANDSHAKE (400) for a request-target
 *   that is not origin-form, WS_ERR_INVALID_ARGUMENT for a target that is not ws: or wss:.
 */
export function resolveUpstream(configured: URL, requestTarget: string, useRequestPath: boolean): UpstreamTarget | WebSocketError {
  if (configured.protocol !== 'ws:' && configured.protocol !== 'wss:') {
    return new WebSocketError('WS_ERR_INVALID_ARGUMENT', `no valid upstream: unsupported scheme ${configured.protocol}`);
  }
  if (!ORIGIN_FORM.test(requestTarget)) {
    return new WebSocketError('WS_ERR_INVALID_HANDSHAKE', `the request-target must be a path and query (origin-form), not ${JSON.stringify(requestTarget.slice(0, 64))}`);
  }
  return { url: configured, path: useRequestPath ? requestTarget : `${configured.pathname}${configured.search}` };
}
