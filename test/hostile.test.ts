import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { generateSync, verifySync } from 'otplib';
import { processMessage } from '../src/core/pipeline';
import type { Outcome } from '../src/core/outcome';
import type { Config } from '../src/config/types';
import { closeDatabases } from '../src/services/db';
import type { AuditRecord } from '../src/state/audit';
import { MemoryStore } from '../src/state/store';
import { FIXED_NOW, tempDir } from './support/env';
import { DkimKeys, OPS_TOTP_SECRET, recordingServices, securityConfig } from './support/hostile';
import { readReply } from './support/reply';

// The hostile corpus: each case file in test/fixtures/hostile/ goes through processMessage with
// the outcome its cases.json entry declares — silence or an exact reply — and exactly the service
// actions it declares (by default none).

const CORPUS = join(__dirname, 'fixtures', 'hostile');
const CRLF = '\r\n';

type Edit = { replace?: [string, string]; prepend?: string; append?: string; header?: [string, string] };

interface Expectation {
  expect: 'silence' | 'reply';
  subject?: string;
  text?: string[];
  absent?: string[];
  reason?: string;
  ran?: string[];
  /** Size bounds on the reply: whole message bytes, text bytes, and its References header. */
  replyMaxBytes?: number;
  textMaxBytes?: number;
  references?: { maxBytes: number; contains: string[] };
}

type Capture = 'TOKEN' | 'REPLYID';

interface Step extends Expectation {
  file?: string;
  before?: Edit[];
  after?: Edit[];
  sign?: string;
  signOptions?: { bodyLength?: boolean };
  minutes?: number;
  repeat?: number;
  /** Not inherited by steps: each message states its own envelope sender. */
  envelope?: string;
  capture?: Capture | Capture[];
}

interface Case extends Step {
  config?: 'ar';
  steps?: Step[];
  generated?: keyof typeof GENERATED;
  note: string;
}

const manifest = JSON.parse(readFileSync(join(CORPUS, 'cases.json'), 'utf8')) as Record<string, Case | string>;
const cases = Object.entries(manifest).filter((e): e is [string, Case] => e[0] !== '_format');

const { dir, cleanup } = tempDir('mailagent-hostile-');
const configs: Record<'dkim' | 'ar', Config> = { dkim: securityConfig(dir), ar: securityConfig(dir, { ar: true }) };
const keys = new DkimKeys(['example.com', 'x.example', 'evil.example']);

const clock = (minutes = 0) => new Date(FIXED_NOW.getTime() + minutes * 60_000);
const otpAt = (now: Date) => generateSync({ secret: OPS_TOTP_SECRET, epoch: Math.floor(now.getTime() / 1000) });

/** Placeholders are ASCII; the message is edited as latin1 so that every other byte stays as it is. */
function fill(text: string, vars: Record<string, string>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (all, name: string) => {
    if (!(name in vars)) throw new Error(`placeholder ${all} has no value here`);
    return vars[name];
  });
}

function applyEdits(raw: Buffer, edits: Edit[] = [], vars: Record<string, string>): Buffer {
  let text = raw.toString('latin1');
  for (const edit of edits) {
    if (edit.replace) {
      const [from, to] = edit.replace.map((s) => fill(s, vars));
      if (!text.includes(from)) throw new Error(`edit: "${from}" not found`);
      text = text.split(from).join(to);
    }
    if (edit.prepend !== undefined) text = `${fill(edit.prepend, vars)}${CRLF}${text}`;
    if (edit.append !== undefined) text += fill(edit.append, vars);
    if (edit.header) {
      const [name, value] = edit.header.map((s) => fill(s, vars));
      const end = text.indexOf(CRLF + CRLF);
      const head = text.slice(0, end + 2);
      const field = new RegExp(`^${name}:[^\\r\\n]*\\r\\n([ \\t][^\\r\\n]*\\r\\n)*`, 'im');
      if (!field.test(head)) throw new Error(`edit: no ${name} header`);
      text = head.replace(field, `${name}: ${value}${CRLF}`) + text.slice(end + 2);
    }
  }
  return Buffer.from(text, 'latin1');
}

