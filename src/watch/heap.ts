import * as v8 from 'node:v8';

/**
 * The heap policy of the long-running agent. Both settings are V8 flags read at every resize or
 * collection, so setting them at run time works; the executable cannot take them on its command
 * line (it starts without Node's flags).
 */

/**
 * V8 doubles the young generation (the new space, where short-lived objects go) whenever a
 * scavenge finds it busy, up to 32 MiB on 64-bit systems. A mail agent's garbage is per message
 * and small, so beyond 16 MiB the extra space buys little speed and costs as much memory as the
 * rest of the heap: once the new space has reached the cap it stops growing.
 */
export const YOUNG_GENERATION_CAP_BYTES = 16 * 1024 * 1024;

/**
 * After a full collection V8 lets the old generation grow to up to 4× what survived before the
 * next one, when collections look cheap. The agent keeps about 15 MiB alive, yet under a backlog
 * its old generation grew to 40 MiB of mostly garbage before it was collected: the agent's peak
 * RSS. At 1.5× a full collection comes every few hundred messages and takes 5–20 ms.
 */
export const OLD_GENERATION_GROWTH_PERCENT = 50;

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

/** From the next full collection on, the old generation may grow by OLD_GENERATION_GROWTH_PERCENT before another. */
export function limitOldGenerationGrowth(): void {
  v8.setFlagsFromString(`--heap-growing-percent=${OLD_GENERATION_GROWTH_PERCENT}`);
}
