/**
 * The opening handshake of a composed pipeline, without I/O: what the server answers to a
 * request, what the client sends and how it checks the answer. The outcome says how the frame
 * stages are set up (the subprotocol, the extensions, permessage-deflate's parameters).
 */
import { WebSocketError, isWebSocketError } from '../protocol/errors';
import {
  type ExtensionOffer,
  buildAcceptResponse,
  buildClientRequest,
  formatExtensions,
  generateKey,
  selectProtocol,
  validateUpgradeRequest,
  validateUpgradeResponse,
} from '../handshake/handshake';
import type { UpgradeRequest, UpgradeResponse } from '../handshake/handshake-parser';
import {
  type DeflateSides,
  type PerMessageDeflateOptions,
  acceptDeflateOffer,
  acceptDeflateResponse,
  buildDeflateOffer,
  checkDeflateOptions,
  deflateSides,
} from '../deflate/permessage-deflate';

/** What both ends agreed on. */
export interface Opening {
  /** The subprotocol ('' for none). */
  readonly protocol: string;
  /** The Sec-WebSocket-Extensions value in force ('' for none). */
  readonly extensions: string;
  /** permessage-deflate's parameters for our inflater and deflater, or null without it. */
  readonly deflate: DeflateSides | null;
}

/** The options of the opening handshake (see PipelineOptions). */
export interface OpeningOptions {
  /** Server: the subprotocols it speaks, in its order of preference. Client: those it offers. */
  protocols?: readonly string[];
  /** permessage-deflate: server, accept an offer; client, offer it. Default false. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** Client: the Host header (host[:port]). Default 'localhost'. */
  host?: string;
  /** Client: the request-target (origin-form). Default '/'. */
  path?: string;
  /** Client: extra request headers. */
  headers?: Record<string, string>;
  /** Client: the Origin header, if any. */
  origin?: string;
}

function deflateOptionsOf(options: OpeningOptions, role: 'server' | 'client'): PerMessageDeflateOptions | null {
  const value = options.perMessageDeflate;
  if (value === undefined || value === false) return null;
  const chosen = value === true ? {} : value;
  checkDeflateOptions(chosen, role);
  return chosen;
}

/**
 * The server's side: the 101 answer to `req`, or the WebSocketError (with its HTTP status) to
 * refuse it with.
 */
export function answerRequest(req: UpgradeRequest, options: OpeningOptions): { answer: string; opening: Opening } | WebSocketError {
  const info = validateUpgradeRequest(req);
  if (isWebSocketError(info)) return info;
  const supported = options.protocols;
  const protocol = supported === undefined ? undefined : selectProtocol(info.protocols, supported);
  const deflate = deflateOptionsOf(options, 'server');
  const agreement = deflate === null ? null : acceptDeflateOffer(info.extensions, deflate);
  const extensions = agreement === null ? '' : formatExtensions([agreement.response]);
  return {
    answer: buildAcceptResponse({ key: info.key, protocol, extensions }),
    opening: { protocol: protocol ?? '', extensions, deflate: agreement === null ? null : deflateSides(agreement, 'server') },
  };
}

/** The client's side: the request to send, and the check of the server's answer. */
export interface ClientOpening {
  readonly request: string;
  check(res: UpgradeResponse): Opening | WebSocketError;
}

/**
 * Builds the client's request. Throws WS_ERR_INVALID_ARGUMENT for options that cannot go in a
 * request (a header value with CR or LF, a subprotocol that is not a token, a permessage-deflate
 * option out of range ...). Only permessage-deflate is ever offered, so the check refuses an
 * answer that accepts any other extension.
 */
export function openAsClient(options: OpeningOptions): ClientOpening {
  try {
    return clientOpening(options);
  } catch (cause) {
    throw isWebSocketError(cause) ? cause : new WebSocketError('WS_ERR_INVALID_ARGUMENT', (cause as Error).message);
  }
}

function clientOpening(options: OpeningOptions): ClientOpening {
  const key = generateKey();
  const protocols = [...(options.protocols ?? [])];
  const deflate = deflateOptionsOf(options, 'client');
  const offered: ExtensionOffer[] = deflate === null ? [] : [buildDeflateOffer(deflate)];
  const request = buildClientRequest({
    host: options.host ?? 'localhost',
    path: options.path ?? '/',
    key,
    protocols,
    origin: options.origin,
    headers: options.headers,
    extensions: offered.length === 0 ? undefined : formatExtensions(offered),
  });
  return {
    request,
    check(res: UpgradeResponse): Opening | WebSocketError {
      const result = validateUpgradeResponse(res, { key, protocols, extensions: offered });
      if (isWebSocketError(result)) return result;
      // permessage-deflate: an answer we cannot accept fails the connection (RFC 7692 §5, §7.1).
      const agreement = deflate === null ? null : acceptDeflateResponse(result.extensions, deflate);
      if (isWebSocketError(agreement)) return agreement;
      return {
        protocol: result.protocol ?? '',
        extensions: agreement === null ? '' : formatExtensions([agreement.response]),
        deflate: agreement === null ? null : deflateSides(agreement, 'client'),
      };
    },
  };
}