/** A signed-by-the-test request from ops@example.com: the usual header (or `subject` / `extra` fields) and a body. */
function generatedMessage(name: string, body: string, options: { contentType?: string; subject?: string; extra?: string[] } = {}): Buffer {
  const head = [
    'From: Ops <ops@example.com>',
    'To: agent@example.com',
    `Subject: ${options.subject ?? name}`,
    'Date: Wed, 25 Nov 2026 09:59:00 +0000',
    `Message-ID: <hostile-${name}@example.com>`,
    ...(options.extra ?? []),
    'MIME-Version: 1.0',
    `Content-Type: ${options.contentType ?? 'text/plain; charset=us-ascii'}`,
  ].join(CRLF);
  return Buffer.from(`${head}${CRLF}${CRLF}${body}`, 'latin1');
}

/** Folds a list of words into a header value: `perLine` words a line, continuation lines start with a space. */
function fold(words: string[], perLine: number): string {
  const lines: string[] = [];
  for (let i = 0; i < words.length; i += perLine) lines.push(words.slice(i, i + perLine).join(' '));
  return lines.join(`${CRLF} `);
}

/**
 * Messages too large to commit, built at test time. The manifest's expectations (and the notes in
 * make-hostile.mjs) describe these exact shapes; change both together.
 */
const GENERATED = {
  /** 476 625 lines "db tables": 5 242 875 body bytes. */
  'five-megabytes': (name: string) => generatedMessage(name, `db tables${CRLF}`.repeat(476_625)),
  /** 31 500 lines "db tables \\" (409 500 bytes): one continued logical line of about 315 000 bytes. */
  'continuation-bomb': (name: string) => generatedMessage(name, `db tables \\${CRLF}`.repeat(31_500)),
  /** "frobnicate 1" … "frobnicate 170000" (3 118 895 bytes): distinct invalid lines. */
  'invalid-lines-bomb': (name: string) =>
    generatedMessage(name, Array.from({ length: 170_000 }, (_, i) => `frobnicate ${i + 1}${CRLF}`).join('')),
  /** text/html only: 200 000 nested <div> (100 a line), "db tables", the 200 000 closing tags. */
  'deep-html': (name: string) => {
    const open = `${'<div>'.repeat(100)}${CRLF}`.repeat(2_000);
    const close = `${'</div>'.repeat(100)}${CRLF}`.repeat(2_000);
    return generatedMessage(name, `<!DOCTYPE html>${CRLF}<html><body>${CRLF}${open}db tables${CRLF}${close}</body></html>${CRLF}`, {
      contentType: 'text/html; charset=us-ascii',
    });
  },
  /**
   * Subject "<name> w0000000 w0000001 … w0581999" (about 5.24 million characters), folded 8 words a line;
   * body "db tables".
   */
  'long-subject': (name: string) => {
    const words = [name, ...Array.from({ length: 582_000 }, (_, i) => `w${String(i).padStart(7, '0')}`)];
    return generatedMessage(name, `db tables${CRLF}`, { subject: fold(words, 8) });
  },
  /** References "<ref-0000000@example.com> … <ref-0167999@example.com>" (4 367 999 bytes), folded 3 ids a line; body "db tables". */
  'long-references': (name: string) => {
    const ids = Array.from({ length: 168_000 }, (_, i) => `<ref-${String(i).padStart(7, '0')}@example.com>`);
    return generatedMessage(name, `db tables${CRLF}`, { extra: [`In-Reply-To: ${ids[ids.length - 1]}`, `References: ${fold(ids, 3)}`] });
  },
};

/** The message with its header fields unfolded (CRLF before a space or tab removed); the body as it is. */
function unfoldHeader(raw: Buffer): Buffer {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end).toString('latin1').replace(/\r\n(?=[ \t])/g, '');
  return Buffer.concat([Buffer.from(head, 'latin1'), raw.subarray(end)]);
}

