/**
 * The browser-style half of ws's WebSocket: `onopen`/`onmessage`/`onclose`/`onerror` and
 * `addEventListener`/`removeEventListener`, over the EventEmitter events. The event objects
 * carry what the browser's do: `data` (message), `code`/`reason`/`wasClean` (close),
 * `error`/`message` (error), and `type` and `target` on all.
 */
import type { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';

export type BrowserEventType = 'open' | 'message' | 'close' | 'error';

export interface WsEvent {
  type: BrowserEventType;
  target: unknown;
}
export interface WsMessageEvent extends WsEvent {
  data: unknown;
}
export interface WsCloseEvent extends WsEvent {
  code: number;
  reason: string;
  wasClean: boolean;
}
export interface WsErrorEvent extends WsEvent {
  error: unknown;
  message: string;
}

type BrowserListener = ((event: never) => void) | { handleEvent(event: never): void };

/** Marks the EventEmitter listeners made for browser-style listeners, to find them again. */
const kBrowserListener = Symbol('wspipe.ws.browserListener');
const kAttribute = Symbol('wspipe.ws.attribute');
type Wrapped = ((...args: unknown[]) => void) & { [kBrowserListener]?: BrowserListener; [kAttribute]?: boolean };

/** Abnormal closure (RFC 6455 §7.4.1): the connection was not closed cleanly. */
const ABNORMAL = 1006;

function makeEvent(type: BrowserEventType, target: unknown, args: unknown[]): WsEvent {
  switch (type) {
    case 'message':
      return { type, target, data: args[0] } as WsMessageEvent;
    case 'close': {
      const code = args[0] as number;
      return { type, target, code, reason: (args[1] as Buffer).toString(), wasClean: code !== ABNORMAL } as WsCloseEvent;
    }
    case 'error': {
      const error = args[0] as Error;
      return { type, target, error, message: error.message } as WsErrorEvent;
    }
    default:
      return { type, target };
  }
}

export class BrowserEvents extends EventEmitter {
  get onopen(): ((event: WsEvent) => void) | null {
    return this.attribute('open') as ((event: WsEvent) => void) | null;
  }
  set onopen(listener: ((event: WsEvent) => void) | null) {
    this.setAttribute('open', listener);
  }
  get onmessage(): ((event: WsMessageEvent) => void) | null {
    return this.attribute('message') as ((event: WsMessageEvent) => void) | null;
  }
  set onmessage(listener: ((event: WsMessageEvent) => void) | null) {
    this.setAttribute('message', listener);
  }
  get onclose(): ((event: WsCloseEvent) => void) | null {
    return this.attribute('close') as ((event: WsCloseEvent) => void) | null;
  }
  set onclose(listener: ((event: WsCloseEvent) => void) | null) {
    this.setAttribute('close', listener);
  }
  get onerror(): ((event: WsErrorEvent) => void) | null {
    return this.attribute('error') as ((event: WsErrorEvent) => void) | null;
  }
  set onerror(listener: ((event: WsErrorEvent) => void) | null) {
    this.setAttribute('error', listener);
  }

  /** Adds a listener (a function or an object with handleEvent) unless it is there already; `once` is honoured. */
  addEventListener(type: BrowserEventType, listener: BrowserListener, options: { once?: boolean } = {}): void {
    if (this.findWrapped(type, listener, false) !== null) return;
    const wrapped = this.wrap(type, listener, false);
    if (options.once === true) this.once(type, wrapped);
    else this.on(type, wrapped);
  }

  removeEventListener(type: BrowserEventType, listener: BrowserListener): void {
    const wrapped = this.findWrapped(type, listener, false);
    if (wrapped !== null) this.removeListener(type, wrapped);
  }

  private wrap(type: BrowserEventType, listener: BrowserListener, attribute: boolean): Wrapped {
    const wrapped: Wrapped = (...args: unknown[]): void => {
      const event = makeEvent(type, this, args) as never;
      if (typeof listener === 'function') listener.call(this, event);
      else listener.handleEvent(event);
    };
    wrapped[kBrowserListener] = listener;
    wrapped[kAttribute] = attribute;
    return wrapped;
  }

  private findWrapped(type: BrowserEventType, listener: BrowserListener | null, attribute: boolean): Wrapped | null {
    for (const raw of this.rawListeners(type) as Wrapped[]) {
      // once() wraps the function: its `listener` property is ours.
      const candidate = ((raw as unknown as { listener?: Wrapped }).listener ?? raw) as Wrapped;
      if (candidate[kAttribute] === attribute && (listener === null || candidate[kBrowserListener] === listener)) return candidate;
    }
    return null;
  }

  private attribute(type: BrowserEventType): BrowserListener | null {
    return this.findWrapped(type, null, true)?.[kBrowserListener] ?? null;
  }

  private setAttribute(type: BrowserEventType, listener: unknown): void {
    const current = this.findWrapped(type, null, true);
    if (current !== null) this.removeListener(type, current);
    if (typeof listener === 'function') this.on(type, this.wrap(type, listener as BrowserListener, true));
  }
}

