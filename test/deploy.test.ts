import { execFile, spawn, spawnSync } from 'node:child_process';
import {
  chownSync, chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, utimesSync, writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { writeAgentConfig } from './support/agent-process';
import { ROOT, mail, tempDir } from './support/env';
import { appendMail, fetchAll, sendMail, uniqueMessageId, waitForCount } from './support/imap';
import { startMailStack, type MailStack } from './support/mailstack';

// The operating kit in examples/deploy/ against real programs: the procmail recipe run by
// procmail, the Postfix pipe transport and transport map inside the private Postfix, the cron line
// run as cron would, the systemd unit checked by systemd-analyze. Each file is used as shipped,
// with only its documented placeholders replaced: the binary, the config and the pipe's user.
const test = suite('deploy kit');
const DEPLOY = join(ROOT, 'examples', 'deploy');
const BINARY = join(ROOT, 'dist', 'mailagent');
const PLACEHOLDER_BINARY = '/usr/local/bin/mailagent';
const PLACEHOLDER_CONFIG = '/etc/mailagent/config.json';
const FILES = ['mailagent.service', 'procmailrc', 'master.cf', 'transport', 'crontab'];
/** The pipe transport's user= in the test: an existing unprivileged account that owns nothing else. */
const PIPE_USER = 'nobody';
const execFileP = promisify(execFile);

let work: { dir: string; cleanup: () => void };
let stack: MailStack;
let pipeUid = 0;
let pipeGid = 0;
/** Paths of the pipe transport's config and state; the config is written once the stack's ports are known. */
const pipe = { home: '', config: '', state: '' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function deployFile(name: string): string {
  return readFileSync(join(DEPLOY, name), 'utf8');
}

/** A deploy file with its documented placeholders replaced (the recipe itself is left as it is). */
function substituted(name: string, config: string, more: Record<string, string> = {}): string {
  let text = deployFile(name);
  for (const [from, to] of Object.entries({ [PLACEHOLDER_BINARY]: BINARY, [PLACEHOLDER_CONFIG]: config, ...more })) {
    assert.ok(text.includes(from), `${name} contains the placeholder ${from}`);
    text = text.split(from).join(to);
  }
  return text;
}

function account(name: string): { uid: number; gid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`no "${name}" account on this system`);
}

/** Debian's procmail, installed with apt when missing (as the mail stack installs Postfix and Dovecot). */
async function ensureProcmail(): Promise<void> {
  if (existsSync('/usr/bin/procmail')) return;
  const opts = { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 64 * 1024 * 1024 };
  const install = () => execFileP('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'procmail'], opts);
  try {
    await install();
  } catch {
    await execFileP('apt-get', ['update', '-qq'], opts);
    await install();
  }
  if (!existsSync('/usr/bin/procmail')) throw new Error('procmail installed but /usr/bin/procmail is missing');
}

function readAudit(file: string): Record<string, any>[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, hint: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${hint()}`);
    await sleep(50);
  }
}

function postfixLog(): string {
  try {
    return readFileSync(join(stack.dir, 'postfix.log'), 'utf8');
  } catch {
    return '';
  }
}

/** Postfix's delivery lines for the mailagent transport. */
const pipeDeliveries = () => postfixLog().split('\n').filter((l) => l.includes('relay=mailagent,') && l.includes(' status='));
/** The same for the variant without soft_bounce=yes. */
const hardDeliveries = () => postfixLog().split('\n').filter((l) => l.includes('relay=mailagent-hard,') && l.includes(' status='));

/** The directory a state folder is kept in while a plain file stands in its place: unwritable, even for root. */
function breakState(stateDir: string): () => void {
  renameSync(stateDir, `${stateDir}.away`);
  writeFileSync(stateDir, '');
  return () => {
    rmSync(stateDir);
    renameSync(`${stateDir}.away`, stateDir);
  };
}

/** One SMTP transaction by hand, so that the envelope sender can be empty (MAIL FROM:<>). */
function smtpTransaction(port: number, from: string, to: string, message: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const data = message.toString('latin1').replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
    const steps: [string | null, number][] = [
      [null, 220], ['EHLO deploy.test', 250], [`MAIL FROM:<${from}>`, 250], [`RCPT TO:<${to}>`, 250],
      ['DATA', 354], [`${data}${data.endsWith('\r\n') ? '' : '\r\n'}.`, 250], ['QUIT', 221],
    ];
    const sock = createConnection({ host: '127.0.0.1', port });
    let buffered = '';
    let step = 0;
    sock.setTimeout(10_000, () => sock.destroy(new Error('SMTP timeout')));
    sock.on('error', reject);
    sock.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      const m = /^(\d{3}) [^\n]*\n/m.exec(buffered);
      if (!m) return;
      const reply = buffered.slice(0, m.index + m[0].length);
      buffered = buffered.slice(m.index + m[0].length);
      if (Number(m[1]) !== steps[step][1]) {
        sock.destroy();
        reject(new Error(`SMTP: after ${steps[step][0] ?? 'connect'}: ${reply.trim()}`));
        return;
      }
      step += 1;
      if (step === steps.length) {
        sock.end();
        resolve();
      } else {
        sock.write(`${steps[step][0]}\r\n`, 'latin1');
      }
    });
  });
}

/** procmail with the message on stdin; resolves with its exit status. */
function procmail(args: string[], input: Buffer, env: Record<string, string>): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/procmail', args, { cwd: work.dir, env: { PATH: '/usr/bin:/bin', ...env }, stdio: ['pipe', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stderr.on('data', (c) => err.push(c));
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stderr: Buffer.concat(err).toString() });
    });
    child.stdin.end(input);
  });
}

test.before(async () => {
  try {
    await setUp();
  } catch (err) {
    // uvu does not report a failing hook: say why every test is about to fail.
    process.stderr.write(`\ndeploy kit: set-up failed: ${(err as Error).stack ?? err}\n`);
    throw err;
  }
});

async function setUp(): Promise<void> {
  const started = Date.now();
  await ensureProcmail();
  ({ uid: pipeUid, gid: pipeGid } = account(PIPE_USER));
  work = tempDir('mailagent-deploy-');
  // The pipe runs as PIPE_USER: it must reach its config, state folder and cache in here.
  chmodSync(work.dir, 0o755);
  pipe.home = join(work.dir, 'pipe');
  pipe.config = join(pipe.home, 'config.json');
  pipe.state = join(pipe.home, 'state');
  for (const d of [pipe.home, pipe.state, join(pipe.home, 'cache')]) mkdirSync(d, { recursive: true, mode: 0o755 });
  for (const d of [pipe.state, join(pipe.home, 'cache')]) {
    chownSync(d, pipeUid, pipeGid);
    chmodSync(d, 0o700);
  }
  // The transport map as shipped (agent@example.com is the stack's agent), plus other@example.com
  // routed to a variant of the transport without its soft_bounce=yes line, to show what that
  // line prevents; backdated like the stack's own generated files.
  const transport = join(work.dir, 'transport');
  writeFileSync(transport, `${deployFile('transport')}other@example.com   mailagent-hard:\n`);
  const masterCf = substituted('master.cf', pipe.config, { 'user=mailagent': `user=${PIPE_USER}` });
  const hard = masterCf.replace(/^  -o soft_bounce=yes\n/m, '').replace(/^mailagent unix /m, 'mailagent-hard unix ');
  assert.ok(masterCf.includes('\n  -o soft_bounce=yes\n') && !hard.includes('\n  -o soft_bounce=yes\n') && hard.includes('\nmailagent-hard unix '));
  const past = new Date(Date.now() - 60_000);
  utimesSync(transport, past, past);
  stack = await startMailStack({
    masterCf: masterCf + hard,
    // pipe(8) passes no HOME: the SQLite engine is unpacked in the pipe user's own cache here
    // (in production, the mailagent account's home or its /tmp).
    mainCf: `transport_maps = texthash:${transport}\nexport_environment = TZ MAIL_CONFIG LANG XDG_CACHE_HOME=${join(pipe.home, 'cache')}`,
  });
  process.stdout.write(`\n  deploy kit: procmail present and mail stack (with the pipe transport) up in ${Date.now() - started} ms\n`);
}

test.after(async () => {
  await stack?.stop();
  work?.cleanup();
});

test('README points at each file of examples/deploy/ and carries no copy of them', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.equal(readdirSync(DEPLOY).sort(), [...FILES].sort(), 'the kit is these files');
  for (const f of FILES) assert.ok(readme.includes(`examples/deploy/${f}`), `README mentions examples/deploy/${f}`);
  for (const copy of ['flags=Rq null_sender=', 'RestartPreventExitStatus=', `| ${PLACEHOLDER_BINARY} run`, '*/5 * * * *', 'agent@example.com mailagent:']) {
    assert.not.ok(readme.includes(copy), `README still holds a copy of a recipe: ${copy}`);
  }
  for (const f of FILES) assert.match(deployFile(f), /^# \S+: /, `${f} starts with a comment header`);
});

test('procmail: the recipe answers a request; on exit 75 procmail exits 75 and delivers nothing, so the MTA retries', async () => {
  const home = join(work.dir, 'procmail');
  const stateDir = join(home, 'state');
  mkdirSync(stateDir, { recursive: true });
  const config = writeAgentConfig(stack, work.dir, 'procmail', (raw) => {
    raw.state = { path: join(stateDir, 'state.db') };
    raw.audit = { path: join(stateDir, 'audit.jsonl') };
    delete raw.imap;
    delete raw.services;
  });
  const rcfile = join(home, 'procmailrc');
  const recipe = substituted('procmailrc', config);
  writeFileSync(rcfile, recipe);
  // procmail as a mail filter (-m) with the rcfile given: in delivery mode, run by root, it would
  // create /var/mail/root at start-up. DEFAULT given here stands for the mailbox a ~/.procmailrc
  // falls through to (/var/mail/$LOGNAME), so -m behaves as the MTA's procmail would. procmail
  // clears the environment and exports its variables: mailagent's cache goes in as one of them.
  const fallback = join(home, 'Maildir');
  const log = join(home, 'procmail.log');
  const cache = `XDG_CACHE_HOME=${join(home, 'cache')}`;
  const vars = ['-m', `DEFAULT=${fallback}/`, `LOGFILE=${log}`, cache];
  const env = {};
  const filed = () => (existsSync(join(fallback, 'new')) ? readdirSync(join(fallback, 'new')).length : 0);
  const audit = () => readAudit(join(stateDir, 'audit.jsonl'));

  // 1. Delivered: mailagent answers through the stack's Postfix, procmail exits 0.
  const first = mail('help', { Subject: 'procmail help', 'Message-ID': uniqueMessageId('pm1') });
  const firstId = /Message-ID: (<[^>]+>)/.exec(first.toString())![1];
  let r = await procmail([...vars, rcfile], first, env);
  assert.is(r.status, 0, `procmail: ${r.stderr}\n${readFileSync(log, 'utf8')}`);
  await waitForCount(stack, 'ops', 1, { timeoutMs: 15_000 });
  let replies = await fetchAll(stack, 'ops');
  assert.equal(replies.map((m) => m.inReplyTo), [firstId]);
  assert.match(replies[0].subject, 'Re: procmail help — processed (1 ok, 0 failed)');
  assert.match(replies[0].text, '> help');
  assert.is(filed(), 0, 'nothing filed in the default mailbox');

  // 2. State store not writable: mailagent exits 75. procmail logs "Program failure (75)",
  //    reaches EXITCODE=75 and the unset HOST, stops there and exits 75 without delivering.
  const second = mail('status', { Subject: 'procmail retry', 'Message-ID': uniqueMessageId('pm2') });
  const secondId = /Message-ID: (<[^>]+>)/.exec(second.toString())![1];
  const restore = breakState(stateDir);
  let logBefore = readFileSync(log, 'utf8').length;
  try {
    r = await procmail([...vars, rcfile], second, env);
    assert.is(r.status, 75, `procmail's exit status is EX_TEMPFAIL: ${r.stderr}`);
    const logged = readFileSync(log, 'utf8').slice(logBefore);
    // procmail logs the failure and, as it does for everything a recipe's program writes to
    // stderr, mailagent's reason.
    assert.ok(logged.includes(`Program failure (75) of "${BINARY}"`), logged);
    assert.ok(logged.includes('state store') && logged.includes('is not usable'), logged);
    assert.is(filed(), 0, 'not filed in the default mailbox either: the MTA still holds it');

    // Without its last two lines the same recipe would lose the mail for mailagent: procmail
    // files it in $DEFAULT and exits 0 (delivered, never retried); with no DEFAULT (-m presets
    // none) it exits 73, EX_CANTCREAT, which makes an MTA bounce it to its sender.
    const bare = recipe.replace(/^EXITCODE=75\nHOST\n/m, '');
    assert.is.not(bare, recipe);
    writeFileSync(join(home, 'bare.procmailrc'), bare);
    r = await procmail([...vars, join(home, 'bare.procmailrc')], second, env);
    assert.is(r.status, 0);
    assert.is(filed(), 1, 'the bare recipe filed it in $DEFAULT');
    r = await procmail(['-m', `LOGFILE=${log}`, cache, join(home, 'bare.procmailrc')], second, env);
    assert.is(r.status, 73);
    assert.is(filed(), 1);
  } finally {
    restore();
  }
  await sleep(300);
  assert.is((await fetchAll(stack, 'ops')).length, 1, 'no reply while mailagent could not handle it');
  assert.not.ok(audit().some((a) => a.messageId === secondId), 'nothing recorded for it');

  // 3. The MTA's retry: the same message again, now handled and answered once.
  logBefore = readFileSync(log, 'utf8').length;
  r = await procmail([...vars, rcfile], second, env);
  assert.is(r.status, 0, `${r.stderr}\n${readFileSync(log, 'utf8').slice(logBefore)}`);
  await waitForCount(stack, 'ops', 2, { timeoutMs: 15_000 });
  replies = await fetchAll(stack, 'ops');
  assert.equal(replies.map((m) => m.inReplyTo), [firstId, secondId]);
  assert.match(replies[1].text, '> status');
  assert.equal(audit().map((a) => [a.messageId, a.decision]), [[firstId, 'executed'], [secondId, 'executed']]);
  assert.ok(existsSync(join(home, 'cache', 'mailagent')), 'mailagent used the cache it was given');
});

