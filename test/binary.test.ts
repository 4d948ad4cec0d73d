import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// The built executable, alone in an empty directory: no node_modules, no sources, no package.json.
const ROOT = resolve(__dirname, '..');
const BUILT = join(ROOT, 'dist', 'mailagent');
const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

let dir = '';
let bin = '';

test.before(() => {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), 'mailagent-bin-'));
  bin = join(dir, 'mailagent');
  copyFileSync(BUILT, bin);
  mkdirSync(join(dir, 'home'));
});

test.after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function mailagent(...args: string[]) {
  return mailagentAt(bin, {}, ...args);
}

function mailagentAt(path: string, env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(path, args, {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home'), ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--version prints the package version', () => {
  const r = mailagent('--version');
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout.trim(), version);
});

test('--help lists the four subcommands with their descriptions', () => {
  const r = mailagent('--help');
  assert.is(r.status, 0, r.stderr);
  for (const name of ['watch', 'run', 'users', 'test-service']) {
    // "  mailagent users <action> [address]  Manage the allow list: ..."
    const line = new RegExp(`^\\s*mailagent ${name}(?=[\\s<\\[]).*?\\s{2,}\\w{3,}`, 'm');
    assert.match(r.stdout, line, `no described "${name}" command in:\n${r.stdout}`);
  }
  assert.not.match(r.stderr, /ExperimentalWarning|single-executable/i, 'SEA warning leaked to stderr');
});

test('an unknown subcommand is a usage error (64)', () => {
  const r = mailagent('frobnicate');
  assert.is(r.status, 64, r.stderr);
  assert.match(r.stderr, /frobnicate/);
});

test('messages never come from translation files beside the executable', () => {
  // yargs would look for <executable>/../../../locales/<LANG>.json: outside the product.
  const deep = join(dir, 'a', 'b', 'c');
  mkdirSync(deep, { recursive: true });
  copyFileSync(bin, join(deep, 'mailagent'));
  mkdirSync(join(dir, 'locales'));
  const planted = JSON.stringify({ 'Commands:': 'PLANTED', 'Unknown argument: %s': 'PLANTED %s' });
  writeFileSync(join(dir, 'locales', 'fr.json'), planted);
  writeFileSync(join(dir, 'locales', 'fr_FR.json'), planted);
  const help = mailagentAt(join(deep, 'mailagent'), { LANG: 'fr_FR.UTF-8', LC_ALL: 'fr_FR.UTF-8' }, '--help');
  assert.is(help.status, 0, help.stderr);
  assert.match(help.stdout, /^Commands:/m);
  const bad = mailagentAt(join(deep, 'mailagent'), { LANG: 'fr_FR.UTF-8', LC_ALL: 'fr_FR.UTF-8' }, 'frobnicate');
  assert.not.match(`${help.stdout}${bad.stderr}`, /PLANTED/);
});

test('watch is not available yet (69)', () => {
  const r = mailagent('watch');
  assert.is(r.status, 69, r.stderr);
});

test.run();
