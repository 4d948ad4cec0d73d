import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { requestLines, commandLines } from '../src/core/lines';
import { parseMail } from '../src/mail/parse';

const dir = join(__dirname, 'fixtures', 'mail');
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Record<string, { lines: { line: number; text: string }[]; note: string }>;
const files = readdirSync(dir).filter((f) => f.endsWith('.eml'));

test('every fixture has an expectation', () => {
  assert.ok(files.length >= 30);
  for (const f of files) assert.ok(expected[f], `${f} has no entry in expected.json`);
});

for (const file of files) {
  test(`reads the commands of ${file}`, async () => {
    const mail = await parseMail(readFileSync(join(dir, file)));
    assert.equal(requestLines(mail.body, mail.subject), expected[file].lines, expected[file].note);
  });
}

test('HTML is used only when there is no plain part', async () => {
  const html = await parseMail(readFileSync(join(dir, '21-html-only.eml')));
  assert.is(html.bodySource, 'html');
  const alt = await parseMail(readFileSync(join(dir, '20-alternative-plain-wins.eml')));
  assert.is(alt.bodySource, 'plain');
});

test('non-UTF-8 charsets decode to the right characters', async () => {
  const latin1 = await parseMail(readFileSync(join(dir, '14-iso-8859-1.eml')));
  assert.match(latin1.body, 'host="Müller"');
  const koi8 = await parseMail(readFileSync(join(dir, '16-koi8-r.eml')));
  assert.match(koi8.body, 'Иванов');
  const jis = await parseMail(readFileSync(join(dir, '17-iso-2022-jp.eml')));
  assert.match(jis.body, '東京データセンター');
});

test('a trailing backslash on the last line is dropped, not joined with nothing', () => {
  assert.equal(commandLines('db tables \\'), [{ line: 1, text: 'db tables' }]);
});

test('quoted text stops reading even when it starts the body', () => {
  assert.equal(commandLines('> db tables\nstatus'), []);
});

test('blank lines still count toward line numbers', () => {
  assert.equal(commandLines('status\r\n\r\ndb tables'), [
    { line: 1, text: 'status' },
    { line: 3, text: 'db tables' },
  ]);
});

const load = (file: string) => parseMail(readFileSync(join(dir, file)));

test('8-bit text that is not valid UTF-8 decodes as windows-1252, valid UTF-8 as UTF-8, whatever the label', async () => {
  const cases: [string, string[]][] = [
    ['35-latin1-no-charset.eml', ['host="Müller"']],
    ['36-latin1-no-mime-headers.eml', ['user="José Núñez"']],
    ['37-latin1-labelled-utf8.eml', ['host="Müller"']],
    ['38-cp1252-specials-labelled-utf8.eml', ['amount=\u201c100 \u20ac\u201d', 'period=\u201cNov \u2013 Dec\u201d']],
    ['39-utf8-labelled-us-ascii.eml', ['host="Müller"', 'user="Zoë"']],
    ['40-utf8-no-charset.eml', ['host="Müller"']],
    ['41-unknown-charset-utf8.eml', ['host="Müller"']],
    ['42-unknown-charset-latin1.eml', ['host="Müller"']],
    ['45-html-cp1252-labelled-utf8.eml', ['host="Müller"', 'amount="100 \u20ac"']],
  ];
  for (const [file, texts] of cases) {
    const { body } = await load(file);
    for (const text of texts) assert.ok(body.includes(text), `${file}: expected ${JSON.stringify(text)} in ${JSON.stringify(body)}`);
    assert.not.ok(/[\ufffd\u0080-\u009f]|Ã/.test(body), `${file}: replacement, C1 or double-decoded character in ${JSON.stringify(body)}`);
  }
});

test('raw 8-bit bytes in the Subject, bare or inside an encoded-word, decode with the windows-1252 fallback', async () => {
  assert.is((await load('43-subject-raw-latin1.eml')).subject, 'db query name=find_user user="Zoë Müller"');
  assert.is((await load('44-subject-encoded-word-raw-8bit.eml')).subject, 'db query name=find_host host="Müller"');
});

test('UTF-7 bodies are decoded (all three labels), including encoded < and >', async () => {
  const accented = (await load('46-utf7-accented.eml')).body;
  assert.match(accented, 'db query name=find_host host="Müller"');
  assert.match(accented, '# commentaire: évité');
  const angle = (await load('47-utf7-angle-brackets.eml')).body;
  assert.match(angle, 'text="a<b>c"');
  assert.match(angle, '\n> db query name=drop_everything');
  assert.match((await load('48-utf7-unicode-1-1-label.eml')).body, 'owner="Иванов"');
});

