/**
 * A private, real Net-SNMP agent for SNMP tests: /usr/sbin/snmpd on udp:127.0.0.1:<free port>,
 * with a v2c read-only community, a v2c read-write community, an SNMPv3 user (authPriv, SHA + AES)
 * with read-write access, and one integer object (.1.3.6.1.4.1.8072.9999.1.0) served by a
 * `pass_persist` script from a file the test rewrites (setValue) to make the device "change"; the
 * same script serves fixed octet strings: binary (.2.0), UTF-8 text (.3.0), MAC-like bytes (.4.0).
 *
 * Everything lives under one temp dir (/tmp/snmpd-XXXXXX): snmpd.conf, snmpd.pid, snmpd.log, the
 * pass_persist script and its value file, persist/ (snmpd's persistent dir: engine ID, boots, the v3 user's
 * localized keys) and an empty mibs/. snmpd is started with -C -c <dir>/snmpd.conf, so it reads no
 * configuration in /etc; the system's own snmpd is never started, stopped or configured.
 *
 * snmpd runs in the foreground (-f), detached from our process group, logging with -Lf. It is
 * stopped through its own pid file; a safety net on 'exit'/signals kills whatever a failing test
 * left behind, and an agent whose owning process died without cleaning up (SIGKILL) is reaped by
 * the next startSnmpd().
 *
 * Pitfalls found while building this:
 * - Debian's snmpd also opens the SMUX port, TCP 0.0.0.0:199, i.e. on every interface (and a second
 *   agent would fight over it): the smux module is left out with `-I -smux`. The agent then holds
 *   just its UDP socket on 127.0.0.1.
 * - Without the standard MIB files (Debian ships them in non-free snmp-mibs-downloader) snmpd
 *   writes a few hundred "Cannot find module" lines to its log at start-up. MIBS= (empty) with
 *   MIBDIRS=<dir>/mibs (empty) makes it load none: it needs none to serve numeric OIDs.
 * - The client tools (snmpget...) create /var/lib/snmp/cert_indexes unless SNMP_PERSISTENT_DIR
 *   points elsewhere: readiness is probed with net-snmp (Node) instead, which touches no files.
 * - Setting sysLocation, sysContact or sysName in snmpd.conf makes them read-only (SET answers
 *   notWritable). They are left out, so the defaults ("Unknown", "root", the host name) show and
 *   the tests can change them.
 * - `createUser` in the main config works (the persistent dir's snmpd.conf is not needed): snmpd
 *   localizes the keys and writes a usmUser line to persist/snmpd.conf. A second start with the
 *   same persistent dir would then see the user twice; every start here gets a fresh dir.
 * - Passphrases must be at least 8 characters: with a shorter one snmpd logs "passphrase chosen is
 *   below the length requirements of the USM (min=8)" and runs on without the user.
 * - A wrong v2c community is not answered at all (the client only times out); a wrong v3 auth key
 *   or an unknown user gets a Report (usmStatsWrongDigests / usmStatsUnknownUserNames), but a wrong
 *   *privacy* key is not answered either: snmpd cannot decrypt the request to reply to it.
 * - A SET through the read-only community fails with noAccess; SET of a read-only object
 *   (sysDescr) with notWritable; an integer for sysLocation with wrongType.
 * - net-snmp (Node) defaults to SNMPv1 in createSession() and writes `version` into the options
 *   object it is given: each session gets a fresh options object with version 2c.
 * - A port clash makes snmpd -f exit at once ("Error opening specified endpoint"): start-up sees
 *   the exit and retries on another port.
 * - snmpd reuses a `pass` script's output for 30 s when the same request repeats (its exec cache):
 *   with `pass`, a GET saw a rewritten value file only 30 s later, while a walk (a different
 *   command line, "-n") saw it at once. `pass_persist` has no such cache: the script stays running
 *   and reads the file for every request, so setValue() shows with the next request.
 *   The file is replaced by rename() so that the script never reads half a number.
 * - pass_persist sends a SET as "set", the OID, "TYPE VALUE" and then an empty line. A script that
 *   answers that empty line ("NONE") puts every later answer one request late: the next GET got
 *   noSuchInstance. Empty lines are ignored. (snmpd also GETs the object before SETting it.)
 * - The pass_persist script is started at the first request under its OID and inherits snmpd's
 *   environment (the marker): stop() finds it that way; it also ends by itself on EOF when snmpd
 *   goes away.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive, killMarkedSync, markedProcesses, readPid, reapStale, registerDaemon, removeDir, signal, tail, unregisterDaemon, waitFor } from './safety-net';

export interface SnmpV3User {
  name: string;
  authProtocol: 'sha';
  authKey: string;
  privProtocol: 'aes';
  privKey: string;
}

export interface SnmpServer {
  host: '127.0.0.1';
  port: number;
  /** The temp dir holding everything; snmpd.log is in it. */
  dir: string;
  logFile: string;
  /** v2c read-only community. */
  community: string;
  /** v2c read-write community. */
  writeCommunity: string;
  /** An authPriv user (SHA + AES) with read-write access. */
  v3: SnmpV3User;
  /** The pass-served INTEGER (numeric, no leading dot); its value is what setValue() last wrote. */
  valueOid: string;
  /** An OctetString of fixed binary bytes (binaryHex), read-only. */
  binaryOid: string;
  binaryHex: string;
  /** An OctetString holding UTF-8 text (text), read-only. */
  textOid: string;
  text: string;
  /** An OctetString of bytes that are valid UTF-8 but control characters (macHex), read-only. */
  macOid: string;
  macHex: string;
  /** Change the value the agent reports for valueOid (takes effect with the next request). */
  setValue(n: number): void;
  /** Pids of every process of this agent (snmpd and any running pass script). */
  pids(): number[];
  /** Kill snmpd, wait until the port is free, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const TMP_PREFIX = '/tmp/snmpd-';
const OWNER_FILE = 'owner.pid';
const MARK = 'MAILAGENT_TEST_SNMPD';
const SNMPD = '/usr/sbin/snmpd';
const PASS_BASE = '1.3.6.1.4.1.8072.9999';
const VALUE_OID = `${PASS_BASE}.1.0`;
const BINARY_OID = `${PASS_BASE}.2.0`;
const TEXT_OID = `${PASS_BASE}.3.0`;
const MAC_OID = `${PASS_BASE}.4.0`;
/** Not UTF-8 (0xde 0xad), with a NUL: must come back as hex. */
const BINARY_HEX = 'de:ad:be:ef:00:41';
/** Valid UTF-8, but control characters (a MAC address an unknown OID might hold): hex too. */
const MAC_HEX = '00:1a:2b:3c:4d:5e';
const TEXT_VALUE = 'Zürich, Straße 5';
const SYS_UPTIME = '1.3.6.1.2.1.1.3.0';
const READY_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 5000;





