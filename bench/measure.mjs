// What the benches share: measuring `mailagent run --print` under GNU `/usr/bin/time -f '%U %S %M'`
// with a config in a temp dir (bench/hostile.mjs, bench/transfer.mjs, bench/memory.mjs), and
// reading a running agent's memory and CPU from /proc (bench/watch.mjs). Not a bench itself.
//
// - the command line: valueOf(flag), binaryPath() for `--bin PATH` (default dist/mailagent),
//   childEnv() for `--keep-env` (otherwise the children run without NODE_EXTRA_CA_CERTS and
//   NODE_OPTIONS, see bench/startup.mjs for why); checkTools(bin) exits when the binary (1) or
//   GNU time (0, nothing measured) is missing
// - openTempDir(name, env): the temp dir (removed at exit, on SIGINT / SIGTERM too), its in/
//   folder for inputs (writeInput) and the runners whose children run in it: runOnce (any command
//   line as prefix, own process group, killed at the timeout) and timed (under GNU time: CPU s =
//   %U + %S, peak RSS = %M, reply size = the bytes written to stdout)
// - writeConfig(dir, { limits, security, services }): agent@example.com, state and audit in the
//   temp dir, the only user ops@example.com (role admin), rate limits high enough for every input
//   to be answered; the bench adds its own limits, security and services
// - mail: now() for Date, messageId(tag) unique per run, restamp(bytes, tag) for fixtures,
//   mailHead(...) for generated mails from ops@example.com, lcgBytes(n) for attachments
// - a long-running process, from /proc: in bench/proc.mjs, exported from here as well
// - the report: median, fmtBytes / fmtCpu / fmtRss, table, footer
//
// Node built-ins only.

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export * from './proc.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const TIME = '/usr/bin/time';
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const TIMEOUT_MS = 60_000;
export const CRLF = '\r\n';
export const FROM = 'Ops <ops@example.com>';
export const HELP_MAIL = join(ROOT, 'examples', '01-help.eml');

// ---------------------------------------------------------------- the command line and the tools

const argv = process.argv.slice(2);

/** The word after flag; undefined without the flag, exit 1 when no value follows it. */
export function valueOf(flag) {
  const i = argv.indexOf(flag);
  if (i < 0) return undefined;
  if (i + 1 >= argv.length || argv[i + 1].startsWith('--')) {
    console.error(`bench: ${flag} needs a value`);
    process.exit(1);
  }
  return argv[i + 1];
}

/** A path as the user would type it: relative to the working directory when below it. */
export function show(p) {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}

/** --bin PATH, or dist/mailagent. */
export const binaryPath = () => resolve(valueOf('--bin') ?? join(ROOT, 'dist', 'mailagent'));

/** Exit 1 without the binary; exit 0, nothing measured, without GNU time. */
export function checkTools(bin) {
  if (!existsSync(bin)) {
    console.error(`bench: ${show(bin)} not found: run \`npm run build\` first`);
    process.exit(1);
  }
  const timeVersion = existsSync(TIME) ? spawnSync(TIME, ['--version'], { encoding: 'utf8' }) : undefined;
  if (!timeVersion || !/GNU/.test(`${timeVersion.stdout}${timeVersion.stderr}`)) {
    console.log(`bench: ${TIME} (GNU time) not found: install the Debian package \`time\` (apt-get install time); nothing measured`);
    process.exit(0);
  }
}

/** The children's environment: this one without NODE_EXTRA_CA_CERTS and NODE_OPTIONS unless --keep-env. */
export function childEnv() {
  const removed = argv.includes('--keep-env') ? [] : ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS'].filter((k) => process.env[k] !== undefined);
  const env = { ...process.env };
  for (const k of removed) delete env[k];
  return { env, removed };
}

// ---------------------------------------------------------------- the temp dir, its config and the runs

/**
 * A temp dir mailagent-bench-NAME-* (removed at exit), with in/ for the inputs, and the runners
 * whose children work in it with env.
 */
