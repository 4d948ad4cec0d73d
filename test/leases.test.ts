import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { statusText } from '../src/core/status';
import { MemoryStore } from '../src/state/store';
import { AgentIdentity, DEFAULT_MESSAGE_LEASE_MS, leaseMessage, messageLeaseMs } from '../src/watch/leases';
import { demoConfig, tempDir } from './support/env';

// How long a message waits for an agent that crashed while holding its lease: imap.leaseSeconds
// (default 300), and `status` tells how many messages wait on another agent's lease.

const { dir, cleanup } = tempDir('mailagent-leases-');

test('the message lease lasts imap.leaseSeconds (default 5 minutes); below 30 s is a config error', () => {
  const withImap = (imap: Record<string, unknown>) =>
    demoConfig(dir, (raw) => (raw.imap = { host: '127.0.0.1', user: 'agent', password: { env: 'X' }, ...imap }));
  assert.is(messageLeaseMs(withImap({})), DEFAULT_MESSAGE_LEASE_MS);
  assert.is(DEFAULT_MESSAGE_LEASE_MS, 300_000);
  assert.is(messageLeaseMs(withImap({ leaseSeconds: 45 })), 45_000);
  assert.throws(() => withImap({ leaseSeconds: 5 }), /imap\.leaseSeconds: must be ≥ 30/);
});

test('a lease another agent holds keeps the message from this one until it expires, not longer', async () => {
  const store = new MemoryStore();
  let clock = 1_000_000;
  const now = () => clock;
  const crashed = new AgentIdentity(join(dir, 'agents-a'), 1);
  const other = new AgentIdentity(join(dir, 'agents-b'), 2);
  const held = await leaseMessage(store, crashed, 'mid:<m@example.com>', 45_000, now);
  assert.ok(held);
  held!.finish(); // it crashed: no more renewals
  assert.is(await leaseMessage(store, other, 'mid:<m@example.com>', 45_000, now), undefined);
  clock += 44_000;
  assert.is(await leaseMessage(store, other, 'mid:<m@example.com>', 45_000, now), undefined);
  clock += 2_000;
  const taken = await leaseMessage(store, other, 'mid:<m@example.com>', 45_000, now);
  assert.ok(taken, 'taken over once the lease expired');
  taken!.finish();
});

test('status shows how many messages wait on another agent\'s lease', async () => {
  const config = demoConfig(dir);
  const user = config.users[0];
  const agent = { startedAt: new Date(Date.now() - 60_000), connection: 'idle', messagesHandled: 3 };
  const none = await statusText(config, new MemoryStore(), user, { ...agent, waitingOnOtherAgents: 0 });
  assert.not.match(none, 'another agent');
  const some = await statusText(config, new MemoryStore(), user, { ...agent, waitingOnOtherAgents: 2 });
  assert.match(some, "messages waiting on another agent's lease: 2");
});

test.after(cleanup);
test.run();
