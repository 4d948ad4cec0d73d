/**
 * A private, real mail stack for tests: Postfix (SMTP on 127.0.0.1:<port>) delivers over LMTP
 * (a unix socket in the temp dir) to Dovecot, which serves IMAP on 127.0.0.1:<port>.
 *
 * Everything lives under one short temp dir (/tmp/mst-XXXXXX): both configs, the Postfix queue,
 * the Dovecot base_dir, the passwd-file, the maildirs and the logs (postfix.log, dovecot.log).
 * Nothing in /etc is read or written, and the system's own postfix/dovecot are never started.
 *
 * Daemons are stopped by their own pid files, and an 'exit'/signal safety net kills whatever a
 * failing test left behind. A stack whose owning process died without cleaning up (SIGKILL) is
 * reaped by the next startMailStack().
 *
 * With the `oauth2` option Dovecot also accepts OAuth2 bearer tokens (XOAUTH2/OAUTHBEARER, checked
 * by introspection at an authorization server such as test/support/oauth2.ts), and Postfix gets a
 * submission port that requires SMTP AUTH, done by Dovecot (smtpd_sasl_type = dovecot).
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync,
  rmSync, utimesSync, writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { alive, readPid, reapStale, registerDaemon, removeDir, signal, tail, unregisterDaemon, waitFor } from './safety-net';

export { alive } from './safety-net';

const run = promisify(execFile);

export interface MailStackUser {
  address: string;
  password: string;
}

export interface MailStack {
  smtpPort: number;
  imapPort: number;
  /**
   * Only with the `oauth2` option: Postfix's submission port (127.0.0.1), where SMTP AUTH (PLAIN,
   * LOGIN, XOAUTH2, OAUTHBEARER, all checked by Dovecot) is required before any mail is accepted.
   */
  submissionPort?: number;
  /** The temp dir holding everything; postfix.log and dovecot.log are in it. */
  dir: string;
  /** By user name (the IMAP login may be the name or the address). */
  users: Record<string, MailStackUser>;
  /** Postfix down: SMTP refused; mail already queued stays in the queue. */
  stopPostfix(): Promise<void>;
  startPostfix(): Promise<void>;
  /** Dovecot down (IMAP refused, LMTP deliveries deferred by Postfix) until startDovecot(). */
  stopDovecot(): Promise<void>;
  startDovecot(): Promise<void>;
  /** Stop Dovecot, wait until its port is free, start it again on the same port. */
  restartDovecot(): Promise<void>;
  /** The Maildir of a user (new mail lands in its new/). */
  maildir(user: string): string;
  /** Pids of every process of this stack (masters and children). */
  pids(): number[];
  /** Messages Postfix still holds (maildrop, incoming, active, deferred, hold); 0 once all is delivered. */
  postfixQueueSize(): number;
  /** Ask Postfix to retry what it deferred now (postqueue -f), instead of at its next queue run. */
  flushQueue(): Promise<void>;
  /** Stop both daemons, wait for their ports, remove the temp dir. */
  stop(): Promise<void>;
}

export interface MailStackOptions {
  /** User names in example.com; default agent, ops, other. */
  users?: string[];
  /**
   * Text appended to the generated main.cf (e.g. `transport_maps = texthash:/path`); a parameter
   * set here overrides the generated one (Postfix keeps the last setting).
   */
  mainCf?: string;
  /** Entries appended to the generated master.cf (e.g. a pipe(8) transport with its continuation lines). */
  masterCf?: string;
  /**
   * The capabilities Dovecot announces after login, replacing its own list: a server without MOVE,
   * IDLE or UIDPLUS, as some are. (Dovecot still understands the commands; clients go by the list.)
   */
  imapCapability?: string;
  /**
   * Accept OAuth2 bearer tokens as well as passwords: a Dovecot `passdb oauth2` that asks the
   * authorization server's introspection endpoint about each token (so revoked and expired tokens are
   * refused at once), used only for the OAuth mechanisms; password logins are unchanged. Also adds a
   * submission listener (`submissionPort`) that requires SMTP AUTH through Dovecot. Token users log
   * in with their full address (agent@example.com): the introspected attribute must equal it exactly.
   */
  oauth2?: MailStackOAuth2;
}