export function openTempDir(name, env) {
  const dir = mkdtempSync(join(tmpdir(), `mailagent-bench-${name}-`));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
  const inputs = join(dir, 'in');
  mkdirSync(inputs);

  function writeInput(file, bytes) {
    const path = join(inputs, file);
    writeFileSync(path, bytes);
    return path;
  }

  /**
   * One run of cmd with stdin from a file, under `prefix` (a timing or valgrind command line),
   * in its own process group so that a timeout kills the whole tree. stdout goes to outFile;
   * replied = its headers (the first 64 KiB) hold an In-Reply-To.
   */
  function runOnce(prefix, cmd, args, stdinFile, timeoutMs, outFile = join(dir, 'stdout')) {
    return new Promise((resolvePromise) => {
      const stdin = stdinFile ? openSync(stdinFile, 'r') : 'ignore';
      const stdout = openSync(outFile, 'w');
      const child = spawn(prefix[0], [...prefix.slice(1), cmd, ...args], { cwd: dir, env, stdio: [stdin, stdout, 'pipe'], detached: true });
      let stderr = '';
      child.stderr.on('data', (d) => {
        if (stderr.length < 1 << 20) stderr += d;
      });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {}
      }, timeoutMs);
      const done = (status, signal, error) => {
        clearTimeout(timer);
        if (typeof stdin === 'number') closeSync(stdin);
        closeSync(stdout);
        const replyBytes = statSync(outFile).size;
        // Only the head is read (a reply can be large): its headers say whether it is a reply.
        const head = Buffer.alloc(Math.min(replyBytes, 64 * KiB));
        if (head.length) {
          const fd = openSync(outFile, 'r');
          readSync(fd, head, 0, head.length, 0);
          closeSync(fd);
        }
        resolvePromise({ status, signal, error, timedOut, stderr, replyBytes, replied: /^In-Reply-To: /m.test(head.toString('latin1')) });
      };
      child.on('error', (e) => done(null, null, e));
      child.on('close', (status, signal) => done(status, signal));
    });
  }

  /** `cmd args < stdinFile` under GNU time: { cpu, rssKiB, replyBytes, replied, outFile, failed? }. */
  async function timed(cmd, args, stdinFile) {
    const tfile = join(dir, 'time');
    const outFile = join(dir, 'stdout');
    rmSync(tfile, { force: true });
    const r = await runOnce([TIME, '-f', '%U %S %M', '-o', tfile], cmd, args, stdinFile, TIMEOUT_MS, outFile);
    const res = { ...r, outFile };
    if (r.timedOut) return { ...res, failed: `timeout >${TIMEOUT_MS / 1000} s` };
    if (r.error) return { ...res, failed: r.error.message };
    const out = existsSync(tfile) ? readFileSync(tfile, 'utf8').trim().split('\n') : [];
    const m = /^([\d.]+) ([\d.]+) (\d+)$/.exec(out.at(-1) ?? '');
    if (!m) return { ...res, failed: `no timing (${out.join(' ') || 'empty'})` };
    Object.assign(res, { cpu: Number(m[1]) + Number(m[2]), rssKiB: Number(m[3]) });
    if (r.status !== 0) {
      const why = /terminated by signal (\d+)/.exec(out.join(' '));
      const msg = r.stderr.trim().split('\n').filter(Boolean).at(-1)?.slice(0, 120) ?? 'no message';
      res.failed = `${why ? `signal ${why[1]}` : `exit ${r.status}`}: ${msg}`;
    }
    return res;
  }

  return { dir, inputs, writeInput, runOnce, timed };
}

/**
 * dir/config.json: agent@example.com, state and audit under dir/state, the only user
 * ops@example.com (role admin; no security.dkim, so the baseline evidence is `allowlist`) and
 * rate limits high enough that every input is answered; limits, security (merged with the rate
 * limits) and services are the bench's own. Returns the path.
 */
