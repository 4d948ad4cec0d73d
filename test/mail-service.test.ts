import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImapFlow } from 'imapflow';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { validateConfig } from '../src/config/load';
import type { Config } from '../src/config/types';
import { processMessage } from '../src/core/pipeline';
import { mail as mailService } from '../src/services/mail';
import { scrub } from '../src/services/mail/clients';
import { services } from '../src/services/registry';
import type { Result, ResultFile, Service } from '../src/services/types';
import { exampleConfigObject, tempDir, testDeps } from './support/env';
import { fetchAll, waitForCount, withImap } from './support/imap';
import { freePort, startMailStack, type MailStack } from './support/mailstack';
import { readReply } from './support/reply';

// The mail service against a private Postfix + Dovecot: requests go straight into processMessage
// (as `run` would hand them over); what the service sends goes out through Postfix and is read
// back over IMAP, what it reads comes from Dovecot.
const test = suite('mail service');

const OPS_PASSWORD_ENV = 'MAILAGENT_TEST_MAIL_OPS_PASSWORD';
const SENDER = 'boss@example.com';

let stack: MailStack;
let work: { dir: string; cleanup: () => void };
let config: Config;

/** An account of the stack: its IMAP and SMTP on loopback, the password a secret reference. */
function account(user: string, password: Record<string, string>, ports: { imap?: number; smtp?: number } = {}) {
  return {
    address: `${user}@example.com`,
    name: `${user[0].toUpperCase()}${user.slice(1)} Team`,
    imap: { host: '127.0.0.1', port: ports.imap ?? stack.imapPort, user, password },
    smtp: { host: '127.0.0.1', port: ports.smtp ?? stack.smtpPort, timeoutSeconds: 5 },
  };
}

/** A config with only the mail service; a user with role mailer (mail:*) whose mail needs only the allow list. */
function mailConfig(tweak: (raw: Record<string, any>) => void = () => {}): Config {
  const raw = exampleConfigObject(work.dir);
  delete raw.services.db;
  delete raw.services.jobs;
  raw.users.push({ address: SENDER, name: 'Boss', roles: ['mailer'] });
  raw.roles.mailer = ['mail:*'];
  raw.security = { evidence: { 'mail:*': 'allowlist' }, messagesPerUserPerHour: 100_000, repliesPerHour: 100_000 };
  raw.services.mail = {
    accounts: {
      ops: account('ops', { env: OPS_PASSWORD_ENV }),
      other: account('other', { file: 'other-imap.password' }),
    },
  };
  tweak(raw);
  return validateConfig(raw, join(work.dir, 'config.json'));
}

test.before(async () => {
  stack = await startMailStack();
  work = tempDir('mailagent-mail-');
  process.env[OPS_PASSWORD_ENV] = stack.users.ops.password;
  writeFileSync(join(work.dir, 'other-imap.password'), `${stack.users.other.password}\n`, { mode: 0o600 });
  config = mailConfig();
});

test.after(async () => {
  delete process.env[OPS_PASSWORD_ENV];
  await stack?.stop();
  work?.cleanup();
});

interface RequestFile {
  filename: string;
  contentType: string;
  content: Buffer;
}

