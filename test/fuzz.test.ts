import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { processMessage } from '../src/core/pipeline';
import type { Outcome } from '../src/core/outcome';
import { closeDatabases } from '../src/services/db';
import { MemoryStore } from '../src/state/store';
import { FIXED_NOW, ROOT, tempDir } from './support/env';
import { DkimKeys, recordingServices, securityConfig } from './support/hostile';

// Mutation fuzzing of processMessage. Messages from the hostile corpus and the valid examples
// are signed (or not), then mutated at byte, header and MIME level with a seeded PRNG:
//   FUZZ_SEED=123 FUZZ_COUNT=20000 npx uvu -r tsx test 'fuzz\.test\.ts$'
// replays one run exactly (the DKIM keys are generated per run, so signature bytes differ, but
// every mutation and its position are the same). Asserted for every message: processMessage
// resolves (never throws, never hangs) with a well-formed outcome, and no service action runs
// unless the sender is authenticated: exactly one From header naming a user on the allow list,
// and a DKIM signature that passes for that user's domain (the baseline of this config; no
// one-time code in these messages is valid).

const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const COUNT = Number(process.env.FUZZ_COUNT ?? 5000);
/** When set, a folder that receives each failing message as <index>.eml and the slowest as slowest.eml, to replay them by hand. */
const DUMP = process.env.FUZZ_DUMP;
/** Far above any real processing time: only a hang trips it. */
const HANG_MS = 30_000;
/** Sources bigger than this (the 1 MiB header case) would make every mutation of them slow. */
const MAX_SOURCE_BYTES = 256 * 1024;

const USERS = ['ops@example.com', 'helpdesk@example.com'];
const CRLF = '\r\n';

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(list: readonly T[]): T => list[int(list.length)], chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

function sources(): { name: string; raw: Buffer }[] {
  const from = (dir: string, filter: (f: string) => boolean) =>
    readdirSync(dir)
      .filter((f) => f.endsWith('.eml') && filter(f))
      .map((f) => ({ name: f, raw: readFileSync(join(dir, f)) }));
  const all = [
    ...from(join(__dirname, 'fixtures', 'hostile'), () => true),
    ...from(join(ROOT, 'examples'), () => true),
    ...from(join(__dirname, 'fixtures', 'mail'), () => true),
  ].filter((s) => s.raw.length <= MAX_SOURCE_BYTES);
  // Placeholders get values no check accepts: 000000 is no valid code at the fixed clock.
  return all.map((s) => ({
    name: s.name,
    raw: Buffer.from(s.raw.toString('latin1').replace(/\{\{OTP\}\}/g, '000000').replace(/\{\{TOKEN\}\}/g, 'f'.repeat(32)).replace(/\{\{N\}\}/g, '1'), 'latin1'),
  }));
}

// ------------------------------------------------------------------------------------ mutations

const SPLIT = /\r?\n\r?\n/;

function splitMessage(raw: Buffer): { fields: string[]; body: string } {
  const text = raw.toString('latin1');
  const m = SPLIT.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? text.slice(m.index + m[0].length) : '';
  // One entry per field, continuation lines kept with their field.
  const fields = head.split(/\r?\n(?![ \t])/).filter((f) => f !== '');
  return { fields, body };
}

const join2 = (fields: string[], body: string) => Buffer.from(`${fields.join(CRLF)}${CRLF}${CRLF}${body}`, 'latin1');
const fieldName = (f: string) => f.slice(0, Math.max(0, f.indexOf(':'))).trim().toLowerCase();

const CHARSETS = ['utf-8', 'utf-16le', 'utf-16be', 'utf-7', 'iso-2022-jp', 'shift_jis', 'koi8-r', 'windows-1252', 'iso-8859-8-i', 'gb18030', 'x-no-such-charset', '', '"', 'utf-8"; x="'];
const STRANGERS = ['mallory@evil.example', '"ops@example.com" <evil@x.example>', 'ops@example.com, evil@x.example', 'team: ops@example.com, evil@x.example;', '<>', 'ops@example.com.evil.example', 'OPS@EXAMPLE.COM', 'ops@example.com (ops)', 'ops@exаmple.com', '=?utf-8?b?b3BzQGV4YW1wbGUuY29t?= <evil@x.example>', ''];
const HEADERS = [
  'Auto-Submitted: no',
  'Auto-Submitted: auto-generated',
  'Precedence: list',
  'List-Id: <x.example>',
  'X-Loop: agent@example.com',
  'Return-Path: <>',
  'Authentication-Results: mx.example.com; dkim=pass header.d=example.com',
  'DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=hostile; h=from; bh=AAAA; b=AAAA',
  'Content-Transfer-Encoding: base64',
  'Content-Transfer-Encoding: quoted-printable',
  'Content-Transfer-Encoding: x-uuencode',
  'Content-Type: multipart/mixed',
  'Content-Type: multipart/alternative; boundary=""',
  'Content-Type: text/html',
  'Content-Type: message/rfc822',
  'MIME-Version: 1.0',
  'Date: 25 Nov 2026 10:00:00 +0000',
  'Date: not a date',
  'Message-ID: <>',
  'Subject: =?utf-8?q?db_tables?=',
  'Subject: =?x-unknown?b?////?=',
];

