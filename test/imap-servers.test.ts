import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { validateConfig } from '../src/config/load';
import { silentLogger } from '../src/core/log';
import { ImapSource } from '../src/mail/imap-source';
import { killAgents, startAgentProcess, writeAgentConfig } from './support/agent-process';
import { tempDir } from './support/env';
import { fetchAll, folderCounts, sendMail, waitForCount, withImap } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// IMAP servers other than a complete Dovecot: one without MOVE (and one without UIDPLUS as well),
// where a failed COPY must leave the only copy in INBOX, and one without IDLE, where `watch`
// polls. The private Dovecot announces only the capabilities given.

const test = suite('IMAP servers without MOVE or IDLE');
const BASE = 'IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE SORT THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE LIST-EXTENDED I18NLEVEL=1 ESEARCH SEARCHRES WITHIN LIST-STATUS SPECIAL-USE';

let work: ReturnType<typeof tempDir>;
const stacks: MailStack[] = [];

test.before.each(() => {
  work = tempDir('mailagent-imapcaps-');
});

test.after.each(async () => {
  await killAgents();
  await Promise.all(stacks.splice(0).map((s) => s.stop()));
  work.cleanup();
});

async function stackWith(capabilities: string): Promise<MailStack> {
  const stack = await startMailStack({ imapCapability: capabilities });
  stacks.push(stack);
  return stack;
}

/** The agent's IMAP connection as watch opens it (folders created), for this stack. */
async function agentSource(stack: MailStack): Promise<ImapSource> {
  const file = writeAgentConfig(stack, work.dir, 'agent');
  process.env.MAILAGENT_IMAP_PASSWORD = stack.users.agent.password;
  const config = validateConfig(JSON.parse(require('node:fs').readFileSync(file, 'utf8')), file);
  return ImapSource.connect(config, silentLogger, { onEvent: () => {}, onMail: () => {}, onClose: () => {} });
}

async function inboxSubjects(stack: MailStack, folder = 'INBOX'): Promise<string[]> {
  return (await fetchAll(stack, 'agent', folder)).map((m) => m.subject);
}

for (const [label, capabilities] of [
  ['without MOVE', `${BASE} IDLE UIDPLUS`],
  ['without MOVE and UIDPLUS', `${BASE} IDLE`],
] as const) {
  test(`${label}: a claim that fails leaves the message in INBOX; one that works takes it out of INBOX`, async () => {
    const stack = await stackWith(capabilities);
    // One after the other: Postfix may deliver two queued mails in either order, and UIDs follow delivery.
    await sendMail(stack, { from: 'ops@example.com', to: 'agent@example.com', subject: 'first', text: 'status' });
    await waitForCount(stack, 'agent', 1);
    await sendMail(stack, { from: 'ops@example.com', to: 'agent@example.com', subject: 'second', text: 'status' });
    await waitForCount(stack, 'agent', 2);
    const source = await agentSource(stack);
    try {
      const [first, second] = await source.listUids('INBOX');
      // The processing folder vanishes (deleted in a mail client): the COPY fails.
      await withImap(stack, 'agent', (client) => client.mailboxDelete('Processing'));
      const refused = await source.claim([first]).then(() => undefined, (err: Error) => err.message);
      assert.match(refused ?? 'no error', /refused to move messages into Processing/);
      assert.equal(await inboxSubjects(stack), ['first', 'second'], 'a failed COPY must not delete the only copy');
      assert.equal(await source.listUids('INBOX'), [first, second]);

      await withImap(stack, 'agent', (client) => client.mailboxCreate('Processing'));
      await source.claim([first]);
      assert.equal(await inboxSubjects(stack, 'Processing'), ['first']);
      // With UIDPLUS only that message is expunged; without it, it stays flagged \Deleted and is no longer listed.
      assert.equal(await source.listUids('INBOX'), [second]);
      const left = await inboxSubjects(stack);
      assert.equal(left, capabilities.includes('UIDPLUS') ? ['second'] : ['first', 'second']);
    } finally {
      await source.close();
    }
  });
}

test('without IDLE: watch polls, answers a request, and files it', async () => {
  const stack = await stackWith(`${BASE} MOVE UIDPLUS`);
  const config = writeAgentConfig(stack, work.dir, 'poller', (raw) => {
    raw.imap.pollSeconds = 1;
    delete raw.services.jobs;
  });
  const agent = startAgentProcess({ config, cwd: work.dir, env: { HOME: work.dir, MAILAGENT_IMAP_PASSWORD: stack.users.agent.password } });
  await agent.waitFor((l) => l.msg === 'ready');
  await sendMail(stack, { from: 'ops@example.com', to: 'agent@example.com', subject: 'polled', text: 'status' });
  await waitForCount(stack, 'ops', 1, { timeoutMs: 20_000 });
  const [reply] = await fetchAll(stack, 'ops');
  assert.is(reply.subject, 'Re: polled — processed (1 ok, 0 failed)');
  assert.match(reply.text, 'imap: ');
  assert.equal(await folderCounts(stack, 'agent', ['INBOX', 'Processed']), { INBOX: 0, Processed: 1 });
});

test.run();
