import type { Config } from '../../config/types';
import { scheduleKey, type ServiceStore, type StoredRecord } from '../../state/service-store';
import { convertArgs, ownValue } from '../args';
import { scheduledRecipient } from '../notices';
import { startJob } from '../jobs/runner';
import type { Notice, TimedContext, TimedTask } from '../types';
import { evaluateCondition, parseCondition, type Classification, type ConditionValue, type ParseResult } from './condition';
import { deviceNamed, objectsOf, withSnmp, sampleDevice } from './devices';
import { resolveName } from './mib';

/**
 * Alert rules: a condition on one device, checked by `watch` every N seconds (on the one
 * scheduler, so one agent checks each period), and an action when it becomes true: a mail, or a
 * job run through the jobs service. One alert mail when it becomes true, one recovery mail when it
 * clears; a rule that keeps changing (flapping) is held: one mail says so, the next when it settles.
 */

export const ALERT_SPACE = 'nms.alert';
/** Changes of state remembered, to tell a flapping rule. */
const FLAP_WINDOW_MS = 3_600_000;
export const DEFAULT_FLAP_CHANGES = 4;

export type AlertAction = { kind: 'mail'; to: string } | { kind: 'job'; job: string };
export type AlertState = 'pending' | 'ok' | 'firing';

export interface AlertRule {
  device: string;
  /** The condition as given (canonical form). */
  when: string;
  everyMs: number;
  then: AlertAction;
  setBy: string;
  setAt: number;
  state: AlertState;
  /** When the state last changed. */
  since: number;
  /** The state people were last told about (none yet: pending). */
  notified: AlertState;
  /** Times of the recent state changes (within the flap window). */
  changes: number[];
  /** Flapping: state changes are recorded, notices wait until it settles. */
  held: boolean;
  lastCheck?: number;
  /** What the last check saw: values of the references, or why it could not tell. */
  lastDetail?: string;
}

/** Names of check results a condition may use besides SNMP objects. */
const CHECK_REFERENCES = new Set([
  'reachable', 'responseMs',
  'snmp.reachable', 'snmp.responseMs',
  'tcp.reachable', 'tcp.responseMs',
  'http.reachable', 'http.ok', 'http.responseMs', 'http.status',
]);

/** ifOperStatus = { up: 1, … } as the condition language wants it (word → number). */
function wordsOf(enumeration: Readonly<Record<number, string>> | undefined): Record<string, number> | undefined {
  if (!enumeration) return undefined;
  const words: Record<string, number> = Object.create(null);
  for (const [value, word] of Object.entries(enumeration)) words[word] = Number(value);
  return words;
}

/** Parses a condition for a device: check names it has, SNMP objects when it has SNMP. */
export function parseRule(config: Config, deviceName: string, text: string): ParseResult {
  const dev = deviceNamed(config, deviceName);
  const classify = (ref: string): Classification => {
    if (CHECK_REFERENCES.has(ref)) {
      const kind = ref.includes('.') ? ref.split('.')[0] : undefined;
      if (kind && !(dev && Object.hasOwn(dev, kind) && dev[kind as 'snmp' | 'tcp' | 'http'])) return { ok: false, problem: `device ${deviceName} has no ${kind} check` };
      return { ok: true };
    }
    if (!dev?.snmp) return { ok: false, problem: `"${ref}" needs SNMP, which device ${deviceName} does not have (it can use: reachable, responseMs${dev?.tcp ? ', tcp.reachable' : ''}${dev?.http ? ', http.status' : ''})` };
    const resolved = resolveName(ref, objectsOf(config));
    if (typeof resolved === 'string') return { ok: false, problem: resolved };
    if (resolved.object && resolved.object.shape !== 'scalar' && !/\.\d+$/.test(resolved.name)) return { ok: false, problem: `${ref} is a table column: name one row, like ${ref}.1` };
    const words = wordsOf(resolved.enumeration);
    return { ok: true, ...(words && { enumeration: words }) };
  };
  return parseCondition(text, classify);
}

const show = (v: ConditionValue | undefined): string => (v === undefined || v === null ? 'no value' : typeof v === 'string' ? JSON.stringify(v) : String(v));

