import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { processMessage } from '../src/core/pipeline';
import { renderCsv } from '../src/render/csv';
import { renderTable } from '../src/render/table';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';

const { dir, cleanup } = tempDir();
const config = demoConfig(dir);

test('reply headers: threading, RFC 3834 marks, addressed to the From mailbox only', async () => {
  const request = mail('status', {
    Subject: 'weekly check',
    'Message-ID': '<req-1@example.com>',
    References: '<root@example.com> <mid@example.com>',
    'Reply-To': 'someone-else@example.net',
  });
  const outcome = await processMessage(request, testDeps(config));
  const reply = await readReply(outcome);
  assert.is(reply.subject, 'Re: weekly check — processed (1 ok, 0 failed)');
  assert.is(reply.inReplyTo, '<req-1@example.com>');
  assert.equal(reply.references, ['<root@example.com>', '<mid@example.com>', '<req-1@example.com>']);
  assert.is(reply.headers.get('auto-submitted'), 'auto-replied');
  assert.is(reply.headers.get('x-loop'), 'agent@example.com');
  assert.is(reply.headers.get('x-auto-response-suppress'), 'All');
  assert.is(reply.from!.value[0].address, 'agent@example.com');
  assert.is((reply.to as { text: string }).text, 'ops@example.com');
  // The mark by which a reply of ours that comes back (loop headers stripped) is recognised.
  assert.match(reply.messageId!, /^<mailagent\.[0-9a-f-]{36}@example\.com>$/);
  assert.equal(outcome.kind === 'reply' && outcome.reply.envelope, { from: 'agent@example.com', to: ['ops@example.com'] });
});

test('a long subject is cut at 200 characters, never inside a character', async () => {
  const long = `${'é'.repeat(150)}${'😀'.repeat(100)}`;
  const reply = await readReply(await processMessage(mail('status', { Subject: long }), testDeps(config)));
  assert.is(reply.subject, `Re: ${'é'.repeat(150)}${'😀'.repeat(50)}… — processed (1 ok, 0 failed)`);
});

test('References keeps the thread root and the latest ids, within 2 KB; oversized ids are left out', async () => {
  const ids = Array.from({ length: 300 }, (_, i) => `<ref-${i}@example.com>`);
  const huge = `<${'x'.repeat(400)}@example.com>`;
  const reply = await readReply(await processMessage(mail('status', { 'Message-ID': '<req-refs@example.com>', References: [huge, ...ids].join(' ') }), testDeps(config)));
  const refs = reply.references as string[];
  assert.is(refs[0], '<ref-0@example.com>');
  assert.is(refs[refs.length - 1], '<req-refs@example.com>');
  assert.is(refs[refs.length - 2], '<ref-299@example.com>');
  assert.ok(refs.join(' ').length <= 2000, `${refs.join(' ').length} bytes`);
  assert.not.ok(refs.includes(huge));
});

test('a subject that already starts with Re: is not prefixed twice', async () => {
  const reply = await readReply(await processMessage(mail('status', { Subject: 'RE: weekly check' }), testDeps(config)));
  assert.is(reply.subject, 'RE: weekly check — processed (1 ok, 0 failed)');
});

test('replying to a reply does not pile up status suffixes', async () => {
  const reply = await readReply(await processMessage(mail('status', { Subject: 'Re: weekly check — processed (3 ok, 0 failed)' }), testDeps(config)));
  assert.is(reply.subject, 'Re: weekly check — processed (1 ok, 0 failed)');
});

test('answering a confirmation request does not repeat its status either', async () => {
  const reply = await readReply(await processMessage(mail('status', { Subject: 'Re: weekly check — confirmation needed' }), testDeps(config)));
  assert.is(reply.subject, 'Re: weekly check — processed (1 ok, 0 failed)');
});

test('more than 40 rows: the body shows the first 40 and a CSV attachment holds all', async () => {
  const reply = await readReply(await processMessage(mail('db query name=all_tickets'), testDeps(config)));
  assert.match(reply.text!, '(60 rows: the first 40 are shown, all of them are in query-all_tickets.csv)');
  const tableLines = reply.text!.split('\n').filter((l) => /^\s*\d+\s{2}/.test(l));
  assert.is(tableLines.length, 40);
  assert.is(reply.attachments.length, 1);
  const [csv] = reply.attachments;
  assert.is(csv.filename, 'query-all_tickets.csv');
  assert.is(csv.contentType, 'text/csv');
  const rows = csv.content.toString('utf8').trimEnd().split('\r\n');
  assert.is(rows.length, 61);
  assert.is(rows[0], 'id,host,priority,status,title,opened');
  assert.match(rows[60], /^60,/);
});

test('40 rows or fewer: no attachment', async () => {
  const reply = await readReply(await processMessage(mail('db query name=tickets_by_priority priority=2'), testDeps(config)));
  assert.is(reply.attachments.length, 0);
  assert.match(reply.text!, '(15 rows)');
});

test('tables are aligned; numeric columns right-aligned; long cells shortened', () => {
  const text = renderTable(['id', 'name', 'note'], [
    [1, 'web', null],
    [100, 'database', 'x'.repeat(80)],
  ]);
  assert.is(
    text,
    [
      ' id  name      note',
      '---  --------  ------------------------------------------------------------',
      '  1  web       NULL',
      `100  database  ${'x'.repeat(59)}…`,
    ].join('\n'),
  );
});

test('CSV quotes what needs quoting and defuses spreadsheet formulas', () => {
  assert.is(renderCsv(['a', 'b'], [['x,y', 'say "hi"'], ['=cmd()', -5], [null, 'line\nbreak']]), 'a,b\r\n"x,y","say ""hi"""\r\n\'=cmd(),-5\r\n,"line\nbreak"\r\n');
});

test.after(cleanup);
test.run();
