/**
 * The echo rate of one or more connections, in one process: each keeps `inFlight` messages in
 * flight (every echo sends the next), counted for `durationMs` after a 300 ms warm-up; then
 * every endpoint's last echo is awaited. Shared by bench/diagnostics.ts and bench/http2.ts.
 */
import { performance } from 'node:perf_hooks';

export interface EchoEndpoint<T> {
  send(data: T): void;
  onMessage(listener: () => void): void;
}

/** Messages per second, all endpoints together. */
export async function echoRate<T>(endpoints: ReadonlyArray<EchoEndpoint<T>>, payload: T, inFlight: number, durationMs: number): Promise<number> {
  let received = 0;
  let counting = false;
  let stop = false;
  let pending = endpoints.length;
  let done: (() => void) | null = null;
  for (const endpoint of endpoints) {
    let finished = false;
    endpoint.onMessage(() => {
      if (counting) received++;
      if (stop) {
        if (!finished) {
          finished = true;
          if (--pending === 0) done?.();
        }
        return;
      }
      endpoint.send(payload);
    });
    for (let i = 0; i < inFlight; i++) endpoint.send(payload);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  counting = true;
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, durationMs));
  counting = false;
  const elapsed = performance.now() - start;
  stop = true;
  await new Promise<void>((resolve) => (done = resolve));
  return (received / elapsed) * 1000;
}