export interface MailStackOAuth2 {
  /** POST token=... here; client credentials, if the server wants them, as URL userinfo (sent as Basic auth). */
  introspectionUrl: string;
  /** The introspection response field that holds the login name; default 'email'. */
  usernameAttribute?: string;
  /** SASL mechanisms offered for tokens: 'both' (XOAUTH2 and OAUTHBEARER, the default) or 'xoauth2' only. */
  mechanisms?: 'xoauth2' | 'both';
}

export const MAIL_DOMAIN = 'example.com';
const TMP_PREFIX = '/tmp/mst-';
const OWNER_FILE = 'owner.pid';
const PACKAGES = ['dovecot-imapd', 'dovecot-lmtpd', 'postfix'];
const STOP_TIMEOUT_MS = 5000;
const READY_TIMEOUT_MS = 10000;

// ---------------------------------------------------------------------------------------------
// Packages

function packagesPresent(): boolean {
  return existsSync('/usr/sbin/postfix') && existsSync('/usr/sbin/dovecot')
    && existsSync('/usr/lib/dovecot/imap') && existsSync('/usr/lib/dovecot/lmtp');
}

/** Install Dovecot (IMAP + LMTP) and Postfix from Debian when missing; never starts their system services. */
export async function ensureMailPackages(): Promise<void> {
  if (packagesPresent()) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const opts = { env, maxBuffer: 64 * 1024 * 1024 };
  const before = systemDaemonPids();
  // A fresh machine may have no package lists yet; update only then, or when the install fails.
  const haveLists = existsSync('/var/lib/apt/lists')
    && readdirSync('/var/lib/apt/lists').some((f) => /_Packages(\.\w+)?$/.test(f));
  if (!haveLists) await run('apt-get', ['update', '-qq'], opts);
  const install = () => run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...PACKAGES], opts);
  try {
    await install();
  } catch {
    await run('apt-get', ['update', '-qq'], opts);
    await install();
  }
  if (!packagesPresent()) throw new Error(`ensureMailPackages: ${PACKAGES.join(' ')} installed but binaries missing`);
  // policy-rc.d should have kept the system daemons down; if one came up anyway, say so (we never use
  // the standard ports, so the private stack still works) but do not touch it.
  const started = systemDaemonPids().filter((p) => !before.includes(p));
  if (started.length) {
    process.stderr.write(`ensureMailPackages: warning: apt started system mail daemons (pids ${started.join(', ')}); the test stack uses its own ports\n`);
  }
}

/** Pids of the system's own postfix master / dovecot (those with the default config). */
function systemDaemonPids(): number[] {
  const pids: number[] = [];
  for (const p of ['/var/spool/postfix/pid/master.pid', '/run/dovecot/master.pid']) {
    const pid = readPid(p);
    if (pid && alive(pid)) pids.push(pid);
  }
  return pids;
}

// ---------------------------------------------------------------------------------------------
// Processes, ports, small helpers



/**
 * Processes that belong to the stack in `dir`: Postfix daemons have their cwd in its queue
 * directory, Dovecot's carry the instance name (the dir's basename) in their title, and both
 * masters have the dir on their command line.
 */
export function instanceProcesses(dir: string): number[] {
  const name = basename(dir);
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      let cwd = '';
      try { cwd = readlinkSync(`/proc/${pid}/cwd`); } catch { /* kernel thread or gone */ }
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const ours = cwd === dir || cwd.startsWith(dir + '/') || cmd.includes(dir) || cmd.includes(`${name}/`)
        || /^dovecot\b/.test(cmd) && cmd.includes(name);
      if (ours && alive(pid)) out.push(pid);
    } catch { /* gone */ }
  }
  return out;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** True when something accepts connections on 127.0.0.1:port. */
