/**
 * A WebSocket's taps and diagnostics hooks: the tap points (made on the first tap()), connected
 * to the Receiver's frame observer and the Sender's taps, with the wspipe:websocket:frame
 * channel published around them. Functions of the connection (see connection-state.ts).
 */
import { type Tap, type TapOptions, TapPoint } from '../stages/tap';
import { Flag } from './connection-state';
import type { TapDirection, TapLayer } from './websocket-types';
import { onDrain } from './outbound';
import { publishFrame } from './diagnostics';
import { resumeTransport } from './inbound';
import { ReadHold } from './connection-core';
import type { WebSocket } from './websocket';

/** Connects the tap points to the receiver and sender (now, or at attach). */
export function hookTaps(ws: WebSocket): void {
  const points = ws.tapPoints;
  if (points === null || ws.receiver === null || ws.sender === null) return;
  ws.receiver.frameObserver = (frame) => offerInbound(ws, points.in.frames, frame);
  ws.sender.taps = { frame: (frame) => points.out.frames.offer(frame), bytes: (chunk) => points.out.bytes.offer(chunk) };
  if (ws.has(Flag.FrameDiagnostics)) hookFrameDiagnostics(ws);
}

/** wspipe:websocket:frame had subscribers at attach: every frame is published (around the taps, if any). */
export function hookFrameDiagnostics(ws: WebSocket): void {
  const receiver = ws.receiver!;
  const sender = ws.sender!;
  ws.setFlag(Flag.FrameDiagnostics, true);
  const tapIn = receiver.frameObserver;
  const tapsOut = sender.taps;
  receiver.frameObserver = (frame) => {
    publishFrame(ws, 'in', frame);
    tapIn?.(frame);
  };
  sender.taps = {
    frame: (frame) => {
      publishFrame(ws, 'out', frame);
      return tapsOut === null || tapsOut.frame(frame);
    },
    bytes: (chunk) => tapsOut === null || tapsOut.bytes(chunk),
  };
}

export function inboundTapsBlocked(ws: WebSocket): boolean {
  const taps = ws.tapPoints!.in;
  return taps.bytes.blocked || taps.frames.blocked || taps.messages.blocked;
}

/** Offers an inbound value to a tap point; a blocking tap that is full pauses the transport. */
export function offerInbound<T>(ws: WebSocket, point: TapPoint<T>, value: T): void {
  if (!point.active) return;
  if (!point.offer(value)) ws.core.hold(ReadHold.Reader);
}

/** WebSocket.tap(): makes the tap points on first use and adds a tap to one. */
export function openTap(ws: WebSocket, layer: TapLayer, direction: TapDirection, options: TapOptions): Tap<unknown> {
  let points = ws.tapPoints;
  if (points === null) {
    const resume = (): void => resumeTransport(ws);
    const drain = (): void => onDrain(ws);
    const inbound = (): TapPoint<never> => new TapPoint(resume);
    const outbound = (): TapPoint<never> => new TapPoint(drain);
    points = ws.more().tapPoints = {
      in: { bytes: inbound(), frames: inbound(), messages: inbound() },
      out: { bytes: outbound(), frames: outbound(), messages: outbound() },
    };
    hookTaps(ws);
  }
  return (points[direction][layer] as TapPoint<unknown>).add(options);
}
