import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Config, UserConfig } from '../config/types';
import { knownSender } from '../auth/senders';
import { automaticReason } from '../auth/loops';
import { parseMail, type IncomingMail } from '../mail/parse';
import { composeReply } from '../mail/reply';
import { renderHelp } from '../render/help';
import { renderTranscript, type Attachment, type Step } from '../render/transcript';
import { services as builtinServices } from '../services/registry';
import type { AuditRecord, AuditSink } from '../state/audit';
import type { Journal } from '../state/journal';
import { VERSION } from '../version';
import { CommandError } from './errors';
import { requestLines } from './lines';
import type { Outcome } from './outcome';
import { configuredServices, readRequest, type Command, type Registry } from './request';

export interface PipelineDeps {
  config: Config;
  now: () => Date;
  journal: Journal;
  audit: AuditSink;
  /** Envelope sender given by the MTA, when known ("" for a bounce). */
  envelopeSender?: string;
  /** The service registry; tests may pass their own. */
  services?: Registry;
  /** Where internal errors are reported (stack traces never go into replies). */
  logError?: (message: string, err: unknown) => void;
}

/** Only the header block of an oversized message is parsed: enough to answer its sender. */
function headerBlock(raw: Buffer): Buffer {
  const end = raw.indexOf('\r\n\r\n');
  const alt = raw.indexOf('\n\n');
  const cut = [end, alt].filter((i) => i >= 0).sort((a, b) => a - b)[0];
  return Buffer.concat([cut === undefined ? raw.subarray(0, 64 * 1024) : raw.subarray(0, cut), Buffer.from('\r\n\r\n')]);
}

function journalKey(mail: IncomingMail, raw: Buffer): string {
  return mail.messageId ? `mid:${mail.messageId.toLowerCase()}` : `sha256:${createHash('sha256').update(raw).digest('hex')}`;
}

const registry = (deps: PipelineDeps): Registry => deps.services ?? builtinServices;

function statusText(deps: PipelineDeps, user: UserConfig): string {
  const counts = deps.journal.counts();
  const configured = Object.keys(deps.config.services);
  return [
    `mailagent ${VERSION} on ${hostname()}`,
    `services: ${configured.join(', ') || 'none'}`,
    `your roles: ${user.roles.join(', ') || 'none'}`,
    `messages answered: ${counts.replied}; replies waiting to be sent: ${counts['reply-pending']}`,
  ].join('\n');
}

async function runCommand(command: Command, deps: PipelineDeps, user: UserConfig): Promise<Step> {
  if (command.kind === 'help') return { text: command.text, outcome: { ok: true, result: { kind: 'text', text: renderHelp(registry(deps), deps.config, user, command.service) } } };
  if (command.kind === 'status') return { text: command.text, outcome: { ok: true, result: { kind: 'text', text: statusText(deps, user) } } };
  const action = registry(deps)[command.service].actions[command.action];
  try {
    const result = await action.run(command.args, { config: deps.config, now: deps.now });
    return { text: command.text, outcome: { ok: true, result } };
  } catch (err) {
    if (err instanceof CommandError) return { text: command.text, outcome: { ok: false, error: err.message } };
    const id = createHash('sha256').update(`${Date.now()}${Math.random()}`).digest('hex').slice(0, 8);
    deps.logError?.(`internal error ${id} in "${command.service} ${command.action}"`, err);
    return { text: command.text, outcome: { ok: false, error: `internal error (reference ${id}); the administrator can find it in the agent's log` } };
  }
}

/**
 * The one place where a message becomes actions: parse → loop and sender checks → journal →
 * validate every line → run → reply. Both `run` and `watch` call this.
 */
