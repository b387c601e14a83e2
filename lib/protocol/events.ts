/**
 * Typed events. Each emitter class (WebSocket, WebSocketServer, the proxy, some stages) has an
 * `...Events` interface naming its events and their listeners, and extends its base class
 * through `Emitting`, which types `on`/`once`/`addListener`/`prependListener`/
 * `prependOnceListener` from it: `ws.on('message', (data, isBinary) => ...)` infers the arguments.
 * Events not named there (a Readable's 'end', 'data' ...) fall through to `AnyListener`, as in
 * Node's own declarations. Types only: nothing here exists at run time.
 */

import type { Duplex } from '../stages/streams';

/** A listener of an event the `...Events` interface does not name. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyListener = (...args: any[]) => void;

/** The listener methods typed from the events `Ev`; `this` is the class that extends `Emitting`. */
export interface Listeners<Ev> {
  on<E extends keyof Ev>(event: E, listener: Ev[E]): this;
  on(event: string | symbol, listener: AnyListener): this;
  once<E extends keyof Ev>(event: E, listener: Ev[E]): this;
  once(event: string | symbol, listener: AnyListener): this;
  addListener<E extends keyof Ev>(event: E, listener: Ev[E]): this;
  addListener(event: string | symbol, listener: AnyListener): this;
  prependListener<E extends keyof Ev>(event: E, listener: Ev[E]): this;
  prependListener(event: string | symbol, listener: AnyListener): this;
  prependOnceListener<E extends keyof Ev>(event: E, listener: Ev[E]): this;
  prependOnceListener(event: string | symbol, listener: AnyListener): this;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Constructor = abstract new (...args: any[]) => object;

/**
 * The base class `B` (its statics and constructor) whose instances have the listener methods
 * typed from `Ev` before `I`'s (B's instances unless told). A cast of the base itself, types only:
 * `class WebSocket extends (Duplex as Emitting<typeof Duplex, WebSocketEvents, ...>)` extends Duplex.
 */
export type Emitting<B extends Constructor, Ev, I = InstanceType<B>> = Omit<B, 'prototype'> &
  (abstract new (...args: ConstructorParameters<B>) => Listeners<Ev> & I);

/**
 * Node's Duplex with only the catch-all listener methods: the `I` of an Emitting Duplex whose events
 * share names with Duplex's own ('close', 'error', 'drain'). TypeScript tries the overloads with a
 * literal parameter (Duplex's `on(event: 'close', listener: () => void)`) before all others, and a
 * listener tried against one keeps its parameter types: `ws.on('close', (code, reason) => ...)`
 * would get `() => void`'s. Here Duplex's own overloads are hidden, so Listeners' come first.
 */
export interface PlainDuplex extends Duplex {
  on(event: string | symbol, listener: AnyListener): this;
  once(event: string | symbol, listener: AnyListener): this;
  addListener(event: string | symbol, listener: AnyListener): this;
  prependListener(event: string | symbol, listener: AnyListener): this;
  prependOnceListener(event: string | symbol, listener: AnyListener): this;
}
