/**
 * Typed events. Each emitter class (WebSocket, WebSocketServer, the proxy, some stages) has an
 * `...Events` interface naming its events and their listeners, and an interface of the same name
 * as the class, merged with it, that types `on`/`once`/`addListener`/`prependListener`/
 * `prependOnceListener` from it: `ws.on('message', (data, isBinary) => ...)` infers the arguments.
 * Events not named there (a Readable's 'end', 'data' ...) fall through to `AnyListener`, as in
 * Node's own declarations. Types only: nothing here exists at run time.
 */

/** A listener of an event the `...Events` interface does not name. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyListener = (...args: any[]) => void;