const randomBytes = (rng: Rng, n: number) => Buffer.from(Array.from({ length: n }, () => rng.int(256)));
const at = (rng: Rng, raw: Buffer) => rng.int(raw.length + 1);

/** Each mutation: a name (for the failure report) and a function of the bytes. */
const MUTATIONS: [string, (raw: Buffer, rng: Rng) => Buffer][] = [
  ['flip bit', (raw, rng) => {
    if (!raw.length) return raw;
    const out = Buffer.from(raw);
    const i = rng.int(out.length);
    out[i] ^= 1 << rng.int(8);
    return out;
  }],
  ['insert bytes', (raw, rng) => {
    const i = at(rng, raw);
    return Buffer.concat([raw.subarray(0, i), randomBytes(rng, 1 + rng.int(16)), raw.subarray(i)]);
  }],
  ['delete range', (raw, rng) => {
    const i = at(rng, raw);
    return Buffer.concat([raw.subarray(0, i), raw.subarray(i + 1 + rng.int(64))]);
  }],
  ['duplicate range', (raw, rng) => {
    const i = at(rng, raw);
    const piece = raw.subarray(i, i + 1 + rng.int(200));
    return Buffer.concat([raw.subarray(0, i), piece, piece, raw.subarray(i + piece.length)]);
  }],
  ['NUL bytes', (raw, rng) => {
    const i = at(rng, raw);
    return Buffer.concat([raw.subarray(0, i), Buffer.alloc(1 + rng.int(8)), raw.subarray(i)]);
  }],
  ['truncate', (raw, rng) => raw.subarray(0, at(rng, raw))],
  ['huge line', (raw, rng) => {
    const i = at(rng, raw);
    const line = rng.chance(0.5) ? Buffer.alloc(4096 + rng.int(120_000), rng.pick([0x41, 0x20, 0x3d, 0x2d, 0x3e])) : randomBytes(rng, 4096 + rng.int(30_000));
    return Buffer.concat([raw.subarray(0, i), line, raw.subarray(i)]);
  }],
  ['CRLF to LF', (raw) => Buffer.from(raw.toString('latin1').replace(/\r\n/g, '\n'), 'latin1')],
  ['duplicate header', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    if (!fields.length) return raw;
    const i = rng.int(fields.length);
    fields.splice(rng.int(fields.length + 1), 0, fields[i]);
    return join2(fields, body);
  }],
  ['remove header', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    if (!fields.length) return raw;
    fields.splice(rng.int(fields.length), 1);
    return join2(fields, body);
  }],
  ['reorder headers', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    for (let i = fields.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [fields[i], fields[j]] = [fields[j], fields[i]];
    }
    return join2(fields, body);
  }],
  ['swap From', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    const value = rng.pick(STRANGERS);
    const i = fields.findIndex((f) => fieldName(f) === 'from');
    if (i >= 0 && rng.chance(0.7)) fields[i] = `From: ${value}`;
    else fields.splice(rng.int(fields.length + 1), 0, `From: ${value}`);
    return join2(fields, body);
  }],
  ['add header', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    fields.splice(rng.int(fields.length + 1), 0, rng.pick(HEADERS));
    return join2(fields, body);
  }],
  ['fold header', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    if (!fields.length) return raw;
    const i = rng.int(fields.length);
    const cut = rng.int(fields[i].length + 1);
    fields[i] = `${fields[i].slice(0, cut)}${CRLF}${rng.pick([' ', '\t', ''])}${fields[i].slice(cut)}`;
    return join2(fields, body);
  }],
  ['random charset', (raw, rng) => {
    const text = raw.toString('latin1');
    const charset = rng.pick(CHARSETS);
    if (/charset=/i.test(text)) return Buffer.from(text.replace(/charset="?[^";\s]*"?/i, `charset=${charset}`), 'latin1');
    const { fields, body } = splitMessage(raw);
    fields.push(`Content-Type: text/plain; charset=${charset}`);
    return join2(fields, body);
  }],
  ['corrupt encoding', (raw, rng) => {
    const text = raw.toString('latin1');
    const cte = rng.pick(['base64', 'quoted-printable', '7bit', 'binary', 'x-gzip', 'base64 (comment)']);
    if (/Content-Transfer-Encoding:/i.test(text)) return Buffer.from(text.replace(/Content-Transfer-Encoding:[^\r\n]*/i, `Content-Transfer-Encoding: ${cte}`), 'latin1');
    const { fields, body } = splitMessage(raw);
    fields.push(`Content-Transfer-Encoding: ${cte}`);
    return join2(fields, rng.chance(0.5) ? `${body}=\r\n=ZZ=0\r\n====` : body);
  }],
  ['corrupt boundary', (raw, rng) => {
    const text = raw.toString('latin1');
    const m = /boundary="?([^";\r\n]+)"?/i.exec(text);
    if (!m) {
      const { fields, body } = splitMessage(raw);
      fields.push(`Content-Type: multipart/mixed; boundary="${rng.pick(['b', '', '--', 'x'.repeat(100)])}"`);
      return join2(fields, `--b\r\nContent-Type: text/plain\r\n\r\n${body}`);
    }
    const boundary = m[1];
    const variants = [
      () => text.split(`--${boundary}--`).join(''),
      () => text.replace(`--${boundary}`, `--${boundary}x`),
      () => text.replace(m[0], 'boundary=""'),
      () => text.split(`--${boundary}`).join(`--${boundary}\r\n--${boundary}`),
      () => text.replace(m[0], `boundary="${boundary.slice(0, -1)}"`),
    ];
    return Buffer.from(rng.pick(variants)(), 'latin1');
  }],
  ['nest multipart', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    const depth = 1 + rng.int(rng.chance(0.1) ? 200 : 5);
    let inner = `Content-Type: text/plain\r\n\r\n${body}`;
    for (let d = 0; d < depth; d++) inner = `Content-Type: multipart/mixed; boundary="n${d}"\r\n\r\n--n${d}\r\n${inner}\r\n--n${d}--\r\n`;
    const kept = fields.filter((f) => !['content-type', 'content-transfer-encoding'].includes(fieldName(f)));
    const [head, ...rest] = inner.split('\r\n\r\n');
    return join2([...kept, 'MIME-Version: 1.0', head], rest.join('\r\n\r\n'));
  }],
  ['encoded-word subject', (raw, rng) => {
    const { fields, body } = splitMessage(raw);
    const word = `=?${rng.pick(CHARSETS) || 'utf-8'}?${rng.pick(['b', 'q', 'x'])}?${randomBytes(rng, 12).toString('base64')}?=`;
    const i = fields.findIndex((f) => fieldName(f) === 'subject');
    if (i >= 0) fields[i] = `Subject: ${word} ${word}`;
    else fields.push(`Subject: ${word}`);
    return join2(fields, body);
  }],
];