/** Looks at the device and evaluates the rule's condition: true, false, or unknown with the reason. */
export async function checkRule(config: Config, rule: AlertRule): Promise<{ value?: boolean; detail: string }> {
  const parsed = parseRule(config, rule.device, rule.when);
  if (!parsed.ok) return { detail: `the condition no longer fits the config: ${parsed.problem}` };
  const values = new Map<string, ConditionValue>();
  const snmpRefs = parsed.references.filter((r) => !CHECK_REFERENCES.has(r));
  const checkRefs = parsed.references.filter((r) => CHECK_REFERENCES.has(r));
  if (checkRefs.length) {
    const sample = await sampleDevice(config, rule.device, { interfaces: false, counters: false });
    values.set('reachable', sample.reachable);
    values.set('responseMs', sample.responseMs);
    for (const kind of ['snmp', 'tcp', 'http'] as const) {
      const r = sample[kind];
      if (!r) continue;
      values.set(`${kind}.reachable`, r.reachable);
      values.set(`${kind}.responseMs`, r.responseMs);
      if (kind === 'http') {
        values.set('http.status', r.status ?? null);
        values.set('http.ok', r.ok);
      }
    }
  }
  let snmpProblem: string | undefined;
  if (snmpRefs.length) {
    const oids = snmpRefs.map((ref) => (resolveName(ref, objectsOf(config)) as { oid: string }).oid);
    try {
      const got = await withSnmp(config, rule.device, (session) => session.get(oids));
      got.forEach((v, i) => values.set(snmpRefs[i], v.value as ConditionValue));
    } catch (err) {
      snmpProblem = (err as Error).message;
    }
  }
  const seen = parsed.references.map((r) => `${r} = ${show(values.get(r))}`).join(', ');
  const result = evaluateCondition(parsed.condition, values);
  if ('value' in result) return { value: result.value, detail: seen };
  return { detail: `cannot tell: ${result.unknown}${snmpProblem ? ` (${snmpProblem})` : ''}` };
}

export const describeAction = (a: AlertAction): string => (a.kind === 'mail' ? `mail ${a.to}` : `job ${a.job}`);

/** Where a rule's notices go: its mail address, or for a job action whoever set the rule (while on the allow list). */
const recipientOf = (config: Config, rule: AlertRule): string | undefined => (rule.then.kind === 'mail' ? rule.then.to : scheduledRecipient(config, undefined, rule.setBy));

/** The next state of a rule after a check, and the notice (if any) it owes. */
export function advance(rule: AlertRule, seen: { value?: boolean; detail: string }, at: number, flapChanges: number): { rule: AlertRule; notify?: 'firing' | 'ok' | 'flapping' } {
  const next: AlertRule = { ...rule, lastCheck: at, lastDetail: seen.detail, changes: rule.changes.filter((t) => t > at - FLAP_WINDOW_MS) };
  if (seen.value === undefined) return { rule: next }; // unknown: keep the state, say why in the listing
  const state: AlertState = seen.value ? 'firing' : 'ok';
  if (state !== rule.state) {
    next.state = state;
    next.since = at;
    // The first look at a new rule is not a change (nothing was told yet).
    if (rule.state !== 'pending') next.changes = [...next.changes, at];
  }
  const flapping = next.changes.length >= flapChanges;
  if (flapping && !rule.held) {
    next.held = true;
    return { rule: next, notify: 'flapping' };
  }
  if (next.held && !flapping) {
    // Settled: say where it stands now, whatever was last told before it was held.
    next.held = false;
    next.notified = next.state;
    return { rule: next, notify: next.state as 'firing' | 'ok' };
  }
  if (next.held) return { rule: next };
  // Tell only a state people were not told about; a new rule that is fine says nothing.
  if (next.state === next.notified || (next.state === 'ok' && next.notified === 'pending')) {
    next.notified = next.state;
    return { rule: next };
  }
  next.notified = next.state;
  return { rule: next, notify: next.state as 'firing' | 'ok' };
}

