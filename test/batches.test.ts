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

async function batchHost(name: string) {
  const file = writeAgentConfig(stack, work.dir, name, (raw) => {
    delete raw.services.jobs;
    delete raw.services.db;
    raw.security = { ...raw.security, messagesPerUserPerHour: 1000, repliesPerHour: 1000 };
  });
  const config = await loadConfig(file);
  const store = new MemoryStore();
  const log = createLogger({ level: 'error', json: true });
  const source = await ImapSource.connect(config, log, { onMail: () => undefined, onClose: () => undefined, onEvent: () => undefined });
  const counters = { queued: 0, synced: 0 };
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
    replyQueued: () => void counters.queued++,
    synced: () => void counters.synced++,
  };
  return { host, store, source, counters };
}

test('catchUp leases, claims, answers and files every waiting message: answers to Processed, refusals to Rejected', async () => {
  const { host, store, source, counters } = await batchHost('solo');
  try {
    await sendMails(stack, [{ subject: 'help', text: 'help\n' }, { subject: 'status', text: 'status\n' }, { subject: 'nonsense', text: 'frobnicate now\n' }]);
    await waitForCount(stack, 'agent', 3, { timeoutMs: 20_000, intervalMs: 50 });
    const batches = new MessageBatches(host);
    await batches.catchUp();
    assert.is(batches.handled, 3);
    assert.is(counters.queued, 3, 'every reply (two answers and one refusal) was handed to the outbox');
    assert.is(counters.synced, 1);
    const counts = await folderCounts(stack, 'agent', ['INBOX', 'Processing', 'Processed', 'Rejected']);
    assert.equal(counts, { INBOX: 0, Processing: 0, Processed: 2, Rejected: 1 });
    const due = await store.takeDueReplies(Date.now(), 1000, 10);
    assert.is(due.length, 3);
    await batches.releaseKept();
  } finally {
    await source.close();
  }
});

test('a backlog: slices are claimed while the pipeline works, each message handled once, filed in groups', async () => {
  const { host, store, source } = await batchHost('backlog');
  const filings: number[] = [];
  const downloads: number[][] = [];
  const fetchSources = source.fetchSources.bind(source);
  source.fetchSources = async (path, uids, maxBytes) => {
    const fetched = await fetchSources(path, uids, maxBytes);
    downloads.push([...fetched.values()].map((raw) => raw.length));
    return fetched;
  };
  const move = source.move.bind(source);
  source.move = async (uids, from, to) => {
    filings.push(uids.length);
    return move(uids, from, to);
  };
  try {
    // Two large ones among them are downloaded on their own (the attachment, in base64, makes each ~410 KB).
    const big = { filename: 'dump.bin', content: Buffer.alloc(300_000, 7) };
    const mails = Array.from({ length: 75 }, (_, i) =>
      i === 20 || i === 50 ? { subject: `large ${i}`, text: 'help\n', attachments: [big] } : i % 8 === 7 ? { subject: `odd ${i}`, text: 'frobnicate now\n' } : { subject: `help ${i}`, text: 'help\n' },
    );
    const before = await folderCounts(stack, 'agent', ['Processed', 'Rejected']);
    const ids = await sendMails(stack, mails);
    await waitForCount(stack, 'agent', 75, { timeoutMs: 30_000, intervalMs: 50 });
    const batches = new MessageBatches(host);
    await batches.catchUp();
    assert.is(batches.handled, 75);
    const counts = await folderCounts(stack, 'agent', ['INBOX', 'Processing', 'Processed', 'Rejected']);
    assert.equal(counts, { INBOX: 0, Processing: 0, Processed: before.Processed + 66, Rejected: before.Rejected + 9 });
    for (const id of ids) {
      const entry = await store.get(`mid:${id}`);
      assert.is(entry?.attempt ?? 1, 1, `${id} was handled once`);
    }
    assert.is((await store.takeDueReplies(Date.now(), 1000, 100)).length, 75);
    const large = downloads.filter((sizes) => sizes.some((n) => n > 256 * 1024));
    assert.equal(large.map((sizes) => sizes.length), [1, 1], 'each large message downloaded alone');
    assert.ok(Math.max(...downloads.map((sizes) => sizes.length)) > 10, 'small ones in slices of up to twenty');
    // Filed out of Processing in groups of about fifty (answers and refusals apart), not per slice.
    assert.ok(filings.length <= 4, `filings: ${filings.join(', ')}`);
    assert.is(
      filings.reduce((a, b) => a + b, 0),
      75,
    );
    await batches.releaseKept();
  } finally {
    await source.close();
  }
});

test.run();