/** One header field of a raw message, unfolded (the first such field), or undefined. */
function headerField(raw: Buffer, name: string): string | undefined {
  const text = raw.toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const head = end < 0 ? text : text.slice(0, end);
  const match = new RegExp(`^${name}:([^\\r\\n]*(\\r?\\n[ \\t][^\\r\\n]*)*)`, 'im').exec(head);
  return match?.[1].replace(/\r?\n(?=[ \t])/g, '').trim();
}

/** The bytes of one message as it arrives: file or generated, placeholders filled, edited, signed. */
async function build(step: Step, c: Case, file: string, vars: Record<string, string>): Promise<Buffer> {
  let raw: Buffer;
  if (c.generated && !step.file) raw = GENERATED[c.generated](file.replace(/\.eml$/, ''));
  else raw = Buffer.from(fill(readFileSync(join(CORPUS, step.file ?? file)).toString('latin1'), vars), 'latin1');
  raw = applyEdits(raw, step.before, vars);
  const domain = step.sign ?? c.sign;
  if (domain && c.generated && !step.file) {
    // The signer's header parser is quadratic in folded lines: it signs the header unfolded, which
    // has the same relaxed canonical form, and the signature goes on the folded bytes.
    const unfolded = unfoldHeader(raw);
    const signed = await keys.sign(unfolded, domain, step.signOptions ?? c.signOptions);
    raw = Buffer.concat([signed.subarray(0, signed.length - unfolded.length), raw]);
  } else if (domain) raw = await keys.sign(raw, domain, step.signOptions ?? c.signOptions);
  return applyEdits(raw, step.after, vars);
}

/** One message through the pipeline with a shared store; the reply is handed over, as `run` would do. */
async function deliver(raw: Buffer, config: Config, store: MemoryStore, now: Date, envelopeSender?: string) {
  const ran: string[] = [];
  const audits: AuditRecord[] = [];
  const errors: string[] = [];
  const outcome: Outcome = await processMessage(raw, {
    config,
    now: () => now,
    store,
    audit: (r) => audits.push(r),
    services: recordingServices(ran),
    dnsResolver: keys.resolver,
    logError: (m) => errors.push(m),
    ...(envelopeSender !== undefined && { envelopeSender }),
  });
  if (outcome.kind === 'reply') await store.markReplied(outcome.key);
  return { outcome, ran, audits, errors };
}

/** `secrets`: strings no reply may contain (the one-time code of the message, the TOTP secret). */
async function check(label: string, expected: Expectation, result: Awaited<ReturnType<typeof deliver>>, secrets: string[]): Promise<string | undefined> {
  const { outcome, ran, audits, errors } = result;
  assert.equal(errors, [], `${label}: internal errors`);
  assert.equal(ran, expected.ran ?? [], `${label}: service actions that ran`);
  assert.is(audits.length, 1, `${label}: one audit record per message`);
  if (expected.expect === 'silence') {
    assert.is(outcome.kind, 'silent', `${label}: expected silence, got a reply`);
    if (outcome.kind !== 'silent') return undefined;
    assert.ok(['dropped', 'duplicate'].includes(audits[0].decision), `${label}: audit decision ${audits[0].decision}`);
    if (expected.reason) assert.match(outcome.reason, expected.reason, `${label}: reason "${outcome.reason}"`);
    return undefined;
  }
  if (outcome.kind !== 'reply') {
    assert.unreachable(`${label}: expected a reply, got silence (${outcome.reason})`);
    return undefined;
  }
  for (const secret of secrets) assert.not.ok(outcome.reply.raw.toString('latin1').includes(secret), `${label}: the reply contains a secret`);
  // Before parsing: an oversized reply would fail in the parser with a less telling message.
  const size = outcome.reply.raw.length;
  if (expected.replyMaxBytes !== undefined) assert.ok(size <= expected.replyMaxBytes, `${label}: the reply is ${size} bytes (at most ${expected.replyMaxBytes})`);
  const reply = await readReply(outcome);
  const text = reply.text ?? '';
  if (expected.subject !== undefined) assert.is(reply.subject, expected.subject, `${label}: subject`);
  for (const s of expected.text ?? []) assert.ok(text.includes(s), `${label}: reply lacks ${JSON.stringify(s)}:\n${text}`);
  for (const s of expected.absent ?? []) assert.not.ok(text.includes(s), `${label}: reply contains ${JSON.stringify(s)}:\n${text}`);
  const textSize = Buffer.byteLength(text);
  if (expected.textMaxBytes !== undefined) assert.ok(textSize <= expected.textMaxBytes, `${label}: the reply text is ${textSize} bytes (at most ${expected.textMaxBytes})`);
  if (expected.references) {
    const refs = headerField(outcome.reply.raw, 'References');
    assert.ok(refs !== undefined, `${label}: the reply has no References header`);
    const refsSize = Buffer.byteLength(refs ?? '');
    assert.ok(refsSize <= expected.references.maxBytes, `${label}: the reply's References is ${refsSize} bytes (at most ${expected.references.maxBytes})`);
    for (const id of expected.references.contains) assert.ok(refs!.includes(id), `${label}: the reply's References lacks ${id}`);
  }
  return text;
}