test('a forwarded message/rfc822 part is never part of the body', async () => {
  for (const file of ['66-rfc822-inline-after-own-text.eml', '67-rfc822-only-subject-used.eml', '68-rfc822-html-only-empty-subject.eml', '69-rfc822-before-own-text.eml']) {
    const { body } = await load(file);
    assert.not.match(body, 'drop_everything', `${file}: ${JSON.stringify(body)}`);
  }
  assert.is((await load('67-rfc822-only-subject-used.eml')).body.trim(), '');
  assert.is((await load('68-rfc822-html-only-empty-subject.eml')).body.trim(), '');
});

const GREETINGS = [
  'Hi', 'hi,', 'HI!', 'Hello team,', 'Hi Bob!', 'Hey Anna:', 'Dear all,', 'Dear Mr Smith.', 'Good morning', 'good afternoon everyone,',
  'Good Evening all!', 'Greetings,', 'Hallo zusammen,', 'Moin', 'moin moin!', 'Hello Anna Maria de Vries,',
];

test('a greeting as the first non-blank line is skipped', () => {
  for (const g of GREETINGS) {
    assert.equal(requestLines(`${g}\nstatus`, ''), [{ line: 2, text: 'status' }], JSON.stringify(g));
    assert.equal(requestLines(`\n  \r\n${g}\r\n\r\nstatus\n`, ''), [{ line: 5, text: 'status' }], `after blank lines: ${JSON.stringify(g)}`);
  }
});

test('a greeting that is not the first non-blank line, or more than a greeting, is an ordinary line', () => {
  for (const g of GREETINGS) {
    assert.equal(requestLines(`status\n${g}`, ''), [{ line: 1, text: 'status' }, { line: 2, text: g }], JSON.stringify(g));
  }
  for (const first of ['Hi, please run db tables', 'Hello to the whole ops team,', 'Highlights:', 'Dearest colleagues', 'Good news everyone, the disk is fine']) {
    assert.equal(requestLines(`${first}\nstatus`, ''), [{ line: 1, text: first }, { line: 2, text: 'status' }], JSON.stringify(first));
  }
});

const CLOSINGS = [
  'Kind regards', 'kind regards,', 'Best Regards.', 'Warm regards!', 'Regards', 'regards,', 'Best wishes,', 'Best', 'best,', 'Cheers', 'Cheers!',
  'Thanks', 'THANKS.', 'Many thanks,', 'Thank you!', 'thx', 'All the best', 'Sincerely,', 'Yours,', 'BR', 'br,',
  'Mit freundlichen Grüßen', 'mit freundlichen grüßen,', 'Viele Grüße!', 'Grüße', 'Cordialement.',
];

test('a conventional closing ends the request; nothing after it is read', () => {
  for (const c of CLOSINGS) {
    assert.equal(requestLines(`status\n${c}\nAnna\ndb tables`, ''), [{ line: 1, text: 'status' }], JSON.stringify(c));
    assert.equal(requestLines(`status\n\n  ${c}  \r\ndb tables\r\n`, ''), [{ line: 1, text: 'status' }], `indented: ${JSON.stringify(c)}`);
  }
});

test('a line that is more than a closing is read', () => {
  for (const c of ['Best regards to the team', 'Regards from Berlin', 'Cheers to that', 'Best of luck', 'Thanks a lot for the fix', 'br0ken disk on web 01']) {
    assert.equal(requestLines(`status\n${c}\nhelp`, ''), [{ line: 1, text: 'status' }, { line: 2, text: c }, { line: 3, text: 'help' }], JSON.stringify(c));
  }
});

test('forwarded-message markers stop reading', () => {
  for (const marker of ['---------- Forwarded message ---------', 'Begin forwarded message:', '-------- Forwarded Message --------']) {
    assert.equal(requestLines(`status\n${marker}\ndb tables`, ''), [{ line: 1, text: 'status' }], JSON.stringify(marker));
  }
  assert.equal(requestLines('status\nFrom: Bob <bob@example.com>\nSent: Tuesday\ndb tables', ''), [{ line: 1, text: 'status' }]);
  assert.equal(requestLines('status\nFrom: Bob <bob@example.com>\n\n\nDate: Tuesday\ndb tables', ''), [{ line: 1, text: 'status' }]);
  assert.equal(requestLines('status\nFrom: Bob\nTo: Ops\ndb tables', ''), [
    { line: 1, text: 'status' },
    { line: 2, text: 'From: Bob' },
    { line: 3, text: 'To: Ops' },
    { line: 4, text: 'db tables' },
  ]);
});

test('a uuencoded block is skipped, an unterminated one to the end of the body', () => {
  assert.equal(requestLines('status\nbegin 644 a.txt\n#86)C\n`\nend\ndb tables', ''), [{ line: 1, text: 'status' }, { line: 6, text: 'db tables' }]);
  assert.equal(requestLines('status\nbegin 644 a.txt\n#86)C\n\ndb tables', ''), [{ line: 1, text: 'status' }]);
});

test.run();