/** A UDP port on 127.0.0.1 that nothing holds right now (the kernel picks it from the high range). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    sock.unref();
    sock.once('error', reject);
    sock.bind({ port: 0, address: '127.0.0.1', exclusive: true }, () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}

/** True when 127.0.0.1:port (UDP) can be bound again. */
function udpBindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createSocket('udp4');
    sock.unref();
    sock.once('error', () => { sock.close(); resolve(false); });
    sock.bind({ port, address: '127.0.0.1', exclusive: true }, () => sock.close(() => resolve(true)));
  });
}


const killInstanceSync = (dir: string, extra: (number | undefined)[]) => killMarkedSync(MARK, dir, extra);

/** One v2c GET of sysUpTime.0 through net-snmp: true when the agent answers with a value. */
function answers(port: number, community: string): Promise<boolean> {
  const snmp = require('net-snmp') as typeof import('net-snmp');
  return new Promise((resolve) => {
    const session = snmp.createSession('127.0.0.1', community, { port, version: snmp.Version2c, timeout: 300, retries: 0 });
    session.on('error', () => undefined);
    session.get([SYS_UPTIME], (err, varbinds) => {
      session.close();
      resolve(!err && varbinds?.[0]?.type === snmp.ObjectType.TimeTicks);
    });
  });
}

const secret = (prefix: string) => `${prefix}-${randomBytes(8).toString('hex')}`;

function snmpdConfig(s: { community: string; writeCommunity: string; v3: SnmpV3User; passScript: string }): string {
  return [
    '# generated by test/support/snmpd.ts',
    // The listening address is on the command line. No sysLocation/sysContact/sysName here: set in
    // this file they would become read-only.
    `rocommunity ${s.community} 127.0.0.1`,
    `rwcommunity ${s.writeCommunity} 127.0.0.1`,
    `createUser ${s.v3.name} SHA ${s.v3.authKey} AES ${s.v3.privKey}`,
    `rwuser ${s.v3.name} authPriv`,
    // pass_persist, not pass: snmpd caches a pass script's output for 30 s (see the file comment).
    `pass_persist .${PASS_BASE} /bin/sh ${s.passScript}`,
    '',
  ].join('\n');
}

