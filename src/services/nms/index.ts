import type { Config, NmsServiceConfig } from '../../config/types';
import type { Problem } from '../../config/schema-check';
import { CommandError } from '../../core/errors';
import { renderCsv } from '../../render/csv';
import type { Sample, ServiceStore } from '../../state/service-store';
import { convertArgs, ownValue } from '../args';
import { formatTime } from '../jobs/cron';
import { serviceStoreFor } from '../stores';
import type { Action, ArgSpec, Prepared, ProbeResult, ResultFile, Service, TimedList } from '../types';
import { formatDuration, formatRate, parseSpan } from '../units';
import { ALERT_SPACE, DEFAULT_FLAP_CHANGES, alertTasks, describeAction, parseRule, type AlertAction, type AlertRule } from './alerts';
import { DEVICE_NAME, checksOf, device, deviceNamed, nmsSection, objectsOf, resolveObject, sampleDevice, unknownDevice, withSnmp, type DeviceSample } from './devices';
import { IF_OPER_STATUS, nameOf, resolveName } from './mib';
import { availability, devicePoints, interfacePoints, summarize } from './stats';

/** Network management: device status and configuration over SNMP, TCP and HTTP checks, statistics and alert rules. */

export const SAMPLE_SPACE = 'nms.sample';
const DEFAULT_SAMPLE_SECONDS = 300;
const DEFAULT_KEEP_DAYS = 7;
const MIN_EVERY_MS = 10_000;
const MAX_EVERY_MS = 86_400_000;
const DEFAULT_STATS_SPAN = '24h';
/** Objects nms set may change on a device that lists them as writable, besides configured objects. */
const SETTABLE_BUILTINS = new Set(['sysContact', 'sysName', 'sysLocation']);
const ALERT_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

const deviceArg: ArgSpec = { type: 'string', maxLength: 64, pattern: DEVICE_NAME.source.slice(1, -1), description: 'a configured device' };

