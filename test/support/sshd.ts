/**
 * A private, real OpenSSH server for SFTP tests: /usr/sbin/sshd on 127.0.0.1:<free port>, key-only
 * login as root (the tests run as root), `Subsystem sftp internal-sftp`, sessions confined to what
 * the tests do (no forwarding, no tty needed).
 *
 * Everything lives under one short temp dir (/tmp/sshd-XXXXXX): sshd_config, the host key, a
 * second "other" host key (only its fingerprint is used, for changed-host-key tests), the client
 * key, authorized_keys, sshd.pid, sshd.log and data/ (the SFTP share). Nothing in /etc is read by
 * sshd or written by us; the system's own sshd is never started or configured. The one path
 * outside the temp dir is /run/sshd, sshd's compiled-in privilege-separation chroot, created
 * (root-owned, 0755, empty) when missing and never removed.
 *
 * sshd runs in the foreground (-D), detached from our process group, with -E <dir>/sshd.log. It is
 * stopped through its own pid file; a safety net on 'exit'/signals kills whatever a failing test
 * left behind, and a server whose owning process died without cleaning up (SIGKILL) is reaped by
 * the next startSshServer().
 *
 * Pitfalls found while building this:
 * - Daemon mode forks before binding, so a port clash would only show in the log: -D keeps sshd a
 *   child whose exit (code 255, "Cannot bind any address") start-up sees at once and retries.
 * - Killing the listener does NOT end live sessions (sshd keeps them across restarts by design):
 *   stop() kills the whole tree. Session processes change their title and cwd, so they are found by
 *   an environment marker (MAILAGENT_TEST_SSHD=<dir>) that the re-exec'd children inherit, plus
 *   descent from a marked process (a shell started by `exec` gets a fresh environment).
 * - sshd re-execs itself per connection: it must be started by absolute path.
 * - With UsePAM no, sshd refuses a *locked* account ('!' in /etc/shadow, as on Ubuntu images) even
 *   for key logins; Debian images have root:*, which is fine. A locked root fails start-up with a
 *   clear message rather than falling back to UsePAM yes (pam_loginuid breaks sessions in containers).
 * - PermitRootLogin prohibit-password is needed for the root login; AllowUsers pins it to root.
 * - Private host keys must be mode 600, or sshd ignores them ("no hostkeys available").
 * - OpenSSH >= 9.8 penalises sources that fail auth or drop connections (PerSourcePenalties), which
 *   would make 127.0.0.1 flaky after a refused-host-key test: it is switched off when supported.
 * - ssh-agent uses /tmp/ssh-XXXX, hence the /tmp/sshd- prefix (reaping only touches dirs with our
 *   owner.pid anyway).
 * - internal-sftp's own file-operation log (-l) goes to syslog, not to the -E file: left off.
 * - Each readiness probe (and each refused client) leaves a "Connection closed ... [preauth]" or
 *   "kex_exchange_identification" line in sshd.log: that is expected noise.
 * - apt-get may meet a dpkg lock held by a concurrent install: it waits for it (DPkg::Lock::Timeout).
 * - npm does not run ssh2's optional native addon build here (allowScripts); ssh2 falls back to
 *   Node's crypto and works, ed25519 keys included.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync,
  writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, portBindable, portListening } from './mailstack';
import { alive, killMarkedSync, markedProcesses, readPid, reapStale, registerDaemon, removeDir, signal, tail, unregisterDaemon, waitFor } from './safety-net';

const run = promisify(execFile);

export interface SshServer {
  host: '127.0.0.1';
  port: number;
  /** The temp dir holding everything; sshd.log is in it. */
  dir: string;
  /** The account the tests log in as (root, by key only). */
  user: string;
  /** A directory the user owns, for SFTP shares: <dir>/data. */
  root: string;
  /** Private key (OpenSSH format, ed25519, no passphrase) that the test client uses. */
  clientKeyPath: string;
  /** Its contents. */
  clientKey: string;
  /** The client's public key line (ssh-ed25519 AAAA... comment), as in authorized_keys. */
  clientPublicKey: string;
  /** SHA256:... of the server's host key, as `ssh-keygen -lf` prints it (the value to pin). */
  hostKeyFingerprint: string;
  /** The host public key line (ssh-ed25519 AAAA... comment). */
  hostPublicKey: string;
  /** Fingerprint of a different generated key, for "changed host key" tests. */
  otherHostKeyFingerprint: string;
  /** sshd's log (LogLevel VERBOSE). */
  logFile: string;
  /** Pids of every process of this server (listener and sessions). */
  pids(): number[];
  /** Kill sshd and its sessions, wait until the port is free, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const TMP_PREFIX = '/tmp/sshd-';
const OWNER_FILE = 'owner.pid';
const MARK = 'MAILAGENT_TEST_SSHD';
const SSHD = '/usr/sbin/sshd';
const KEYGEN = '/usr/bin/ssh-keygen';
const PRIVSEP_DIR = '/run/sshd';
const PACKAGES = ['openssh-server', 'openssh-client'];
const LOGIN_USER = 'root';
const READY_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 5000;

// ---------------------------------------------------------------------------------------------
// Packages

async function missingPackages(): Promise<string[]> {
  const missing: string[] = [];
  for (const p of PACKAGES) {
    try {
      const { stdout } = await run('dpkg-query', ['-W', '-f=${Status}', p]);
      if (!/install ok installed/.test(stdout)) missing.push(p);
    } catch {
      missing.push(p);
    }
  }
  return missing;
}

/** Install OpenSSH server and client from Debian when missing; policy-rc.d keeps the system sshd down. */
export async function ensureSshPackages(): Promise<void> {
  if (existsSync(SSHD) && existsSync(KEYGEN)) return;
  const missing = await missingPackages();
  if (!missing.length) throw new Error(`sshd harness: ${PACKAGES.join(' ')} installed but ${SSHD} or ${KEYGEN} missing`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const opts = { env, maxBuffer: 64 * 1024 * 1024 };
  const lock = ['-o', 'DPkg::Lock::Timeout=120'];
  const haveLists = existsSync('/var/lib/apt/lists')
    && readdirSync('/var/lib/apt/lists').some((f) => /_Packages(\.\w+)?$/.test(f));
  if (!haveLists) await run('apt-get', [...lock, 'update', '-qq'], opts);
  const install = () => run('apt-get', [...lock, 'install', '-y', '-qq', '--no-install-recommends', ...missing], opts);
  try {
    await install();
  } catch {
    await run('apt-get', [...lock, 'update', '-qq'], opts);
    await install();
  }
  if (!existsSync(SSHD) || !existsSync(KEYGEN)) throw new Error(`sshd harness: ${missing.join(' ')} installed but binaries missing`);
}

let sshdVersion: [number, number] | undefined;

/** OpenSSH's major.minor, from `sshd -V` (older versions print it in the usage text, also on stderr). */
async function opensshVersion(): Promise<[number, number]> {
  if (sshdVersion) return sshdVersion;
  let text = '';
  try {
    const r = await run(SSHD, ['-V']);
    text = r.stdout + r.stderr;
  } catch (e: any) {
    text = `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
  const m = /OpenSSH_(\d+)\.(\d+)/.exec(text);
  if (!m) throw new Error(`sshd harness: cannot tell the OpenSSH version from "${SSHD} -V": ${text.trim()}`);
  sshdVersion = [Number(m[1]), Number(m[2])];
  return sshdVersion;
}

/** sshd without PAM refuses locked or expired accounts even for key logins: say so up front. */
function checkLoginAccount(user: string): void {
  let shadow = '';
  try { shadow = readFileSync('/etc/shadow', 'utf8'); } catch { return; }
  const f = shadow.split('\n').find((l) => l.startsWith(`${user}:`))?.split(':');
  if (!f) return;
  if (f[1].startsWith('!')) {
    throw new Error(`sshd harness: account ${user} is locked in /etc/shadow ("${f[1].slice(0, 2)}..."); sshd with UsePAM no refuses it even with a key`);
  }
  const expire = Number(f[7]);
  if (f[7] && expire > 0 && expire * 86400_000 < Date.now()) throw new Error(`sshd harness: account ${user} has expired (/etc/shadow)`);
}

/** sshd insists on its privilege-separation chroot: root-owned and not group/world writable. */
function ensurePrivsepDir(): void {
  if (!existsSync(PRIVSEP_DIR)) mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });
  const st = statSync(PRIVSEP_DIR);
  if (st.uid !== 0 || (st.mode & 0o022) !== 0) throw new Error(`sshd harness: ${PRIVSEP_DIR} must be owned by root and not group/world writable`);
}

// ---------------------------------------------------------------------------------------------
// Processes and small helpers






const killInstanceSync = (dir: string, extra: (number | undefined)[]) => killMarkedSync(MARK, dir, extra);

/** Read the peer's identification line; true when it is SSH-2.0. */
function readsSshBanner(port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v: boolean) => { sock.destroy(); resolve(v); };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('data', (c) => {
      buf += c.toString('latin1');
      if (buf.includes('\n')) done(buf.startsWith('SSH-2.0-'));
    });
    sock.once('error', () => done(false));
    sock.once('end', () => done(false));
  });
}

/** "SHA256:<base64 without padding>" of a raw SSH public key blob, exactly as ssh-keygen -l prints it. */
export function sha256Fingerprint(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** The raw blob of a public key line ("ssh-ed25519 AAAA... comment"). */
export function publicKeyBlob(line: string): Buffer {
  const b64 = line.trim().split(/\s+/)[1];
  if (!b64) throw new Error(`sshd harness: not a public key line: ${line}`);
  return Buffer.from(b64, 'base64');
}

async function keygen(path: string, comment: string): Promise<void> {
  await run(KEYGEN, ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
}

async function fingerprint(pubPath: string): Promise<string> {
  const { stdout } = await run(KEYGEN, ['-l', '-E', 'sha256', '-f', pubPath]);
  const m = /^\d+ (SHA256:\S+)/.exec(stdout.trim());
  if (!m) throw new Error(`sshd harness: unexpected ssh-keygen -l output: ${stdout}`);
  return m[1];
}

// ---------------------------------------------------------------------------------------------
// Config

function sshdConfig(dir: string, port: number, version: [number, number]): string {
  const lines = [
    '# generated by test/support/sshd.ts',
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    'AddressFamily inet',
    `HostKey ${dir}/host_ed25519`,
    `PidFile ${dir}/sshd.pid`,
    'LogLevel VERBOSE',
    `AuthorizedKeysFile ${dir}/authorized_keys`,
    'AuthorizedPrincipalsFile none',
    // The temp dir is not a home directory: skip the ownership checks on it and its parents.
    'StrictModes no',
    'PubkeyAuthentication yes',
    'AuthenticationMethods publickey',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'HostbasedAuthentication no',
    'UsePAM no',
    `PermitRootLogin ${LOGIN_USER === 'root' ? 'prohibit-password' : 'no'}`,
    `AllowUsers ${LOGIN_USER}`,
    'DisableForwarding yes',
    'PermitTunnel no',
    'PermitUserEnvironment no',
    'PermitUserRC no',
    'PrintMotd no',
    'PrintLastLog no',
    'UseDNS no',
    'LoginGraceTime 30',
    // Tests may open many connections at once; the default 10:30:100 drops some at random.
    'MaxStartups 100',
    'MaxSessions 50',
    // No -l: internal-sftp logs through syslog, not sshd's -E file.
    'Subsystem sftp internal-sftp',
  ];
  // OpenSSH >= 9.8 would shut 127.0.0.1 out for a while after refused or dropped connections.
  if (version[0] > 9 || (version[0] === 9 && version[1] >= 8)) lines.push('PerSourcePenalties no');
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// The server

class Server implements SshServer {
  readonly host = '127.0.0.1' as const;
  readonly user = LOGIN_USER;
  clientKey = '';
  clientPublicKey = '';
  hostKeyFingerprint = '';
  hostPublicKey = '';
  otherHostKeyFingerprint = '';
  private child?: ChildProcess;
  private exited?: string;

  constructor(readonly dir: string, public port: number) {}

  get root() { return join(this.dir, 'data'); }
  get clientKeyPath() { return join(this.dir, 'client_ed25519'); }
  get logFile() { return join(this.dir, 'sshd.log'); }
  get pidFile() { return join(this.dir, 'sshd.pid'); }
  get configFile() { return join(this.dir, 'sshd_config'); }

  pids(): number[] {
    return existsSync(this.dir) ? markedProcesses(MARK, this.dir, [readPid(this.pidFile), this.child?.pid]) : [];
  }

  async prepare(): Promise<void> {
    const { dir } = this;
    mkdirSync(this.root, { mode: 0o755 });
    await Promise.all([
      opensshVersion(),
      keygen(join(dir, 'host_ed25519'), 'mailagent-test-host'),
      keygen(join(dir, 'other_host_ed25519'), 'mailagent-test-other-host'),
      keygen(this.clientKeyPath, 'mailagent-test-client'),
    ]);
    [this.hostKeyFingerprint, this.otherHostKeyFingerprint] = await Promise.all([
      fingerprint(join(dir, 'host_ed25519.pub')), fingerprint(join(dir, 'other_host_ed25519.pub')),
    ]);
    if (this.hostKeyFingerprint === this.otherHostKeyFingerprint) throw new Error('sshd harness: the two host keys are the same');
    this.hostPublicKey = readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').trim();
    this.clientKey = readFileSync(this.clientKeyPath, 'utf8');
    this.clientPublicKey = readFileSync(`${this.clientKeyPath}.pub`, 'utf8').trim();
    // Owned by the login user (root: us), mode 600, as sshd expects even with StrictModes off.
    writeFileSync(join(dir, 'authorized_keys'), this.clientPublicKey + '\n', { mode: 0o600 });
    chmodSync(join(dir, 'authorized_keys'), 0o600);
  }

  async writeConfig(): Promise<void> {
    // A config mistake makes sshd -D exit at once with the reason on stderr, i.e. in sshd.log.
    writeFileSync(this.configFile, sshdConfig(this.dir, this.port, await opensshVersion()), { mode: 0o644 });
  }

  async start(): Promise<void> {
    this.exited = undefined;
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(SSHD, ['-D', '-f', this.configFile, '-E', this.logFile], {
        cwd: this.dir,
        // A fresh environment with the marker that every process of this instance inherits.
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', [MARK]: this.dir },
        stdio: ['ignore', fd, fd],
        detached: true,
      });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    child.unref();
    child.once('error', (e) => { this.exited = `spawn error ${e.message}`; });
    child.once('exit', (code, sig) => { this.exited = `exit ${code ?? sig}`; });
    await waitFor('sshd harness', `sshd on 127.0.0.1:${this.port}`, async () => {
      if (this.exited) throw new Error(`sshd harness: sshd ${this.exited} before accepting connections:\n${tail(this.logFile)}`);
      return readPid(this.pidFile) === child.pid && portListening(this.port) && await readsSshBanner(this.port);
    }, READY_TIMEOUT_MS, () => tail(this.logFile));
  }

  /** Kill sshd and its sessions (through the pid file), then wait for the port. */
  async kill(): Promise<void> {
    const listener = readPid(this.pidFile) ?? this.child?.pid;
    const all = markedProcesses(MARK, this.dir, [listener, this.child?.pid]);
    if (!all.length) return;
    for (const pid of all) signal(pid, 'SIGTERM');
    try {
      await waitFor('sshd harness', 'sshd to exit', () => !all.some(alive), STOP_TIMEOUT_MS);
    } catch {
      for (const pid of [...all, ...markedProcesses(MARK, this.dir)]) if (alive(pid)) signal(pid, 'SIGKILL');
      await waitFor('sshd harness', 'sshd to die', () => !all.some(alive), 2000);
    }
    const left = markedProcesses(MARK, this.dir);
    if (left.length) killInstanceSync(this.dir, left);
    await waitFor('sshd harness', `port ${this.port} to be free`, async () => !portListening(this.port) && await portBindable(this.port), STOP_TIMEOUT_MS);
  }

  async stop(): Promise<void> {
    if (!existsSync(this.dir)) return;
    try {
      await this.kill();
    } finally {
      unregisterDaemon(this.dir);
      removeDir(this.dir);
    }
  }

  killSync(): void {
    killInstanceSync(this.dir, [readPid(this.pidFile), this.child?.pid]);
    removeDir(this.dir);
  }
}

/** Start a private sshd (SFTP, key-only root login) under a fresh temp dir; see the file comment. */
export async function startSshServer(): Promise<SshServer> {
  if (process.getuid?.() !== 0) throw new Error('sshd harness: must run as root (sshd needs it to log in and drop privileges)');
  await ensureSshPackages();
  reapStale(TMP_PREFIX, OWNER_FILE, (dir) => killInstanceSync(dir, [readPid(join(dir, 'sshd.pid'))]));
  checkLoginAccount(LOGIN_USER);
  ensurePrivsepDir();

  const dir = mkdtempSync(TMP_PREFIX);
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, OWNER_FILE), `${process.pid}\n`);
  const server = new Server(dir, 0);
  registerDaemon(dir, () => server.killSync());
  try {
    await server.prepare();
    // A port taken between freePort() and sshd's bind makes sshd exit: pick another and retry.
    const failures: string[] = [];
    for (let attempt = 1; ; attempt++) {
      server.port = await freePort();
      await server.writeConfig();
      try {
        await server.start();
        break;
      } catch (e: any) {
        failures.push(`attempt ${attempt} (port ${server.port}): ${e.message}`);
        await server.kill().catch(() => undefined);
        if (attempt >= 3 || !/Address already in use|Cannot bind any address/.test(e.message)) throw new Error(failures.join('\n'));
        rmSync(server.logFile, { force: true });
      }
    }
  } catch (e) {
    await server.stop().catch(() => server.killSync());
    unregisterDaemon(dir);
    throw e;
  }
  return server;
}
