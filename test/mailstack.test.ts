import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fetchAll, folderCounts, sendMail, waitForCount } from './support/imap';
import { alive, portBindable, portListening, startMailStack, type MailStack } from './support/mailstack';
import { ROOT } from './support/env';

const test = suite('mail stack');
let stack: MailStack;

test.before(async () => {
  stack = await startMailStack();
});
test.after(async () => {
  await stack?.stop();
});

const pidAlive = alive;

test('a mail sent through Postfix to agent@example.com arrives in agent\'s INBOX, read over IMAP', async () => {
  const id = await sendMail(stack, { subject: 'hello agent', text: 'db tables\n' });
  await waitForCount(stack, 'agent', 1);
  const [got] = await fetchAll(stack, 'agent');
  assert.is(got.subject, 'hello agent');
  assert.is(got.messageId, id);
  assert.match(got.from, 'ops@example.com');
  assert.is(got.text.trim(), 'db tables');
  assert.equal(await folderCounts(stack, 'ops', ['INBOX']), { INBOX: 0 }, 'nothing went to ops');
});

test('a recipient the stack does not know is refused at SMTP time', async () => {
  try {
    await sendMail(stack, { to: 'nobody@example.com' });
    assert.unreachable('Postfix accepted mail for an unknown user');
  } catch (e: any) {
    assert.match(String(e.message), /550|Recipient address rejected|User unknown/i);
  }
});

test('restartDovecot keeps the IMAP port and the mail', async () => {
  const port = stack.imapPort;
  await stack.restartDovecot();
  assert.is(stack.imapPort, port);
  assert.ok(portListening(port), 'Dovecot listens again');
  const mails = await fetchAll(stack, 'agent');
  assert.is(mails.length, 1);
  assert.is(mails[0].subject, 'hello agent');
});

test('mail sent while Dovecot is down waits in Postfix and is delivered once Dovecot is back', async () => {
  await stack.stopDovecot();
  try {
    await sendMail(stack, { to: 'other@example.com', subject: 'while away' });
    assert.is((await folderCounts(stack, 'other', ['INBOX']).catch(() => null)), null, 'IMAP is down');
  } finally {
    await stack.startDovecot();
  }
  // Postfix retries deferred mail after queue_run_delay / minimal_backoff_time (1 s).
  await waitForCount(stack, 'other', 1, { timeoutMs: 15000 });
  const [got] = await fetchAll(stack, 'other');
  assert.is(got.subject, 'while away');
});

test('stopPostfix refuses SMTP; startPostfix brings it back on the same port', async () => {
  const port = stack.smtpPort;
  await stack.stopPostfix();
  assert.not.ok(portListening(port));
  try {
    await sendMail(stack, { subject: 'refused' });
    assert.unreachable('SMTP accepted mail with Postfix stopped');
  } catch (e: any) {
    assert.match(String(e.code ?? e.message), /ECONNREFUSED|ESOCKET|ECONNECTION/);
  }
  await stack.startPostfix();
  assert.is(stack.smtpPort, port);
  await sendMail(stack, { subject: 'after restart' });
  await waitForCount(stack, 'agent', 2);
  const subjects = (await fetchAll(stack, 'agent')).map((m) => m.subject);
  assert.equal(subjects, ['hello agent', 'after restart']);
});

test('stop() ends every process of the stack, frees both ports and removes its dir', async () => {
  const pids = stack.pids();
  assert.ok(pids.length >= 4, `masters and children running (${pids.length})`);
  const { smtpPort, imapPort, dir } = stack;
  await stack.stop();
  assert.equal(pids.filter(pidAlive), [], 'no process left');
  assert.ok(await portBindable(smtpPort), 'SMTP port free');
  assert.ok(await portBindable(imapPort), 'IMAP port free');
  assert.not.ok(existsSync(dir));
  await stack.stop(); // idempotent
});

test('a stack left behind by a SIGKILLed test process is reaped by the next start', async () => {
  const work = mkdtempSync(join(tmpdir(), 'mailagent-owner-'));
  const script = join(work, 'owner.ts');
  writeFileSync(script, `
    import { startMailStack } from ${JSON.stringify(join(ROOT, 'test/support/mailstack'))};
    startMailStack().then((s) => {
      process.stdout.write(JSON.stringify({ dir: s.dir, pids: s.pids(), smtpPort: s.smtpPort, imapPort: s.imapPort }) + '\\n');
      setInterval(() => {}, 1000);
    });
  `);
  // node --import tsx, not the tsx CLI: the CLI runs the script in a child that would survive our SIGKILL.
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let second: MailStack | undefined;
  try {
    const info = await new Promise<{ dir: string; pids: number[]; smtpPort: number; imapPort: number }>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c) => {
        out += c;
        if (out.includes('\n')) resolve(JSON.parse(out));
      });
      child.once('exit', (code) => reject(new Error(`owner exited with ${code} before starting its stack`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(info.pids.some(pidAlive), 'the daemons outlive their owner');

    second = await startMailStack();
    assert.equal(info.pids.filter(pidAlive), [], 'the orphaned daemons are gone');
    assert.not.ok(existsSync(info.dir), 'its dir is removed');
    assert.ok(await portBindable(info.smtpPort));
    assert.ok(await portBindable(info.imapPort));
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child.stdout!.destroy();
    await second?.stop();
    rmSync(work, { recursive: true, force: true });
  }
});

test.run();
