import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

// In a child process: the cap is process-wide and cannot be undone.
const ROOT = join(__dirname, '..');
const SCRIPT = `
const v8 = require('node:v8');
const { capYoungGeneration } = require(${JSON.stringify(join(ROOT, 'src/watch/heap.ts'))});
const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
const capAt = [];
let keep = [];
for (let i = 0; i < 4e6; i++) {
  keep.push({ text: 'message ' + i, parts: [i, i + 1] });
  if (keep.length > 20000) keep = [];
  if (process.argv[1] === 'cap' && i % 1000 === 0 && capYoungGeneration() && capAt.length === 0) capAt.push(newSpace());
}
console.log(JSON.stringify({ capAt: capAt[0], end: newSpace() }));
`;

const MiB = 1024 * 1024;

function run(mode: 'cap' | 'plain'): { capAt?: number; end: number } {
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', SCRIPT, mode], { cwd: ROOT, encoding: 'utf8' });
  assert.is(child.status, 0, child.stderr);
  return JSON.parse(child.stdout);
}

test('the young generation stops growing once it reached the cap; without it, V8 doubles it to 32 MiB', () => {
  const plain = run('plain');
  assert.is(plain.end, 32 * MiB, 'the premise: this workload makes V8 grow the new space to its maximum');
  const capped = run('cap');
  assert.is(capped.capAt, 16 * MiB);
  assert.is(capped.end, 16 * MiB);
});

// Objects that live through a few scavenges (a 1 MiB new space makes that quick) and then die in
// the old generation, beside 100 000 that stay: how large the old space gets before collected.
const OLD_GENERATION_SCRIPT = `
const v8 = require('node:v8');
const { limitOldGenerationGrowth } = require(${JSON.stringify(join(ROOT, 'src/watch/heap.ts'))});
if (process.argv[1] === 'limit') limitOldGenerationGrowth();
const oldSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_size;
const kept = Array.from({ length: 100000 }, (_, i) => ({ id: i, text: 'kept ' + i }));
let peak = 0;
const recent = [];
for (let round = 0; round < 5000; round++) {
  recent.push(Array.from({ length: 3000 }, (_, i) => ({ round, i, text: 'message ' + round + ' ' + i })));
  if (recent.length > 8) recent.shift();
  peak = Math.max(peak, oldSpace());
}
console.log(JSON.stringify({ peak, kept: kept.length }));
`;

function oldGenerationPeak(mode: 'limit' | 'plain'): number {
  const child = spawnSync(process.execPath, ['--max-semi-space-size=1', '--import', 'tsx', '-e', OLD_GENERATION_SCRIPT, mode], { cwd: ROOT, encoding: 'utf8' });
  assert.is(child.status, 0, child.stderr);
  return JSON.parse(child.stdout).peak;
}

test('with the growth limit the old generation peaks far below what V8 alone lets it reach', () => {
  const plain = oldGenerationPeak('plain');
  const limited = oldGenerationPeak('limit');
  assert.ok(plain > 60 * MiB, `the premise: V8 alone lets this workload's old space reach ${(plain / MiB).toFixed(1)} MiB`);
  assert.ok(limited < plain * 0.6, `old space peak ${(limited / MiB).toFixed(1)} MiB with the limit, ${(plain / MiB).toFixed(1)} MiB without`);
});

test.run();