/** A request mail from SENDER: multipart/mixed with the commands as text/plain and the files base64-encoded. */
function request(text: string, files: RequestFile[] = []): Buffer {
  const boundary = `=_b${randomBytes(8).toString('hex')}`;
  const head = [
    `From: Boss <${SENDER}>`,
    'To: agent@example.com',
    'Subject: mail service test',
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: <${randomUUID()}@example.com>`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
  ];
  const parts = [
    `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${text.replace(/\r?\n/g, '\r\n')}\r\n`,
    ...files.map(
      (f) =>
        `--${boundary}\r\nContent-Type: ${f.contentType}; name="${f.filename}"\r\nContent-Disposition: attachment; filename="${f.filename}"\r\n` +
        `Content-Transfer-Encoding: base64\r\n\r\n${f.content.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`,
    ),
  ];
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${parts.join('')}--${boundary}--\r\n`);
}

/** The registry with the mail actions wrapped: what ran, and what each run returned. */
function watched(ran: string[], results: Result[]): Record<string, Service> {
  const actions = Object.fromEntries(
    Object.entries(services.mail.actions).map(([name, action]) => [
      name,
      {
        ...action,
        run: async (args: Record<string, unknown>, ctx: Parameters<typeof action.run>[1]) => {
          ran.push(name);
          const result = await action.run(args, ctx);
          results.push(result);
          return result;
        },
      },
    ]),
  );
  return { ...services, mail: { ...services.mail, actions } };
}

/** Sends one request through the pipeline; the parsed reply, what ran and what it returned. */
async function ask(text: string, opts: { files?: RequestFile[]; config?: Config } = {}) {
  const ran: string[] = [];
  const results: Result[] = [];
  const deps = testDeps(opts.config ?? config, { services: watched(ran, results) });
  const outcome = await processMessage(request(text, opts.files), deps);
  const reply = await readReply(outcome);
  const raw = outcome.kind === 'reply' ? outcome.reply.raw : Buffer.alloc(0);
  return { reply, text: reply.text ?? '', subject: reply.subject ?? '', raw, ran, results, deps };
}

/** The bytes of a result file, held in memory or (streamed ones) in a file. */
const fileBytes = (file: ResultFile): Buffer => ('content' in file ? Buffer.from(file.content) : readFileSync(file.path));

function table(result: Result | undefined): { columns: string[]; rows: unknown[][]; note?: string } {
  if (result?.kind !== 'table') throw new Error(`expected a table, got ${JSON.stringify(result)?.slice(0, 200)}`);
  return result;
}

/** Puts a message into a folder of a stack user (created when missing); its UID. */
async function put(client: ImapFlow, folder: string, raw: string | Buffer, flags: string[] = [], date?: Date): Promise<number> {
  await client.mailboxCreate(folder).catch(() => undefined);
  const appended = await client.append(folder, raw, flags, date);
  if (!appended || !appended.uid) throw new Error('APPEND gave no UID');
  return appended.uid;
}

async function imapSource(user: string, folder: string, uid: number): Promise<{ source: Buffer; flags: Set<string> }> {
  return withImap(stack, user, async (client) => {
    const lock = await client.getMailboxLock(folder, { readOnly: true });
    try {
      const m = await client.fetchOne(String(uid), { uid: true, source: true, flags: true }, { uid: true });
      if (!m || !m.source) throw new Error(`no message ${uid} in ${folder}`);
      return { source: m.source, flags: m.flags ?? new Set() };
    } finally {
      lock.release();
    }
  });
}

/** The body of the reply's message/rfc822 part, as bytes: what a mail client saves as the .eml. */
async function embeddedMessage(raw: Buffer): Promise<{ filename?: string; bytes: Buffer } | undefined> {
  const { Splitter } = require('@zone-eu/mailsplit') as typeof import('@zone-eu/mailsplit');
  const splitter = new Splitter({ ignoreEmbedded: true });
  let found: { node: unknown; filename?: string; pieces: Buffer[] } | undefined;
  splitter.on('data', (data: any) => {
    if (data.type === 'node' && data.contentType === 'message/rfc822' && !found) found = { node: data, filename: data.filename || undefined, pieces: [] };
    else if (data.type === 'body' && found && data.node === found.node) found.pieces.push(data.value);
  });
  await new Promise<void>((resolve, reject) => {
    (splitter as any).on('end', resolve);
    (splitter as any).on('error', reject);
    splitter.end(raw);
  });
  return found && { filename: found.filename, bytes: Buffer.concat(found.pieces) };
}

function simpleMail(opts: { from: string; subject: string; text: string; date?: string }): string {
  return [
    `From: ${opts.from}`,
    'To: ops@example.com',
    `Subject: ${opts.subject}`,
    `Date: ${opts.date ?? 'Fri, 20 Nov 2026 09:30:00 +0000'}`,
    `Message-ID: <${randomUUID()}@example.net>`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    opts.text,
    '',
  ].join('\r\n');
}

// ------------------------------------------------------------------------------------------------

test('send: the mail arrives with its subject, the here-document line for line, and the request\'s attachment byte for byte', async () => {
  // A few hundred KB holding every byte value, in a random order after the first 256.
  const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(300 * 1024)]);
  const body = [
    'Hello other,',
    '',
    '  the report is attached; indented text stays indented.',
    '> this looks like a quote but is part of the text',
    'thanks',
    '-- ',
    'Grüße, ops',
  ];
  const { subject, text, ran } = await ask(
    ['mail send ops to=other@example.com subject="Monthly report 11/2026" attach=report.pdf body<<END', ...body, 'END'].join('\n'),
    { files: [{ filename: 'report.pdf', contentType: 'application/pdf', content: pdf }] },
  );
  assert.equal(ran, ['send']);
  assert.match(subject, /processed \(1 ok, 0 failed\)$/);
  const sent = /sent to other@example\.com from ops@example\.com, Message-ID (<[^>\s]+@example\.com>), 1 attachment \(report\.pdf\)/.exec(text);
  assert.ok(sent, text);

  await waitForCount(stack, 'other', 1);
  const got = (await fetchAll(stack, 'other')).find((m) => m.messageId === sent![1]);
  assert.ok(got, 'the sent message is in other\'s INBOX');
  assert.is(got!.subject, 'Monthly report 11/2026');
  assert.match(got!.from, 'ops@example.com');
  assert.match(got!.from, 'Ops Team');
  assert.is(got!.to, 'other@example.com');
  assert.is(got!.headers['x-mailagent-requested-by'], SENDER);
  assert.equal(got!.text.replace(/\n$/, '').split('\n'), body);
  assert.is(got!.attachments.length, 1);
  assert.is(got!.attachments[0].filename, 'report.pdf');
  assert.is(got!.attachments[0].contentType, 'application/pdf');
  assert.ok(got!.attachments[0].content.equals(pdf), 'the attachment arrives byte for byte');
});

