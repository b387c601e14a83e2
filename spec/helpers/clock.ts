import { performance } from 'node:perf_hooks';

/**
 * Calls of performance.now() while `run` runs: how many reads the fairness rules timed
 * (lib/connection/turn.ts: turnClock and turnTookLong read that clock).
 */
export function clockReadings(run: () => void): number {
  const now = performance.now;
  let readings = 0;
  performance.now = function (this: typeof performance): number {
    readings++;
    return now.call(this);
  };
  try {
    run();
  } finally {
    performance.now = now;
  }
  return readings;
}