export function portOpen(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const done = (v: boolean) => { sock.destroy(); resolve(v); };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * True when some socket listens on TCP `port` (IPv4 or IPv6), read from /proc/net/tcp*. Unlike a
 * probe connection this starts no login process: a Dovecot imap-login spawned by a probe that is
 * still initialising when Dovecot is told to stop holds the master up for 5 s.
 */
export function portListening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[3] === '0A' && f[1].endsWith(hex)) return true;
    }
  }
  return false;
}

/** True when 127.0.0.1:port can be bound again. */
export function portBindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}


/**
 * Run a command that daemonizes. Its output goes to a file, not a pipe: the daemon's children
 * inherit stdout/stderr, so waiting for a pipe to close (execFile) would wait for them forever.
 */
function runDaemonCommand(cmd: string, args: string[], outFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fd = openSync(outFile, 'a');
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.once('error', reject);
    child.once('exit', (code, sig) => {
      if (code === 0) resolve();
      else reject(new Error(`${basename(cmd)} ${args.join(' ')} exited with ${code ?? sig}:\n${tail(outFile)}`));
    });
  });
}


/** Write a generated file and backdate it: Postfix keeps re-reading files younger than 1 s. */
function writeConfig(file: string, text: string, mode = 0o644): void {
  writeFileSync(file, text, { mode });
  const past = new Date(Date.now() - 60_000);
  utimesSync(file, past, past);
}

