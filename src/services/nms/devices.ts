import type { Config, NmsDevice, NmsServiceConfig } from '../../config/types';
import { resolveSecret } from '../../config/secrets';
import { CommandError } from '../../core/errors';
import { ownValue } from '../args';
import type { CheckResult } from './checks';
import { resolveName, type ExtraObjects, type ResolvedName } from './mib';
import type { SnmpSession, SnmpTarget, Varbind } from './snmp';

/** Devices of the nms service: reaching them (SNMP, TCP, HTTP) and taking one sample of each. */

export const DEFAULT_TIMEOUT_SECONDS = 3;
const DEVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
export { DEVICE_NAME };

const snmpModule = () => require('./snmp') as typeof import('./snmp');
const checksModule = () => require('./checks') as typeof import('./checks');

export function nmsSection(config: Config): NmsServiceConfig {
  const cfg = config.services.nms;
  if (!cfg) throw new CommandError('the nms service is not configured');
  return cfg;
}

export const deviceNamed = (config: Config, name: string): NmsDevice | undefined => ownValue(config.services.nms?.devices, name);
export const unknownDevice = (config: Config, name: string) =>
  `no device named "${name}" (devices: ${Object.keys(config.services.nms?.devices ?? {}).join(', ') || 'none'})`;

export function device(config: Config, name: string): NmsDevice {
  const found = deviceNamed(config, name);
  if (!found) throw new CommandError(unknownDevice(config, name));
  return found;
}

export const objectsOf = (config: Config): ExtraObjects => config.services.nms?.objects ?? {};

/** A name or OID a user gave, resolved against the built-in MIB and the configured objects; throws a CommandError. */
export function resolveObject(config: Config, ref: string): ResolvedName {
  const resolved = resolveName(ref, objectsOf(config));
  if (typeof resolved === 'string') throw new CommandError(resolved);
  return resolved;
}

