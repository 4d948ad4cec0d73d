import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WalFsync } from '../src/sqlite/wal-fsync';
import { SqliteStore } from '../src/state/sqlite-store';
import { tempDir } from './support/env';

const { dir, cleanup } = tempDir('mailagent-walfsync-');

/** An fsync the test finishes by hand, recording what was synced and in which order. */
function manualFsync() {
  const calls: { path: string; done: (err?: Error) => void }[] = [];
  const fsync = (path: string) => new Promise<void>((resolve, reject) => calls.push({ path, done: (err) => (err ? reject(err) : resolve()) }));
  return { calls, fsync };
}

const settled = async (p: Promise<unknown>) => {
  let state = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  for (let i = 0; i < 10; i++) await Promise.resolve();
  return state;
};

test('commits that arrive while an fsync runs share the next one, which starts only after it', async () => {
  const { calls, fsync } = manualFsync();
  const wal = new WalFsync('/srv/state.db', fsync);
  const first = wal.flush();
  assert.equal(
    calls.map((c) => c.path),
    ['/srv/state.db-wal'],
  );
  // Committed after the first fsync began: it may not cover them.
  const second = wal.flush();
  const third = wal.flush();
  assert.is(second, third, 'one fsync for both');
  calls[0].done();
  await settled(first);
  assert.equal(
    calls.map((c) => c.path),
    ['/srv/state.db-wal', '/srv'],
    'the directory entry of the WAL once, before the first flush counts',
  );
  assert.is(await settled(first), 'pending');
  calls[1].done();
  assert.is(await settled(first), 'resolved');
  assert.is(await settled(second), 'pending', 'not covered by an fsync that began before it');
  assert.is(calls.length, 3);
  assert.is(calls[2].path, '/srv/state.db-wal');
  calls[2].done();
  assert.is(await settled(second), 'resolved');
  assert.is(await settled(third), 'resolved');

  // Idle again: the next commit starts its own fsync at once, without the directory.
  const fourth = wal.flush();
  assert.is(calls.length, 4);
  assert.is(calls[3].path, '/srv/state.db-wal');
  calls[3].done();
  assert.is(await settled(fourth), 'resolved');
});

test('a failed fsync fails the commits waiting on it, and the next commit tries again', async () => {
  const { calls, fsync } = manualFsync();
  const wal = new WalFsync('/srv/state.db', fsync);
  const first = wal.flush();
  const waiting = wal.flush();
  calls[0].done(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
  assert.is(await settled(first), 'rejected');
  await first.catch((err) => assert.is(err.code, 'EIO'));
  // The waiting commit gets an fsync of its own, which succeeds (with the directory, still not synced).
  assert.is(calls.length, 2);
  calls[1].done();
  await settled(waiting);
  calls[2].done();
  assert.is(await settled(waiting), 'resolved');
});

test('the store waits for the disk before a change runs and before a reply counts, not before a read-only request runs', async () => {
  const { calls, fsync } = manualFsync();
  const store = new SqliteStore(join(dir, 'policy.db'), fsync);
  const info = { sender: 'ops@example.com', bodyHash: 'h', mutates: false };
  try {
    const readOnly = store.begin('k1', info, { attempt: 0 });
    assert.is(await settled(readOnly), 'resolved', 'a read-only request runs at once');
    assert.is(calls.length, 0, 'and costs no fsync');

    const change = store.begin('k1', { ...info, mutates: true }, { attempt: 1 });
    assert.is(await settled(change), 'pending', 'a change waits for its executing entry to be on disk');
    assert.is(calls.length, 1);
    calls[0].done();
    await settled(change);
    calls[1].done(); // the WAL's directory entry, once
    assert.is(await change, true);

    const reply = store.saveReply('k1', { messageId: '<r@example.com>', from: 'agent@example.com', to: ['ops@example.com'], raw: Buffer.from('x') }, { attempt: 2 });
    assert.is(await settled(reply), 'pending', 'a stored reply counts only once on disk');
    calls[2].done();
    assert.is(await reply, true);
  } finally {
    await store.close();
  }
});

test('the real fsync: the WAL of an open store, and a clear error when the file is not there', async () => {
  const path = join(dir, 'state.db');
  const store = new SqliteStore(path);
  try {
    assert.ok(await store.begin('k1', { sender: 'ops@example.com', bodyHash: 'h', mutates: true }, { attempt: 0 }));
    assert.is((await store.get('k1'))?.state, 'executing');
    await new WalFsync(path).flush();
  } finally {
    await store.close();
  }
  try {
    await new WalFsync(join(dir, 'absent.db')).flush();
    assert.unreachable('an fsync of a missing WAL succeeded');
  } catch (err) {
    assert.is((err as NodeJS.ErrnoException).code, 'ENOENT');
  }
});

test.after(cleanup);
test.run();