export function writeConfig(dir, { limits, security, services }) {
  const config = join(dir, 'config.json');
  const json = {
    agent: { address: 'agent@example.com', name: 'mailagent' },
    state: { path: 'state/state.db' },
    audit: { path: 'state/audit.jsonl' },
    users: [{ address: 'ops@example.com', name: 'Operations', roles: ['admin'] }],
    roles: { admin: ['*'] },
    ...(limits && { limits }),
    security: { ...security, messagesPerUserPerHour: 1_000_000, repliesPerHour: 1_000_000 },
    services,
  };
  writeFileSync(config, JSON.stringify(json, null, 2));
  return config;
}

// ---------------------------------------------------------------- the mails

/** A Date header's value for now. */
export const now = () => new Date().toUTCString().replace('GMT', '+0000');

let serial = 0;
/** A Message-ID not used before in this run: <bench-N-tag@example.com>. */
export const messageId = (tag) => `<bench-${++serial}-${tag.replace(/[^A-Za-z0-9.-]/g, '_')}@example.com>`;
/** How many Message-IDs messageId has given so far. */
export const messageIds = () => serial;

/** A fixture as it is, but with every Date header set to now and every Message-ID made unique. */
export function restamp(bytes, tag) {
  const text = bytes.toString('latin1');
  const m = /\r?\n\r?\n/.exec(text);
  const cut = m ? m.index : text.length;
  const head = text
    .slice(0, cut)
    .replace(/^Date:[^\n]*(\n[ \t][^\n]*)*/gim, (line) => `Date: ${now()}${line.endsWith('\r') ? '\r' : ''}`)
    .replace(/^Message-ID:[^\n]*(\n[ \t][^\n]*)*/gim, (line) => `Message-ID: ${messageId(tag)}${line.endsWith('\r') ? '\r' : ''}`);
  return Buffer.from(head + text.slice(cut), 'latin1');
}

/**
 * The header of a mail from ops@example.com to agent@example.com, Date now and a unique
 * Message-ID, ending in the empty line: `headers` go before MIME-Version, `after` after
 * Content-Type.
 */
export function mailHead({ tag, subject, type, headers = [], after = [] }) {
  return [
    `From: ${FROM}`,
    'To: agent@example.com',
    `Subject: ${subject}`,
    `Date: ${now()}`,
    `Message-ID: ${messageId(tag)}`,
    ...headers,
    'MIME-Version: 1.0',
    `Content-Type: ${type}`,
    ...after,
    '',
    '',
  ].join(CRLF);
}

/** n deterministic bytes (no randomness): a 32-bit LCG (Numerical Recipes constants), its high byte each step. */
export function lcgBytes(n, seed = 0x2545f491) {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

// ---------------------------------------------------------------- the report

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const fmtBytes = (b) => (b === undefined ? '-' : b >= MiB ? `${(b / MiB).toFixed(2)} MiB` : b >= KiB ? `${(b / KiB).toFixed(1)} KiB` : `${b} B`);
export const fmtCpu = (r) => (r.cpu === undefined ? '-' : r.cpu.toFixed(2));
export const fmtRss = (r) => (r.rssKiB === undefined ? '-' : (r.rssKiB / KiB).toFixed(1));

/** rows[0] is the heading; the columns whose index is in right are right-aligned. */
export function table(rows, right) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)));
  const line = (row) =>
    row
      .map((cell, i) => (right.includes(i) ? String(cell).padStart(widths[i]) : String(cell).padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  console.log(line(rows[0]));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows.slice(1)) console.log(line(row));
}

/** The last lines of a report: how many rows are over the goal, and what the environment lost. */
export function footer(over, removed) {
  console.log();
  console.log(over ? `${over} row(s) over the goal` : 'every row within the goal');
  if (removed.length) console.log(`(ran without ${removed.join(', ')} from this environment; --keep-env to keep them)`);
}