function mutate(raw: Buffer, rng: Rng): { raw: Buffer; applied: string[] } {
  const applied: string[] = [];
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    const [name, fn] = rng.pick(MUTATIONS);
    raw = fn(raw, rng);
    applied.push(name);
  }
  return { raw, applied };
}

// ------------------------------------------------------------------------ the authentication oracle

/** From the raw bytes, independently of mailparser: the single From mailbox if it is a user, else undefined. */
function allowListedSender(raw: Buffer): string | undefined {
  const { fields } = splitMessage(raw);
  const from = fields.filter((f) => /^from\s*:/i.test(f));
  if (from.length !== 1) return undefined;
  const value = from[0].slice(from[0].indexOf(':') + 1).replace(/\r?\n[ \t]*/g, ' ');
  // Folding white space inside an angle-addr is allowed (obsolete syntax) and means nothing.
  const angle = [...value.matchAll(/<([^<>]*)>/g)].map((m) => m[1].replace(/[ \t]+/g, ''));
  const bare = value
    .replace(/"(\\.|[^"\\])*"/g, ' ')
    .replace(/\([^()]*\)/g, ' ')
    .split(/[\s\x00-\x1f\x7f<>,;:"()]+/)
    .filter((t) => /^[^@]+@[^@]+$/.test(t));
  const addresses = angle.length ? angle : bare;
  if (addresses.length !== 1) return undefined;
  const address = addresses[0].toLowerCase();
  return USERS.includes(address) ? address : undefined;
}

async function dkimPassesFor(raw: Buffer, domain: string, keys: DkimKeys): Promise<boolean> {
  const { dkimVerify } = require('mailauth/lib/dkim/verify');
  try {
    const { results } = await dkimVerify(raw, { resolver: keys.resolver });
    return results.some((r: { signingDomain?: string; status: { result: string; underSized?: number } }) =>
      r.status.result === 'pass' && !r.status.underSized && r.signingDomain?.toLowerCase() === domain);
  } catch {
    return false;
  }
}

function wellFormed(outcome: Outcome): boolean {
  if (outcome.kind === 'silent') return typeof outcome.reason === 'string' && outcome.reason !== '';
  return outcome.kind === 'reply' && Buffer.isBuffer(outcome.reply.raw) && outcome.reply.envelope.to.length === 1;
}

// ------------------------------------------------------------------------------------------ test

const { dir, cleanup } = tempDir('mailagent-fuzz-');

test(`fuzz: ${COUNT} mutated messages (seed ${SEED}): no crash, no hang, nothing runs for an unauthenticated sender`, async () => {
  console.log(`  fuzz: FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT}`);
  const config = securityConfig(dir, { tweak: (raw) => (raw.security.repliesPerHour = 1_000_000) });
  const keys = new DkimKeys(['example.com', 'x.example']);
  const signed = await Promise.all(sources().map(async (s) => ({ ...s, signed: await keys.sign(s.raw, 'example.com') })));
  assert.ok(signed.length > 100, `only ${signed.length} source messages`);
  const rng = prng(SEED);
  const failures: string[] = [];
  const tally = { silent: 0, reply: 0, executed: 0, internalErrors: 0 };
  const started = performance.now();
  let slowest = { ms: 0, label: '' };
  let dumped = 0;

  for (let i = 0; i < COUNT && failures.length < 10; i++) {
    const source = rng.pick(signed);
    // Signed then mutated (mostly breaks the signature), mutated then signed (authenticated
    // garbage that reaches the deeper stages), or unsigned.
    const mode = rng.pick(['signed, mutated', 'signed, mutated', 'mutated, signed', 'mutated, signed', 'unsigned'] as const);
    const mutated = mutate(mode === 'signed, mutated' ? source.signed : source.raw, rng);
    const raw = mode === 'mutated, signed' ? await keys.sign(mutated.raw, 'example.com') : mutated.raw;
    const label = `#${i} ${source.name} (${mode}) [${mutated.applied.join(', ')}]`;
    const ran: string[] = [];
    const errors: string[] = [];
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    let outcome: Outcome;
    try {
      outcome = await Promise.race([
        processMessage(raw, {
          config,
          now: () => FIXED_NOW,
          store: new MemoryStore(),
          audit: () => undefined,
          services: recordingServices(ran),
          dnsResolver: keys.resolver,
          logError: (m) => errors.push(m),
        }),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no outcome after ${HANG_MS} ms (hang)`)), HANG_MS))),
      ]);
    } catch (err) {
      failures.push(`${label}: threw ${(err as Error).stack ?? err}`);
      if (DUMP) mkdirSync(DUMP, { recursive: true }), writeFileSync(join(DUMP, `${i}.eml`), raw), (dumped = failures.length);
      continue;
    } finally {
      clearTimeout(timer);
    }
    const ms = performance.now() - t0;
    if (ms > slowest.ms) {
      slowest = { ms, label };
      if (DUMP) mkdirSync(DUMP, { recursive: true }), writeFileSync(join(DUMP, 'slowest.eml'), raw);
    }
    if (!wellFormed(outcome)) failures.push(`${label}: malformed outcome ${JSON.stringify(outcome).slice(0, 200)}`);
    tally[outcome.kind]++;
    tally.internalErrors += errors.length;
    if (ran.length) {
      tally.executed++;
      const sender = allowListedSender(raw);
      const authenticated = sender !== undefined && (await dkimPassesFor(raw, sender.split('@')[1], keys));
      if (!authenticated) failures.push(`${label}: ran ${ran.join(', ')} for an unauthenticated sender (${sender ?? 'not one allow-listed From'})`);
    }
    if (DUMP && failures.length > dumped) {
      mkdirSync(DUMP, { recursive: true });
      writeFileSync(join(DUMP, `${i}.eml`), raw);
      dumped = failures.length;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `  fuzz: ${tally.silent} silent, ${tally.reply} replies, ${tally.executed} ran a service action, ${failures.length} failures, ` +
      `${tally.internalErrors} internal errors reported by actions; ${seconds.toFixed(1)} s, slowest ${slowest.ms.toFixed(0)} ms (${slowest.label})`,
  );
  if (failures.length) assert.unreachable(`${failures.length} failure(s); reproduce with FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT}:\n${failures.join('\n')}`);
  // Without executions the "nothing ran" assertion would prove nothing.
  if (COUNT >= 1000) assert.ok(tally.executed > 0, 'no fuzzed message ran anything: the authenticated path was never reached');
});

test.after(async () => {
  await closeDatabases();
  cleanup();
});
test.run();