test('send: attach= naming an attachment the mail does not have refuses the whole request, nothing is sent', async () => {
  const before = (await fetchAll(stack, 'other')).length;
  const file = { filename: 'report.pdf', contentType: 'application/pdf', content: randomBytes(1000) };
  const { subject, text, ran } = await ask(
    'mail folders ops\nmail send ops to=other@example.com subject="x" attach=report.pdf,missing.csv body<<END\ntext\nEND',
    { files: [file] },
  );
  assert.equal(ran, []);
  assert.match(subject, 'not processed (1 problem)');
  assert.match(text, 'Nothing was run');
  assert.match(text, 'attach: this mail has no attachment named "missing.csv" (its attachments: "report.pdf")');
  await stack.flushQueue();
  await new Promise((r) => setTimeout(r, 300));
  assert.is(stack.postfixQueueSize(), 0);
  assert.is((await fetchAll(stack, 'other')).length, before);
});

test('send: an attachment over the size limit, or a name two attachments share, is refused before anything runs', async () => {
  const small = mailConfig((raw) => (raw.limits = { maxAttachmentBytes: 2048 }));
  const big = { filename: 'big.bin', contentType: 'application/octet-stream', content: randomBytes(5000) };
  const tooLarge = await ask('mail send ops to=other@example.com subject=x attach=big.bin body<<END\nx\nEND', { files: [big], config: small });
  assert.equal(tooLarge.ran, []);
  assert.match(tooLarge.text, 'attach: "big.bin" is 5000 bytes, over the limit of 2048 bytes per attachment (limits.maxAttachmentBytes)');

  const twins = [
    { filename: 'data.csv', contentType: 'text/csv', content: Buffer.from('a,b\n1,2\n') },
    { filename: 'data.csv', contentType: 'text/csv', content: Buffer.from('a,b\n3,4\n') },
  ];
  const ambiguous = await ask('mail send ops to=other@example.com subject=x attach=data.csv body<<END\nx\nEND', { files: twins });
  assert.equal(ambiguous.ran, []);
  assert.match(ambiguous.text, 'attach: this mail has 2 attachments named "data.csv"; attach each under its own name');
});

test('every argument is checked before anything runs: accounts, addresses, uid, dates, limit', async () => {
  const lines = [
    'mail list nobody',
    'mail list __proto__',
    'mail send ops to="Boss <boss@example.com>" subject=x body<<END\nx\nEND',
    'mail send ops to=boss@example.com,evil@example.com%0d%0aBcc:x@y subject=x cc=boss@example.com body<<END\nx\nEND',
    'mail get ops uid=0',
    'mail list ops since=2026-13-01 limit=500',
  ];
  const { text, ran, subject } = await ask(lines.join('\n'));
  assert.equal(ran, []);
  assert.match(subject, 'not processed (6 problems)');
  assert.match(text, 'no mail account "nobody" (accounts: ops, other)');
  assert.match(text, 'no mail account "__proto__" (accounts: ops, other)');
  assert.match(text, 'to: "Boss <boss@example.com>" is not a plain address like name@example.com');
  assert.match(text, 'boss@example.com is given twice among to= and cc=');
  assert.match(text, 'uid=0: must be ≥ 1');
  assert.match(text, 'since=2026-13-01: expected a date YYYY-MM-DD');
  assert.match(text, 'limit=500: must be ≤ 200');
});