function noticeFor(to: string, name: string, rule: AlertRule, kind: 'firing' | 'ok' | 'flapping', extra = ''): Notice {
  const subject = kind === 'firing' ? `alert ${name}: firing` : kind === 'ok' ? `alert ${name}: recovered` : `alert ${name}: flapping`;
  const lines = [
    `device:    ${rule.device}`,
    `condition: ${rule.when}`,
    `state:     ${kind === 'flapping' ? `flapping (${rule.changes.length} changes within an hour); notices are held until it settles, now ${rule.state}` : kind === 'firing' ? 'true (firing)' : 'false again (recovered)'}`,
    `seen:      ${rule.lastDetail ?? ''}`,
    `since:     ${new Date(rule.since).toISOString()}`,
    `action:    ${describeAction(rule.then)}${extra}`,
  ];
  return { to, subject, command: `nms alert ${name} (every ${rule.everyMs / 1000} s)`, outcome: { ok: true, result: { kind: 'text', text: lines.join('\n') } } };
}

/** Runs the rule's job (recorded in the jobs run log as run by "alert <name>"); a line for the notice. */
async function runAlertJob(ctx: TimedContext, name: string, job: string): Promise<string> {
  const spec = ownValue(ctx.config.services.jobs?.jobs, job);
  if (!spec) return ` (job ${job} is not in the config: nothing ran)`;
  const defaults = convertArgs({}, spec.params ?? {});
  if (!defaults.ok) return ` (job ${job} needs arguments: nothing ran)`;
  const started = await startJob({ config: ctx.config, store: ctx.store, name: job, given: {}, values: defaults.args, who: `alert ${name}`, now: ctx.now });
  ctx.log('info', `alert ${name}: job ${job} started, run ${started.id}`, { alert: name, job, runId: started.id });
  return ` (started run ${started.id}; "jobs log run=${started.id}" shows it)`;
}

/** One check of one rule: evaluate, store the new state (compare-and-set), then notify. */
async function fireRule(ctx: TimedContext, name: string): Promise<void> {
  const record = await ctx.store.getRecord<AlertRule>(ALERT_SPACE, name);
  if (!record) return; // cleared meanwhile
  const seen = await checkRule(ctx.config, record.value);
  const flapChanges = ctx.config.services.nms?.flapChanges ?? DEFAULT_FLAP_CHANGES;
  const { rule, notify } = advance(record.value, seen, ctx.scheduledAt.getTime(), flapChanges);
  // Another agent or a mail changed the rule while it was checked: this look is stale.
  if (!(await ctx.store.putRecord(ALERT_SPACE, name, rule, record.version))) return;
  if (rule.state !== record.value.state) ctx.log('info', `alert ${name}: ${record.value.state} → ${rule.state} (${seen.detail})`, { alert: name, device: rule.device });
  if (!notify) return;
  let extra = '';
  if (notify === 'firing' && rule.then.kind === 'job') extra = await runAlertJob(ctx, name, rule.then.job);
  const to = recipientOf(ctx.config, rule);
  if (ctx.notify && to) await ctx.notify(`${ALERT_SPACE}:${name}#${rule.since}#${notify}`, noticeFor(to, name, rule, notify, extra));
  else ctx.log('warn', `alert ${name}: ${notify}; no mail sent (${to ? 'mail cannot be sent from here' : 'no recipient'})`, { alert: name });
}

/** Every stored rule, as a task of the one scheduler. */
export async function alertTasks(config: Config, store: ServiceStore): Promise<{ tasks: TimedTask[]; ignored: { key: string; message: string }[] }> {
  const tasks: TimedTask[] = [];
  const ignored: { key: string; message: string }[] = [];
  for (const { key: name, value: rule } of await store.listRecords<AlertRule>(ALERT_SPACE)) {
    if (!deviceNamed(config, rule.device)) {
      ignored.push({ key: `${ALERT_SPACE}:${name}:${rule.device}`, message: `alert ${name} ignored: device ${rule.device} is not in the config` });
      continue;
    }
    tasks.push({ key: scheduleKey(ALERT_SPACE, name), title: `alert ${name}`, when: { everyMs: rule.everyMs }, setAt: rule.setAt, quietMisses: true, fire: (ctx) => fireRule(ctx, name) });
  }
  return { tasks, ignored };
}

export type { StoredRecord };
