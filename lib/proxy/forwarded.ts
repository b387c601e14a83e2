/**
 * What the proxy tells the upstream about the client (X-Forwarded-For and RFC 7239 `Forwarded`),
 * and what it offers it (permessage-deflate may be taken out of the offer). Pure functions of the
 * client's request and address; the proxy adds their result to the upstream request.
 *
 * Security: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Forwarded are headers the
 * client can write itself. An upstream that reads them to learn the client's address would
 * believe whatever the client claims, so by default (`trustForwarded: false`) the client's own
 * values are dropped and replaced by what this proxy saw. Only when the proxy stands behind other
 * proxies the operator trusts (and the client cannot reach it directly) should `trustForwarded`
 * be set: the client's values are then kept and this hop is appended to them (RFC 7239 §4:
 * "each proxy ... appends its own field-value"; the same convention for X-Forwarded-For).
 */
import type { HeaderMap } from '../handshake/handshake';
import { formatExtensions, headerValue, parseExtensions } from '../handshake/handshake';
import { isWebSocketError } from '../protocol/errors';

/** Which forwarding headers the proxy sets: both families (default), one, or none. */
export type ForwardedMode = 'both' | 'x-forwarded' | 'forwarded' | 'none';

/** The headers about the client that only the proxy writes (lower case). */
export const FORWARDING_HEADERS: readonly string[] = ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'];

/** The client as the proxy saw it. */
export interface ForwardedClient {
  /** The client's address (socket.remoteAddress); undefined when unknown (the hop then says "unknown"). */
  readonly address: string | undefined;
  /** The client connected over TLS (the proxy is behind an https server). */
  readonly secure: boolean;
}

/** Options of forwardingHeaders (the proxy's `forwarded` and `trustForwarded` options). */
export interface ForwardingOptions {
  /** Which headers to set. Default 'both'. */
  mode?: ForwardedMode;
  /** Keep the client's forwarding headers and append this hop; default false (they are replaced). */
  trust?: boolean;
}

/** RFC 7239 §6: an IPv6 node is bracketed and the value quoted; "unknown" for no address. */
function forwardedNode(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const v4mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4mapped !== null) return v4mapped[1]!;
  return address.includes(':') ? `"[${address}]"` : address;
}

/** RFC 7239 §4: a value that is not a token is a quoted-string. */
function quoteIfNeeded(value: string): string {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`;
}

function joinHop(previous: string | undefined, hop: string, trust: boolean): string {
  return trust && previous !== undefined && previous.trim() !== '' ? `${previous}, ${hop}` : hop;
}

/**
 * The forwarding headers for the upstream request (lower-case names). Every name of
 * FORWARDING_HEADERS is in the result (an empty string: do not send it), so the caller can
 * override what it would otherwise forward from the client.
 */
export function forwardingHeaders(incoming: HeaderMap, client: ForwardedClient, options: ForwardingOptions = {}): Record<string, string> {
  const mode = options.mode ?? 'both';
  const trust = options.trust === true;
  const out: Record<string, string> = {};
  for (const name of FORWARDING_HEADERS) out[name] = trust ? (headerValue(incoming, name) ?? '') : '';
  if (mode === 'none') return out;
  const proto = client.secure ? 'https' : 'http';
  const host = headerValue(incoming, 'host');
  const address = client.address?.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
  if (mode === 'both' || mode === 'x-forwarded') {
    out['x-forwarded-for'] = joinHop(trust ? headerValue(incoming, 'x-forwarded-for') : undefined, address ?? 'unknown', trust);
    // Proto and Host describe the original request: a trusted earlier hop knows them better.
    if (out['x-forwarded-proto'] === '') out['x-forwarded-proto'] = proto;
    if (out['x-forwarded-host'] === '' && host !== undefined) out['x-forwarded-host'] = host;
  }
  if (mode === 'both' || mode === 'forwarded') {
    let hop = `for=${forwardedNode(client.address)};proto=${proto}`;
    if (host !== undefined && host !== '') hop += `;host=${quoteIfNeeded(host)}`;
    out.forwarded = joinHop(trust ? headerValue(incoming, 'forwarded') : undefined, hop, trust);
  }
  return out;
}

/**
 * The client's Sec-WebSocket-Extensions offer without permessage-deflate (RFC 7692), so that the
 * upstream cannot choose compression and the traffic stays readable. Other extensions are kept as
 * offered; undefined when nothing is left.
 */
export function withoutDeflate(offer: string | undefined): string | undefined {
  if (offer === undefined) return undefined;
  const parsed = parseExtensions(offer);
  if (isWebSocketError(parsed)) return undefined; // the request was validated already; an unreadable offer is dropped
  const kept = parsed.filter((offer) => offer.name.toLowerCase() !== 'permessage-deflate');
  if (kept.length === 0) return undefined;
  try {
    return formatExtensions(kept);
  } catch {
    return undefined; // a quoted value that is not a token: the offer is dropped rather than rewritten
  }
}
