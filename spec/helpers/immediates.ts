/**
 * Runs `turns` turns of the event loop, calling `feed(turn)` at the start of each, and returns how
 * many times anything but the turns' own waits called setImmediate meanwhile.
 */
export async function immediatesOver(turns: number, feed: (turn: number) => void): Promise<number> {
  const immediate = global.setImmediate;
  let scheduled = 0;
  global.setImmediate = ((...args: Parameters<typeof setImmediate>) => (scheduled++, immediate(...args))) as typeof setImmediate;
  try {
    for (let turn = 0; turn < turns; turn++) {
      feed(turn);
      await new Promise((resolve) => immediate(resolve));
    }
  } finally {
    global.setImmediate = immediate;
  }
  return scheduled;
}
