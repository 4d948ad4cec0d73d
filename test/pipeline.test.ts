import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { processMessage } from '../src/core/pipeline';
import { services } from '../src/services/registry';
import type { Service } from '../src/services/types';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';

const { dir, cleanup } = tempDir();
const config = demoConfig(dir);

/** The real registry with every action wrapped so a test can see what ran. */
function recordingServices(ran: string[]): Record<string, Service> {
  return Object.fromEntries(
    Object.entries(services).map(([name, s]) => [
      name,
      {
        ...s,
        actions: Object.fromEntries(
          Object.entries(s.actions).map(([a, action]) => [a, { ...action, run: (args, ctx) => (ran.push(`${name} ${a}`), action.run(args, ctx)) }]),
        ),
      },
    ]),
  );
}

test('unknown sender gets no reply, and one audit record says why', async () => {
  const deps = testDeps(config);
  const outcome = await processMessage(mail('db tables', { From: 'Mallory <mallory@example.net>' }), deps);
  assert.equal(outcome, { kind: 'silent', reason: 'sender mallory@example.net is not on the allow list' });
  assert.is(deps.audits.length, 1);
  assert.is(deps.audits[0].decision, 'dropped');
});

test('a display name that looks like a user proves nothing', async () => {
  const outcome = await processMessage(mail('db tables', { From: '"ops@example.com" <evil@example.net>' }), testDeps(config));
  assert.is(outcome.kind, 'silent');
});

test('two From mailboxes or none: no reply', async () => {
  assert.is((await processMessage(mail('help', { From: 'ops@example.com, evil@example.net' }), testDeps(config))).kind, 'silent');
  assert.is((await processMessage(mail('help', { From: null }), testDeps(config))).kind, 'silent');
});

for (const [header, value] of [
  ['Auto-Submitted', 'auto-replied'],
  ['Auto-Submitted', 'auto-generated; type=vacation'],
  ['Precedence', 'bulk'],
  ['Precedence', 'list'],
  ['List-Id', '<ops.lists.example.com>'],
  ['X-Loop', 'agent@example.com'],
]) {
  test(`${header}: ${value} gets no reply`, async () => {
    const outcome = await processMessage(mail('db tables', { [header]: value }), testDeps(config));
    assert.is(outcome.kind, 'silent');
  });
}

test('Auto-Submitted: no is a person and is answered', async () => {
  assert.is((await processMessage(mail('status', { 'Auto-Submitted': 'no' }), testDeps(config))).kind, 'reply');
});

test('mail from MAILER-DAEMON or a null envelope sender gets no reply', async () => {
  assert.is((await processMessage(mail('help', { From: 'MAILER-DAEMON@example.com' }), testDeps(config))).kind, 'silent');
  assert.is((await processMessage(mail('help'), testDeps(config, { envelopeSender: '' }))).kind, 'silent');
});

test('a request whose Subject merely mentions the office is answered; an out-of-office Subject is not', async () => {
  assert.is((await processMessage(mail('status', { Subject: 'Out of office check' }), testDeps(config))).kind, 'reply');
  const ooo = await processMessage(mail('status', { Subject: 'Out of Office: back on Monday' }), testDeps(config));
  assert.equal(ooo, { kind: 'silent', reason: 'Subject: Out of Office: back on Monday (an automatic reply)' });
});

test('one valid and one invalid line: one error reply naming the bad line, nothing runs', async () => {
  const ran: string[] = [];
  const deps = testDeps(config, { services: recordingServices(ran) });
  const outcome = await processMessage(mail('db tables\ndb tabels\n'), deps);
  const reply = await readReply(outcome);
  assert.equal(ran, []);
  assert.match(reply.subject!, /— not processed \(1 problem\)$/);
  assert.match(reply.text!, 'Nothing was run');
  assert.match(reply.text!, '- line 2: "db tabels": unknown action "tabels" for db — did you mean "tables"?');
  assert.not.match(reply.text!, 'line 1');
  assert.is(deps.audits[0].decision, 'rejected');
});

