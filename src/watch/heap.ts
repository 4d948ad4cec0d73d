import * as v8 from 'node:v8';

/**
 * V8 doubles the young generation (the new space, where short-lived objects go) whenever a
 * scavenge finds it busy, up to 32 MiB on 64-bit systems. A mail agent's garbage is per message
 * and small, so beyond 16 MiB the extra space buys little speed and costs as much memory as the
 * rest of the heap: once the new space has reached the cap it stops growing. The executable cannot
 * take --max-semi-space-size (it starts without Node's command-line flags); the growth factor is
 * read at every resize, so setting it at run time works.
 */
export const YOUNG_GENERATION_CAP_BYTES = 16 * 1024 * 1024;

let capped = false;

/** Stops the new space from growing once it holds YOUNG_GENERATION_CAP_BYTES; cheap enough to call per message. */
export function capYoungGeneration(): boolean {
  if (capped) return true;
  const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  if (!newSpace || newSpace.space_size < YOUNG_GENERATION_CAP_BYTES) return false;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  capped = true;
  return true;
}