test('list: folder, unseen, from, since and limit each select exactly the expected messages, newest first', async () => {
  const fixtures = [
    { from: 'Alice <alice@example.net>', subject: 'october report', day: '2026-10-15', flags: ['\\Seen'] },
    { from: 'Bob <bob@example.org>', subject: 'november one', day: '2026-11-02', flags: [] },
    { from: 'Alice <alice@example.net>', subject: 'alice again', day: '2026-11-10', flags: [] },
    { from: 'Carol <carol@example.com>', subject: 'carol', day: '2026-11-20', flags: ['\\Seen', '\\Flagged'] },
    { from: 'Alice <alice@example.net>', subject: 'latest alice', day: '2026-11-25', flags: ['\\Seen'] },
  ];
  const uids = await withImap(stack, 'ops', async (client) => {
    const out: number[] = [];
    for (const f of fixtures) out.push(await put(client, 'Lists', simpleMail({ from: f.from, subject: f.subject, text: 'hi' }), f.flags, new Date(`${f.day}T12:00:00Z`)));
    return out;
  });
  const [october, bob, alice2, carol, latest] = uids;
  const listed = async (args: string): Promise<{ uids: unknown[]; rows: unknown[][]; note?: string }> => {
    const { results, subject, text } = await ask(`mail list ops folder=Lists ${args}`);
    assert.match(subject, 'processed (1 ok, 0 failed)', text);
    const t = table(results[0]);
    return { uids: t.rows.map((r) => r[0]), rows: t.rows, note: t.note };
  };

  const all = await listed('');
  assert.equal(all.uids, [latest, carol, alice2, bob, october]);
  assert.equal(all.rows[1], [carol, '2026-11-20 12:00:00 UTC', 'Carol <carol@example.com>', 'carol', all.rows[1][4], '\\Flagged \\Seen']);
  assert.ok(typeof all.rows[1][4] === 'number' && (all.rows[1][4] as number) > 100);
  assert.equal((await listed('unseen=yes')).uids, [alice2, bob]);
  assert.equal((await listed('unseen=no')).uids, [latest, carol, october]);
  assert.equal((await listed('from=alice@example.net')).uids, [latest, alice2, october]);
  assert.equal((await listed('since=2026-11-10')).uids, [latest, carol, alice2]);
  const two = await listed('limit=2');
  assert.equal(two.uids, [latest, carol]);
  assert.match(two.note!, 'the newest 2 of 5 matching messages');
  assert.equal((await listed('from=alice unseen=yes since=2026-11-01')).uids, [alice2]);
  assert.equal((await listed('from=nobody@example.com')).uids, []);

  // The account as key=value, the folder left at INBOX: other's INBOX holds what the send test sent.
  const inbox = await ask('mail list account=other');
  const rows = table(inbox.results[0]).rows;
  assert.ok(rows.some((r) => r[3] === 'Monthly report 11/2026' && String(r[2]).includes('ops@example.com')), inbox.text);
  assert.match(inbox.text, /^> mail list account=other\nuid +date +from +subject +size +flags\n/);

  const missing = await ask('mail list ops folder=Nope');
  assert.match(missing.text, 'ERROR: account ops has no folder "Nope" (mail folders ops lists them)');
});

