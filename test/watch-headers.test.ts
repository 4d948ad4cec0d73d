import { createHash } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { processMessage } from '../src/core/pipeline';
import { parseMail } from '../src/mail/parse';
import { envelopeSenderOf, messageKey } from '../src/watch/headers';
import { demoConfig, mail, tempDir, testDeps } from './support/env';

// The agent leases a message under messageKey before the pipeline runs, and recovery looks the
// journal up with it: it must be the pipeline's journal key (mid:<Message-ID as parsed>, its
// domain in lower case; else a hash of the bytes) for every shape of Message-ID header.
const test = suite('watch headers');

const message = (head: string, body = 'db tables\r\n') => Buffer.from(`From: ops@example.com\r\nTo: agent@example.com\r\nSubject: x\r\n${head}\r\n\r\n${body}`);

/** The key the pipeline gives the message: from the full parse. */
async function pipelineKey(raw: Buffer): Promise<string> {
  const id = (await parseMail(raw)).messageId;
  return id ? `mid:${id.replace(/@[^@]*$/, (domain) => domain.toLowerCase())}` : `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

const cases: [string, string, string | undefined][] = [
  ['bracketed', 'Message-ID: <Abc@Example.com>', 'mid:<Abc@example.com>'],
  ['without angle brackets', 'Message-ID: a@b', 'mid:<a@b>'],
  ['without brackets, padded', 'Message-Id:    a.b.c@host.example   ', 'mid:<a.b.c@host.example>'],
  ['folded onto the next line', 'Message-ID:\r\n <folded@example.com>', 'mid:<folded@example.com>'],
  ['folded, without brackets', 'Message-ID:\r\n\tfolded-bare@example.com', 'mid:<folded-bare@example.com>'],
  ['two ids in one header', 'Message-ID: <first@example.com> <second@example.com>', 'mid:<first@example.com>'],
  ['two Message-ID headers', 'Message-ID: <one@example.com>\r\nMessage-ID: <two@example.com>', 'mid:<one@example.com>'],
  // mailparser keeps one value of a repeated Message-ID header: the pipeline finds no id here.
  ['a first header without a usable id', 'Message-ID: not an id\r\nMessage-ID: <usable@example.com>', undefined],
  ['with a comment', 'Message-ID: <commented@example.com> (from the client)', 'mid:<commented@example.com>'],
  ['encoded word', 'Message-ID: =?utf-8?Q?encoded@example.com?=', 'mid:<encoded@example.com>'],
  ['spaces inside', 'Message-ID: two words', undefined],
  ['empty', 'Message-ID: ', undefined],
  ['none', 'X-Other: 1', undefined],
];

for (const [name, head, expected] of cases) {
  test(`messageKey equals the pipeline's key: ${name}`, async () => {
    const raw = message(head);
    const key = await messageKey(raw);
    assert.is(key, await pipelineKey(raw));
    if (expected) assert.is(key, expected);
    else assert.match(key, /^sha256:[0-9a-f]{64}$/);
  });
}

test('two deliveries of a bracketless Message-ID share one key; without any id, each copy has its own', async () => {
  const a = Buffer.concat([Buffer.from('Return-Path: <ops@example.com>\r\nDelivered-To: agent@example.com\r\n'), message('Message-ID: same@example.com')]);
  const b = Buffer.concat([Buffer.from('Return-Path: <ops@example.com>\r\nDelivered-To: other@example.com\r\n'), message('Message-ID: same@example.com')]);
  assert.is(await messageKey(a), await messageKey(b));
  assert.is(await messageKey(a), 'mid:<same@example.com>');
  const c = Buffer.concat([Buffer.from('Delivered-To: x@example.com\r\n'), message('X-No-Id: 1')]);
  const d = Buffer.concat([Buffer.from('Delivered-To: y@example.com\r\n'), message('X-No-Id: 1')]);
  assert.is.not(await messageKey(c), await messageKey(d));
});

test('an oversize message cut after the size limit keys as the pipeline keys it (header block only)', async () => {
  const raw = mail(`db tables\n${'x'.repeat(50_000)}`, { 'Message-ID': 'big@example.com' });
  const cut = raw.subarray(0, 2049); // what the agent downloads with limits.maxMessageBytes = 2048
  assert.is(await messageKey(cut, 2048), 'mid:<big@example.com>');
  const { dir, cleanup } = tempDir();
  try {
    const config = demoConfig(dir, (c) => (c.limits = { ...c.limits, maxMessageBytes: 2048 }));
    const outcome = await processMessage(cut, testDeps(config));
    assert.is(outcome.kind, 'reply', JSON.stringify(outcome));
    if (outcome.kind === 'reply') {
      assert.is(outcome.decision, 'rejected');
      assert.is(outcome.key, await messageKey(cut, 2048));
    }
  } finally {
    cleanup();
  }
});

test('envelopeSenderOf reads Return-Path', () => {
  assert.is(envelopeSenderOf(Buffer.from('Return-Path: <ops@example.com>\r\n\r\n')), 'ops@example.com');
  assert.is(envelopeSenderOf(Buffer.from('Return-Path: <>\r\n\r\n')), '');
  assert.is(envelopeSenderOf(Buffer.from('Subject: x\r\n\r\n')), undefined);
});

test.run();