test('a valid request runs every command in order and the transcript shows each', async () => {
  const ran: string[] = [];
  const outcome = await processMessage(mail('db tables\ndb query name=host hostname=web-ams-01\n-- \ndb describe hosts'), testDeps(config, { services: recordingServices(ran) }));
  const reply = await readReply(outcome);
  assert.equal(ran, ['db tables', 'db query']);
  assert.match(reply.subject!, /^Re: test — processed \(2 ok, 0 failed\)$/);
  assert.match(reply.text!, /^> db tables\ntable +type +rows\n/);
  assert.match(reply.text!, '> db query name=host hostname=web-ams-01\nname        ip         os         site  role  last_seen');
});

test('a failing command is reported in the transcript, the others still run', async () => {
  const deps = testDeps(demoConfig(dir, (raw) => (raw.services.db.databases.inventory.queries.broken = { sql: 'SELECT * FROM no_such_table' })));
  const reply = await readReply(await processMessage(mail('db query name=broken\nstatus'), deps));
  assert.match(reply.subject!, 'processed (1 ok, 1 failed)');
  assert.match(reply.text!, '> db query name=broken\nERROR: database error: no such table: no_such_table');
  assert.equal(deps.audits[0].commands!.map((c) => c.ok), [false, true]);
});

test('no command at all: the reply is the help text', async () => {
  const reply = await readReply(await processMessage(mail('\n\n-- \nOps'), testDeps(config)));
  assert.match(reply.subject!, 'no command found');
  assert.match(reply.text!, 'db query <name> [db=...] [key=value...]');
});

test('a Subject that is not a command is not an error: the sender gets help', async () => {
  const reply = await readReply(await processMessage(mail('', { Subject: 'Question' }), testDeps(config)));
  assert.match(reply.subject!, 'no command found');
});

test('the Subject carries the command when the body is empty', async () => {
  const reply = await readReply(await processMessage(mail('', { Subject: 'Re: db tables' }), testDeps(config)));
  assert.match(reply.text!, '> db tables');
});

test('quoted reply text never runs', async () => {
  const ran: string[] = [];
  const body = 'status\n\nOn Tue, 24 Nov 2026, mailagent <agent@example.com> wrote:\n> db query name=all_tickets\n';
  await processMessage(mail(body), testDeps(config, { services: recordingServices(ran) }));
  assert.equal(ran, []);
});

test('a retried delivery of an answered message is not run again', async () => {
  const ran: string[] = [];
  const deps = testDeps(config, { services: recordingServices(ran) });
  const message = mail('db tables', { 'Message-ID': '<retry-1@example.com>' });
  const first = await processMessage(message, deps);
  assert.is(first.kind, 'reply');
  await deps.store.markReplied((first as { key: string }).key);
  const second = await processMessage(message, deps);
  assert.equal(second, { kind: 'silent', reason: 'duplicate of a message already answered' });
  assert.equal(ran, ['db tables']);
});

test('a stored but unsent reply is sent again without running the commands again', async () => {
  const ran: string[] = [];
  const deps = testDeps(config, { services: recordingServices(ran) });
  const message = mail('db tables', { 'Message-ID': '<retry-2@example.com>' });
  const first = await processMessage(message, deps);
  const second = await processMessage(message, deps);
  assert.is(second.kind === 'reply' && second.decision, 'resent');
  assert.ok(first.kind === 'reply' && second.kind === 'reply' && first.reply.raw.equals(second.reply.raw));
  assert.equal(ran, ['db tables']);
});

test('an oversized message gets a short refusal and nothing runs', async () => {
  const small = demoConfig(dir, (raw) => (raw.limits = { maxMessageBytes: 2048 }));
  const ran: string[] = [];
  const reply = await readReply(await processMessage(mail(`db tables\n${'x'.repeat(5000)}`), testDeps(small, { services: recordingServices(ran) })));
  assert.match(reply.subject!, 'message too large');
  assert.equal(ran, []);
});

test('an internal error is reported by reference, the stack stays in the log', async () => {
  const broken: Record<string, Service> = { db: { ...services.db, actions: { ...services.db.actions, tables: { ...services.db.actions.tables, run: async () => { throw new TypeError('boom at /secret/path'); } } } } };
  const deps = testDeps(config, { services: broken });
  const reply = await readReply(await processMessage(mail('db tables'), deps));
  assert.match(reply.text!, /ERROR: internal error \(reference [0-9a-f]{8}\)/);
  assert.not.match(reply.text!, 'boom');
  assert.is(deps.errors.length, 1);
});

test.after(cleanup);
test.run();
