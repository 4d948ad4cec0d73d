import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type MailComposerClass from 'nodemailer/lib/mail-composer';
import type Mail from 'nodemailer/lib/mailer';
import { buildOnePart, buildStreamed, composeMessage } from '../src/mail/compose';

// The direct way of composeMessage must give the very bytes MimeNode.build() streams: compared
// over texts that take each transfer encoding (7bit, quoted-printable, base64) and their edges
// (long lines, trailing white space, CR and LF alone, NUL, surrogates, no final line break), and
// over seeded random texts (a run of 20 000 found no difference).

const MailComposer = require('nodemailer/lib/mail-composer') as typeof MailComposerClass;

function options(text: string, subject = 'Re: status — processed (1 ok, 0 failed)'): Mail.Options {
  return {
    from: { name: 'mailagent', address: 'agent@example.com' },
    to: 'ops@example.com',
    subject,
    messageId: '<mailagent.00000000-0000-4000-8000-000000000000@example.com>',
    date: new Date(Date.UTC(2026, 11, 6, 20, 30, 0)),
    inReplyTo: '<req-1@example.com>',
    references: ['<root@example.com>', '<req-1@example.com>'],
    headers: { 'Auto-Submitted': 'auto-replied', 'X-Loop': 'agent@example.com', 'X-Auto-Response-Suppress': 'All' },
    text,
  };
}

async function bothWays(o: Mail.Options): Promise<{ direct: Buffer | undefined; streamed: Buffer }> {
  const direct = buildOnePart(new MailComposer(o).compile() as never);
  const streamed = await buildStreamed(new MailComposer(o).compile());
  return { direct, streamed };
}

const SAMPLES: [string, string][] = [
  ['ascii with final newline', 'status: ok\nuptime 3 days\n'],
  ['ascii without final newline', 'status: ok'],
  ['empty', ''],
  ['a 77-character line', `${'x'.repeat(77)}\n`],
  ['a 10 000-character line', 'y'.repeat(10_000)],
  ['CRLF, lone CR and lone LF', 'one\r\ntwo\rthree\nfour\r'],
  ['ends in CR', 'line\r'],
  ['a CR alone near the fold', `${'x'.repeat(70)}\u00e9\r ${'y'.repeat(20)}`],
  ['trailing spaces and tabs', 'a  \nb\t\nc \r\nd '],
  ['a table', '| id | name  |\n|----|-------|\n| 1  | ünïcödé |\n'],
  ['mostly non-Latin (base64)', `${'данные сервера '.repeat(40)}\n${'数据库'.repeat(50)}\n`],
  ['emoji and surrogates', '😀 ok\n\ud83d\ude00\n'],
  ['NUL and control bytes', 'a\u0000b\u0007c\u001bd\n'],
  ['equals signs and dots', '=3D\n.\n..\n=\n'],
  ['a line of dots near the fold', `${'.'.repeat(75)}=\n${'=='.repeat(60)}\n`],
  ['a soft break inside a multibyte character', `${'a'.repeat(74)}é${'b'.repeat(80)}\n`],
  ['many lines', Array.from({ length: 2000 }, (_, i) => `row ${i}\tvalue ${i * 7} ü`).join('\n')],
];

for (const [label, text] of SAMPLES) {
  test(`same bytes both ways: ${label}`, async () => {
    const { direct, streamed } = await bothWays(options(text));
    assert.ok(direct, 'a one-part text message is built directly');
    assert.is(direct!.toString('latin1'), streamed.toString('latin1'));
  });
}

test('same bytes both ways: subjects and names that need encoded words', async () => {
  for (const subject of ['Re: wöchentlicher Check — processed', `Re: ${'é'.repeat(150)}`, 'Re: =?utf-8?q?x?= literal', 'Re: a\r\nBcc: injected@example.com', '']) {
    const o = { ...options('ok\n', subject), from: { name: 'Agënt "ops"', address: 'agent@example.com' } };
    const { direct, streamed } = await bothWays(o);
    assert.is(direct!.toString('latin1'), streamed.toString('latin1'), subject);
  }
});

test('same bytes both ways: 1000 seeded random texts', async () => {
  // An alphabet weighted to what the encoders treat specially: white space before a line break,
  // CR and LF alone, '=', multibyte characters across a soft break, long runs.
  const alphabet = ['a', ' ', '\t', '\n', '\r', '\r\n', '=', '.', 'é', 'Ж', '数', '😀', '\u0000', '\u007f', '\f', ' \n', 'x'.repeat(70), 'ü'.repeat(40), '数'.repeat(30)];
  let seed = 42;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const encodings = new Set<string>();
  for (let n = 0; n < 1000; n++) {
    let text = '';
    const length = Math.floor(next() * (n % 10 === 0 ? 2000 : 200));
    for (let i = 0; i < length; i++) text += alphabet[Math.floor(next() * alphabet.length)];
    const { direct, streamed } = await bothWays(options(text));
    assert.is(direct!.toString('latin1'), streamed.toString('latin1'), JSON.stringify(text));
    encodings.add(/Content-Transfer-Encoding: (\S+)/.exec(streamed.toString('latin1'))?.[1] ?? 'none');
  }
  assert.ok(encodings.has('quoted-printable') && encodings.has('base64'), [...encodings].join(', '));
});

test('attachments go the streamed way, and composeMessage gives what build() gives', async () => {
  const o = { ...options('see the attachment\n'), attachments: [{ filename: 'rows.csv', content: 'id,name\n1,a\n' }] };
  assert.is(buildOnePart(new MailComposer(o).compile() as never), undefined);
  const composed = (await composeMessage(o)).toString('latin1');
  const streamed = (await buildStreamed(new MailComposer(o).compile())).toString('latin1');
  // The multipart boundary is random: compare with it taken out.
  const boundary = (s: string) => s.replace(/--_NmP-[0-9a-f-]+-Part_\d+/g, '--B').replace(/boundary="[^"]+"/g, 'boundary="B"');
  assert.is(boundary(composed), boundary(streamed));
  assert.match(composed, /Content-Disposition: attachment; filename=rows\.csv/);
});

test.run();