const operWord = (value: number | null | undefined) => (value === null || value === undefined ? '' : (ownValue(IF_OPER_STATUS, String(value)) ?? String(value)));
const ms = (value: number | null | undefined) => (value === null || value === undefined ? '' : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`);

/** A prepare that converts the arguments and checks that the named device exists (and has SNMP, when `snmp`). */
function prepareDevice(action: Action, options: { required: boolean; snmp?: boolean }) {
  return (given: Record<string, string>, config: Config): Prepared => {
    const converted = convertArgs(given, action.args);
    if (!converted.ok) return converted;
    const name = given.device;
    if (name === undefined) return options.required ? { ok: false, problems: [`missing device=…: ${action.example}`] } : converted;
    const dev = deviceNamed(config, name);
    if (!dev) return { ok: false, problems: [unknownDevice(config, name)] };
    if (options.snmp && !dev.snmp) return { ok: false, problems: [`device ${name} has no SNMP access configured (checks: ${checksOf(dev).join(', ')})`] };
    return converted;
  };
}

/** One row per check of a device. */
function statusRows(name: string, sample: DeviceSample): unknown[][] {
  const rows: unknown[][] = [];
  for (const kind of ['snmp', 'tcp', 'http'] as const) {
    const r = sample[kind];
    if (!r) continue;
    let uptime = '';
    let interfaces = '';
    if (kind === 'snmp' && sample.snmp?.uptime !== undefined) uptime = formatDuration(sample.snmp.uptime * 10);
    if (kind === 'snmp' && sample.interfaces) {
      const all = Object.values(sample.interfaces);
      const up = all.filter((i) => i.oper === 1).length;
      const adminDown = all.filter((i) => i.admin === 2).length;
      const down = all.length - up - adminDown;
      interfaces = `${up} up, ${down} down${adminDown ? `, ${adminDown} disabled` : ''}`;
    }
    rows.push([name, kind, r.reachable ? (r.ok ? 'yes' : 'answers, check failed') : 'NO', ms(r.responseMs), uptime, interfaces, r.detail]);
  }
  return rows;
}

const status: Action = {
  summary: 'reachable or not, response time, uptime and interfaces up/down, for one device or all (queried in parallel)',
  example: 'nms status device=core-router',
  args: { device: deviceArg },
  positional: ['device'],
  mutates: false,
  prepare: (given, config) => prepareDevice(status, { required: false })(given, config),
  run: async (args, ctx) => {
    const cfg = nmsSection(ctx.config);
    const names = args.device !== null ? [String(args.device)] : Object.keys(cfg.devices);
    const samples = await Promise.all(names.map((name) => sampleDevice(ctx.config, name, { interfaces: true, counters: false })));
    const rows = names.flatMap((name, i) => statusRows(name, samples[i]));
    const down = names.filter((_, i) => !samples[i].reachable);
    return {
      kind: 'table',
      columns: ['device', 'check', 'reachable', 'response', 'uptime', 'interfaces', 'detail'],
      rows,
      name: 'nms-status',
      note: down.length ? `not reachable: ${down.join(', ')}` : `all ${names.length} device${names.length === 1 ? '' : 's'} reachable`,
    };
  },
};

const SYSTEM_FIELDS = ['sysDescr', 'sysName', 'sysLocation', 'sysContact', 'sysUpTime'] as const;

const config: Action = {
  summary: 'the device\'s system description, name, location and contact, and its interface table',
  example: 'nms config device=core-router',
  args: { device: { ...deviceArg, required: true } },
  positional: ['device'],
  mutates: false,
  prepare: (given, cfg) => prepareDevice(config, { required: true, snmp: true })(given, cfg),
  run: async (args, ctx) => {
    const name = String(args.device);
    const { system, interfaces } = await withSnmp(ctx.config, name, async (session) => {
      const oids = SYSTEM_FIELDS.map((f) => (resolveName(f) as { oid: string }).oid);
      const system = await session.get(oids);
      const { readInterfaces } = require('./devices') as typeof import('./devices');
      return { system, interfaces: await readInterfaces(session, false) };
    });
    const intro = SYSTEM_FIELDS.map((field, i) => {
      const value = system[i].value;
      const shown = field === 'sysUpTime' && typeof value === 'number' ? formatDuration(value * 10) : value === null ? `(${system[i].type})` : String(value);
      return `${`${field}:`.padEnd(13)}${shown}`;
    }).join('\n');
    const rows = Object.entries(interfaces)
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([index, i]) => [Number(index), i.descr, operWord(i.oper), i.admin === 1 ? 'up' : i.admin === 2 ? 'down' : i.admin === 3 ? 'testing' : '', i.speed === null ? '' : formatRate(i.speed, 'bit/s')]);
    return { kind: 'table', intro, columns: ['ifIndex', 'ifDescr', 'ifOperStatus', 'ifAdminStatus', 'ifSpeed'], rows, name: `${name}-interfaces` };
  },
};

const get: Action = {
  summary: 'reads one object (by name like ifOperStatus.2, or numeric OID); a table or column is walked',
  example: 'nms get device=core-router oid=ifOperStatus.2',
  args: { device: { ...deviceArg, required: true }, oid: { type: 'string', required: true, maxLength: 300, description: 'an object name (sysUpTime, ifDescr.3), a configured object, or a numeric OID' } },
  positional: ['device', 'oid'],
  mutates: false,
  prepare: (given, cfg) => {
    const prepared = prepareDevice(get, { required: true, snmp: true })(given, cfg);
    if (!prepared.ok || given.oid === undefined) return prepared;
    const resolved = resolveName(given.oid, objectsOf(cfg));
    return typeof resolved === 'string' ? { ok: false, problems: [`oid=${given.oid}: ${resolved}`] } : prepared;
  },
  run: async (args, ctx) => {
    const name = String(args.device);
    const resolved = resolveObject(ctx.config, String(args.oid));
    const subtree = resolved.object && resolved.object.shape !== 'scalar' && !/\.\d+$/.test(resolved.name);
    const rows = await withSnmp(ctx.config, name, async (session) => {
      let found = subtree ? await session.walk(resolved.oid) : await session.get([resolved.oid]);
      // A scalar asked for without its ".0", or a numeric OID naming a subtree: walk it instead.
      if (!subtree && found.length === 1 && found[0].value === null && found[0].type !== 'noSuchInstance') {
        const walked = await session.walk(resolved.oid);
        if (walked.length) found = walked;
      }
      return found.map((v) => [nameOf(v.oid, objectsOf(ctx.config)), v.oid, v.type, v.value === null ? '' : typeof v.value === 'bigint' ? v.value.toString() : v.value]);
    });
    if (rows.length === 0) throw new CommandError(`device ${name} has nothing under ${resolved.name}`);
    return { kind: 'table', columns: ['object', 'oid', 'type', 'value'], rows, name: `${name}-get` };
  },
};

/** Objects a device lets `nms set` change: in its writable list, and known (built in or configured). */
function settable(cfg: Config, deviceName: string, object: string): { oid: string; type: 'string' | 'integer' } | string {
  const dev = deviceNamed(cfg, deviceName);
  if (!dev?.snmp?.writable?.includes(object)) {
    return `unknown argument "${object}": not writable on device ${deviceName} (writable: ${dev?.snmp?.writable?.join(', ') || 'nothing'})`;
  }
  if (SETTABLE_BUILTINS.has(object)) return { oid: (resolveName(object) as { oid: string }).oid, type: 'string' };
  const configured = ownValue(cfg.services.nms?.objects, object);
  if (!configured) return `${object} is not a known object`;
  const resolved = resolveName(object, objectsOf(cfg));
  if (typeof resolved === 'string') return resolved;
  return { oid: resolved.oid, type: configured.type ?? 'string' };
}

const set: Action = {
  summary: 'changes writable objects named in the config (e.g. sysLocation="rack 4"), then reads them back',
  example: 'nms set device=core-router sysLocation="rack 4, room 2"',
  args: { device: { ...deviceArg, required: true } },
  positional: ['device'],
  extraArgs: 'object=value for the objects the device lists as writable',
  mutates: true,
  prepare: (given, cfg) => {
    const { device: name, ...values } = given;
    const prepared = prepareDevice(set, { required: true, snmp: true })({ ...(name !== undefined && { device: name }) }, cfg);
    if (!prepared.ok) return prepared;
    const problems: string[] = [];
    const changes: { object: string; oid: string; type: 'string' | 'integer'; value: string | number }[] = [];
    if (!Object.keys(values).length) problems.push(`nothing to set: ${set.example}`);
    for (const [object, value] of Object.entries(values)) {
      const target = settable(cfg, name!, object);
      if (typeof target === 'string') {
        problems.push(target);
        continue;
      }
      if (target.type === 'integer' && !/^-?\d{1,10}$/.test(value)) problems.push(`${object}=${value}: a whole number is needed`);
      else if (value.length > 255) problems.push(`${object}: at most 255 characters`);
      else if (/[\0-\x08\x0a-\x1f\x7f]/.test(value)) problems.push(`${object}: control characters are not allowed`);
      else changes.push({ object, ...target, value: target.type === 'integer' ? Number(value) : value });
    }
    return problems.length ? { ok: false, problems } : { ok: true, args: { device: name, changes } };
  },
  run: async (args, ctx) => {
    const name = String(args.device);
    const changes = args.changes as { object: string; oid: string; type: 'string' | 'integer'; value: string | number }[];
    const rows = await withSnmp(
      ctx.config,
      name,
      async (session) => {
        const before = await session.get(changes.map((c) => c.oid));
        for (const change of changes) await session.set(change.oid, change.type, change.value);
        const after = await session.get(changes.map((c) => c.oid));
        return changes.map((c, i) => [c.object, before[i].value === null ? '' : String(before[i].value), after[i].value === null ? '' : String(after[i].value)]);
      },
      true,
    );
    const differs = rows.filter((r, i) => r[2] !== String(changes[i].value));
    if (differs.length) throw new CommandError(`device ${name} accepted the change but reads back another value for ${differs.map((r) => r[0]).join(', ')}`);
    return { kind: 'table', columns: ['object', 'was', 'now'], rows, name: `${name}-set` };
  },
};

/** The interface a user named: its ifIndex, or its ifDescr (as last sampled). */
function findInterface(samples: Sample<DeviceSample>[], given: string): string | undefined {
  const last = [...samples].reverse().find((s) => s.value.interfaces)?.value.interfaces;
  if (!last) return undefined;
  if (/^\d+$/.test(given)) return Object.hasOwn(last, given) ? given : undefined;
  return Object.entries(last).find(([, i]) => i.descr === given)?.[0];
}

const bps = (v: number | null) => (v === null ? '' : formatRate(v, 'bit/s'));

const stats: Action = {
  summary: 'statistics from the samples watch stores: availability, response time, interface traffic and errors; CSV of the series and a PNG chart attached',
  example: 'nms stats device=core-router interface=2 since=24h',
  args: {
    device: { ...deviceArg, required: true },
    interface: { type: 'string', maxLength: 100, description: 'one interface (ifIndex or ifDescr): its rates in the CSV and the chart' },
    since: { type: 'string', maxLength: 24, default: DEFAULT_STATS_SPAN, description: 'how far back: 90m, 24h, 7d' },
  },
  positional: ['device'],
  mutates: false,
  prepare: (given, cfg) => {
    const prepared = prepareDevice(stats, { required: true })(given, cfg);
    if (!prepared.ok) return prepared;
    const span = parseSpan(String(prepared.args.since));
    if (span === undefined || span <= 0) return { ok: false, problems: [`since=${given.since}: a span like 90m, 24h or 7d is needed`] };
    return { ok: true, args: { ...prepared.args, spanMs: span } };
  },
  run: async (args, ctx) => {
    const cfg = nmsSection(ctx.config);
    const name = String(args.device);
    device(ctx.config, name);
    const now = ctx.now().getTime();
    const from = now - Number(args.spanMs);
    const store = await serviceStoreFor(ctx.config);
    const samples = await store.listSamples<DeviceSample>(SAMPLE_SPACE, name, from);
    const sampleSeconds = cfg.sampleSeconds ?? DEFAULT_SAMPLE_SECONDS;
    if (!samples.length) {
      throw new CommandError(
        sampleSeconds === 0
          ? 'no samples: sampling is off (services.nms.sampleSeconds is 0)'
          : `no samples of device ${name} since ${formatTime(from)}: watch stores one every ${sampleSeconds} s`,
      );
    }
    const points = devicePoints(samples);
    const response = summarize(points.map((p) => p.responseMs));
    const available = availability(points);
    const intro = [
      `device ${name}, ${samples.length} samples from ${formatTime(samples[0].at)} to ${formatTime(samples[samples.length - 1].at)} (one every ${sampleSeconds} s)`,
      `availability: ${available!.toFixed(available === 100 ? 0 : 2)} % (${points.filter((p) => !p.reachable).length} of ${points.length} samples unreachable)`,
      `response time: average ${ms(response.avg)}, max ${ms(response.max)}, last ${ms(response.last)}`,
    ].join('\n');

    const lastInterfaces = [...samples].reverse().find((s) => s.value.interfaces)?.value.interfaces ?? {};
    let chosen: string | undefined;
    if (args.interface !== null) {
      chosen = findInterface(samples, String(args.interface));
      if (!chosen) throw new CommandError(`device ${name} has no interface "${args.interface}" in its samples (interfaces: ${Object.entries(lastInterfaces).map(([i, x]) => `${i} ${x.descr}`).join(', ') || 'none sampled'})`);
    }
    const indexes = chosen ? [chosen] : Object.keys(lastInterfaces).sort((a, b) => Number(a) - Number(b));
    const rows = indexes.map((index) => {
      const series = interfacePoints(samples, index);
      const inRate = summarize(series.map((p) => p.inBps));
      const outRate = summarize(series.map((p) => p.outBps));
      const sum = (values: (number | null)[]) => values.reduce<number>((a, b) => a + (b ?? 0), 0);
      return [Number(index), lastInterfaces[index]?.descr ?? '', operWord(series[series.length - 1]?.oper), bps(inRate.avg), bps(inRate.max), bps(outRate.avg), bps(outRate.max), sum(series.map((p) => p.inErrors)), sum(series.map((p) => p.outErrors))];
    });

    // The series: one CSV row per stored sample, and a chart of what matters most.
    const files: ResultFile[] = [];
    const time = (at: number) => new Date(at).toISOString();
    const { renderChartPng } = require('../../render/chart') as typeof import('../../render/chart');
    const width = 640;
    const height = 320;
    if (chosen) {
      const series = interfacePoints(samples, chosen);
      const descr = lastInterfaces[chosen]?.descr ?? chosen;
      files.push({
        filename: `${name}-if${chosen}.csv`,
        contentType: 'text/csv; charset=utf-8',
        content: renderCsv(
          ['time', 'reachable', 'response_ms', 'in_bps', 'out_bps', 'in_errors', 'out_errors', 'oper_status'],
          series.map((p, i) => [time(p.at), points[i].reachable, points[i].responseMs, p.inBps, p.outBps, p.inErrors, p.outErrors, operWord(p.oper)]),
        ),
      });
      files.push({
        filename: `${name}-if${chosen}.png`,
        contentType: 'image/png',
        content: await renderChartPng({
          title: `${name} ${descr}: traffic`,
          unit: 'bit/s',
          width,
          height,
          series: [
            { name: 'in', points: series.map((p) => [p.at, p.inBps]) },
            { name: 'out', points: series.map((p) => [p.at, p.outBps]) },
          ],
        }),
      });
    } else {
      files.push({
        filename: `${name}-samples.csv`,
        contentType: 'text/csv; charset=utf-8',
        content: renderCsv(['time', 'reachable', 'response_ms', 'uptime_s'], points.map((p) => [time(p.at), p.reachable, p.responseMs, p.uptime === null ? null : Math.floor(p.uptime / 100)])),
      });
      files.push({
        filename: `${name}-response.png`,
        contentType: 'image/png',
        content: await renderChartPng({ title: `${name}: response time (gaps: unreachable)`, unit: 'ms', width, height, series: [{ name: 'response', points: points.map((p) => [p.at, p.reachable ? p.responseMs : null]) }] }),
      });
    }
    return {
      kind: 'table',
      intro,
      columns: ['ifIndex', 'ifDescr', 'status', 'in avg', 'in max', 'out avg', 'out max', 'in errors', 'out errors'],
      rows,
      name: `${name}-stats`,
      files,
      ...(rows.length === 0 && { note: 'no interfaces sampled (no SNMP on this device)' }),
    };
  },
};

const alerts: Action = {
  summary: 'the alert rules: condition, interval, action, state and its last change',
  example: 'nms alerts',
  args: {},
  mutates: false,
  run: async (_args, ctx) => {
    nmsSection(ctx.config);
    const store = await serviceStoreFor(ctx.config);
    const rows = (await store.listRecords<AlertRule>(ALERT_SPACE)).map(({ key, value: r }) => [
      key,
      r.device,
      r.when,
      `${r.everyMs / 1000} s`,
      describeAction(r.then),
      r.held ? `${r.state} (flapping: held)` : r.state,
      formatTime(r.since),
      r.lastCheck ? formatTime(r.lastCheck) : 'not yet',
      r.lastDetail ?? '',
    ]);
    return { kind: 'table', columns: ['alert', 'device', 'when', 'every', 'then', 'state', 'since', 'last check', 'seen'], rows, name: 'nms-alerts' };
  },
};

/** `then="mail ops@example.com"` or `then="job restart-router"`. */
function parseAction(config: Config, text: string): AlertAction | string {
  const m = /^\s*(mail|job)\s+(\S+)\s*$/i.exec(text);
  if (!m) return `then="${text}": expected "mail <address>" or "job <name>"`;
  if (m[1].toLowerCase() === 'mail') {
    return /^[^\s@<>",;]+@[^\s@<>",;]+$/.test(m[2]) ? { kind: 'mail', to: m[2] } : `then="${text}": "${m[2]}" is not a mail address`;
  }
  const job = ownValue(config.services.jobs?.jobs, m[2]);
  if (!job) return `then="${text}": no job named "${m[2]}" (jobs: ${Object.keys(config.services.jobs?.jobs ?? {}).join(', ') || 'none'})`;
  if (!convertArgs({}, job.params ?? {}).ok) return `then="${text}": job ${m[2]} needs arguments, which an alert cannot give`;
  return { kind: 'job', job: m[2] };
}

const alert: Action = {
  summary: '"set name=… device=… when=\\"…\\" every=60s then=\\"mail …\\"|\\"job …\\"" adds or replaces a rule; "clear name=…" removes it',
  example: 'nms alert set name=uplink-down device=core-router when="ifOperStatus.2 != up" every=60s then="mail ops@example.com"',
  args: {
    verb: { type: 'enum', values: ['set', 'clear'], required: true, description: 'set or clear' },
    name: { type: 'string', required: true, maxLength: 64, pattern: ALERT_NAME.source.slice(1, -1), description: 'the rule\'s name' },
    device: { ...deviceArg, description: 'the device the condition looks at (set)' },
    when: { type: 'string', maxLength: 500, description: 'the condition, e.g. "ifOperStatus.2 != up", "not reachable or responseMs > 500" (set)' },
    every: { type: 'string', maxLength: 24, default: '60s', description: 'how often it is checked: 30s, 5m (set; default 60s)' },
    then: { type: 'string', maxLength: 300, description: '"mail <address>" or "job <name>" (set)' },
  },
  positional: ['verb'],
  mutates: true,
  prepare: (given, cfg) => {
    const converted = convertArgs(given, alert.args);
    if (!converted.ok) return converted;
    if (!cfg.services.nms) return { ok: false, problems: ['the nms service is not configured'] };
    const a = converted.args;
    if (a.verb === 'clear') {
      const extra = ['device', 'when', 'then'].filter((k) => given[k] !== undefined);
      return extra.length ? { ok: false, problems: [`clear takes only name=… (not ${extra.join(', ')})`] } : converted;
    }
    const problems: string[] = [];
    for (const key of ['device', 'when', 'then']) if (given[key] === undefined) problems.push(`missing ${key}=…: ${alert.example}`);
    if (problems.length) return { ok: false, problems };
    const name = String(a.device);
    if (!deviceNamed(cfg, name)) return { ok: false, problems: [unknownDevice(cfg, name)] };
    const parsed = parseRule(cfg, name, String(a.when));
    if (!parsed.ok) problems.push(`when="${a.when}": ${parsed.problem}`);
    const everyMs = parseSpan(String(a.every));
    if (everyMs === undefined || everyMs < MIN_EVERY_MS || everyMs > MAX_EVERY_MS) problems.push(`every=${a.every}: between 10s and 1d, like 30s, 5m or 1h`);
    const then = parseAction(cfg, String(a.then));
    if (typeof then === 'string') problems.push(then);
    if (problems.length) return { ok: false, problems };
    const { formatCondition } = require('./condition') as typeof import('./condition');
    return { ok: true, args: { ...a, when: formatCondition((parsed as { condition: Parameters<typeof formatCondition>[0] }).condition), everyMs, then } };
  },
  run: async (args, ctx) => {
    nmsSection(ctx.config);
    const store = await serviceStoreFor(ctx.config);
    const name = String(args.name);
    if (args.verb === 'clear') {
      const cleared = await store.deleteRecord(ALERT_SPACE, name);
      if (!cleared) throw new CommandError(`no alert rule named "${name}" (nothing changed)`);
      return { kind: 'text', text: `alert ${name} is cleared` };
    }
    const now = ctx.now().getTime();
    const previous = await store.getRecord<AlertRule>(ALERT_SPACE, name);
    const rule: AlertRule = {
      device: String(args.device),
      when: String(args.when),
      everyMs: Number(args.everyMs),
      then: args.then as AlertAction,
      setBy: ctx.user ?? 'unknown',
      setAt: now,
      state: 'pending',
      since: now,
      notified: 'pending',
      changes: [],
      held: false,
    };
    // The same condition on the same device keeps what is known about it (no new alert for a known state).
    if (previous && previous.value.device === rule.device && previous.value.when === rule.when) {
      Object.assign(rule, { state: previous.value.state, since: previous.value.since, notified: previous.value.notified, changes: previous.value.changes, held: previous.value.held });
    }
    await store.putRecord(ALERT_SPACE, name, rule);
    return { kind: 'text', text: `alert ${name} ${previous ? 'replaced' : 'set'}: on ${rule.device}, when ${rule.when}, checked every ${rule.everyMs / 1000} s by watch; then ${describeAction(rule.then)}` };
  },
};

/** The sampling task (for stats) and every alert rule, for the one scheduler of `watch`. */
async function timed(cfg: Config, store: ServiceStore): Promise<TimedList> {
  const section = nmsSection(cfg);
  const list = await alertTasks(cfg, store);
  const sampleSeconds = section.sampleSeconds ?? DEFAULT_SAMPLE_SECONDS;
  if (sampleSeconds > 0) {
    list.tasks.push({
      key: 'nms:sample',
      title: 'nms sampling',
      when: { everyMs: sampleSeconds * 1000 },
      quietMisses: true,
      fire: async (ctx) => {
        const names = Object.keys(nmsSection(ctx.config).devices);
        const at = ctx.scheduledAt.getTime();
        const samples = await Promise.all(names.map((name) => sampleDevice(ctx.config, name, { interfaces: true, counters: true })));
        for (const [i, name] of names.entries()) await ctx.store.appendSample(SAMPLE_SPACE, name, at, samples[i]);
        const keepMs = (nmsSection(ctx.config).keepDays ?? DEFAULT_KEEP_DAYS) * 86_400_000;
        await ctx.store.pruneSamples(SAMPLE_SPACE, at - keepMs);
        ctx.log('debug', `nms: sampled ${names.length} devices`, { unreachable: names.filter((_, i) => !samples[i].reachable) });
      },
    });
  }
  return list;
}

function checkConfig(raw: unknown, path: string): Problem[] {
  const cfg = raw as NmsServiceConfig;
  const problems: Problem[] = [];
  const objects = cfg.objects ?? {};
  for (const [name, obj] of Object.entries(objects)) {
    if (resolveName(name) && typeof resolveName(name) !== 'string') problems.push({ path: `${path}.objects.${name}`, message: 'is a built-in name: choose another' });
    if (typeof resolveName(obj.oid) === 'string') problems.push({ path: `${path}.objects.${name}.oid`, message: resolveName(obj.oid) as string });
  }
  for (const [name, dev] of Object.entries(cfg.devices)) {
    const at = `${path}.devices.${name}`;
    if (!DEVICE_NAME.test(name)) problems.push({ path: at, message: 'a device name is 1-64 letters, digits, "_" or "-", starting with a letter or digit' });
    if (!dev.snmp && !dev.tcp && !dev.http) problems.push({ path: at, message: 'needs snmp, tcp or http (how to reach it)' });
    const snmp = dev.snmp;
    if (snmp) {
      if (snmp.version === '2c' && !snmp.community) problems.push({ path: `${at}.snmp.community`, message: 'is required for version 2c' });
      if (snmp.version === '2c' && snmp.user) problems.push({ path: `${at}.snmp.user`, message: 'is for version 3; version 2c uses community' });
      if (snmp.version === '3') {
        if (!snmp.user) problems.push({ path: `${at}.snmp.user`, message: 'is required for version 3' });
        if (snmp.community || snmp.writeCommunity) problems.push({ path: `${at}.snmp.community`, message: 'is for version 2c; version 3 uses user' });
        const user = snmp.user;
        if (user && user.level !== 'noAuthNoPriv' && !user.authKey) problems.push({ path: `${at}.snmp.user.authKey`, message: `is required for level ${user.level}` });
        if (user && user.level === 'authPriv' && !user.privKey) problems.push({ path: `${at}.snmp.user.privKey`, message: 'is required for level authPriv' });
      }
      for (const [i, object] of (snmp.writable ?? []).entries()) {
        if (!SETTABLE_BUILTINS.has(object) && !Object.hasOwn(objects, object)) {
          problems.push({ path: `${at}.snmp.writable[${i}]`, message: `"${object}" is neither sysContact, sysName, sysLocation nor a name in ${path}.objects` });
        }
      }
    }
    if (dev.http) {
      try {
        const url = new URL(dev.http.url);
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error();
      } catch {
        problems.push({ path: `${at}.http.url`, message: 'is not an http:// or https:// URL' });
      }
    }
  }
  return problems;
}

/** Each device, looked at once: its checks and what they said. */
async function probe(cfg: Config): Promise<ProbeResult[]> {
  const names = Object.keys(nmsSection(cfg).devices);
  const samples = await Promise.all(names.map((name) => sampleDevice(cfg, name, { interfaces: false, counters: false })));
  return names.map((name, i) => {
    const s = samples[i];
    const parts = (['snmp', 'tcp', 'http'] as const).filter((k) => s[k]).map((k) => `${k}: ${s[k]!.reachable ? `${s[k]!.detail} in ${ms(s[k]!.responseMs)}` : s[k]!.detail}`);
    return { target: name, ok: s.reachable && [s.snmp, s.tcp, s.http].every((r) => !r || r.ok), detail: parts.join('; ') };
  });
}

export const nms: Service = {
  name: 'nms',
  summary: 'network devices: status, configuration, SNMP get/set, statistics with a chart, and alert rules',
  actions: { status, config, get, set, stats, alerts, alert },
  checkConfig,
  timed,
  helpDetails: (cfg) => {
    const lines = ['Devices:'];
    for (const [name, dev] of Object.entries(cfg.services.nms?.devices ?? {})) {
      const writable = dev.snmp?.writable?.length ? `; writable: ${dev.snmp.writable.join(', ')}` : '';
      lines.push(`  ${name}${dev.description ? ` - ${dev.description}` : ''} (${checksOf(dev).join(', ')}${writable})`);
    }
    lines.push(
      'Alert conditions compare SNMP objects (ifOperStatus.2, sysUpTime, a numeric OID, configured objects) or check results',
      '(reachable, responseMs, tcp.reachable, http.status …) with == != < <= > >=, joined by and/or/not and parentheses.',
      `A rule sends one mail when it becomes true and one when it clears; one that changes ${cfg.services.nms?.flapChanges ?? DEFAULT_FLAP_CHANGES} times within an hour is held as flapping.`,
    );
    return lines;
  },
  probe,
};
