import type { Sample } from '../../state/service-store';
import type { DeviceSample, InterfaceSample } from './devices';

/** Rates and availability from the samples `watch` stores: counters become bit/s between two polls. */

const WRAP_32 = 2n ** 32n;

/**
 * The growth of a counter between two polls. A 32-bit counter that went down wrapped once (it
 * cannot wrap twice unnoticed at sane poll intervals: 4 GB per poll is 7 Gbit/s at 5 minutes, the
 * reason HC counters exist); a 64-bit one that went down was reset (reboot), so there is no rate.
 */
export function counterDelta(previous: string | null, current: string | null, hc: boolean): bigint | null {
  if (previous === null || current === null) return null;
  const a = BigInt(previous);
  const b = BigInt(current);
  if (b >= a) return b - a;
  return hc ? null : b + WRAP_32 - a;
}

export interface InterfacePoint {
  at: number;
  /** bit/s since the previous sample; null for the first sample, a gap, a reset or a reboot. */
  inBps: number | null;
  outBps: number | null;
  /** Errors since the previous sample. */
  inErrors: number | null;
  outErrors: number | null;
  oper: number | null;
}

export interface DevicePoint {
  at: number;
  reachable: boolean;
  responseMs: number | null;
  uptime: number | null;
}

/** One point per stored sample of the device: reachability, response time and uptime. */
export function devicePoints(samples: Sample<DeviceSample>[]): DevicePoint[] {
  return samples.map((s) => ({ at: s.at, reachable: s.value.reachable, responseMs: s.value.responseMs, uptime: s.value.snmp?.uptime ?? null }));
}

/** One point per stored sample for one interface: rates from the sample before it. */
export function interfacePoints(samples: Sample<DeviceSample>[], ifIndex: string): InterfacePoint[] {
  const points: InterfacePoint[] = [];
  let before: { at: number; iface?: InterfaceSample; uptime?: number } | undefined;
  for (const s of samples) {
    const iface = s.value.interfaces && Object.hasOwn(s.value.interfaces, ifIndex) ? s.value.interfaces[ifIndex] : undefined;
    const uptime = s.value.snmp?.uptime;
    const seconds = before ? (s.at - before.at) / 1000 : 0;
    // sysUpTime going down means the device restarted: its counters started again from zero.
    const rebooted = before?.uptime !== undefined && uptime !== undefined && uptime < before.uptime;
    const comparable = before?.iface && iface && seconds > 0 && !rebooted && before.iface.hc === iface.hc;
    const rate = (a: string | null | undefined, b: string | null, hc: boolean) => {
      if (!comparable || a === undefined) return null;
      const delta = counterDelta(a, b, hc);
      return delta === null ? null : Math.round((Number(delta) * 8) / seconds);
    };
    const count = (a: string | null | undefined, b: string | null) => {
      if (!comparable || a === undefined) return null;
      const delta = counterDelta(a, b, false);
      return delta === null ? null : Number(delta);
    };
    points.push({
      at: s.at,
      inBps: iface ? rate(before?.iface?.inOctets, iface.inOctets, iface.hc) : null,
      outBps: iface ? rate(before?.iface?.outOctets, iface.outOctets, iface.hc) : null,
      inErrors: iface ? count(before?.iface?.inErrors, iface.inErrors) : null,
      outErrors: iface ? count(before?.iface?.outErrors, iface.outErrors) : null,
      oper: iface?.oper ?? null,
    });
    before = { at: s.at, ...(iface && { iface }), ...(uptime !== undefined && { uptime }) };
  }
  return points;
}

export interface Summary {
  avg: number | null;
  max: number | null;
  last: number | null;
}

/** Average, maximum and last of the values that exist. */
export function summarize(values: (number | null)[]): Summary {
  const present = values.filter((v): v is number => v !== null);
  if (!present.length) return { avg: null, max: null, last: null };
  return { avg: present.reduce((a, b) => a + b, 0) / present.length, max: Math.max(...present), last: present[present.length - 1] };
}

/** The share of samples in which the device answered every check, in percent. */
export function availability(points: DevicePoint[]): number | null {
  if (!points.length) return null;
  return (points.filter((p) => p.reachable).length / points.length) * 100;
}
