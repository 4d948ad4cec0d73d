/**
 * A small SNMP client (v2c and v3 over UDP) on net-snmp: get, walk, set. Values come back in plain
 * JavaScript types and every failure as one readable line, without the community or keys in it.
 *
 * net-snmp is required lazily, by openSnmp(), so that loading this module costs nothing until a
 * device is actually asked something (CLI start-up stays fast).
 */
import type { Session, Varbind as NetSnmpVarbind } from 'net-snmp';
import { lookup, nameOf, parseNumericOid } from './mib';

export interface SnmpV3Credentials {
  name: string;
  level: 'noAuthNoPriv' | 'authNoPriv' | 'authPriv';
  /** Default sha when an authKey is given. */
  authProtocol?: 'md5' | 'sha' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
  authKey?: string;
  /** Default aes when a privKey is given. */
  privProtocol?: 'des' | 'aes' | 'aes256b' | 'aes256r';
  privKey?: string;
}

export interface SnmpTarget {
  host: string;
  port: number;
  version: '2c' | '3';
  /** v2c only. */
  community?: string;
  /** v3 only. */
  user?: SnmpV3Credentials;
  /** Per attempt. */
  timeoutMs: number;
  /** Attempts after the first one. */
  retries: number;
}

export interface Varbind {
  /** Numeric, without a leading dot. */
  oid: string;
  /** 'Integer', 'OctetString', 'Counter32', 'Counter64', 'Gauge32', 'TimeTicks', 'ObjectIdentifier', 'IpAddress', 'Opaque', 'noSuchObject', 'noSuchInstance', 'endOfMibView'... */
  type: string;
  /**
   * OctetString: text when it is valid UTF-8 without control characters, else hex (aa:bb:cc), and
   * always hex for binary objects such as ifPhysAddress; Counter64: bigint; TimeTicks: hundredths
   * of a second; ObjectIdentifier, IpAddress: dotted string; noSuch*, endOfMibView: null.
   */
  value: string | number | bigint | null;
}

export interface SnmpSession {
  /** host:port, for messages. */
  readonly address: string;
  /** Values of these exact OIDs, in the same order; a missing one has type noSuchObject/noSuchInstance and value null. */
  get(oids: string[]): Promise<Varbind[]>;
  /** Every object under baseOid (GETBULK), in OID order, at most maxRows of them. */
  walk(baseOid: string, maxRows?: number): Promise<Varbind[]>;
  set(oid: string, type: 'string' | 'integer', value: string | number): Promise<void>;
  /** Releases the socket. Idempotent; later calls fail with "closed". */
  close(): void;
}

export type SnmpErrorCode =
  | 'config' // the target itself is unusable
  | 'timeout'
  | 'auth' // v3 user, keys or security level refused
  | 'not-writable'
  | 'no-such-object'
  | 'bad-value'
  | 'denied'
  | 'network'
  | 'closed'
  | 'protocol' // an answer that makes no sense
  | 'device'; // the device reports a failure of its own

/** Every failure of this module: `message` is one line meant for the user. */
export class SnmpError extends Error {
  constructor(message: string, readonly code: SnmpErrorCode) {
    super(message);
    this.name = 'SnmpError';
  }
}

type NetSnmp = typeof import('net-snmp');
const netSnmp = (): NetSnmp => require('net-snmp') as NetSnmp;

// net-snmp's ObjectType numbers, named as devices' documentation and snmpget name them.
const TYPE_NAMES: Record<number, string> = {
  1: 'Boolean', 2: 'Integer', 3: 'BitString', 4: 'OctetString', 5: 'Null', 6: 'ObjectIdentifier',
  64: 'IpAddress', 65: 'Counter32', 66: 'Gauge32', 67: 'TimeTicks', 68: 'Opaque', 70: 'Counter64',
  128: 'noSuchObject', 129: 'noSuchInstance', 130: 'endOfMibView',
};