/** TERM the given pids (and every other process of the instance), wait, then KILL what is left. Sync, for the exit handler. */
function killInstanceSync(dir: string, pids: (number | undefined)[]): void {
  const targets = new Set<number>([...pids.filter((p): p is number => !!p && alive(p)), ...instanceProcesses(dir)]);
  for (const pid of targets) signal(pid, 'SIGTERM');
  const deadline = Date.now() + 2000;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline && [...targets].some(alive)) Atomics.wait(nap, 0, 0, 20);
  for (const pid of [...targets, ...instanceProcesses(dir)]) if (alive(pid)) signal(pid, 'SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// Config

/** The OAuth SASL mechanisms of the option, lower case. */
function oauthMechanisms(o: MailStackOAuth2): string {
  return o.mechanisms === 'xoauth2' ? 'xoauth2' : 'xoauth2 oauthbearer';
}

/** Dovecot's oauth2 passdb settings file (its `args`). */
function dovecotOAuth2Ext(o: MailStackOAuth2): string {
  if (/[\s#]/.test(o.introspectionUrl)) throw new Error(`mailstack: bad introspectionUrl ${JSON.stringify(o.introspectionUrl)}`);
  return `# generated by test/support/mailstack.ts
introspection_mode = post
introspection_url = ${o.introspectionUrl}
username_attribute = ${o.usernameAttribute ?? 'email'}
active_attribute = active
active_value = true
`;
}

/** What the oauth2 option adds to dovecot.conf (besides the mechanisms and the passdb filter). */
function dovecotOAuth2Conf(dir: string, o: MailStackOAuth2): string {
  return `
# OAuth2 (the oauth2 option). Tokens only: without the mechanisms filter PLAIN passwords would be
# sent to the authorization server as tokens.
passdb {
  driver = oauth2
  mechanisms = ${oauthMechanisms(o)}
  args = ${dir}/oauth2.conf.ext
}
# Why a token was refused ("oauth2 failed: Introspection failed: ...") goes to dovecot.log.
auth_verbose = yes
# IMAP logins from here carry no-penalty...
login_trusted_networks = 127.0.0.0/8
# ...but Postfix's SASL requests do not: switch the auth penalty off altogether (auth cannot open the
# socket). Otherwise each failed login delays the next ones from 127.0.0.1 by 2, 4, 8... 15 s.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
# SASL for Postfix's submission port (smtpd_sasl_path).
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
`;
}

function dovecotConf(dir: string, imapPort: number, mailUid: number, imapCapability?: string, oauth2?: MailStackOAuth2): string {
  return `# generated by test/support/mailstack.ts (Dovecot 2.3 syntax)
instance_name = ${basename(dir)}
base_dir = ${dir}/dv
state_dir = ${dir}/ds
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login${oauth2 ? ` ${oauthMechanisms(oauth2)}` : ''}
auth_failure_delay = 0
auth_cache_size = 0
log_path = ${dir}/dovecot.log
first_valid_uid = ${Math.min(mailUid, 8)}
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
recipient_delimiter = +
shutdown_clients = yes
login_greeting = mailstack ready
# No stats process: login processes would otherwise wait on its socket (5 s handshake timeout).
stats_writer_socket_path =

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n ${dir}/users${oauth2 ? '\n  mechanisms = plain login' : ''}
}${oauth2 ? dovecotOAuth2Conf(dir, oauth2) : ''}
userdb {
  driver = passwd-file
  args = username_format=%n ${dir}/users
}

namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
protocol imap {
  mail_max_userip_connections = 200${imapCapability ? `\n  imap_capability = ${imapCapability}` : ''}
}
protocol lmtp {
  postmaster_address = postmaster@${MAIL_DOMAIN}
}
`;
}

/** The test's own lines after a generated config; nothing at all without them. */
function extraLines(extra: string | undefined): string {
  return extra ? `# added by the test\n${extra.trimEnd()}\n` : '';
}

function postfixMain(dir: string, oauth2 = false): string {
  return `# generated by test/support/mailstack.ts
compatibility_level = 3.6
queue_directory = ${dir}/pq
data_directory = ${dir}/pd
mail_owner = postfix
setgid_group = postdrop
myhostname = mailstack.${MAIL_DOMAIN}
mydomain = ${MAIL_DOMAIN}
myorigin = ${MAIL_DOMAIN}
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled in the test stack
alias_maps =
alias_database =
relayhost =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
virtual_mailbox_domains = ${MAIL_DOMAIN}
virtual_mailbox_maps = texthash:${dir}/pf/vmailbox
virtual_transport = lmtp:unix:${dir}/dv/lmtp
default_transport = error:mail leaves no test stack
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
recipient_delimiter = +
biff = no
append_dot_mydomain = no
in_flow_delay = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
maillog_file = ${dir}/postfix.log
maillog_file_prefixes = ${dir}
smtpd_banner = $myhostname ESMTP
${oauth2 ? `# SMTP AUTH through Dovecot; enabled on the submission port only (master.cf)
smtpd_sasl_type = dovecot
smtpd_sasl_path = ${dir}/dv/auth-postfix
` : ''}`;
}

function postfixMaster(smtpPort: number, submissionPort?: number): string {
  // 127.0.0.0/8 is in mynetworks, so without these overrides loopback clients could send without AUTH.
  const submission = submissionPort ? [
    `127.0.0.1:${submissionPort}  inet  n  -  n  -  -  smtpd`,
    '  -o smtpd_sasl_auth_enable=yes',
    '  -o smtpd_client_restrictions=permit_sasl_authenticated,reject',
    '  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject',
    '  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject',
  ].join('\n') + '\n' : '';
  const rows = [
    [`127.0.0.1:${smtpPort}`, 'inet', 'n', '-', 'n', '-', '-', 'smtpd'],
    ['pickup', 'unix', 'n', '-', 'n', '60', '1', 'pickup'],
    ['cleanup', 'unix', 'n', '-', 'n', '-', '0', 'cleanup'],
    ['qmgr', 'unix', 'n', '-', 'n', '300', '1', 'qmgr'],
    ['rewrite', 'unix', '-', '-', 'n', '-', '-', 'trivial-rewrite'],
    ['bounce', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['defer', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['trace', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['verify', 'unix', '-', '-', 'n', '-', '1', 'verify'],
    ['flush', 'unix', 'n', '-', 'n', '1000?', '0', 'flush'],
    ['proxymap', 'unix', '-', '-', 'n', '-', '-', 'proxymap'],
    ['proxywrite', 'unix', '-', '-', 'n', '-', '1', 'proxymap'],
    ['showq', 'unix', 'n', '-', 'n', '-', '-', 'showq'],
    ['smtp', 'unix', '-', '-', 'n', '-', '-', 'smtp'],
    ['relay', 'unix', '-', '-', 'n', '-', '-', 'smtp'],
    ['lmtp', 'unix', '-', '-', 'n', '-', '-', 'lmtp'],
    ['error', 'unix', '-', '-', 'n', '-', '-', 'error'],
    ['retry', 'unix', '-', '-', 'n', '-', '-', 'error'],
    ['discard', 'unix', '-', '-', 'n', '-', '-', 'discard'],
    ['local', 'unix', '-', 'n', 'n', '-', '-', 'local'],
    ['anvil', 'unix', '-', '-', 'n', '-', '1', 'anvil'],
    ['scache', 'unix', '-', '-', 'n', '-', '1', 'scache'],
    ['postlog', 'unix-dgram', 'n', '-', 'n', '-', '1', 'postlogd'],
  ];
  return '# generated by test/support/mailstack.ts\n' + rows.map((r) => r.join('  ')).join('\n') + '\n' + submission;
}

function mailUser(): { uid: number; gid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === 'mail') return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error('mailstack: no "mail" system user');
}

// ---------------------------------------------------------------------------------------------
// The stack

class Stack implements MailStack {
  readonly users: Record<string, MailStackUser> = {};
  private postfixStarted = false;
  submissionPort?: number;

  constructor(readonly dir: string, public smtpPort: number, public imapPort: number, private readonly options: MailStackOptions = {}) {}

  maildir(user: string): string { return join(this.dir, 'mail', user, 'Maildir'); }
  pids(): number[] { return instanceProcesses(this.dir); }

  postfixQueueSize(): number {
    const count = (d: string): number => {
      let n = 0;
      let entries: import('node:fs').Dirent[] = [];
      try { entries = readdirSync(d, { withFileTypes: true }); } catch { return 0; }
      for (const e of entries) n += e.isDirectory() ? count(join(d, e.name)) : 1;
      return n;
    };
    return ['maildrop', 'incoming', 'active', 'deferred', 'hold'].reduce((n, q) => n + count(join(this.dir, 'pq', q)), 0);
  }

  async flushQueue(): Promise<void> {
    if (!this.postfixStarted) return;
    await run('/usr/sbin/postqueue', ['-c', join(this.dir, 'pf'), '-f']).catch(() => undefined);
  }

  get postfixPidFile() { return join(this.dir, 'pq/pid/master.pid'); }
  get dovecotPidFile() { return join(this.dir, 'dv/master.pid'); }
  get dovecotConf() { return join(this.dir, 'dovecot.conf'); }

  writeConfigs(names: string[]): void {
    const { dir } = this;
    const { uid, gid } = mailUser();
    for (const d of ['pf', 'pq', 'ds']) mkdirSync(join(dir, d), { mode: 0o755 });
    // pd (Postfix's data_directory) is left for post-install to create with the right owner.
    mkdirSync(join(dir, 'mail'), { mode: 0o700 });
    chownSync(join(dir, 'mail'), uid, gid);
    const pw: string[] = [];
    const vmb: string[] = [];
    for (const name of names) {
      const password = `pw-${name}-${randomBytes(6).toString('hex')}`;
      const address = `${name}@${MAIL_DOMAIN}`;
      this.users[name] = { address, password };
      pw.push(`${name}:{PLAIN}${password}:${uid}:${gid}::${dir}/mail/${name}::`);
      vmb.push(`${address} ok`);
    }
    writeConfig(join(dir, 'users'), pw.join('\n') + '\n');
    writeConfig(join(dir, 'pf/vmailbox'), vmb.join('\n') + '\n');
    writeConfig(join(dir, 'pf/main.cf'), postfixMain(dir, !!this.options.oauth2) + extraLines(this.options.mainCf));
    if (this.options.oauth2) writeConfig(join(dir, 'oauth2.conf.ext'), dovecotOAuth2Ext(this.options.oauth2));
    this.writePorts();
  }

  /** (Re)write the files that carry the ports. */
  writePorts(): void {
    writeConfig(join(this.dir, 'pf/master.cf'), postfixMaster(this.smtpPort, this.submissionPort) + extraLines(this.options.masterCf));
    writeConfig(this.dovecotConf, dovecotConf(this.dir, this.imapPort, mailUser().uid, this.options.imapCapability, this.options.oauth2));
  }

  async startDovecot(): Promise<void> {
    const log = join(this.dir, 'dovecot.log');
    try {
      await runDaemonCommand('/usr/sbin/dovecot', ['-c', this.dovecotConf], join(this.dir, 'dovecot.out'));
    } catch (e: any) {
      throw new Error(`mailstack: dovecot failed to start: ${e.message}\n${tail(log)}`);
    }
    await waitFor('mailstack', `Dovecot IMAP on ${this.imapPort}`, async () => {
      // The pid file appears only once the forked master is up.
      const pid = readPid(this.dovecotPidFile);
      if (!pid) return false;
      if (!alive(pid)) throw new Error(`mailstack: dovecot exited\n${tail(log)}`);
      return existsSync(join(this.dir, 'dv/lmtp')) && portListening(this.imapPort);
    }, READY_TIMEOUT_MS, () => tail(log));
  }

  async stopDovecot(): Promise<void> {
    // Done once every child but the log process has exited.
    await this.stopByPidFile('dovecot', this.dovecotPidFile, this.imapPort,
      (master) => childrenOf(master).filter(alive).every((pid) => /\/log$/.test(cmdline(pid))));
  }

  async startPostfix(): Promise<void> {
    const log = join(this.dir, 'postfix.log');
    const pid = readPid(this.postfixPidFile);
    if (pid && alive(pid)) return;
    // After the first start the queue is known to be sane: skip postfix-script's integrity checks.
    if (this.postfixStarted) writeFileSync(join(this.dir, 'pq/quick-start'), '');
    try {
      await runDaemonCommand('/usr/sbin/postfix', ['-c', join(this.dir, 'pf'), 'start'], join(this.dir, 'postfix.out'));
    } catch (e: any) {
      throw new Error(`mailstack: postfix failed to start: ${e.message}\n${tail(log)}`);
    }
    this.postfixStarted = true;
    await waitFor('mailstack', `Postfix SMTP on ${this.smtpPort}${this.submissionPort ? ` and ${this.submissionPort}` : ''}`,
      () => this.postfixPorts().every(portListening), READY_TIMEOUT_MS, () => tail(log));
  }

  async stopPostfix(): Promise<void> {
    await this.stopByPidFile('postfix', this.postfixPidFile, this.postfixPorts());
  }

  /** The TCP ports Postfix listens on. */
  private postfixPorts(): number[] {
    return this.submissionPort ? [this.smtpPort, this.submissionPort] : [this.smtpPort];
  }

  async restartDovecot(): Promise<void> {
    await this.stopDovecot();
    await this.startDovecot();
  }

  /**
   * SIGTERM the master named by `pidFile`, then wait for it, its children and the port. With
   * `doneEnough`, a master that only has that left to do is SIGKILLed instead of awaited (and its
   * pid file removed): Dovecot 2.3's master sleeps a hard-coded second for its log process at the
   * very end of a shutdown.
   */
  private async stopByPidFile(what: string, pidFile: string, port: number | number[], doneEnough?: (master: number) => boolean): Promise<void> {
    const master = readPid(pidFile);
    if (!master || !alive(master)) return;
    const all = [master, ...childrenOf(master)];
    signal(master, 'SIGTERM');
    let lastTerm = Date.now();
    let killed = false;
    const gone = () => {
      if (!all.some(alive)) return true;
      // A Dovecot master that was just started can miss a SIGTERM; repeating it is harmless.
      if (!killed && Date.now() - lastTerm > 200) {
        signal(master, 'SIGTERM');
        lastTerm = Date.now();
      }
      if (doneEnough && !killed && alive(master) && doneEnough(master)) {
        for (const pid of [master, ...childrenOf(master)]) signal(pid, 'SIGKILL');
        killed = true;
      }
      return false;
    };
    try {
      await waitFor('mailstack', `${what} (pid ${master}) to exit`, gone, STOP_TIMEOUT_MS);
    } catch {
      if (process.env.MST_DEBUG) console.log('STUCK', what, all.filter(alive).map((p) => p + ':' + cmdline(p)));
      for (const pid of [...all, ...childrenOf(master)]) if (alive(pid)) signal(pid, 'SIGKILL');
      killed = true;
      await waitFor('mailstack', `${what} to die`, () => !all.some(alive), 2000);
    }
    if (killed) rmSync(pidFile, { force: true });
    const ports = Array.isArray(port) ? port : [port];
    for (const p of ports) await waitFor('mailstack', `port ${p} to be free`, async () => !portListening(p) && await portBindable(p), STOP_TIMEOUT_MS);
  }

  async stop(): Promise<void> {
    if (!existsSync(this.dir)) return;
    try {
      await Promise.all([this.stopPostfix(), this.stopDovecot()]);
    } finally {
      // Anything that slipped through (an orphaned child) goes too.
      const left = instanceProcesses(this.dir);
      if (left.length) killInstanceSync(this.dir, left);
      unregisterDaemon(this.dir);
      removeDir(this.dir);
    }
  }

  killSync(): void {
    killInstanceSync(this.dir, [readPid(this.postfixPidFile), readPid(this.dovecotPidFile)]);
    removeDir(this.dir);
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(entry));
    } catch { /* gone */ }
  }
  return out;
}

/** Start a private Postfix + Dovecot under a fresh temp dir; see the file comment. */
export async function startMailStack(options: MailStackOptions = {}): Promise<MailStack> {
  if (process.getuid?.() !== 0) throw new Error('mailstack: must run as root (Postfix and Dovecot drop privileges themselves)');
  await ensureMailPackages();
  reapStale(TMP_PREFIX, OWNER_FILE, (dir) => killInstanceSync(dir, [readPid(join(dir, 'pq/pid/master.pid')), readPid(join(dir, 'dv/master.pid'))]));
  const names = options.users ?? ['agent', 'ops', 'other'];
  for (const n of names) if (!/^[a-z0-9][a-z0-9._-]*$/.test(n)) throw new Error(`mailstack: bad user name ${JSON.stringify(n)}`);

  const dir = mkdtempSync(TMP_PREFIX);
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, OWNER_FILE), `${process.pid}\n`);
  const stack = new Stack(dir, 0, 0, options);
  registerDaemon(dir, () => stack.killSync());
  try {
    stack.smtpPort = await freePort();
    stack.imapPort = await freePort();
    if (options.oauth2) stack.submissionPort = await freePort();
    stack.writeConfigs(names);
    // A port taken between freePort() and the daemon's bind makes a start fail: pick new ones and retry.
    const failures: string[] = [];
    for (let attempt = 1; ; attempt++) {
      try {
        await Promise.all([stack.startDovecot(), stack.startPostfix()]);
        break;
      } catch (e: any) {
        failures.push(`attempt ${attempt}: ${e.message}`);
        if (attempt >= 3) throw new Error(failures.join('\n'));
        await Promise.allSettled([stack.stopPostfix(), stack.stopDovecot()]);
        stack.smtpPort = await freePort();
        stack.imapPort = await freePort();
        if (options.oauth2) stack.submissionPort = await freePort();
        stack.writePorts();
      }
    }
  } catch (e) {
    await stack.stop().catch(() => stack.killSync());
    unregisterDaemon(dir);
    throw e;
  }
  return stack;
}

