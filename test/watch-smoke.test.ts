import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, exampleConfigObject, mail, tempDir } from './support/env';
import { appendMail, fetchAll, folderCounts, sendMail, waitForCount, withImap } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// A first end-to-end run of the built binary against a private Postfix + Dovecot:
// mail sent to Postfix → agent (IMAP IDLE) → reply through Postfix → read over IMAP.
const test = suite('watch smoke');
const BINARY = join(ROOT, 'dist', 'mailagent');
const FOLDERS = ['INBOX', 'Processing', 'Processed', 'Rejected'];
const { dir, cleanup } = tempDir();
let stack: MailStack;
const children = new Set<ChildProcess>();

// eslint-disable-next-line @typescript-eslint/no-require-imports
require('../examples/demo-db.mjs').createDemoDatabase(join(dir, 'demo.db'));

function writeConfig(name: string, tweak: (raw: Record<string, any>) => void = () => {}): string {
  const raw = exampleConfigObject(dir);
  raw.smtp = { host: '127.0.0.1', port: stack.smtpPort, timeoutSeconds: 5 };
  raw.imap = { host: '127.0.0.1', port: stack.imapPort, user: 'agent', password: { env: 'IMAP_PASSWORD' } };
  tweak(raw);
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(raw, null, 2));
  return file;
}

interface Agent {
  child: ChildProcess;
  logs: Record<string, any>[];
  waitFor(what: (line: Record<string, any>) => boolean, timeoutMs?: number): Promise<Record<string, any>>;
  exit: Promise<number | null>;
}

