import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../src/config/load';
import { createLogger } from '../src/core/log';
import { ImapSource } from '../src/mail/imap-source';
import { MemoryStore } from '../src/state/store';
import { MessageBatches, type BatchHost } from '../src/watch/batches';
import { AgentIdentity } from '../src/watch/leases';
import { writeAgentConfig } from './support/agent-process';
import { tempDir, testDeps } from './support/env';
import { folderCounts, sendMails, waitForCount } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// The claim batch on its own, without the reconnect state machine of agent.ts: one connection to
// a private Dovecot, a memory state store, and the batches catching up on what is there.
const test = suite('message batches');

let stack: MailStack;
let work: { dir: string; cleanup: () => void };

test.before(async () => {
  work = tempDir('mailagent-batches-');
  stack = await startMailStack();
  process.env.MAILAGENT_IMAP_PASSWORD = stack.users.agent.password;
});

test.after(async () => {
  await stack?.stop();
  work?.cleanup();
});

test('catchUp leases, claims, answers and files every waiting message: answers to Processed, refusals to Rejected', async () => {
  const file = writeAgentConfig(stack, work.dir, 'solo', (raw) => {
    delete raw.services.jobs;
    delete raw.services.db;
  });
  const config = await loadConfig(file);
  const store = new MemoryStore();
  const log = createLogger({ level: 'error', json: true });
  const source = await ImapSource.connect(config, log, { onMail: () => undefined, onClose: () => undefined, onEvent: () => undefined });
  let queued = 0;
  let synced = 0;
  const host: BatchHost = {
    config,
    store,
    log,
    identity: new AgentIdentity(join(work.dir, 'agents')),
    dryRun: false,
    once: false,
    source,
    stopping: false,
    deps: () => ({ ...testDeps(config), store }),
    replyQueued: () => void queued++,
    synced: () => void synced++,
  };
  try {
    await sendMails(stack, [{ subject: 'help', text: 'help\n' }, { subject: 'status', text: 'status\n' }, { subject: 'nonsense', text: 'frobnicate now\n' }]);
    await waitForCount(stack, 'agent', 3, { timeoutMs: 20_000, intervalMs: 50 });
    const batches = new MessageBatches(host);
    await batches.catchUp();
    assert.is(batches.handled, 3);
    assert.is(queued, 3, 'every reply (two answers and one refusal) was handed to the outbox');
    assert.is(synced, 1);
    const counts = await folderCounts(stack, 'agent', ['INBOX', 'Processing', 'Processed', 'Rejected']);
    assert.equal(counts, { INBOX: 0, Processing: 0, Processed: 2, Rejected: 1 });
    const due = await store.takeDueReplies(Date.now(), 1000, 10);
    assert.is(due.length, 3);
    await batches.releaseKept();
  } finally {
    await source.close();
  }
});

test.run();
