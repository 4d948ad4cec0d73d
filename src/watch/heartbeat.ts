import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Config, HeartbeatConfig } from '../config/types';
import type { Logger } from '../core/log';
import { scheduleKey, type ServiceStore } from '../state/service-store';
import { composeOwnMail, deliverAlert, errorText, iso, type PendingAlert } from './heartbeat-alert';

/**
 * The end-to-end heartbeat of `watch`: every heartbeat.everySeconds one agent (claimFiring) mails
 * a probe to the agent's own address through the agent's SMTP server; whichever agent takes it out
 * of the mailbox records it as arrived. A probe not back within heartbeat.timeoutSeconds turns the
 * heartbeat failing and raises an alert through a second channel (a command, or mail through
 * another SMTP server); the next probe back turns it ok and reports the recovery, each exactly once
 * across the agents sharing the state store (compare-and-set on one record).
 *
 * Probes carry an HMAC over their id, send time and mailbox, keyed with a random key kept in the
 * state store: every agent of the mailbox can check them, and a forged one is not a probe (it goes
 * through the pipeline like any other mail, where an unknown sender gets silence).
 */

export const HEARTBEAT_SPACE = 'watch.heartbeat';
export const HEARTBEAT_HEADER = 'X-Mailagent-Heartbeat';
const KEY_RECORD = 'key';
const STATE_RECORD = 'state';
const PROBE_PREFIX = 'probe:';
/** The claimFiring key of the probes (job names have no ":", so it is no job's). */
const FIRING = scheduleKey('watch', 'heartbeat');
/** Probe records kept; older ones are deleted after each send. */
export const KEEP_PROBES = 50;
/** Only the header block is read, and only this much of a message. */
const HEADER_SCAN_BYTES = 64 * 1024;
/** How long an agent delivering an alert holds it; another agent may take it over afterwards. */
const ALERT_LEASE_MS = 5 * 60_000;
/** Retries of a failed alert: 15 s, 30 s, 60 s, ... at most 10 min apart. */
const ALERT_RETRY_MS = 15_000;
const ALERT_RETRY_MAX_MS = 10 * 60_000;
const TICK_MS = 1000;

export type HeartbeatState = 'ok' | 'failing' | 'unknown';

export interface ProbeRecord {
  id: string;
  /** Epoch ms; also the t= of the probe's header. */
  sentAt: number;
  sentBy: string;
  /** The agent's SMTP server did not take it. */
  sendError?: string;
  arrivedAt?: number;
  arrivedBy?: string;
}


interface StateRecord {
  state: 'ok' | 'failing';
  since: number;
  /** The alert of the last change, until (and after) it is delivered. */
  alert?: PendingAlert;
}

export interface HeartbeatStatus {
  state: HeartbeatState;
  /** When the state last changed. */
  since?: number;
  lastRoundTripMs?: number;
  lastSentAt?: number;
  lastArrivedAt?: number;
  /** An alert not delivered yet (failing or recovered). */
  alertPending?: 'failing' | 'recovered';
}

export interface HeartbeatOptions {
  /** The config in force (reloads change the period, the timeout and the alert). */
  config: () => Config;
  /** This agent's owner id (AgentIdentity.owner): recorded as sender and receiver of probes. */
  owner: string;
  log: Logger;
  store: () => Promise<ServiceStore>;
  /** Hands a mail to the agent's own SMTP server (the path under test). */
  send: (envelope: { from: string; to: string[] }, raw: Buffer) => Promise<void>;
  now?: () => number;
}


function macOf(key: Buffer, address: string, id: string, t: number): string {
  return createHmac('sha256', key).update(`mailagent-heartbeat\n${address.toLowerCase()}\n${id}\n${t}`).digest('hex');
}

/**
 * The probe's header value from a raw message: only the header block, at most HEADER_SCAN_BYTES,
 * and only when the header occurs exactly once. Undefined otherwise.
 */