export async function processMessage(raw: Buffer, deps: PipelineDeps): Promise<Outcome> {
  const { config } = deps;
  const now = deps.now();
  const audit = (record: Omit<AuditRecord, 'time'>) => deps.audit({ time: now.toISOString(), ...record });
  const tooLarge = raw.length > config.limits.maxMessageBytes;

  let mail: IncomingMail;
  try {
    mail = await parseMail(tooLarge ? headerBlock(raw) : raw);
  } catch (err) {
    audit({ decision: 'dropped', reason: `unparseable message: ${(err as Error).message}` });
    return { kind: 'silent', reason: 'unparseable message' };
  }
  const drop = (reason: string): Outcome => {
    audit({ messageId: mail.messageId, sender: mail.from.map((f) => f.address).join(', '), decision: 'dropped', reason });
    return { kind: 'silent', reason };
  };

  const automatic = automaticReason(mail, config, deps.envelopeSender);
  if (automatic) return drop(automatic);
  const { user, reason } = knownSender(mail, config);
  if (!user) return drop(reason!);
  const sender = mail.from[0].address;
  const base = { messageId: mail.messageId, sender, evidence: 'allowlist' };

  const key = journalKey(mail, raw);
  const previous = deps.journal.get(key);
  if (previous?.state === 'replied') {
    audit({ ...base, decision: 'duplicate', reason: 'already answered' });
    return { kind: 'silent', reason: 'duplicate of a message already answered' };
  }
  if (previous?.state === 'reply-pending' && previous.reply) {
    audit({ ...base, decision: 'resent', reason: 'reply was stored but not yet sent' });
    const { messageId, from, to, raw: bytes } = previous.reply;
    return { kind: 'reply', key, reply: { messageId, envelope: { from, to }, raw: bytes }, decision: 'resent' };
  }

  const reply = async (decision: 'executed' | 'rejected' | 'help', status: string, text: string, attachments: Attachment[] = []): Promise<Outcome> => {
    const message = await composeReply(config, mail, { to: sender, status, text, attachments }, now);
    deps.journal.saveReply(key, { messageId: message.messageId, from: message.envelope.from, to: message.envelope.to, raw: message.raw });
    return { kind: 'reply', key, reply: message, decision };
  };

  if (previous?.state === 'executing' && previous.mutates) {
    audit({ ...base, decision: 'rejected', reason: 'interrupted while executing a change' });
    return reply('rejected', 'outcome unknown',
      'This message was being executed when the agent stopped. It contains commands that change data, so it was not run again.\n' +
      'Check the current state before sending the commands again.\n');
  }

  if (tooLarge) {
    deps.journal.begin(key, { messageId: mail.messageId, sender, mutates: false });
    audit({ ...base, decision: 'rejected', reason: 'message too large' });
    return reply('rejected', 'not processed (message too large)',
      `Your message is ${raw.length} bytes; this agent reads messages up to ${config.limits.maxMessageBytes} bytes. Nothing was run.\n`);
  }

  const services = registry(deps);
  const commandWords = ['help', 'status', ...configuredServices(config, services)];
  // A Subject is only a command when it starts like one; otherwise the sender gets help.
  const lines = requestLines(mail.body, mail.subject).filter(
    (l) => l.line > 0 || commandWords.includes(l.text.split(/\s/)[0].toLowerCase()),
  );
  const request = readRequest(lines, config, user, services);
  const mutates = request.commands.some((c) => c.kind === 'action' && c.mutates);
  deps.journal.begin(key, { messageId: mail.messageId, sender, mutates });

  if (lines.length === 0) {
    audit({ ...base, decision: 'help', reason: 'no command found' });
    return reply('help', 'no command found', `No command was found in your message.\n\n${renderHelp(services, config, user)}\n`);
  }
  if (request.problems.length) {
    audit({ ...base, decision: 'rejected', reason: request.problems.join(' | '), commands: [] });
    const count = request.problems.length;
    return reply('rejected', `not processed (${count} problem${count === 1 ? '' : 's'})`,
      `Nothing was run: every line must be valid before any command runs.\n\n${request.problems.map((p) => `- ${p}`).join('\n')}\n\n` +
      'Send "help" for the list of commands, or "help <service>" for the details of one.\n');
  }

  const steps: Step[] = [];
  const timings: number[] = [];
  for (const command of request.commands) {
    const started = performance.now();
    steps.push(await runCommand(command, deps, user));
    timings.push(Math.round(performance.now() - started));
  }
  const failed = steps.filter((s) => !s.outcome.ok).length;
  audit({
    ...base,
    decision: 'executed',
    commands: steps.map((s, i) => ({ command: s.text, ok: s.outcome.ok, ...(!s.outcome.ok && { error: s.outcome.error }), ms: timings[i] })),
  });
  const { text, attachments } = renderTranscript(steps, config.limits.tableRowsInBody);
  return reply('executed', `processed (${steps.length - failed} ok, ${failed} failed)`, text, attachments);
}