function startAgent(args: string[]): Agent {
  const child = spawn(BINARY, args, {
    cwd: dir,
    env: { PATH: process.env.PATH!, HOME: dir, IMAP_PASSWORD: stack.users.agent.password },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const logs: Record<string, any>[] = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ msg: 'not json', line });
      }
    }
    for (const w of [...waiters]) w();
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    children.delete(child);
    for (const w of [...waiters]) w();
    resolve(code);
  }));
  const waitFor = (what: (line: Record<string, any>) => boolean, timeoutMs = 15_000) =>
    new Promise<Record<string, any>>((resolve, reject) => {
      const check = () => {
        const hit = logs.find(what);
        if (hit) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        } else if (child.exitCode !== null) {
          waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`agent exited with ${child.exitCode}; log:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out; log:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  return { child, logs, waitFor, exit };
}

test.before(async () => {
  stack = await startMailStack();
});

test.after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await stack?.stop();
  cleanup();
});

test('watch: a command mail gets its reply, the request is filed in Processed, status reports the agent; SIGTERM exits 0', async () => {
  const config = writeConfig('watch.json');
  const agent = startAgent(['watch', '--config', config]);
  const ready = await agent.waitFor((l) => l.msg === 'ready');
  assert.is(ready.level, 'info');
  assert.ok(ready.time, 'JSON lines with a time');

  const id = await sendMail(stack, { subject: 'tables please', text: 'db tables\n' });
  const handled = await agent.waitFor((l) => l.msg === 'handled' && l.key === `mid:${id.toLowerCase()}`);
  assert.is(handled.decision, 'executed');
  await waitForCount(stack, 'ops', 1);
  const [reply] = await fetchAll(stack, 'ops');
  assert.is(reply.inReplyTo, id);
  assert.is(reply.subject, 'Re: tables please — processed (1 ok, 0 failed)');
  assert.match(reply.text, '> db tables');
  await waitForCount(stack, 'agent', 1, { folder: 'Processed' });
  assert.equal(await folderCounts(stack, 'agent', FOLDERS), { INBOX: 0, Processing: 0, Processed: 1, Rejected: 0 });

  // A stranger gets no reply; the message is filed in Rejected.
  const stranger = await sendMail(stack, { from: 'other@example.com', text: 'db tables\n' });
  const dropped = await agent.waitFor((l) => l.msg === 'handled' && l.key === `mid:${stranger.toLowerCase()}`);
  assert.is(dropped.decision, 'dropped');

  const statusId = await sendMail(stack, { subject: 'status', text: 'status\n' });
  await agent.waitFor((l) => l.msg === 'handled' && l.key === `mid:${statusId.toLowerCase()}`);
  await waitForCount(stack, 'ops', 2);
  const status = (await fetchAll(stack, 'ops')).find((m) => m.inReplyTo === statusId)!;
  assert.match(status.text, /agent: up \S+/);
  assert.match(status.text, /imap: (idle|syncing); last event: /);
  assert.match(status.text, /outbox: \d+ waiting/);
  assert.match(status.text, /messages handled/);
  await waitForCount(stack, 'agent', 1, { folder: 'Rejected' });
  assert.equal(await folderCounts(stack, 'agent', FOLDERS), { INBOX: 0, Processing: 0, Processed: 2, Rejected: 1 });
  assert.equal(await folderCounts(stack, 'other', ['INBOX']), { INBOX: 0 }, 'no backscatter');

  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0);
  assert.ok(agent.logs.some((l) => l.msg === 'stopped'));
  assert.not.ok(agent.logs.some((l) => JSON.stringify(l).includes(stack.users.agent.password)), 'the IMAP password never appears in the log');
});

test('SIGHUP reloads the config; a broken file is reported and the running config stays', async () => {
  const config = writeConfig('hup.json');
  const agent = startAgent(['watch', '--config', config]);
  await agent.waitFor((l) => l.msg === 'ready');
  writeFileSync(config, '{ "agent": ');
  agent.child.kill('SIGHUP');
  const refused = await agent.waitFor((l) => l.msg.startsWith('config not reloaded'));
  assert.is(refused.level, 'error');
  writeConfig('hup.json', (raw) => (raw.agent.name = 'renamed agent'));
  agent.child.kill('SIGHUP');
  const reloaded = await agent.waitFor((l) => l.msg === 'config reloaded');
  assert.is(reloaded.reconnect, false);
  const id = await sendMail(stack, { subject: 'after reload', text: 'db tables\n' });
  await agent.waitFor((l) => l.msg === 'handled' && l.key === `mid:${id.toLowerCase()}`);
  await waitForCount(stack, 'ops', 3);
  const reply = (await fetchAll(stack, 'ops')).find((m) => m.inReplyTo === id)!;
  assert.match(reply.from, 'renamed agent', 'new messages use the new config');
  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0);
});

test('watch --once handles what is waiting, sends the replies and exits 0', async () => {
  const id = await sendMail(stack, { subject: 'later', text: 'db tables\n' });
  await waitForCount(stack, 'agent', 1);
  const agent = startAgent(['watch', '--once', '--config', writeConfig('once.json')]);
  assert.is(await agent.exit, 0, JSON.stringify(agent.logs));
  assert.ok(agent.logs.some((l) => l.msg === 'handled' && l.key === `mid:${id.toLowerCase()}` && l.decision === 'executed'));
  await waitForCount(stack, 'ops', 4);
  assert.ok((await fetchAll(stack, 'ops')).some((m) => m.inReplyTo === id));
  assert.equal((await folderCounts(stack, 'agent', ['INBOX', 'Processing'])), { INBOX: 0, Processing: 0 });
});

test('after a crash: a read-only request left executing is run again, a changing one gets "outcome unknown"; a dead agent\'s lease is taken over at once', async () => {
  const { spawnSync } = await import('node:child_process');
  const { hostname } = await import('node:os');
  const { mkdirSync } = await import('node:fs');
  const { parseMail } = await import('../src/mail/parse');
  const { bodyHash } = await import('../src/auth/replay');
  const { SqliteStore } = await import('../src/state/sqlite-store');
  const config = writeConfig('crash.json', (raw) => (raw.state.path = join(dir, 'crash-state.db')));
  const readOnly = mail('db tables', { Subject: 'read only', 'Message-ID': '<crash-ro@example.com>' });
  const changing = mail('db tables', { Subject: 'changing', 'Message-ID': '<crash-rw@example.com>' });
  // The journal as a killed agent leaves it, and a lease held by that agent (its pid is gone).
  const deadPid = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  mkdirSync(join(dir, 'agents'), { recursive: true });
  writeFileSync(join(dir, 'agents', `${hostname()}.${deadPid}`), '');
  const store = new SqliteStore(join(dir, 'crash-state.db'));
  try {
    for (const [raw, mutates] of [[readOnly, false], [changing, true]] as const) {
      const parsed = await parseMail(raw);
      await store.begin(`mid:${parsed.messageId}`, { messageId: parsed.messageId, sender: 'ops@example.com', bodyHash: bodyHash(parsed), mutates }, { attempt: 0 });
    }
    assert.ok(await store.claim('msg:mid:<crash-ro@example.com>', `${hostname()}:${deadPid}`, Date.now(), Date.now() + 600_000));
  } finally {
    await store.close();
  }
  await withImap(stack, 'agent', async (client) => {
    await client.mailboxCreate('Processing').catch(() => undefined);
    await client.append('Processing', readOnly);
    await client.append('Processing', changing);
  });
  const before = (await fetchAll(stack, 'ops')).length;
  const agent = startAgent(['watch', '--once', '--config', config]);
  assert.is(await agent.exit, 0, JSON.stringify(agent.logs));
  const handled = agent.logs.filter((l) => l.msg === 'handled');
  assert.equal(handled.map((l) => [l.key, l.decision, l.recovered]).sort(), [
    ['mid:<crash-ro@example.com>', 'executed', true],
    ['mid:<crash-rw@example.com>', 'rejected', true],
  ]);
  await waitForCount(stack, 'ops', before + 2);
  const replies = (await fetchAll(stack, 'ops')).filter((m) => ['<crash-ro@example.com>', '<crash-rw@example.com>'].includes(m.inReplyTo));
  assert.is(replies.length, 2);
  assert.match(replies.find((m) => m.inReplyTo === '<crash-ro@example.com>')!.text, '> db tables');
  const unknown = replies.find((m) => m.inReplyTo === '<crash-rw@example.com>')!;
  assert.match(unknown.subject, 'outcome unknown');
  assert.match(unknown.text, 'not run again');
  assert.equal(await folderCounts(stack, 'agent', ['Processing']), { Processing: 0 });
});

test('the Processing folder deleted under a running agent: the refused MOVE makes it reconnect, recreate the folder and answer; --once also ends', async () => {
  const agent = startAgent(['watch', '--config', writeConfig('nofolder.json')]);
  await agent.waitFor((l) => l.msg === 'ready');
  await withImap(stack, 'agent', (client) => client.mailboxDelete('Processing'));
  const before = (await fetchAll(stack, 'ops')).length;
  const id = await sendMail(stack, { subject: 'no folder', text: 'db tables\n' });
  const handled = await agent.waitFor((l) => l.msg === 'handled' && l.key === `mid:${id.toLowerCase()}`, 30_000);
  assert.is(handled.decision, 'executed');
  assert.ok(agent.logs.some((l) => l.msg === 'IMAP connection lost' && /refused to move/.test(JSON.stringify(l))), JSON.stringify(agent.logs));
  assert.ok(agent.logs.some((l) => l.msg === 'created folder' && l.folder === 'Processing'));
  // One refusal, then a reconnect: no loop of claims.
  assert.is(agent.logs.filter((l) => l.msg === 'IMAP connection lost').length, 1, JSON.stringify(agent.logs));
  await waitForCount(stack, 'ops', before + 1);
  await waitForCount(stack, 'agent', 1, { folder: 'Processed' });
  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0);

  await withImap(stack, 'agent', async (client) => {
    await client.mailboxDelete('Processing');
    await client.append('INBOX', mail('db tables', { Subject: 'no folder, once', 'Message-ID': '<nofolder-once@example.com>' }));
  });
  const once = startAgent(['watch', '--once', '--config', writeConfig('nofolder-once.json')]);
  assert.is(await once.exit, 0, JSON.stringify(once.logs));
  assert.ok(once.logs.some((l) => l.msg === 'handled' && l.key === 'mid:<nofolder-once@example.com>' && l.decision === 'executed'));
  assert.equal(await folderCounts(stack, 'agent', ['INBOX', 'Processing']), { INBOX: 0, Processing: 0 });
});

test('ImapSource: a MOVE the server refuses throws (no silent empty claim); fetchSources cuts each message after maxBytes', async () => {
  const { ImapSource } = await import('../src/mail/imap-source');
  const { silentLogger } = await import('../src/core/log');
  const { validateConfig } = await import('../src/config/load');
  process.env.IMAP_PASSWORD = stack.users.agent.password;
  const config = validateConfig(JSON.parse(require('node:fs').readFileSync(writeConfig('source.json'), 'utf8')), join(dir, 'source.json'));
  const source = await ImapSource.connect(config, silentLogger, { onMail: () => {}, onClose: () => {}, onEvent: () => {} });
  try {
    const big = mail(`db tables\n${'0123456789abcdef\n'.repeat(64 * 1024)}`, { 'Message-ID': '<cut@example.com>' }); // ~1.1 MB
    const small = mail('db tables', { 'Message-ID': '<whole@example.com>' });
    await withImap(stack, 'agent', async (client) => {
      await client.append('INBOX', big);
      await client.append('INBOX', small);
    });
    await source.noop(); // the appends, made on another connection, become visible
    const uids = await source.listUids('INBOX');
    assert.is(uids.length, 2);
    const cut = await source.fetchSources('INBOX', uids, 4097);
    const lengths = [...cut.values()].map((raw) => raw.length).sort((a, b) => a - b);
    assert.equal(lengths, [small.length, 4097], 'the large one cut after 4097 bytes, the small one whole');
    assert.equal([...cut.values()].find((raw) => raw.length === 4097), big.subarray(0, 4097));
    assert.equal((await source.fetchSources('INBOX', uids)).get(uids[0])!.length, big.length, 'no limit: the whole message');

    await withImap(stack, 'agent', (client) => client.mailboxDelete('Processing'));
    const refused = await source.claim(uids).then(() => undefined, (err: Error) => err);
    assert.match(refused?.message ?? 'claim returned', /refused to move messages into Processing/);
    assert.equal(await folderCounts(stack, 'agent', ['INBOX']), { INBOX: 2 }, 'nothing moved');
  } finally {
    await source.close();
    delete process.env.IMAP_PASSWORD;
    await withImap(stack, 'agent', async (client) => {
      await client.mailboxCreate('Processing').catch(() => undefined);
      const inbox = await client.mailboxOpen('INBOX');
      if (inbox.exists) await client.messageDelete('1:*');
    });
  }
});

test('a 12 MB request with a 1 MB limit: "message too large" to the known sender, and the agent downloads only the limit + 1 byte', async () => {
  const config = writeConfig('large.json', (raw) => (raw.limits = { ...raw.limits, maxMessageBytes: 1024 * 1024 }));
  const id = '<large@example.com>';
  const large = mail(`db tables\n${'x'.repeat(76)}\n`.repeat(1) + `${'y'.repeat(76)}\n`.repeat(12 * 13_500), { Subject: 'large', 'Message-ID': id });
  assert.ok(large.length > 12 * 1024 * 1024);
  await appendMail(stack, 'agent', large);
  const before = (await fetchAll(stack, 'ops')).length;
  const agent = startAgent(['watch', '--once', '--config', config]);
  assert.is(await agent.exit, 0, JSON.stringify(agent.logs));
  const handled = agent.logs.find((l) => l.msg === 'handled' && l.key === `mid:${id}`);
  assert.ok(handled, JSON.stringify(agent.logs));
  assert.is(handled!.decision, 'rejected');
  assert.is(handled!.bytes, 1024 * 1024 + 1, 'the agent held the first limit + 1 bytes, not 12 MB');
  await waitForCount(stack, 'ops', before + 1);
  const reply = (await fetchAll(stack, 'ops')).find((m) => m.inReplyTo === id)!;
  assert.ok(reply, 'the known sender is answered');
  assert.match(reply.subject, 'message too large');
  assert.equal(await folderCounts(stack, 'agent', ['INBOX', 'Processing']), { INBOX: 0, Processing: 0 });
});

const AGENT_FOLDERS = ['Processing', 'Processed', 'Rejected'];

/** The agent's folders and the flags of each INBOX message (by UID), read with EXAMINE: looking changes nothing. */
async function mailboxState(): Promise<{ folders: string[]; inbox: Record<number, string[]> }> {
  return withImap(stack, 'agent', async (client) => {
    const folders = (await client.list()).map((m) => m.path).sort();
    const inbox: Record<number, string[]> = {};
    const lock = await client.getMailboxLock('INBOX', { readOnly: true });
    try {
      if (client.mailbox && client.mailbox.exists) {
        for await (const m of client.fetch('1:*', { uid: true, flags: true })) inbox[m.uid] = [...(m.flags ?? [])].sort();
      }
    } finally {
      lock.release();
    }
    return { folders, inbox };
  });
}

test('watch --once --dry-run logs the reply it would send and changes nothing: no folder created, no flag set', async () => {
  // A fresh mailbox: none of the agent's folders (earlier tests created them).
  await withImap(stack, 'agent', async (client) => {
    for (const folder of AGENT_FOLDERS) await client.mailboxDelete(folder).catch(() => undefined);
  });
  const id = await sendMail(stack, { subject: 'try', text: 'db tables\n' });
  await waitForCount(stack, 'agent', 1);
  const before = await mailboxState();
  assert.equal(before.folders.filter((f) => AGENT_FOLDERS.includes(f)), [], 'the folders are missing to begin with');
  assert.is(Object.keys(before.inbox).length, 1);
  assert.not.ok(Object.values(before.inbox)[0].includes('\\Seen'));

  const agent = startAgent(['watch', '--once', '--dry-run', '--config', writeConfig('dry.json')]);
  assert.is(await agent.exit, 0, JSON.stringify(agent.logs));
  const handled = agent.logs.find((l) => l.msg === 'handled' && l.key === `mid:${id.toLowerCase()}`)!;
  assert.ok(handled, JSON.stringify(agent.logs));
  assert.is(handled.dryRun, true);
  assert.match(handled.reply, 'These commands would run');
  assert.match(handled.reply, 'db tables');
  const missing = agent.logs.filter((l) => l.msg === 'folder missing, would be created');
  assert.equal(missing.map((l) => l.folder).sort(), [...AGENT_FOLDERS].sort(), JSON.stringify(agent.logs));
  assert.ok(missing.every((l) => l.level === 'info'));
  assert.not.ok(agent.logs.some((l) => l.msg === 'created folder'));

  assert.equal(await mailboxState(), before, 'no folder created; the message still in INBOX, its flags unchanged (no \\Seen)');
  await new Promise((r) => setTimeout(r, 300));
  assert.is((await fetchAll(stack, 'ops')).filter((m) => m.inReplyTo === id).length, 0, 'nothing sent');
});

test('watch --dry-run (long-running): new mail is previewed over IDLE on the read-only inbox; missing folders logged once, none created', async () => {
  const before = await mailboxState();
  assert.equal(before.folders.filter((f) => AGENT_FOLDERS.includes(f)), []);
  const agent = startAgent(['watch', '--dry-run', '--config', writeConfig('dry-watch.json')]);
  await agent.waitFor((l) => l.msg === 'ready');
  const id = await sendMail(stack, { subject: 'try again', text: 'db tables\n' });
  const handled = await agent.waitFor((l) => l.msg === 'handled' && l.key === `mid:${id.toLowerCase()}`);
  assert.is(handled.dryRun, true);
  agent.child.kill('SIGTERM');
  assert.is(await agent.exit, 0, JSON.stringify(agent.logs));
  assert.is(agent.logs.filter((l) => l.msg === 'folder missing, would be created').length, 3, JSON.stringify(agent.logs));

  const after = await mailboxState();
  assert.equal(after.folders, before.folders, 'no folder created');
  assert.is(Object.keys(after.inbox).length, Object.keys(before.inbox).length + 1, 'both messages still in INBOX');
  for (const [uid, flags] of Object.entries(before.inbox)) assert.equal(after.inbox[Number(uid)], flags, 'flags unchanged');
  assert.ok(Object.values(after.inbox).every((flags) => !flags.includes('\\Seen')), JSON.stringify(after.inbox));
});

test('watch --once: unreachable IMAP server exits 75; a refused login, no imap section or an unset password secret 78', async () => {
  const { closedPort } = await import('./support/smtp-sink');
  const port = await closedPort();
  const unreachable = startAgent(['watch', '--once', '--config', writeConfig('unreach.json', (raw) => (raw.imap.port = port))]);
  assert.is(await unreachable.exit, 75);
  const refused = startAgent(['watch', '--once', '--config', writeConfig('refused.json', (raw) => (raw.imap.user = 'other'))]);
  assert.is(await refused.exit, 78);
  assert.ok(refused.logs.some((l) => l.msg.startsWith('IMAP login refused')));
  const none = startAgent(['watch', '--once', '--config', writeConfig('none.json', (raw) => delete raw.imap)]);
  assert.is(await none.exit, 78);
  const unset = startAgent(['watch', '--config', writeConfig('unset.json', (raw) => (raw.imap.password = { env: 'MAILAGENT_TEST_UNSET' }))]);
  assert.is(await unset.exit, 78);
  assert.ok(unset.logs.some((l) => /imap\.password: environment variable MAILAGENT_TEST_UNSET is not set/.test(l.line ?? '')), JSON.stringify(unset.logs));
});

test.run();