// RFC 3416 error-status values, by number (net-snmp's ErrorStatus).
const STATUS_NAMES: Record<number, string> = {
  1: 'tooBig', 2: 'noSuchName', 3: 'badValue', 4: 'readOnly', 5: 'genErr', 6: 'noAccess', 7: 'wrongType',
  8: 'wrongLength', 9: 'wrongEncoding', 10: 'wrongValue', 11: 'noCreation', 12: 'inconsistentValue',
  13: 'resourceUnavailable', 14: 'commitFailed', 15: 'undoFailed', 16: 'authorizationError', 17: 'notWritable',
  18: 'inconsistentName',
};

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
/** Rows asked for per GETBULK: big enough to be quick, small enough for one UDP datagram. */
const BULK_REPETITIONS = 25;
/** OIDs per GET request, so that a long list never exceeds what a device takes in one message. */
const GET_CHUNK = 32;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function hex(buf: Buffer): string {
  return [...buf].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Text when the octets are readable UTF-8, else hex; MAC addresses and the like are always hex. */
function octets(buf: Buffer, oid: string): string {
  const object = lookup(oid)?.object;
  if (object?.hex && object.shape !== 'table') return hex(buf);
  try {
    // Some agents NUL-terminate their strings: that NUL is not part of the text.
    const text = utf8.decode(buf).replace(/\0+$/, '');
    if (!/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return text;
  } catch {
    /* not UTF-8 */
  }
  return hex(buf);
}

function convert(vb: NetSnmpVarbind): Varbind {
  const oid = vb.oid;
  const type = TYPE_NAMES[vb.type ?? -1] ?? `type${vb.type}`;
  const raw = vb.value;
  let value: Varbind['value'];
  switch (type) {
    case 'OctetString':
      value = Buffer.isBuffer(raw) ? octets(raw, oid) : String(raw ?? '');
      break;
    case 'Counter64':
      // net-snmp hands Counter64 over as the raw big-endian bytes.
      value = Buffer.isBuffer(raw) ? (raw.length ? BigInt(`0x${raw.toString('hex')}`) : 0n) : BigInt(raw as number);
      break;
    case 'Opaque':
      value = Buffer.isBuffer(raw) ? hex(raw) : String(raw);
      break;
    case 'Boolean':
      value = raw ? 'true' : 'false';
      break;
    case 'Null':
    case 'noSuchObject':
    case 'noSuchInstance':
    case 'endOfMibView':
      value = null;
      break;
    default:
      value = typeof raw === 'number' || typeof raw === 'bigint' ? raw : raw == null ? null : Buffer.isBuffer(raw) ? hex(raw) : String(raw);
  }
  return { oid, type, value };
}

/** For messages: a scalar shows without its ".0" (sysDescr), a table cell with its index (ifAlias.2). */
function shown(oid: string): string {
  const name = nameOf(oid);
  return /^[A-Za-z]\w*\.0$/.test(name) && lookup(oid)?.object.shape === 'scalar' ? name.slice(0, -2) : name;
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(ms < 1000 ? 2 : 1))} s`;
}

function checkOid(oid: string): string {
  if (typeof oid !== 'string') throw new SnmpError('an OID must be a string of numbers (like 1.3.6.1.2.1.1.5.0)', 'config');
  const parsed = parseNumericOid(oid.trim());
  if (typeof parsed !== 'string') throw new SnmpError(parsed.error, 'config');
  return parsed;
}

const AUTH_PROTOCOLS: readonly string[] = ['md5', 'sha', 'sha224', 'sha256', 'sha384', 'sha512'];
const PRIV_PROTOCOLS: readonly string[] = ['des', 'aes', 'aes256b', 'aes256r'];

function checkTarget(t: SnmpTarget): void {
  const bad = (why: string) => new SnmpError(`SNMP target ${t?.host ?? '?'}:${t?.port ?? '?'}: ${why}`, 'config');
  if (!t || typeof t.host !== 'string' || !t.host.trim()) throw bad('a host is needed');
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw bad('the port must be a number from 1 to 65535');
  if (!(t.timeoutMs > 0) || !Number.isFinite(t.timeoutMs)) throw bad('the timeout must be a positive number of milliseconds');
  if (!Number.isInteger(t.retries) || t.retries < 0 || t.retries > 10) throw bad('retries must be a whole number from 0 to 10');
  if (t.version === '2c') {
    if (typeof t.community !== 'string' || !t.community) throw bad('SNMP v2c needs a community');
    return;
  }
  if (t.version !== '3') throw bad(`unsupported SNMP version "${String(t.version)}" (use 2c or 3)`);
  const u = t.user;
  if (!u || typeof u.name !== 'string' || !u.name) throw bad('SNMP v3 needs a user name');
  if (!['noAuthNoPriv', 'authNoPriv', 'authPriv'].includes(u.level)) throw bad(`unknown security level "${String(u.level)}" (use noAuthNoPriv, authNoPriv or authPriv)`);
  if (u.authProtocol !== undefined && !AUTH_PROTOCOLS.includes(u.authProtocol)) throw bad(`unknown authentication protocol "${String(u.authProtocol)}" (use ${AUTH_PROTOCOLS.join(', ')})`);
  if (u.privProtocol !== undefined && !PRIV_PROTOCOLS.includes(u.privProtocol)) throw bad(`unknown privacy protocol "${String(u.privProtocol)}" (use ${PRIV_PROTOCOLS.join(', ')})`);
  // RFC 3414 passphrases are at least 8 characters; agents refuse shorter ones without saying why.
  if (u.level !== 'noAuthNoPriv' && (typeof u.authKey !== 'string' || u.authKey.length < 8)) throw bad(`security level ${u.level} needs an authentication key of at least 8 characters`);
  if (u.level === 'authPriv' && (typeof u.privKey !== 'string' || u.privKey.length < 8)) throw bad('security level authPriv needs a privacy key of at least 8 characters');
}

/** Hides the community and keys should any text that reaches a message contain them. */
function redactor(t: SnmpTarget): (text: string) => string {
  // Very short ones are left alone: replacing every "c" would garble the message and hide nothing.
  const secrets = [t.community, t.user?.authKey, t.user?.privKey].filter((s): s is string => typeof s === 'string' && s.length >= 4);
  return (text) => {
    let out = text.replace(/\s*[\r\n]+\s*/g, ' ');
    for (const s of secrets) out = out.split(s).join('***');
    return out;
  };
}

interface Op {
  op: 'get' | 'walk' | 'set';
  oid?: string;
  type?: 'string' | 'integer';
}

class Client implements SnmpSession {
  readonly address: string;
  private readonly session: Session;
  private readonly redact: (text: string) => string;
  private closed = false;

  constructor(private readonly target: SnmpTarget) {
    checkTarget(target);
    const lib = netSnmp();
    const host = target.host.trim();
    this.address = host.includes(':') ? `[${host}]:${target.port}` : `${host}:${target.port}`;
    this.redact = redactor(target);
    // net-snmp writes into the options object it gets (version): a fresh one per session.
    const options = {
      port: target.port,
      timeout: target.timeoutMs,
      retries: target.retries,
      backoff: 1,
      transport: (host.includes(':') ? 'udp6' : 'udp4') as 'udp4' | 'udp6',
      // A broken agent that answers GETNEXT/GETBULK with an earlier OID would make a walk loop.
      backwardsGetNexts: false,
    };
    try {
      if (target.version === '2c') {
        this.session = lib.createSession(host, target.community!, { ...options, version: lib.Version2c });
      } else {
        const u = target.user!;
        const auth = u.level !== 'noAuthNoPriv';
        const priv = u.level === 'authPriv';
        this.session = lib.createV3Session(host, {
          name: u.name,
          level: lib.SecurityLevel[u.level],
          ...(auth && { authProtocol: lib.AuthProtocols[u.authProtocol ?? 'sha'], authKey: u.authKey }),
          ...(priv && { privProtocol: lib.PrivProtocols[u.privProtocol ?? 'aes'], privKey: u.privKey }),
        }, { ...options, version: lib.Version3 });
      }
    } catch (err) {
      throw new SnmpError(this.redact(`cannot open an SNMP session to ${this.address}: ${(err as Error).message}`), 'config');
    }
    // net-snmp emits 'error' for a datagram it cannot parse; unhandled, that would crash the
    // process. Such junk is dropped: the request it was meant to answer times out.
    this.session.on('error', () => undefined);
  }

  private ensureOpen(): void {
    if (this.closed) throw new SnmpError(`the SNMP session to ${this.address} is closed`, 'closed');
  }

  private fail(err: unknown, ctx: Op): SnmpError {
    const e = this.translate(err as Error & { code?: unknown; status?: number }, ctx);
    return new SnmpError(this.redact(e.message), e.code);
  }

  private translate(err: Error & { code?: unknown; status?: number }, ctx: Op): SnmpError {
    const { address, target } = this;
    const v3 = target.version === '3';
    const user = target.user;
    const who = v3 ? `SNMPv3 user "${user!.name}"` : 'the community';
    const name = err?.name;
    const message = String(err?.message ?? err);

    if (name === 'RequestTimedOutError') {
      const total = target.timeoutMs * (target.retries + 1);
      // v2c agents drop a wrong community silently, and v3 agents a message they cannot decrypt.
      return new SnmpError(`no answer from ${address} within ${seconds(total)} (down, or wrong community/credentials)`, 'timeout');
    }

    if (name === 'RequestFailedError') {
      const status = err.status ?? 0;
      const statusName = STATUS_NAMES[status] ?? `error ${status}`;
      // net-snmp's message is "<Status>: <oid of the failing varbind>".
      const oid = /:\s*(\.?\d+(?:\.\d+)+)\s*$/.exec(message)?.[1] ?? ctx.oid;
      const subject = oid ? shown(oid) : 'the object';
      switch (status) {
        case 17: // notWritable
        case 4: // readOnly
          return new SnmpError(`${subject} is not writable on the device`, 'not-writable');
        case 6: // noAccess: also what a read-only community or view gets
          return new SnmpError(`${subject} is not writable on the device (or ${who} has no write access to it)`, 'not-writable');
        case 11: // noCreation
          return new SnmpError(`${subject} does not exist on the device (and cannot be created)`, 'no-such-object');
        case 2: // noSuchName
          return new SnmpError(`${subject} does not exist on the device`, 'no-such-object');
        case 7: // wrongType
          return new SnmpError(`${subject} does not take ${ctx.type === 'integer' ? 'an integer' : ctx.type === 'string' ? 'a string' : 'a value of that type'} (wrongType)`, 'bad-value');
        case 8: // wrongLength
          return new SnmpError(`the value is too long or too short for ${subject} (wrongLength)`, 'bad-value');
        case 3: case 9: case 10: case 12:
          return new SnmpError(`the device rejected the value for ${subject} (${statusName})`, 'bad-value');
        case 16: // authorizationError
          return new SnmpError(`${who}${v3 ? ` at level ${user!.level}` : ''} may not ${ctx.op === 'set' ? 'change' : 'read'} ${subject} on ${address} (authorizationError)`, 'denied');
        case 1: // tooBig
          return new SnmpError(`the answer from ${address} would not fit in one SNMP message: ask for fewer objects`, 'device');
        default:
          return new SnmpError(`${address} failed to ${ctx.op} ${subject} (${statusName})`, 'device');
      }
    }

    if (name === 'ResponseInvalidError') {
      const u = user?.name ?? '';
      if (/Unknown User Name/i.test(message)) return new SnmpError(`${address} does not know the SNMPv3 user "${u}"`, 'auth');
      if (/Wrong Digest/i.test(message)) return new SnmpError(`SNMPv3 authentication failed at ${address} for user "${u}": wrong authentication key or protocol`, 'auth');
      if (/Unsupported Security Level/i.test(message)) return new SnmpError(`${address} does not accept security level ${user?.level} for user "${u}"`, 'auth');
      if (/Decryption Error/i.test(message)) return new SnmpError(`${address} could not decrypt the request of user "${u}": wrong privacy key or protocol`, 'auth');
      if (/Not In Time Window/i.test(message) || err.code === 14) return new SnmpError(`${address} refused the request as outside its SNMPv3 time window; try again`, 'auth');
      if (/Unknown Engine ID/i.test(message)) return new SnmpError(`SNMPv3 engine discovery with ${address} failed (unknown engine ID)`, 'auth');
      if (err.code === 5) return new SnmpError(`the answer from ${address} failed SNMPv3 authentication: wrong authentication key or protocol for user "${u}"`, 'auth');
      if (err.code === 4) return new SnmpError(`cannot decrypt the answer from ${address}: wrong privacy key or protocol for user "${u}"`, 'auth');
      if (err.code === 8) return new SnmpError(`${address} returned OIDs out of order${ctx.oid ? ` while walking ${shown(ctx.oid)}` : ''}: stopped (a faulty agent)`, 'protocol');
      // Never the library's own text here: some of it quotes the community.
      return new SnmpError(`unexpected answer from ${address} (${CODE_NAMES[Number(err.code)] ?? 'invalid response'})`, 'protocol');
    }

    const code = typeof err?.code === 'string' ? err.code : '';
    if (code === 'ERR_OSSL_EVP_UNSUPPORTED') {
      // OpenSSL 3 moved DES to its legacy provider, which Node does not load.
      return new SnmpError(`SNMPv3 privacy protocol ${user?.privProtocol ?? 'aes'} is not available in this Node.js (OpenSSL 3 no longer offers DES): use aes`, 'config');
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new SnmpError(`cannot resolve the host name ${target.host}`, 'network');
    if (['EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EACCES', 'EPERM'].includes(code)) return new SnmpError(`cannot send to ${address} (${code})`, 'network');
    if (/forcibly closed|Not running/i.test(message) || code === 'ERR_SOCKET_DGRAM_NOT_RUNNING') return new SnmpError(`the SNMP session to ${address} is closed`, 'closed');
    return new SnmpError(`SNMP ${ctx.op} on ${address} failed: ${message}`, 'protocol');
  }

  async get(oids: string[]): Promise<Varbind[]> {
    this.ensureOpen();
    const wanted = oids.map(checkOid);
    const out: Varbind[] = [];
    for (let i = 0; i < wanted.length; i += GET_CHUNK) {
      const chunk = wanted.slice(i, i + GET_CHUNK);
      const vbs = await new Promise<NetSnmpVarbind[]>((resolve, reject) => {
        try {
          this.session.get(chunk, (err, varbinds) => (err ? reject(this.fail(err, { op: 'get', oid: chunk[0] })) : resolve(varbinds ?? [])));
        } catch (err) {
          reject(this.fail(err, { op: 'get', oid: chunk[0] }));
        }
      });
      out.push(...vbs.map(convert));
    }
    return out;
  }

  async walk(baseOid: string, maxRows = 10000): Promise<Varbind[]> {
    this.ensureOpen();
    const base = checkOid(baseOid);
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new SnmpError('maxRows must be a whole number of at least 1', 'config');
    const rows: Varbind[] = [];
    await new Promise<void>((resolve, reject) => {
      const feed = (varbinds: NetSnmpVarbind[]): boolean => {
        for (const vb of varbinds) {
          if (rows.length >= maxRows) return true;
          rows.push(convert(vb));
        }
        // true stops the walk: enough rows.
        return rows.length >= maxRows;
      };
      try {
        // subtree() stops at the first OID outside base (GETBULK for v2c and v3).
        this.session.subtree(base, Math.min(BULK_REPETITIONS, maxRows), feed, (err) => (err ? reject(this.fail(err, { op: 'walk', oid: base })) : resolve()));
      } catch (err) {
        reject(this.fail(err, { op: 'walk', oid: base }));
      }
    });
    if (rows.length) return rows;
    // Like snmpwalk: a base that is itself an instance (sysDescr.0) has nothing below it, but a value.
    const [self] = await this.get([base]);
    return self && self.value !== null ? [self] : [];
  }

  async set(oid: string, type: 'string' | 'integer', value: string | number): Promise<void> {
    this.ensureOpen();
    const target = checkOid(oid);
    const lib = netSnmp();
    let varbind: NetSnmpVarbind;
    if (type === 'integer') {
      const n = typeof value === 'number' ? value : /^\s*-?\d+\s*$/.test(String(value)) ? Number(value) : NaN;
      if (!Number.isInteger(n) || n < INT32_MIN || n > INT32_MAX) throw new SnmpError(`${shown(target)}: "${String(value)}" is not a whole number from ${INT32_MIN} to ${INT32_MAX}`, 'bad-value');
      varbind = { oid: target, type: lib.ObjectType.Integer, value: n };
    } else if (type === 'string') {
      varbind = { oid: target, type: lib.ObjectType.OctetString, value: Buffer.from(String(value), 'utf8') };
    } else {
      throw new SnmpError(`unknown value type "${String(type)}" (use string or integer)`, 'config');
    }
    await new Promise<void>((resolve, reject) => {
      try {
        this.session.set([varbind], (err) => (err ? reject(this.fail(err, { op: 'set', oid: target, type })) : resolve()));
      } catch (err) {
        reject(this.fail(err, { op: 'set', oid: target, type }));
      }
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.session.close();
    } catch {
      /* already closed */
    }
  }
}

const CODE_NAMES: Record<number, string> = {
  1: 'bad IP address', 2: 'unknown object type', 3: 'unknown PDU type', 6: 'OIDs do not match the request',
  9: 'SNMP version does not match', 10: 'community does not match', 11: 'unexpected report', 12: 'response not handled',
  13: 'unexpected response', 15: 'bad variable list',
};

/**
 * A session with one device. Throws SnmpError (code 'config') when the target is unusable; close()
 * it when done (an idle session never keeps the process alive, but holds a socket).
 */
export function openSnmp(target: SnmpTarget): SnmpSession {
  return new Client(target);
}