export function probeHeader(raw: Buffer): { id: string; t: number; mac: string } | undefined {
  const head = raw.subarray(0, HEADER_SCAN_BYTES).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  if (end < 0 && raw.length > HEADER_SCAN_BYTES) return undefined;
  const block = (end < 0 ? head : head.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const values = block
    .split(/\r?\n/)
    .filter((line) => line.slice(0, HEARTBEAT_HEADER.length + 1).toLowerCase() === `${HEARTBEAT_HEADER.toLowerCase()}:`)
    .map((line) => line.slice(HEARTBEAT_HEADER.length + 1).trim());
  if (values.length !== 1) return undefined;
  const m = /^([0-9a-f]{32});\s*t=(\d{1,15});\s*mac=([0-9a-f]{64})$/.exec(values[0]);
  return m ? { id: m[1], t: Number(m[2]), mac: m[3] } : undefined;
}

/** The state the probes say: failing when one is overdue that was sent after the newest one that came back. */
export function judgeProbes(probes: ProbeRecord[], now: number, timeoutMs: number, watchingSince: number): { state: HeartbeatState; overdue?: ProbeRecord; back?: ProbeRecord } {
  const back = probes.filter((p) => p.arrivedAt !== undefined).sort((a, b) => b.sentAt - a.sentAt)[0];
  // A probe sent before this agent started is given the whole timeout from the start: one that
  // waited in the mailbox while no agent ran is taken out by the first sync, not reported.
  const overdue = probes
    .filter((p) => p.arrivedAt === undefined && (!back || p.sentAt > back.sentAt) && now - Math.max(p.sentAt, watchingSince) > timeoutMs)
    .sort((a, b) => a.sentAt - b.sentAt)[0];
  return { state: overdue ? 'failing' : back ? 'ok' : 'unknown', overdue, back };
}


/** The probe: From and To the agent's address, authenticated by the MAC in its header. */
export function composeProbe(config: Config, probe: { id: string; sentAt: number }, key: Buffer): Promise<Buffer> {
  const address = config.agent.address;
  return composeOwnMail(
    {
      fromName: config.agent.name ?? 'mailagent',
      from: address,
      to: address,
      domain: address.split('@')[1],
      subject: `mailagent heartbeat ${probe.id}`,
      text: 'A heartbeat probe of mailagent: it proves that mail sent by the agent comes back to its mailbox.\nThe agent files it away; nothing needs to be done with it.\n',
      headers: { 'X-Loop': address, [HEARTBEAT_HEADER]: `${probe.id}; t=${probe.sentAt}; mac=${macOf(key, address, probe.id, probe.sentAt)}` },
    },
    probe.sentAt,
  );
}



export class Heartbeat {
  private readonly now: () => number;
  /** Probes sent before this are judged from here on (see judgeProbes). */
  private readonly startedAt: number;
  private key: { store: ServiceStore; key: Buffer } | undefined;
  /** The period whose probe this agent last tried to claim (saves a claim per tick). */
  private lastSlot: number | undefined;
  private ticking: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The last problem logged per step: a state store that is down is said once, not every second. */
  private readonly problems = new Map<string, string>();

  constructor(private readonly opts: HeartbeatOptions) {
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
  }

  /** Ticks every second from a timer of its own: an IMAP call that hangs must not stop the judging. */
  start(): void {
    if (this.timer) return;
    const loop = () => {
      void this.tick().finally(() => {
        if (this.timer) this.timer = setTimeout(loop, TICK_MS);
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  /** Stops the timer and waits for a tick in progress (an alert being delivered: up to ~35 s). */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  /**
   * Sends the period's probe (one agent per period), judges the probes, records a change of state
   * and delivers its alert. Never throws: problems are logged and the next tick tries again. A tick
   * still running when the next is due is not doubled: the call waits for it.
   */
  tick(): Promise<void> {
    if (!this.ticking) {
      this.ticking = this.runTick().finally(() => {
        this.ticking = undefined;
      });
    }
    return this.ticking;
  }

  private async runTick(): Promise<void> {
    const config = this.opts.config();
    const hb = config.heartbeat;
    if (!hb) return;
    let store: ServiceStore | undefined;
    const steps = [
      ['store', async () => void (store = await this.opts.store())],
      ['probe', () => this.sendProbe(config, hb, store!)],
      ['judging', () => this.judge(hb, store!)],
      ['alert', () => this.deliverPending(config, hb, store!)],
    ] as const;
    for (const [what, step] of steps) {
      try {
        await step();
        this.problems.delete(what);
      } catch (err) {
        const text = errorText(err);
        if (this.problems.get(what) !== text) this.opts.log.error(`heartbeat: ${what === 'store' ? 'state store unavailable' : `${what} failed`}`, { err });
        this.problems.set(what, text);
        if (what === 'store') return;
      }
    }
  }

  /**
   * True when `raw` is a genuine probe of this mailbox: then it is recorded as arrived (the first
   * time) and the caller files it without a reply. False for anything else, forged probes included:
   * those go through the pipeline like any mail. Only messages carrying the header touch the store;
   * a store failure on a genuine probe rejects (the caller leaves the message for a retry).
   */
  async accept(raw: Buffer): Promise<boolean> {
    const header = probeHeader(raw);
    if (!header) return false;
    const config = this.opts.config();
    const store = await this.opts.store();
    const key = await this.getKey(store, false);
    if (!key) {
      this.opts.log.debug('heartbeat header, but no heartbeat key in the state store: not a probe', { id: header.id });
      return false;
    }
    const expected = Buffer.from(macOf(key, config.agent.address, header.id, header.t), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(header.mac, 'hex'))) {
      this.opts.log.debug('heartbeat header with a wrong MAC: not a probe', { id: header.id });
      return false;
    }
    const arrivedAt = this.now();
    for (let attempt = 0; attempt < 5; attempt++) {
      const record = await store.getRecord<ProbeRecord>(HEARTBEAT_SPACE, PROBE_PREFIX + header.id);
      if (!record) {
        // Ours (the MAC holds), but older than the records kept: filed away, nothing to measure.
        this.opts.log.info('heartbeat probe arrived after its record was pruned', { id: header.id, sentAt: iso(header.t) });
        return true;
      }
      if (record.value.sentAt !== header.t) {
        this.opts.log.warn('heartbeat probe does not match its record: not a probe', { id: header.id });
        return false;
      }
      if (record.value.arrivedAt !== undefined) {
        this.opts.log.debug('heartbeat probe arrived again (a duplicate)', { id: header.id });
        return true;
      }
      const arrived: ProbeRecord = { ...record.value, arrivedAt, arrivedBy: this.opts.owner };
      if (await store.putRecord(HEARTBEAT_SPACE, record.key, arrived, record.version)) {
        this.opts.log.info('heartbeat probe back', { id: header.id, roundTripMs: arrivedAt - record.value.sentAt });
        return true;
      }
    }
    throw new Error(`heartbeat probe ${header.id}: its record kept changing`);
  }

  async status(): Promise<HeartbeatStatus> {
    const store = await this.opts.store();
    const records = await store.listRecords<unknown>(HEARTBEAT_SPACE);
    const state = records.find((r) => r.key === STATE_RECORD)?.value as StateRecord | undefined;
    const probes = records.filter((r) => r.key.startsWith(PROBE_PREFIX)).map((r) => r.value as ProbeRecord);
    const sent = probes.sort((a, b) => b.sentAt - a.sentAt)[0];
    const back = probes.find((p) => p.arrivedAt !== undefined);
    const pending = state?.alert && state.alert.deliveredAt === undefined ? state.alert.kind : undefined;
    return {
      state: state?.state ?? 'unknown',
      ...(state && { since: state.since }),
      ...(back && { lastRoundTripMs: back.arrivedAt! - back.sentAt, lastArrivedAt: back.arrivedAt }),
      ...(sent && { lastSentAt: sent.sentAt }),
      ...(pending && { alertPending: pending }),
    };
  }

  /** The MAC key: one per state store, created by the first agent that needs it (compare-and-set). */
  private async getKey(store: ServiceStore, create: boolean): Promise<Buffer | undefined> {
    if (this.key?.store === store) return this.key.key;
    let record = await store.getRecord<{ hex: string }>(HEARTBEAT_SPACE, KEY_RECORD);
    if (!record && create) {
      await store.putRecord(HEARTBEAT_SPACE, KEY_RECORD, { hex: randomBytes(32).toString('hex') }, 0);
      record = await store.getRecord<{ hex: string }>(HEARTBEAT_SPACE, KEY_RECORD); // ours, or the one another agent made first
    }
    if (!record) return undefined;
    this.key = { store, key: Buffer.from(record.value.hex, 'hex') };
    return this.key.key;
  }

  private async sendProbe(config: Config, hb: HeartbeatConfig, store: ServiceStore): Promise<void> {
    const now = this.now();
    const everyMs = hb.everySeconds * 1000;
    const slot = Math.floor(now / everyMs) * everyMs;
    if (slot === this.lastSlot) return;
    const won = await store.claimFiring(FIRING, slot, this.opts.owner);
    this.lastSlot = slot;
    if (!won) return;
    const key = (await this.getKey(store, true))!;
    const probe: ProbeRecord = { id: randomBytes(16).toString('hex'), sentAt: now, sentBy: this.opts.owner };
    // Recorded before it is sent: a probe the SMTP server refuses is overdue like a lost one.
    await store.putRecord(HEARTBEAT_SPACE, PROBE_PREFIX + probe.id, probe, 0);
    try {
      const raw = await composeProbe(config, probe, key);
      // Sent directly, not through the outbox: a probe that cannot go now is the news, not something to retry.
      await this.opts.send({ from: config.agent.address, to: [config.agent.address] }, raw);
      this.opts.log.debug('heartbeat probe sent', { id: probe.id });
    } catch (err) {
      this.opts.log.warn('heartbeat probe not sent', { id: probe.id, err });
      await this.update<ProbeRecord>(store, PROBE_PREFIX + probe.id, (p) => ({ ...p, sendError: errorText(err) }));
    }
    await this.prune(store);
  }

  private async prune(store: ServiceStore): Promise<void> {
    const probes = (await store.listRecords<ProbeRecord>(HEARTBEAT_SPACE)).filter((r) => r.key.startsWith(PROBE_PREFIX));
    const old = probes.sort((a, b) => b.value.sentAt - a.value.sentAt).slice(KEEP_PROBES);
    for (const r of old) await store.deleteRecord(HEARTBEAT_SPACE, r.key);
  }

  /** Read, change, compare-and-set; a few tries when another agent writes the same record. */
  private async update<T>(store: ServiceStore, key: string, change: (value: T) => T): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const record = await store.getRecord<T>(HEARTBEAT_SPACE, key);
      if (!record) return;
      if (await store.putRecord(HEARTBEAT_SPACE, key, change(record.value), record.version)) return;
    }
  }

  /** A change of state is written once (compare-and-set), with the alert it raises. */
  private async judge(hb: HeartbeatConfig, store: ServiceStore): Promise<void> {
    const now = this.now();
    const records = await store.listRecords<unknown>(HEARTBEAT_SPACE);
    const probes = records.filter((r) => r.key.startsWith(PROBE_PREFIX)).map((r) => r.value as ProbeRecord);
    const verdict = judgeProbes(probes, now, hb.timeoutSeconds * 1000, this.startedAt);
    if (verdict.state === 'unknown') return;
    const current = records.find((r) => r.key === STATE_RECORD) as { value: StateRecord; version: number } | undefined;
    const was = current?.value.state ?? 'unknown';
    if (was === verdict.state) return;
    let alert: PendingAlert | undefined;
    if (verdict.state === 'failing') {
      const p = verdict.overdue!;
      const back = verdict.back ? `last probe back: sent ${iso(verdict.back.sentAt)}, round trip ${verdict.back.arrivedAt! - verdict.back.sentAt} ms` : 'no probe has come back yet';
      const message = `probe ${p.id} sent at ${iso(p.sentAt)} by ${p.sentBy} is not back after ${Math.round((now - p.sentAt) / 1000)} s (timeout ${hb.timeoutSeconds} s)${p.sendError ? `; the SMTP server did not take it: ${p.sendError}` : ''}; ${back}`;
      alert = { kind: 'failing', message, raisedAt: now, attempts: 0, nextAt: now };
    } else if (was === 'failing') {
      const p = verdict.back!;
      const message = `probe ${p.id} sent at ${iso(p.sentAt)} came back at ${iso(p.arrivedAt!)} (round trip ${p.arrivedAt! - p.sentAt} ms); failing since ${iso(current!.value.since)} (${Math.round((now - current!.value.since) / 1000)} s)`;
      alert = { kind: 'recovered', message, raisedAt: now, attempts: 0, nextAt: now };
    }
    // unknown -> ok (the first probe back) is no news: no alert.
    const next: StateRecord = { state: verdict.state, since: now, ...(alert && { alert }) };
    if (!(await store.putRecord(HEARTBEAT_SPACE, STATE_RECORD, next, current?.version ?? 0))) return; // another agent recorded it
    if (alert?.kind === 'failing') this.opts.log.error('heartbeat failing', { message: alert.message });
    else if (alert) this.opts.log.warn('heartbeat recovered', { message: alert.message });
    else this.opts.log.info('heartbeat ok: the first probe came back', { roundTripMs: verdict.back!.arrivedAt! - verdict.back!.sentAt });
  }

  /** The alert of the last change, by one agent at a time (a lease in the state record), retried until delivered. */
  private async deliverPending(config: Config, hb: HeartbeatConfig, store: ServiceStore): Promise<void> {
    const now = this.now();
    const record = await store.getRecord<StateRecord>(HEARTBEAT_SPACE, STATE_RECORD);
    const alert = record?.value.alert;
    if (!record || !alert || alert.deliveredAt !== undefined || now < alert.nextAt) return;
    if (alert.sending && alert.sending.until > now) return;
    const claimed: StateRecord = { ...record.value, alert: { ...alert, sending: { by: this.opts.owner, until: now + ALERT_LEASE_MS } } };
    if (!(await store.putRecord(HEARTBEAT_SPACE, STATE_RECORD, claimed, record.version))) return;
    let outcome: Partial<PendingAlert>;
    try {
      await deliverAlert(config, hb, alert, this.opts.log, now);
      outcome = { deliveredAt: this.now(), attempts: alert.attempts + 1 };
      this.opts.log.info('heartbeat alert delivered', { kind: alert.kind, via: 'command' in hb.alert ? 'command' : 'mail' });
    } catch (err) {
      const attempts = alert.attempts + 1;
      const retryInMs = Math.min(ALERT_RETRY_MAX_MS, ALERT_RETRY_MS * 2 ** (attempts - 1));
      outcome = { attempts, nextAt: this.now() + retryInMs, lastError: errorText(err) };
      this.opts.log.error('heartbeat alert not delivered; tried again later', { kind: alert.kind, attempts, retryInMs, err: errorText(err) });
    }
    const { sending: _held, lastError: _before, ...rest } = alert;
    const done: StateRecord = { ...record.value, alert: { ...rest, ...outcome } };
    // Lost only when the state changed meanwhile: its new alert replaces this one.
    await store.putRecord(HEARTBEAT_SPACE, STATE_RECORD, done, record.version + 1);
  }
}
