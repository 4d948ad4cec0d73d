import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Config } from '../src/config/types';
import { ConfigError, validateConfig } from '../src/config/load';
import { processMessage } from '../src/core/pipeline';
import { archiveEntries } from '../src/services/backup/archive';
import { drainWork } from '../src/services/follow-up';
import { startScheduler } from '../src/services/scheduler';
import { closeServiceStores, serviceStoreFor } from '../src/services/stores';
import type { Notice } from '../src/services/types';
import { demoConfig, exampleConfigObject, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';

const { dir, cleanup } = tempDir('mailagent-backup-');
const tree = join(dir, 'srv', 'app');
const dest = join(dir, 'archives');
mkdirSync(join(tree, 'conf'), { recursive: true });
mkdirSync(join(tree, 'cache'), { recursive: true });
writeFileSync(join(tree, 'conf', 'app.ini'), '[main]\nport = 8080\n');
writeFileSync(join(tree, 'data.bin'), Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256)));
writeFileSync(join(tree, 'cache', 'big.tmp'), 'left out');
writeFileSync(join(tree, 'notes.tmp'), 'left out');

function backupConfig(extra: (raw: Record<string, any>) => void = () => undefined): Config {
  return demoConfig(dir, (raw) => {
    raw.security = { evidence: { 'backup:*': 'allowlist' } };
    raw.services.backup = {
      timezone: 'UTC',
      targets: {
        app: { sources: ['srv/app'], exclude: ['*.tmp', 'app/cache/**'], destination: 'archives', keep: 2, description: 'the app tree' },
        lost: { sources: ['srv/nothing-here'], destination: 'archives-lost' },
      },
    };
    raw.roles.viewer = ['backup:list', 'backup:verify'];
    raw.users.push({ address: 'view@example.com', roles: ['viewer'] });
    raw.state.path = join(dir, 'state.db');
    extra(raw);
  });
}

const config = backupConfig();
const send = async (body: string, cfg = config, from?: string) => readReply(await processMessage(mail(body, from ? { From: from } : {}), testDeps(cfg)));
const archives = () => readdirSync(dest).sort();

test('backup run by mail: the reply gives id, size, file count and the digest of an archive that holds the tree minus excludes', async () => {
  const reply = await send('backup run target=app');
  assert.match(reply.subject!, 'processed (1 ok, 0 failed)');
  const text = reply.text!;
  const id = /archive (\d{8}T\d{6}Z(?:-\d+)?) written/.exec(text)![1];
  const digest = /sha256: +([0-9a-f]{64})/.exec(text)![1];
  assert.match(text, 'files:   2 (');
  const file = join(dest, `app-${id}.tar.gz`);
  assert.is(execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0], digest, 'the digest in the reply is the file\'s');
  const entries = (await archiveEntries(file)).map((e) => e.path.replace(/\/$/, '')).sort();
  // "app/cache/**" leaves out the folder itself too; "*.tmp" files at any depth.
  assert.equal(entries, ['app', 'app/conf', 'app/conf/app.ini', 'app/data.bin']);
});

test('backup list and verify: archives with date, size and digest; verify re-reads the newest and a damaged one fails', async () => {
  const listed = await send('backup list', config, 'view@example.com');
  assert.match(listed.text!, /^target\s+id\s+created\s+size\s+bytes\s+sha256$/m);
  assert.match(listed.text!, /^app\s+\d{8}T\d{6}Z\s+2026|^app\s+\d{8}T\d{6}Z\s+\d{4}-/m);
  const ok = await send('backup verify target=app', config, 'view@example.com');
  assert.match(ok.text!, 'OK: the digest matches the recorded one and the archive reads to its end');

  // Damage the newest archive in place: verify must say so, as a failed command.
  const newest = archives().filter((f) => f.endsWith('.tar.gz')).pop()!;
  const path = join(dest, newest);
  const bytes = require('node:fs').readFileSync(path) as Buffer;
  bytes[Math.floor(bytes.length / 2)] ^= 0xff;
  writeFileSync(path, bytes);
  const bad = await send('backup verify target=app');
  assert.match(bad.subject!, 'processed (0 ok, 1 failed)');
  assert.match(bad.text!, 'NOT OK');
  assert.match(bad.text!, 'digest mismatch');
  const unknownId = await send('backup verify target=app id=20000101T000000Z');
  assert.match(unknownId.text!, 'backup app has no archive 20000101T000000Z');
});

test('retention keeps the newest N archives of the target after good runs', async () => {
  for (let i = 0; i < 3; i++) {
    await send('backup run target=app');
    await new Promise((r) => setTimeout(r, 1100)); // ids have second precision; a suffix would also do
  }
  const kept = archives().filter((f) => f.endsWith('.tar.gz'));
  assert.is(kept.length, 2, kept.join(', '));
  assert.is(archives().filter((f) => f.endsWith('.sha256')).length, 2);
});