test('get: headers and text in the reply, the original attached as <uid>.eml byte for byte, and the message stays unread', async () => {
  const raw = [
    'From: Alice Example <alice@example.net>',
    'To: ops@example.com',
    'Cc: boss@example.com',
    'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from Alice',
    'Date: Fri, 20 Nov 2026 09:30:00 +0000',
    'Message-ID: <get-test@example.net>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="XYZ"',
    '',
    '--XYZ',
    'Content-Type: text/plain; charset=iso-8859-1',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'Hallo, sch=F6ne Gr=FC=DFe.',
    'Second line.',
    '--XYZ',
    'Content-Type: application/octet-stream; name="data.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    randomBytes(3000).toString('base64').replace(/.{76}/g, '$&\r\n'),
    '--XYZ--',
    '',
  ].join('\r\n');
  const uid = await withImap(stack, 'ops', (client) => put(client, 'Get', raw));

  const { text, raw: replyRaw, results, subject } = await ask(`mail get ops ${uid} folder=Get`);
  assert.match(subject, 'processed (1 ok, 0 failed)', text);
  assert.match(text, 'Date: 2026-11-20 09:30:00 UTC\nFrom: Alice Example <alice@example.net>\nTo: ops@example.com\nCc: boss@example.com\nSubject: Grüße from Alice\n');
  assert.match(text, 'Hallo, schöne Grüße.\nSecond line.');
  assert.match(text, `(attached: ${uid}.eml)`);

  const { source, flags } = await imapSource('ops', 'Get', uid);
  const result = results[0];
  assert.is(result?.kind, 'files');
  if (result?.kind !== 'files') return;
  assert.is(result.files[0].filename, `${uid}.eml`);
  assert.is(result.files[0].contentType, 'message/rfc822');
  assert.ok(fileBytes(result.files[0]).equals(source), 'the result holds the message as IMAP returns it');
  const attached = await embeddedMessage(replyRaw);
  assert.is(attached?.filename, `${uid}.eml`);
  assert.ok(attached!.bytes.equals(source), 'the reply carries the message byte for byte');
  assert.not.ok(flags.has('\\Seen'), 'get does not mark the message as read');

  const unknown = await ask(`mail get ops uid=${uid + 100} folder=Get`);
  assert.match(unknown.text, `ERROR: no message with uid ${uid + 100} in Get of account ops`);
});

test('get: a message over maxMessageBytes is refused with both sizes; a long text is cut; no text/plain is said', async () => {
  const small = mailConfig((raw) => (raw.services.mail.maxMessageBytes = 4096));
  const big = simpleMail({ from: 'alice@example.net', subject: 'big', text: 'x'.repeat(76).concat('\r\n').repeat(130) });
  const html = [
    'From: alice@example.net', 'To: ops@example.com', 'Subject: html only', 'MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8', '', '<p>hello</p>', '',
  ].join('\r\n');
  const long = simpleMail({ from: 'alice@example.net', subject: 'long', text: 'abcdefghij'.repeat(2500) });
  const [bigUid, htmlUid, longUid] = await withImap(stack, 'ops', async (client) => [
    await put(client, 'Sizes', big),
    await put(client, 'Sizes', html),
    await put(client, 'Sizes', long),
  ]);
  const size = Buffer.byteLength(big);

  const refused = await ask(`mail get ops uid=${bigUid} folder=Sizes`, { config: small });
  assert.match(refused.subject, 'processed (0 ok, 1 failed)');
  assert.match(refused.text, `ERROR: message ${bigUid} is ${size} bytes, larger than the 4096 bytes mail get attaches (services.mail.maxMessageBytes); nothing was downloaded`);
  assert.is(refused.raw.includes('xxxxxxxxxx'), false);

  const noText = await ask(`mail get ops uid=${htmlUid} folder=Sizes`);
  assert.match(noText.text, `(the message has no text/plain part; it is attached whole as ${htmlUid}.eml)`);

  const cut = await ask(`mail get ops uid=${longUid} folder=Sizes`);
  assert.match(cut.text, `[… the text is cut at 20000 of 25000 characters; the whole message is attached as ${longUid}.eml]`);
  // A line of 25 000 characters cannot travel in a message/rfc822 part unchanged: it goes as bytes.
  const file = cut.results[0]?.kind === 'files' ? cut.results[0].files[0] : undefined;
  assert.is(file?.contentType, 'application/octet-stream');
  assert.ok(cut.reply.attachments.some((a) => a.filename === `${longUid}.eml` && a.content.equals(fileBytes(file!))));
});

test('folders: every folder with its special use, message and unseen counts', async () => {
  const expected = await withImap(stack, 'ops', async (client) => {
    await put(client, 'Counted', simpleMail({ from: 'a@example.net', subject: 'one', text: '1' }), ['\\Seen']);
    await put(client, 'Counted', simpleMail({ from: 'a@example.net', subject: 'two', text: '2' }));
    await put(client, 'Counted', simpleMail({ from: 'a@example.net', subject: 'three', text: '3' }));
    return client.status('INBOX', { messages: true, unseen: true });
  });
  const { results, text } = await ask('mail folders ops');
  const rows = table(results[0]).rows;
  assert.equal(rows[0], ['INBOX', '\\Inbox', expected.messages, expected.unseen]);
  assert.ok(rows.some((r) => r[0] === 'Counted' && r[2] === 3 && r[3] === 2), text);
  assert.ok(rows.some((r) => r[0] === 'Sent' && r[1] === '\\Sent'), text);
  assert.match(text, /^> mail folders ops\nfolder +special use +messages +unseen\n[- ]+\nINBOX +\\Inbox +0 +0\n/);
});