test('Postfix pipe transport: a request is answered, a bounce is not, and failures stay queued', async () => {
  // The pipe's config, written now that the stack's SMTP port is known; readable by the pipe's user.
  writeAgentConfig(stack, work.dir, 'pipe', (raw) => {
    raw.state = { path: join(pipe.state, 'state.db') };
    raw.audit = { path: join(pipe.state, 'audit.jsonl') };
    delete raw.imap;
    delete raw.services;
  });
  chmodSync(pipe.config, 0o644);
  const goodConfig = readFileSync(pipe.config);
  const audit = () => readAudit(join(pipe.state, 'audit.jsonl'));
  const opsBefore = (await fetchAll(stack, 'ops')).length;
  const hint = () => `Postfix queue ${stack.postfixQueueSize()}; its mailagent deliveries:\n${pipeDeliveries().slice(-5).join('\n')}`;

  // 1. ops → agent@example.com: transport map → pipe → mailagent run → reply over SMTP → ops.
  const id = await sendMail(stack, { subject: 'pipe status', text: 'status\n' });
  await waitForCount(stack, 'ops', opsBefore + 1, { timeoutMs: 20_000 }).catch((e) => { throw new Error(`${e.message}\n${hint()}`); });
  let replies = await fetchAll(stack, 'ops');
  const reply = replies.find((m) => m.inReplyTo === id);
  assert.ok(reply, 'the reply answers the request');
  assert.match(reply!.subject, 'Re: pipe status — processed (1 ok, 0 failed)');
  assert.match(reply!.from, 'agent@example.com');
  assert.ok(pipeDeliveries().some((l) => l.includes('status=sent')), `delivered by the pipe:\n${hint()}`);
  assert.equal(audit().filter((a) => a.messageId === id).map((a) => a.decision), ['executed']);
  assert.ok(readdirSync(join(pipe.home, 'cache')).length > 0, 'the pipe ran mailagent as the pipe user, with the cache exported to it');

  // 2. A bounce (MAIL FROM:<>) to the agent, with an allowed From header: null_sender= passes
  //    --sender "", mailagent drops it without a reply.
  const bounceId = uniqueMessageId('bounce');
  await smtpTransaction(stack.smtpPort, '', 'agent@example.com', mail('status', { Subject: 'Undelivered Mail Returned to Sender', 'Message-ID': bounceId }));
  await until('the bounce to be audited', () => audit().some((a) => a.messageId === bounceId), 20_000, hint);
  assert.equal(audit().filter((a) => a.messageId === bounceId).map((a) => [a.decision, a.reason]), [['dropped', 'empty return path (a bounce)']]);
  await until('the Postfix queue to empty', () => stack.postfixQueueSize() === 0, 10_000, hint);
  await sleep(300);
  assert.is((await fetchAll(stack, 'ops')).length, opsBefore + 1, 'no reply to the bounce');

  // 3. Failures: a config error (78, which Postfix maps to 5.3.5 and would bounce to the sender
  //    without the transport's soft_bounce=yes), then a state store that cannot be written (75).
  //    The mail stays in the queue through both, and is answered once the agent can handle it.
  const logMark = pipeDeliveries().length;
  const newDeliveries = () => pipeDeliveries().slice(logMark);
  writeFileSync(pipe.config, '{ "agent": { "address": "nope" } }\n');
  const restore = breakState(pipe.state);
  let restored = false;
  try {
    const failedId = await sendMail(stack, { subject: 'pipe retry', text: 'status\n' });
    await until('a soft bounce for the config error', () => newDeliveries().some((l) => l.includes('status=SOFTBOUNCE')), 20_000, hint);
    const soft = newDeliveries().find((l) => l.includes('status=SOFTBOUNCE'))!;
    assert.ok(soft.includes('dsn=4.3.5') && soft.includes('local configuration error'), soft);
    // The same transport without soft_bounce=yes (other@ is routed to it): Postfix bounces the
    // request back to ops with 5.3.5.
    const hardId = await sendMail(stack, { to: 'other@example.com', subject: 'pipe hard', text: 'status\n' });
    await until('the bounce by the transport without soft_bounce', () => hardDeliveries().some((l) => l.includes('status=bounced')), 20_000, hint);
    assert.match(hardDeliveries().find((l) => l.includes('status=bounced'))!, 'dsn=5.3.5');
    await waitForCount(stack, 'ops', opsBefore + 2, { timeoutMs: 20_000 });
    const bounces = (await fetchAll(stack, 'ops')).filter((m) => /MAILER-DAEMON/i.test(m.from));
    assert.is(bounces.length, 1);
    assert.match(bounces[0].text, 'local configuration error');
    assert.ok(bounces[0].attachments.some((a) => a.content.toString().includes(hardId)) || bounces[0].text.includes(hardId), 'the bounce returns the hard request');
    writeFileSync(pipe.config, goodConfig);
    await stack.flushQueue();
    await until('a deferral for the unwritable state store', () => newDeliveries().some((l) => l.includes('status=deferred') && l.includes('4.3.0')), 20_000, hint);
    assert.ok(stack.postfixQueueSize() >= 1, 'still queued');
    assert.not.ok(newDeliveries().some((l) => /status=(sent|bounced)/.test(l)), `neither delivered nor bounced:\n${newDeliveries().join('\n')}`);
    restore();
    restored = true;
    await stack.flushQueue();
    await waitForCount(stack, 'ops', opsBefore + 3, { timeoutMs: 20_000 }).catch((e) => { throw new Error(`${e.message}\n${hint()}`); });
    replies = await fetchAll(stack, 'ops');
    assert.equal(replies.filter((m) => m.inReplyTo === failedId).length, 1, 'answered once');
    assert.is(replies.filter((m) => /MAILER-DAEMON/i.test(m.from)).length, 1, 'no bounce for the request the soft transport kept');
    assert.equal(audit().filter((a) => a.messageId === failedId).map((a) => a.decision), ['executed']);
  } finally {
    if (!restored) restore();
    writeFileSync(pipe.config, goodConfig);
  }
});