test('a failing backup is a failed command with its reason and leaves no archive; unknown targets and names are refused before anything runs', async () => {
  const lost = await send('backup run target=lost');
  assert.match(lost.subject!, 'processed (0 ok, 1 failed)');
  assert.match(lost.text!, /source .*srv\/nothing-here does not exist/);
  assert.not.ok(existsSync(join(dir, 'archives-lost')) && readdirSync(join(dir, 'archives-lost')).some((f) => f.endsWith('.tar.gz')));
  for (const name of ['nosuch', 'constructor', 'toString']) {
    const reply = await send(`backup run target=${name}\nbackup list`);
    assert.match(reply.subject!, 'not processed');
    assert.match(reply.text!, `no backup target named "${name}"`);
  }
  const proto = await send('backup run target=__proto__');
  assert.match(proto.text!, 'target=__proto__: does not match the allowed form');
  const denied = await send('backup run target=app', config, 'view@example.com');
  assert.match(denied.subject!, 'not processed');
});

test('backup run needs strong evidence by default; list does not', async () => {
  const strict = backupConfig((raw) => (raw.security = {}));
  const run = await send('backup run target=app', strict);
  assert.match(run.text!, /otp=|confirm/i);
  assert.not.match(run.text!, 'written');
  const list = await send('backup list target=app', strict);
  assert.match(list.subject!, 'processed (1 ok, 0 failed)');
});

test('backup schedules: set, listed, fired by the scheduler with the result mailed to the setter, cleared', async () => {
  const cfg = backupConfig((raw) => (raw.state.path = join(dir, 'sched.db')));
  const set = await send('backup schedule set target=app cron="* * * * *"', cfg);
  assert.match(set.text!, /backup app is scheduled "\* \* \* \* \*"; next run \d{4}-\d\d-\d\d \d\d:\d\d:00 UTC/);
  const listed = await send('backup schedule', cfg);
  assert.match(listed.text!, /^app\s+\* \* \* \* \*\s+\d{4}-.*ops@example\.com/m);
  assert.match(listed.text!, 'cron times are in UTC');
  // The jobs service does not see a backup's schedule.
  const store = await serviceStoreFor(cfg);
  assert.equal((await store.listSchedules()).map((s) => s.job), ['backup:app']);

  const before = archives().filter((f) => f.endsWith('.tar.gz')).length;
  rmSync(dest, { recursive: true });
  const notices: { key: string; notice: Notice }[] = [];
  let clock = new Date(Date.now() + 60_000);
  clock.setUTCSeconds(59, 500);
  const scheduler = startScheduler({ config: cfg, owner: 'solo', now: () => clock, log: () => undefined, intervalMs: 20, notify: async (key, notice) => void notices.push({ key, notice }) });
  try {
    await new Promise((r) => setTimeout(r, 60));
    clock = new Date(clock.getTime() + 1000);
    for (let i = 0; i < 200 && notices.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  } finally {
    await scheduler.stop();
  }
  assert.ok(before > 0);
  assert.is(notices.length, 1, JSON.stringify(notices));
  const [{ notice }] = notices;
  assert.is(notice.to, 'ops@example.com');
  assert.is(notice.subject, 'backup app finished');
  assert.is(notice.command, 'backup run target=app (scheduled "* * * * *")');
  assert.ok(notice.outcome.ok && notice.outcome.result.kind === 'text' && /sha256: +[0-9a-f]{64}/.test(notice.outcome.result.text));
  assert.is(archives().filter((f) => f.endsWith('.tar.gz')).length, 1, 'the destination is created by the run');

  const cleared = await send('backup schedule clear target=app', cfg);
  assert.match(cleared.text!, 'the schedule of backup app is cleared');
});

test('under watch a backup that takes longer than replyAfterSeconds is answered "started", its result follows in a second mail', async () => {
  const cfg = backupConfig((raw) => (raw.services.backup.replyAfterSeconds = 0));
  const deps = testDeps(cfg, { followUps: true });
  const reply = await readReply(await processMessage(mail('backup run target=app'), deps));
  assert.match(reply.text!, 'backup app: started. The result follows in a second mail.');
  await drainWork(10_000);
  const queued = await Promise.all((await deps.store.takeDueReplies(Date.now(), 1000, 10)).map((e) => simpleParser(e.reply.raw)));
  assert.is(queued.length, 2, 'the reply and the result mail are in the outbox');
  const parsed = queued.find((m) => m.subject !== reply.subject)!;
  assert.match(parsed.subject!, '— backup app finished');
  assert.match(parsed.text!, /sha256: +[0-9a-f]{64}/);
  assert.is(parsed.inReplyTo, reply.inReplyTo, 'threaded under the request');
});

test('help names every backup action', async () => {
  const help = await send('help backup');
  for (const action of ['run', 'list', 'verify', 'schedule']) assert.match(help.text!, `backup ${action}`);
  assert.match(help.text!, 'app - the app tree');
});

test('config: a source overlapping the destination and a bad target name are reported with their path', () => {
  const raw = exampleConfigObject(dir);
  raw.services.backup = { targets: { 'bad name': { sources: ['/srv'], destination: '/srv/backups' } } };
  try {
    validateConfig(raw, join(dir, 'config.json'));
    assert.unreachable('should fail');
  } catch (err) {
    assert.instance(err, ConfigError);
    const text = (err as Error).message;
    assert.match(text, 'services.backup.targets.bad name');
    assert.match(text, 'overlaps the destination /srv/backups');
  }
});

test.after(async () => {
  await drainWork(10_000);
  await closeServiceStores();
  cleanup();
});
test.run();
