import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { Outbox, backoff, outboxLeaseMs, outboxPass } from '../src/mail/outbox';
import { createSmtpSender, type SmtpSender } from '../src/mail/smtp';
import { SqliteStore } from '../src/state/sqlite-store';
import type { StateStore } from '../src/state/store';
import { demoConfig, tempDir } from './support/env';
import { closedPort, startSmtpSink } from './support/smtp-sink';

const { dir, cleanup } = tempDir();
const baseConfig = demoConfig(dir);
let seq = 0;

const withSmtp = (port: number): Config => ({ ...baseConfig, smtp: { host: '127.0.0.1', port, timeoutSeconds: 5 } });

/** A reply as the pipeline leaves it: journal entry in reply-pending. */
async function queueReply(store: StateStore, to = 'ops@example.com'): Promise<string> {
  const n = ++seq;
  const key = `mid:<outbox-${n}@example.com>`;
  const messageId = `<reply-${n}@example.com>`;
  await store.begin(key, { sender: to, bodyHash: `h${n}`, mutates: false }, { attempt: 0 });
  const raw = Buffer.from(`From: agent@example.com\r\nTo: ${to}\r\nMessage-ID: ${messageId}\r\nSubject: Re: ${n}\r\n\r\nreply ${n}\r\n`);
  await store.saveReply(key, { messageId, from: 'agent@example.com', to: [to], raw });
  return key;
}

function senderFor(config: () => Config): { get: () => SmtpSender; close: () => void } {
  let current: { port: number | undefined; sender: SmtpSender } | undefined;
  return {
    get: () => {
      const cfg = config();
      if (!current || current.port !== cfg.smtp?.port) {
        current?.sender.close();
        current = { port: cfg.smtp?.port, sender: createSmtpSender(cfg, { pooled: true }) };
      }
      return current.sender;
    },
    close: () => current?.sender.close(),
  };
}

test('backoff doubles from 1 s, is capped at 5 min, and is jittered', () => {
  for (let i = 0; i < 50; i++) {
    const first = backoff(0);
    assert.ok(first >= 800 && first <= 1200, String(first));
    const third = backoff(2);
    assert.ok(third >= 3200 && third <= 4800, String(third));
    assert.ok(backoff(40) <= 5 * 60_000 * 1.2);
  }
  const samples = new Set(Array.from({ length: 20 }, () => backoff(5)));
  assert.ok(samples.size > 1, 'jitter');
});

test('a pass takes no more replies than the sender has connections, and leases them for one conversation each', () => {
  const conversation = outboxLeaseMs(withSmtp(25)); // 5 s timeout: 2 × 5 + 10 s
  assert.is(conversation, 20_000);
  // The agent's pool of 4, `run`'s pool of 2: the queue never outlasts the lease.
  assert.equal(outboxPass(20, 4, conversation), { take: 4, leaseMs: 20_000 });
  assert.equal(outboxPass(20, 2, conversation), { take: 2, leaseMs: 20_000 });
  assert.equal(outboxPass(3, 4, conversation), { take: 3, leaseMs: 20_000 });
  assert.equal(outboxPass(20, 1, conversation), { take: 1, leaseMs: 20_000 });
  // A sender without a pool opens a connection per reply: the whole batch runs at once.
  assert.equal(outboxPass(20, undefined, conversation), { take: 20, leaseMs: 20_000 });
  // Whatever is taken, the lease covers the conversations that run one after another.
  for (const [batch, connections] of [[20, 4], [7, 3], [1, 1], [50, 8], [5, 0]]) {
    const { take, leaseMs } = outboxPass(batch, connections, conversation);
    const rounds = Math.ceil(take / Math.max(1, connections));
    assert.ok(take >= 1 && take <= batch, `${batch}/${connections}`);
    assert.ok(leaseMs >= rounds * conversation, `${batch}/${connections}: ${leaseMs} ms for ${rounds} rounds`);
  }
  for (const [options, connections] of [[{ pooled: true }, 4], [{ pooled: true, maxConnections: 2 }, 2], [{}, undefined]] as const) {
    const sender = createSmtpSender(withSmtp(25), options);
    assert.is(sender.connections, connections);
    sender.close();
  }
});

