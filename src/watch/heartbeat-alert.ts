import { randomUUID } from 'node:crypto';
import { dirname } from 'node:path';
import { resolveSecret } from '../config/secrets';
import type { Config, HeartbeatConfig } from '../config/types';
import type { Logger } from '../core/log';
import { composeMessage } from '../mail/compose';
import { sendOnce } from '../mail/smtp';
import { executeProcess } from '../services/jobs/runner';
import { scrub } from '../services/mail/clients';

// The heartbeat's own mail (probes and alerts), and how an alert is delivered: by a command or by
// mail through another SMTP server than the agent's. The heartbeat itself is in heartbeat.ts.

/** An alert command may run this long; this much of its output is kept for the log. */
const ALERT_TIMEOUT_MS = 30_000;
const ALERT_OUTPUT_BYTES = 4096;

export interface PendingAlert {
  kind: 'failing' | 'recovered';
  /** One line. */
  message: string;
  raisedAt: number;
  attempts: number;
  /** Not tried again before this. */
  nextAt: number;
  /** An agent is delivering it (until then). */
  sending?: { by: string; until: number };
  deliveredAt?: number;
  lastError?: string;
}

export const iso = (ms: number) => new Date(ms).toISOString();
export const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).replace(/[\r\n]+/g, ' ').slice(0, 300);

/** A mail of the heartbeat's own: marked automatic, with our Message-ID form. */
export function composeOwnMail(fields: { fromName: string; from: string; to: string; domain: string; subject: string; text: string; headers: Record<string, string> }, now: number): Promise<Buffer> {
  return composeMessage({
    from: { name: fields.fromName, address: fields.from },
    to: fields.to,
    subject: fields.subject,
    // Our Message-ID form (see mail/reply.ts), so that a copy coming back is known as ours.
    messageId: `<mailagent.${randomUUID()}@${fields.domain}>`,
    date: new Date(now),
    headers: { 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All', ...fields.headers },
    text: fields.text,
  });
}

function alertEnv(alert: PendingAlert): Record<string, string> {
  // A small, known environment, as for jobs: the agent's own variables (secrets among them) stay out.
  const env: Record<string, string> = { PATH: process.env.PATH || '/usr/local/bin:/usr/bin:/bin' };
  for (const key of ['HOME', 'LANG', 'LC_ALL', 'TZ', 'USER', 'LOGNAME']) {
    const value = process.env[key];
    if (value) env[key] = value;
  }
  env.MAILAGENT_HEARTBEAT = alert.kind;
  env.MAILAGENT_HEARTBEAT_MESSAGE = alert.message;
  return env;
}

/** Delivers an alert through the configured channel; throws when it did not get through. */
export async function deliverAlert(config: Config, hb: HeartbeatConfig, alert: PendingAlert, log: Logger, now: number): Promise<void> {
  if ('command' in hb.alert) {
    const result = await executeProcess({
      argv: hb.alert.command,
      cwd: dirname(config.file),
      env: alertEnv(alert),
      timeoutMs: ALERT_TIMEOUT_MS,
      maxOutputBytes: ALERT_OUTPUT_BYTES,
      startedAt: now,
    });
    const output = { stdout: result.stdout.toString('utf8').trim() || undefined, stderr: result.stderr.toString('utf8').trim() || undefined };
    if (result.status !== 'ok') {
      log.warn('heartbeat alert command failed', { command: hb.alert.command[0], status: result.status, exitCode: result.exitCode, note: result.note, ...output });
      throw new Error(result.note ?? `${hb.alert.command[0]} exited with ${result.exitCode ?? result.signal}`);
    }
    log.info('heartbeat alert command ran', { command: hb.alert.command[0], ms: result.durationMs, ...output });
    return;
  }
  const { to, smtp } = hb.alert.mail;
  const from = hb.alert.mail.from ?? config.agent.address;
  const password = smtp.user && smtp.password ? resolveSecret(smtp.password, config.file, 'heartbeat.alert.mail.smtp.password') : undefined;
  const lines =
    alert.kind === 'failing'
      ? [`The heartbeat of ${config.agent.address} is failing: a probe mailed to the mailbox did not come back in time.`, '', alert.message]
      : [`The heartbeat of ${config.agent.address} has recovered: probes come back again.`, '', alert.message];
  const raw = await composeOwnMail(
    {
      fromName: config.agent.name ?? 'mailagent',
      from,
      to,
      domain: config.agent.address.split('@')[1],
      subject: `mailagent heartbeat: ${alert.kind === 'failing' ? 'probe overdue' : 'recovered'} (${config.agent.address})`,
      text: `${lines.join('\n')}\n\nRaised at ${iso(alert.raisedAt)} by ${config.agent.address}.\n`,
      headers: {},
    },
    now,
  );
  try {
    await sendOnce(smtp, password, { from, to: [to] }, raw);
  } catch (err) {
    throw new Error(`SMTP server ${smtp.host}: ${scrub(errorText(err), smtp.user, password)}`);
  }
}