const timeoutMs = (config: Config, own?: number) => (own ?? config.services.nms?.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000;

/** How to reach the device's SNMP agent, secrets resolved; `write` takes the write community (v2c). */
export function snmpTarget(config: Config, name: string, dev: NmsDevice, write = false): SnmpTarget {
  const snmp = dev.snmp;
  if (!snmp) throw new CommandError(`device ${name} has no SNMP access configured (only ${[dev.tcp && 'tcp', dev.http && 'http'].filter(Boolean).join(' and ')} checks)`);
  const at = `services.nms.devices.${name}.snmp`;
  const secret = (ref: Parameters<typeof resolveSecret>[0] | undefined, path: string) => (ref ? resolveSecret(ref, config.file, `${at}.${path}`) : undefined);
  const user = snmp.user && {
    name: snmp.user.name,
    level: snmp.user.level,
    ...(snmp.user.authProtocol && { authProtocol: snmp.user.authProtocol }),
    ...(snmp.user.authKey && { authKey: secret(snmp.user.authKey, 'user.authKey') }),
    ...(snmp.user.privProtocol && { privProtocol: snmp.user.privProtocol }),
    ...(snmp.user.privKey && { privKey: secret(snmp.user.privKey, 'user.privKey') }),
  };
  return {
    host: snmp.host,
    port: snmp.port ?? 161,
    version: snmp.version,
    ...(snmp.version === '2c' && { community: secret(write && snmp.writeCommunity ? snmp.writeCommunity : snmp.community, write && snmp.writeCommunity ? 'writeCommunity' : 'community') }),
    ...(user && { user }),
    timeoutMs: timeoutMs(config, snmp.timeoutSeconds),
    retries: snmp.retries ?? 1,
  };
}

/** Runs `work` on a fresh SNMP session to the device, closed afterwards; SNMP failures become CommandErrors. */
export async function withSnmp<T>(config: Config, name: string, work: (session: SnmpSession) => Promise<T>, write = false): Promise<T> {
  const session = snmpModule().openSnmp(snmpTarget(config, name, device(config, name), write));
  try {
    return await work(session);
  } catch (err) {
    if (err instanceof Error && err.name === 'SnmpError') throw new CommandError(`device ${name}: ${err.message}`);
    throw err;
  } finally {
    session.close();
  }
}

/** One interface as sampled: counters as decimal strings (64-bit values do not fit a JSON number). */
export interface InterfaceSample {
  descr: string;
  oper: number | null;
  admin: number | null;
  speed: number | null;
  /** ifHCInOctets/ifHCOutOctets when the device has them (64-bit), else ifInOctets/ifOutOctets. */
  inOctets: string | null;
  outOctets: string | null;
  hc: boolean;
  inErrors: string | null;
  outErrors: string | null;
}

/** What one look at a device found: each configured check, and over SNMP uptime and interfaces. */
export interface DeviceSample {
  /** All configured checks answered. */
  reachable: boolean;
  /** The response time of the first configured check (SNMP, else TCP, else HTTP), in ms. */
  responseMs: number | null;
  snmp?: CheckResult & { uptime?: number };
  tcp?: CheckResult;
  http?: CheckResult;
  /** By ifIndex. */
  interfaces?: Record<string, InterfaceSample>;
}

const IF = {
  descr: '1.3.6.1.2.1.2.2.1.2',
  speed: '1.3.6.1.2.1.2.2.1.5',
  admin: '1.3.6.1.2.1.2.2.1.7',
  oper: '1.3.6.1.2.1.2.2.1.8',
  inOctets: '1.3.6.1.2.1.2.2.1.10',
  inErrors: '1.3.6.1.2.1.2.2.1.14',
  outOctets: '1.3.6.1.2.1.2.2.1.16',
  outErrors: '1.3.6.1.2.1.2.2.1.20',
  hcInOctets: '1.3.6.1.2.1.31.1.1.1.6',
  hcOutOctets: '1.3.6.1.2.1.31.1.1.1.10',
};
const SYS_UPTIME = '1.3.6.1.2.1.1.3.0';
/** More interfaces than this are not sampled (a core switch's thousands would make each sample huge). */
const MAX_INTERFACES = 512;

/** One column of a table, by row index. */
async function column(session: SnmpSession, oid: string): Promise<Map<string, Varbind>> {
  const rows = await session.walk(oid, MAX_INTERFACES);
  return new Map(rows.map((v) => [v.oid.slice(oid.length + 1), v]));
}

const num = (v: Varbind | undefined) => (v && typeof v.value === 'number' ? v.value : null);
const counter = (v: Varbind | undefined) => (v && (typeof v.value === 'bigint' || typeof v.value === 'number') ? String(v.value) : null);

/** The interface table as needed for status and rates. */
export async function readInterfaces(session: SnmpSession, withCounters: boolean): Promise<Record<string, InterfaceSample>> {
  const [descr, oper, admin, speed] = await Promise.all([IF.descr, IF.oper, IF.admin, IF.speed].map((oid) => column(session, oid)));
  const counters = withCounters
    ? await Promise.all([IF.inOctets, IF.outOctets, IF.inErrors, IF.outErrors, IF.hcInOctets, IF.hcOutOctets].map((oid) => column(session, oid).catch(() => new Map<string, Varbind>())))
    : [];
  const [inOctets, outOctets, inErrors, outErrors, hcIn, hcOut] = counters;
  const interfaces: Record<string, InterfaceSample> = {};
  for (const [index, d] of descr) {
    const hc = Boolean(hcIn?.get(index) && counter(hcIn.get(index)) !== null && counter(hcOut?.get(index)) !== null);
    interfaces[index] = {
      descr: String(d.value ?? ''),
      oper: num(oper.get(index)),
      admin: num(admin.get(index)),
      speed: num(speed.get(index)),
      inOctets: withCounters ? counter(hc ? hcIn!.get(index) : inOctets!.get(index)) : null,
      outOctets: withCounters ? counter(hc ? hcOut!.get(index) : outOctets!.get(index)) : null,
      hc,
      inErrors: withCounters ? counter(inErrors!.get(index)) : null,
      outErrors: withCounters ? counter(outErrors!.get(index)) : null,
    };
  }
  return interfaces;
}

/** SNMP reachability: sysUpTime answered, in how long; never throws. */
async function snmpCheck(session: SnmpSession): Promise<CheckResult & { uptime?: number }> {
  const started = performance.now();
  try {
    const [uptime] = await session.get([SYS_UPTIME]);
    const responseMs = Math.round((performance.now() - started) * 10) / 10;
    return { reachable: true, ok: true, responseMs, detail: 'answered', ...(typeof uptime.value === 'number' && { uptime: uptime.value }) };
  } catch (err) {
    return { reachable: false, ok: false, responseMs: null, detail: (err as Error).message };
  }
}

/**
 * Looks at a device once: every configured check in parallel, and with SNMP the interface table
 * (with counters when `counters`). An unreachable device is a sample that says so; this never throws.
 */
export async function sampleDevice(config: Config, name: string, options: { interfaces: boolean; counters: boolean }): Promise<DeviceSample> {
  const dev = device(config, name);
  const checks = checksModule();
  const sample: DeviceSample = { reachable: true, responseMs: null };
  const work: Promise<void>[] = [];
  if (dev.snmp) {
    work.push(
      (async () => {
        let session: SnmpSession;
        try {
          session = snmpModule().openSnmp(snmpTarget(config, name, dev));
        } catch (err) {
          sample.snmp = { reachable: false, ok: false, responseMs: null, detail: (err as Error).message };
          return;
        }
        try {
          sample.snmp = await snmpCheck(session);
          if (sample.snmp.reachable && options.interfaces) {
            sample.interfaces = await readInterfaces(session, options.counters).catch(() => undefined);
          }
        } finally {
          session.close();
        }
      })(),
    );
  }
  if (dev.tcp) {
    const tcp = dev.tcp;
    work.push(checks.checkTcp({ host: tcp.host, port: tcp.port, timeoutMs: timeoutMs(config, tcp.timeoutSeconds) }).then((r) => void (sample.tcp = r)));
  }
  if (dev.http) {
    const http = dev.http;
    work.push(
      checks
        .checkHttp({ url: http.url, timeoutMs: timeoutMs(config, http.timeoutSeconds), ...(http.expectStatus && { expectStatus: http.expectStatus }), ...(http.rejectUnauthorized !== undefined && { rejectUnauthorized: http.rejectUnauthorized }) })
        .then((r) => void (sample.http = r)),
    );
  }
  await Promise.all(work);
  const results = [sample.snmp, sample.tcp, sample.http].filter((r): r is CheckResult => r !== undefined);
  sample.reachable = results.length > 0 && results.every((r) => r.reachable);
  sample.responseMs = results[0]?.responseMs ?? null;
  return sample;
}

/** The check kinds a device has, for messages. */
export const checksOf = (dev: NmsDevice): string[] => [dev.snmp && 'snmp', dev.tcp && 'tcp', dev.http && 'http'].filter((c): c is string => Boolean(c));