test('a stored reply is sent byte for byte and marked replied', async () => {
  const sink = await startSmtpSink();
  const store = new SqliteStore(join(dir, 'send.db'));
  const config = withSmtp(sink.port);
  const sender = senderFor(() => config);
  try {
    const key = await queueReply(store);
    const outbox = new Outbox({ store, sender: sender.get, intervalMs: 0 });
    assert.is(await outbox.drain(Date.now() + 10_000), 0);
    assert.is(sink.received.length, 1);
    assert.equal(sink.received[0].to, ['ops@example.com']);
    assert.is(sink.received[0].from, 'agent@example.com');
    assert.match(sink.received[0].raw.toString(), /^From: agent@example.com\r\n/);
    assert.is((await store.get(key))!.state, 'replied');
    assert.is(outbox.counters.sent, 1);
    // Nothing is due any more: another pass sends nothing.
    await outbox.pump();
    assert.is(sink.received.length, 1);
  } finally {
    sender.close();
    await store.close();
    await sink.close();
  }
});

test('SMTP down: the reply is deferred with backoff and attempts are counted; later it is delivered exactly once', async () => {
  const store = new SqliteStore(join(dir, 'down.db'));
  let config = withSmtp(await closedPort());
  const sender = senderFor(() => config);
  let clock = Date.now();
  const delays: number[] = [];
  const outbox = new Outbox({
    store,
    sender: sender.get,
    intervalMs: 0,
    now: () => clock,
    retryDelay: (n) => {
      delays.push(n);
      return 60_000 * 2 ** n;
    },
  });
  const sink = await startSmtpSink();
  try {
    const key = await queueReply(store);
    assert.is(await outbox.drain(clock + 10_000), 1, 'still waiting');
    assert.is((await store.get(key))!.state, 'reply-pending');
    // Not due again before its backoff has passed.
    await outbox.pump();
    assert.equal(delays, [0]);
    clock += 60_000;
    await outbox.pump();
    assert.equal(delays, [0, 1]);
    const [peek] = await store.takeDueReplies(clock + 120_000, 0, 10);
    assert.is(peek.attempts, 2);
    assert.match(peek.lastError!, /ECONNREFUSED|connect/);
    assert.is(outbox.counters.failedAttempts, 2);

    config = withSmtp(sink.port);
    clock += 120_000;
    assert.is(await outbox.drain(clock + 10_000), 0, 'the deadline is on the outbox clock');
    assert.is(sink.received.length, 1);
    assert.is((await store.get(key))!.state, 'replied');
    clock += 3_600_000;
    await outbox.pump();
    assert.is(sink.received.length, 1, 'exactly once');
  } finally {
    sender.close();
    await store.close();
    await sink.close();
  }
});

test('two outbox loops on one SQLite file send each reply exactly once', async () => {
  const sink = await startSmtpSink();
  const file = join(dir, 'shared.db');
  const storeA = new SqliteStore(file);
  const storeB = new SqliteStore(file);
  const config = withSmtp(sink.port);
  const senderA = senderFor(() => config);
  const senderB = senderFor(() => config);
  try {
    const keys: string[] = [];
    for (let i = 0; i < 40; i++) keys.push(await queueReply(i % 2 ? storeA : storeB, `user${i}@example.com`));
    const a = new Outbox({ store: storeA, sender: senderA.get, intervalMs: 0, batch: 3 });
    const b = new Outbox({ store: storeB, sender: senderB.get, intervalMs: 0, batch: 3 });
    await Promise.all([a.drain(Date.now() + 20_000), b.drain(Date.now() + 20_000)]);
    assert.is((await storeA.outboxStats()).depth, 0);
    assert.is(sink.received.length, 40);
    const recipients = sink.received.map((m) => m.to[0]);
    assert.is(new Set(recipients).size, 40, 'no reply sent twice');
    assert.is(a.counters.sent + b.counters.sent, 40);
    assert.ok(a.counters.sent > 0 && b.counters.sent > 0, `both loops sent (${a.counters.sent}/${b.counters.sent})`);
    for (const key of keys) assert.is((await storeA.get(key))!.state, 'replied');
  } finally {
    senderA.close();
    senderB.close();
    await storeA.close();
    await storeB.close();
    await sink.close();
  }
});

test('drain stops at its deadline and reports what is left', async () => {
  const store = new SqliteStore(join(dir, 'deadline.db'));
  // A server that accepts the connection but never greets: the send hangs until its timeout.
  const { createServer } = await import('node:net');
  const sockets: import('node:net').Socket[] = [];
  const mute = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  const config = withSmtp((mute.address() as { port: number }).port);
  const sender = senderFor(() => config);
  try {
    await queueReply(store);
    const outbox = new Outbox({ store, sender: sender.get, intervalMs: 0 });
    assert.is(await outbox.drain(Date.now() + 200), 1);
    await outbox.stop(Date.now() + 100);
  } finally {
    sender.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => mute.close(r));
    await store.close();
  }
});

test.after(cleanup);
test.run();
