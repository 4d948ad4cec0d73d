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

test.run();