test('crontab: its line runs watch --once, which answers what waits in the mailbox and logs nothing', async () => {
  const home = join(work.dir, 'cron');
  const secret = join(home, 'imap-password');
  mkdirSync(home, { recursive: true });
  writeFileSync(secret, stack.users.agent.password, { mode: 0o600 });
  const config = writeAgentConfig(stack, work.dir, 'cron', (raw) => {
    raw.imap.password = { file: secret };
    delete raw.services;
  });
  const lines = substituted('crontab', config).split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  const env: Record<string, string> = {};
  for (const l of lines.filter((x) => /^[A-Z_]+=/.test(x))) env[l.slice(0, l.indexOf('='))] = l.slice(l.indexOf('=') + 1);
  const jobs = lines.filter((x) => !/^[A-Z_]+=/.test(x));
  assert.is(jobs.length, 1, 'one cron line');
  // /etc/cron.d format: five time fields, the user, then the command.
  const fields = jobs[0].trim().split(/\s+/);
  assert.equal(fields.slice(0, 6), ['*/5', '*', '*', '*', '*', 'mailagent']);
  const command = jobs[0].trim().replace(/^(\S+\s+){6}/, '');
  assert.match(command, `${BINARY} watch --once --config ${config}`);

  // The agent's mail is routed to the pipe in this stack: put a request in its mailbox directly.
  const opsBefore = (await fetchAll(stack, 'ops')).length;
  const id = uniqueMessageId('cron');
  await appendMail(stack, 'agent', mail('help', { Subject: 'cron help', 'Message-ID': id }));
  // As cron runs it: /bin/sh -c with the crontab's variables (MAILTO is cron's own).
  delete env.MAILTO;
  const r = spawnSync('/bin/sh', ['-c', command], {
    cwd: home, env: { PATH: '/usr/bin:/bin', HOME: home, SHELL: '/bin/sh', ...env }, timeout: 60_000,
  });
  assert.is(r.status, 0, r.stderr.toString());
  assert.is(r.stderr.toString(), '', 'nothing for cron to mail at MAILAGENT_LOG_LEVEL=warn');
  await waitForCount(stack, 'ops', opsBefore + 1, { timeoutMs: 15_000 });
  assert.equal((await fetchAll(stack, 'ops')).filter((m) => m.inReplyTo === id).length, 1);
});

