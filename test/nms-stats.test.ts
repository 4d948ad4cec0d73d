import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { DeviceSample, InterfaceSample } from '../src/services/nms/devices';
import { availability, counterDelta, devicePoints, interfacePoints, summarize } from '../src/services/nms/stats';
import type { Sample } from '../src/state/service-store';

const iface = (inOctets: string, outOctets: string, hc: boolean, extra: Partial<InterfaceSample> = {}): InterfaceSample => ({
  descr: 'eth0', oper: 1, admin: 1, speed: 1e9, inOctets, outOctets, hc, inErrors: '0', outErrors: '0', ...extra,
});
const sample = (at: number, uptime: number, i?: InterfaceSample, reachable = true): Sample<DeviceSample> => ({
  at,
  value: { reachable, responseMs: reachable ? 2 : null, snmp: { reachable, ok: reachable, responseMs: reachable ? 2 : null, detail: '', uptime }, ...(i && { interfaces: { '2': i } }) },
});

test('counter deltas: 32-bit counters wrap once; a 64-bit counter that goes down was reset', () => {
  assert.is(counterDelta('100', '350', false), 250n);
  assert.is(counterDelta('4294967000', '200', false), 496n, '2^32 - 4294967000 + 200');
  assert.is(counterDelta('18446744073709551000', '18446744073709551615', true), 615n, 'beyond 2^53 stays exact');
  assert.is(counterDelta('5000', '10', true), null);
  assert.is(counterDelta(null, '10', false), null);
});

test('interface rates: bit/s between polls; none for the first sample, after a reboot, a gap or a change of counter kind', () => {
  const points = interfacePoints(
    [
      sample(0, 1000, iface('1000', '2000', false)),
      sample(10_000, 2000, iface('2250', '2000', false, { inErrors: '3' })), // 1250 bytes in 10 s
      sample(20_000, 3000, iface('1250', '1000', false)), // 32-bit wrap: 2^32 - 2250 + 1250
      sample(30_000, 50, iface('10', '10', false)), // uptime went down: rebooted
      sample(40_000, 1050, undefined, false), // unreachable: a gap
      sample(50_000, 2050, iface('1010', '10', true)), // HC counters now: not comparable with before
      sample(60_000, 3050, iface('2010', '1010', true)),
    ],
    '2',
  );
  assert.equal(points.map((p) => p.inBps), [null, 1000, Math.round(((2 ** 32 - 1000) * 8) / 10), null, null, null, 800]);
  assert.equal(points.map((p) => p.outBps), [null, 0, Math.round(((2 ** 32 - 1000) * 8) / 10), null, null, null, 800]);
  assert.equal(points.map((p) => p.inErrors), [null, 3, 2 ** 32 - 3, null, null, null, 0]);
});

test('availability and summaries', () => {
  const points = devicePoints([sample(0, 1), sample(1, 2, undefined, false), sample(2, 3), sample(3, 4)]);
  assert.is(availability(points), 75);
  assert.is(availability([]), null);
  assert.equal(summarize([2, null, 4, 3]), { avg: 3, max: 4, last: 3 });
  assert.equal(summarize([null]), { avg: null, max: null, last: null });
});

test.run();