/**
 * A pass_persist script: snmpd keeps it running and writes requests to its stdin, "PING" (answer
 * "PONG"), "get\nOID", "getnext\nOID" (answer "OID\nTYPE\nVALUE" or "NONE") and "set\nOID\nTYPE VALUE"
 * (answer "DONE" or an error name). It serves .1.0 (INTEGER, read from the value file for every
 * request), .2.0 (fixed binary octets), .3.0 (a fixed UTF-8 string) and .4.0 (fixed MAC-like octets).
 */
function passPersistScript(valueFile: string): string {
  const b = `.${PASS_BASE}`;
  return `#!/bin/sh
# generated by test/support/snmpd.ts: serves ${b}.1.0 (INTEGER) from ${valueFile}, ${b}.2.0 to ${b}.4.0
answer() {
  case "$1" in
    1) printf '%s\\ninteger\\n%s\\n' "${b}.1.0" "$(cat "${valueFile}")" ;;
    2) printf '%s\\noctet\\n%s\\n' "${b}.2.0" "${BINARY_HEX.replace(/:/g, ' ')}" ;;
    3) printf '%s\\nstring\\n%s\\n' "${b}.3.0" "${TEXT_VALUE}" ;;
    4) printf '%s\\noctet\\n%s\\n' "${b}.4.0" "${MAC_HEX.replace(/:/g, ' ')}" ;;
  esac
}
while read -r command; do
  case "$command" in
    PING) echo PONG ;;
    get) read -r requested
      case "$requested" in
        ${b}.1.0) answer 1 ;;
        ${b}.2.0) answer 2 ;;
        ${b}.3.0) answer 3 ;;
        ${b}.4.0) answer 4 ;;
        *) echo NONE ;;
      esac ;;
    getnext) read -r requested
      # The first pattern that matches wins: each names what sorts before the next object.
      case "$requested" in
        ${b}|${b}.0|${b}.0.*|${b}.1) answer 1 ;;
        ${b}.1.*|${b}.2) answer 2 ;;
        ${b}.2.*|${b}.3) answer 3 ;;
        ${b}.3.*|${b}.4) answer 4 ;;
        *) echo NONE ;;
      esac ;;
    set) read -r requested; read -r value; echo not-writable ;;
    # snmpd follows a set with an empty line; answering it would shift every later answer by one.
    '') ;;
    *) echo NONE ;;
  esac
done
`;
}

class Agent implements SnmpServer {
  readonly host = '127.0.0.1' as const;
  readonly valueOid = VALUE_OID;
  readonly binaryOid = BINARY_OID;
  readonly binaryHex = BINARY_HEX;
  readonly textOid = TEXT_OID;
  readonly text = TEXT_VALUE;
  readonly macOid = MAC_OID;
  readonly macHex = MAC_HEX;
  readonly community = secret('ro');
  readonly writeCommunity = secret('rw');
  readonly v3: SnmpV3User = { name: 'mailagent', authProtocol: 'sha', authKey: secret('auth'), privProtocol: 'aes', privKey: secret('priv') };
  private child?: ChildProcess;
  private exited?: string;
  /** Set once snmpd answered: only then is the port ours to wait for on stop. */
  private ready = false;

  constructor(readonly dir: string, public port: number) {}

  get logFile() { return join(this.dir, 'snmpd.log'); }
  get pidFile() { return join(this.dir, 'snmpd.pid'); }
  get configFile() { return join(this.dir, 'snmpd.conf'); }
  get valueFile() { return join(this.dir, 'value'); }

  pids(): number[] {
    return existsSync(this.dir) ? markedProcesses(MARK, this.dir, [readPid(this.pidFile), this.child?.pid]) : [];
  }

  setValue(n: number): void {
    if (!Number.isInteger(n) || n < -2147483648 || n > 2147483647) throw new Error(`snmpd harness: setValue needs a 32-bit integer, not ${n}`);
    // rename() so that a pass script running right now reads the old or the new number, never half.
    const tmp = `${this.valueFile}.tmp`;
    writeFileSync(tmp, `${n}\n`);
    renameSync(tmp, this.valueFile);
  }