test('the corpus covers every case file, and every case file is in the corpus', () => {
  const files = readdirSync(CORPUS).filter((f) => /^\d{2,3}-.*\.eml$/.test(f)).sort();
  const declared = cases.filter(([, c]) => !c.generated).map(([f]) => f).sort();
  assert.equal(files, declared);
  assert.ok(files.length >= 100, `${files.length} case files`);
});

test('000000 is not a valid one-time code at the corpus clock (case 30 relies on it)', () => {
  for (const minutes of [0, 11]) {
    const epoch = Math.floor(clock(minutes).getTime() / 1000);
    assert.not.ok(verifySync({ secret: OPS_TOTP_SECRET, token: '000000', epoch, epochTolerance: 30 }).valid);
  }
});

for (const [file, c] of cases) {
  test(`${file}: ${c.expect}${c.reason ? ` (${c.reason})` : c.subject ? ` "${c.subject}"` : ''}`, async () => {
    const store = new MemoryStore();
    const config = configs[c.config ?? 'dkim'];
    const vars: Record<string, string> = {};
    let stepNo = 0;
    for (const step of c.steps ?? []) {
      for (let n = 1; n <= (step.repeat ?? 1); n++) {
        const now = clock(step.minutes);
        const stepVars = { ...vars, N: String(n), OTP: otpAt(now) };
        const raw = await build(step, c, file, stepVars);
        const result = await deliver(raw, config, store, now, step.envelope);
        const text = await check(`step ${++stepNo}`, step, result, [OPS_TOTP_SECRET, stepVars.OTP]);
        const captures = ([] as Capture[]).concat(step.capture ?? []);
        if (captures.includes('TOKEN')) {
          const token = /confirm=([0-9a-f]{32})/.exec(text ?? '')?.[1];
          assert.ok(token, `step ${stepNo}: no confirm= token in the reply`);
          vars.TOKEN = token!;
        }
        if (captures.includes('REPLYID')) {
          assert.ok(result.outcome.kind === 'reply', `step ${stepNo}: no reply to capture`);
          if (result.outcome.kind === 'reply') vars.REPLYID = result.outcome.reply.messageId;
        }
      }
    }
    const now = clock(c.minutes);
    // A code spent by a step stays the same at the same clock: the final message reuses it.
    const otp = otpAt(now);
    const raw = await build({ ...c, file: undefined }, c, file, { ...vars, OTP: otp });
    await check('case', c, await deliver(raw, config, store, now, c.envelope), [OPS_TOTP_SECRET, otp]);
  });
}

test.after(async () => {
  await closeDatabases();
  cleanup();
});
test.run();