test('servers down: a clear failed command and a failed probe, no internal error', async () => {
  const healthy = await mailService.probe(config);
  const detail = (rows: { target: string; ok: boolean; detail: string }[]) => rows.map((r) => `${r.target}: ${r.detail}`).join('; ');
  assert.ok(healthy.every((r) => r.ok), detail(healthy));
  assert.match(detail(healthy), 'other imap: other@example.com: IMAP ok (INBOX: 1 message); other smtp: other@example.com: SMTP ok');

  const closed = await freePort();
  const down = mailConfig((raw) => (raw.services.mail.accounts.down = account('ops', { env: OPS_PASSWORD_ENV }, { imap: closed, smtp: closed })));
  const imap = await ask('mail list down', { config: down });
  assert.match(imap.subject, 'processed (0 ok, 1 failed)');
  assert.match(imap.text, `ERROR: account down: IMAP server 127.0.0.1:${closed}: connection refused (is the server down, or the port wrong?)`);
  assert.equal(imap.deps.errors, []);

  const smtp = await ask('mail send down to=other@example.com subject=x body<<END\nx\nEND', { config: down });
  assert.match(smtp.text, `ERROR: account down: SMTP server 127.0.0.1:${closed}: connection refused`);
  assert.equal(smtp.deps.errors, []);

  const probe = await mailService.probe(down);
  assert.is(probe.every((r) => r.ok), false);
  assert.match(detail(probe), 'ops imap: ops@example.com: IMAP ok (INBOX: ');
  assert.match(detail(probe), `down imap: ops@example.com: IMAP failed: IMAP server 127.0.0.1:${closed}: connection refused (is the server down, or the port wrong?); down smtp: ops@example.com: SMTP failed: SMTP server 127.0.0.1:${closed}: connection refused`);
  assert.not.match(detail(probe), stack.users.ops.password);
});

test('config: a password written inline is refused; help lists the accounts', async () => {
  assert.throws(() => mailConfig((raw) => (raw.services.mail.accounts.ops.imap.password = 'secret')), /services\.mail\.accounts\.ops\.imap\.password/);
  assert.throws(() => mailConfig((raw) => delete raw.services.mail.accounts.ops.imap.password), /imap\.password: is required to log in/);
  const { text } = await ask('help mail');
  assert.match(text, '  ops - Ops Team <ops@example.com>');
  assert.match(text, '  other - Other Team <other@example.com>');
});

// Last: after a failed login Dovecot delays every further login from 127.0.0.1 by seconds.
test('a wrong password: a clear failed command that does not repeat the password', async () => {
  const config = mailConfig((raw) => (raw.services.mail.accounts.wrong = account('ops', { env: 'MAILAGENT_TEST_WRONG_PASSWORD' })));
  process.env.MAILAGENT_TEST_WRONG_PASSWORD = 'not-the-password-4711';
  try {
    const login = await ask('mail folders wrong', { config });
    assert.match(login.text, `ERROR: account wrong: IMAP server 127.0.0.1:${stack.imapPort}: login as ops failed (Authentication failed.): check imap.user and imap.password`);
    assert.not.ok(login.raw.includes('not-the-password-4711'));
    assert.equal(login.deps.errors, []);
  } finally {
    delete process.env.MAILAGENT_TEST_WRONG_PASSWORD;
  }
  // What a driver echoes (an IMAP LOGIN line, SASL PLAIN in base64) loses the password in every form.
  const echoed = `A1 LOGIN "ops" "p\\"w" / AUTH PLAIN ${Buffer.from('\0ops\0p"w').toString('base64')} / ${Buffer.from('p"w').toString('base64')} / p"w`;
  assert.is(scrub(echoed, 'ops', 'p"w'), 'A1 LOGIN "ops" "***" / AUTH PLAIN *** / *** / ***');
});

test.run();