  prepare(): void {
    mkdirSync(join(this.dir, 'persist'), { mode: 0o700 });
    mkdirSync(join(this.dir, 'mibs'));
    this.setValue(0);
    const script = join(this.dir, 'pass.sh');
    writeFileSync(script, passPersistScript(this.valueFile), { mode: 0o755 });
    // Holds the community strings and passphrases.
    writeFileSync(this.configFile, snmpdConfig({ community: this.community, writeCommunity: this.writeCommunity, v3: this.v3, passScript: script }), { mode: 0o600 });
  }

  async start(): Promise<void> {
    this.exited = undefined;
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(SNMPD, [
        '-C', '-c', this.configFile, // only our config, nothing from /etc
        '-I', '-smux', // no SMUX listener on TCP *:199
        '-f', '-Lf', this.logFile, '-p', this.pidFile,
        `udp:127.0.0.1:${this.port}`,
      ], {
        cwd: this.dir,
        env: {
          PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
          HOME: this.dir,
          SNMP_PERSISTENT_DIR: join(this.dir, 'persist'),
          SNMPCONFPATH: this.dir,
          MIBS: '',
          MIBDIRS: join(this.dir, 'mibs'),
          // Inherited by pass scripts too: how every process of this agent is found.
          [MARK]: this.dir,
        },
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
    await waitFor('snmpd harness', `snmpd on udp:127.0.0.1:${this.port}`, async () => {
      if (this.exited) throw new Error(`snmpd harness: snmpd ${this.exited} before answering:\n${tail(this.logFile)}`);
      return readPid(this.pidFile) === child.pid && await answers(this.port, this.community);
    }, READY_TIMEOUT_MS, () => tail(this.logFile));
    this.ready = true;
  }

  /** Kill snmpd (through the pid file) and any pass script, then wait for the port. */
  async kill(): Promise<void> {
    const all = markedProcesses(MARK, this.dir, [readPid(this.pidFile), this.child?.pid]);
    if (!all.length) return;
    for (const pid of all) signal(pid, 'SIGTERM');
    try {
      await waitFor('snmpd harness', 'snmpd to exit', () => !all.some(alive), STOP_TIMEOUT_MS);
    } catch {
      for (const pid of [...all, ...markedProcesses(MARK, this.dir)]) if (alive(pid)) signal(pid, 'SIGKILL');
      await waitFor('snmpd harness', 'snmpd to die', () => !all.some(alive), 2000);
    }
    const left = markedProcesses(MARK, this.dir);
    if (left.length) killInstanceSync(this.dir, left);
    if (this.ready) await waitFor('snmpd harness', `udp port ${this.port} to be free`, () => udpBindable(this.port), STOP_TIMEOUT_MS);
    this.ready = false;
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

/** Start a private snmpd under a fresh temp dir and wait until it answers; see the file comment. */
export async function startSnmpd(): Promise<SnmpServer> {
  if (!existsSync(SNMPD)) throw new Error(`snmpd harness: ${SNMPD} is missing (apt-get install snmpd; the harness never installs it, as that would start the system agent)`);
  reapStale(TMP_PREFIX, OWNER_FILE, (dir) => killInstanceSync(dir, [readPid(join(dir, 'snmpd.pid'))]));

  const dir = mkdtempSync(TMP_PREFIX);
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, OWNER_FILE), `${process.pid}\n`);
  const agent = new Agent(dir, 0);
  registerDaemon(dir, () => agent.killSync());
  try {
    agent.prepare();
    // A port taken between freeUdpPort() and snmpd's bind makes snmpd exit: pick another and retry.
    const failures: string[] = [];
    for (let attempt = 1; ; attempt++) {
      agent.port = await freeUdpPort();
      try {
        await agent.start();
        break;
      } catch (e: any) {
        failures.push(`attempt ${attempt} (port ${agent.port}): ${e.message}`);
        await agent.kill().catch(() => undefined);
        if (attempt >= 3 || !/Error opening specified endpoint|Address already in use/.test(e.message)) throw new Error(failures.join('\n'));
        rmSync(agent.logFile, { force: true });
      }
    }
  } catch (e) {
    await agent.stop().catch(() => agent.killSync());
    unregisterDaemon(dir);
    throw e;
  }
  return agent;
}