test('systemd unit: hardened as documented, and systemd-analyze accepts it', () => {
  const unit = deployFile('mailagent.service');
  const settings = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) settings.set(m[1], [...(settings.get(m[1]) ?? []), m[2]]);
  }
  const one = (key: string) => settings.get(key)?.at(-1);
  const expected: Record<string, string> = {
    User: 'mailagent', ProtectSystem: 'strict', NoNewPrivileges: 'yes', PrivateTmp: 'yes', ProtectHome: 'yes',
    Restart: 'on-failure', RestartPreventExitStatus: '78', KillSignal: 'SIGTERM', EnvironmentFile: '/etc/mailagent/secrets.env',
    ProtectKernelTunables: 'yes', ProtectControlGroups: 'yes', RestrictSUIDSGID: 'yes', LockPersonality: 'yes',
    RestrictRealtime: 'yes', CapabilityBoundingSet: '', SystemCallArchitectures: 'native',
    ExecStart: `${PLACEHOLDER_BINARY} watch --config ${PLACEHOLDER_CONFIG}`,
    Type: 'notify', NotifyAccess: 'all',
  };
  for (const [key, value] of Object.entries(expected)) assert.is(one(key), value, key);
  assert.ok(settings.get('ReadWritePaths')?.some((v) => v.split(/\s+/).includes('/var/lib/mailagent')), 'ReadWritePaths=/var/lib/mailagent');
  // The drain (10 s) + scheduler (1 s) + exit grace (2 s) must fit before SIGKILL.
  assert.ok(parseInt(one('TimeoutStopSec') ?? '0', 10) >= 15, `TimeoutStopSec=${one('TimeoutStopSec')}`);
  assert.not.ok(settings.has('MemoryDenyWriteExecute'), 'V8 needs W+X memory');
  // The watchdog must outlast the time health needs to call the agent degraded (default 180 s).
  assert.ok(parseInt(one('WatchdogSec') ?? '0', 10) > 180, `WatchdogSec=${one('WatchdogSec')}`);

  const tool = spawnSync('systemd-analyze', ['--version']);
  if (tool.error) {
    process.stdout.write(`\n  systemd unit: systemd-analyze not available (${tool.error.message}); verify skipped${process.env.CI ? ' (not required in CI)' : ''}\n`);
    return;
  }
  const { dir, cleanup } = tempDir('mailagent-unit-');
  try {
    // A unit that must pass shows whether the tool works here at all.
    writeFileSync(join(dir, 'probe.service'), '[Service]\nExecStart=/bin/true\n');
    const probe = spawnSync('systemd-analyze', ['verify', join(dir, 'probe.service')], { encoding: 'utf8' });
    if (probe.status !== 0) {
      process.stdout.write(`\n  systemd unit: systemd-analyze verify does not work here (${(probe.stderr || String(probe.status)).trim()}); skipped\n`);
      return;
    }
    // verify needs ExecStart's binary to exist: a copy of the unit pointing at dist/mailagent.
    const copy = join(dir, 'mailagent.service');
    writeFileSync(copy, unit.split(PLACEHOLDER_BINARY).join(BINARY));
    const verify = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
    const complaints = `${verify.stdout}${verify.stderr}`.split('\n').filter((l) => l.includes('mailagent.service'));
    assert.is(verify.status, 0, verify.stderr);
    assert.equal(complaints, [], 'no warnings about the unit');
    const security = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', '--threshold=30', copy], { encoding: 'utf8' });
    if (/unrecognized option|unknown option/i.test(security.stderr)) {
      process.stdout.write('\n  systemd unit: this systemd-analyze has no "security --offline"; exposure not checked\n');
    } else {
      const level = /Overall exposure level for \S+: ([\d.]+)/.exec(security.stdout)?.[1];
      assert.is(security.status, 0, `exposure ${level} above 3.0:\n${security.stdout.split('\n').filter((l) => l.startsWith('✗')).join('\n')}`);
    }
  } finally {
    cleanup();
  }
});

test.run();
