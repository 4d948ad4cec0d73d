import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Config, Evidence, UserConfig } from '../config/types';
import { CONFIRM_LINE, challengeText, findToken, newToken } from '../auth/confirm';
import { hasDkimEvidence, type DnsResolver } from '../auth/dkim';
import { answersOwnMessage, automaticReason } from '../auth/loops';
import { acceptsConfirmation, baseline, describeEvidence, requiredFor, satisfies, strictest, type Achieved } from '../auth/policy';
import { bodyHash, dateProblem, repeatedField } from '../auth/replay';
import { knownSender } from '../auth/senders';
import { OTP_LINE, checkTotp, type TotpResult } from '../auth/totp';
import { journalKey, parseMail, type IncomingMail } from '../mail/parse';
import { composeReply } from '../mail/reply';
import { Spool } from '../mail/spool';
import { renderHelp } from '../render/help';
import { MAX_LISTED_PROBLEMS, problemList } from '../render/problems';
import { renderTranscript, type Attachment, type Step } from '../render/transcript';
import { services as builtinServices } from '../services/registry';
import type { ActionContext } from '../services/types';
import type { AuditRecord, AuditSink } from '../state/audit';
import type { StateStore } from '../state/store';
import { CommandError } from './errors';
import { queueOwnMail } from './notices';
import { commandLines, commandSource, requestLines, sameRequest, type BodyLine } from './lines';
import type { Outcome } from './outcome';
import { configuredServices, readRequest, type Command, type Registry } from './request';
import { statusText, type AgentStatus } from './status';

export interface PipelineDeps {
  config: Config;
  now: () => Date;
  store: StateStore;
  audit: AuditSink;
  /** Envelope sender given by the MTA, when known ("" for a bounce). */
  envelopeSender?: string;
  /** The service registry; tests may pass their own. */
  services?: Registry;
  /** DNS for DKIM keys; tests pass one serving their own keys. */
  dnsResolver?: DnsResolver;
  /** Where internal errors are reported (stack traces never go into replies). */
  logError?: (message: string, err: unknown) => void;
  /**
   * Set by `watch`, which sends the outbox later: work still running when the reply is due (a
   * long job) is answered in a second mail, queued in the outbox when it ends.
   */
  followUps?: boolean;
  /** Set by `watch`: connection state and counters for the `status` command. */
  agentStatus?: () => AgentStatus;
  /** Stop after authorization: the reply lists what would run, nothing is executed. */
  dryRun?: boolean;
}

type Decision = 'executed' | 'rejected' | 'help' | 'confirm-requested';

/** Only the header block of an oversized message is parsed: enough to answer its sender. */
function headerBlock(raw: Buffer): Buffer {
  const cut = [raw.indexOf('\r\n\r\n'), raw.indexOf('\n\n')].filter((i) => i >= 0).sort((a, b) => a - b)[0];
  return Buffer.concat([cut === undefined ? raw.subarray(0, 64 * 1024) : raw.subarray(0, cut), Buffer.from('\r\n\r\n')]);
}

const QUOTED_TOKEN = /\bconfirm=[0-9a-f]{32}\b/i;

const registry = (deps: PipelineDeps): Registry => deps.services ?? builtinServices;

/** The message a command came from, so that work outliving the reply can be answered in a second mail. */
interface Origin {
  mail: IncomingMail;
  key: string;
  sender: string;
  /** Temporary files of this request (in its spool). */
  tempFile?: () => string;
}

function internalError(deps: PipelineDeps, where: string, err: unknown): string {
  const id = createHash('sha256').update(`${Date.now()}${Math.random()}`).digest('hex').slice(0, 8);
  deps.logError?.(`internal error ${id} in "${where}"`, err);
  return `internal error (reference ${id}); the administrator can find it in the agent's log`;
}

/** Queues the result of handed-over work as a reply threaded under the request ("Re: … — job x run 3 finished"). */
function followUpFor(command: Command, deps: PipelineDeps, origin: Origin | undefined): ActionContext['followUp'] {
  if (!deps.followUps || !origin) return undefined;
  const started = deps.now().getTime();
  return async (title, work) => {
    const outcome: Step['outcome'] = await work.then(
      (result) => ({ ok: true as const, result }),
      (err) => ({ ok: false as const, error: err instanceof CommandError ? err.message : internalError(deps, command.text, err) }),
    );
    try {
      const { text, attachments } = renderTranscript([{ text: command.text, outcome }], deps.config.limits.tableRowsInBody);
      const now = deps.now();
      const status = `${title} ${outcome.ok ? 'finished' : 'failed'}`;
      const message = await composeReply(deps.config, origin.mail, { to: origin.sender, status, text, attachments }, now);
      if (!(await queueOwnMail(deps.store, `${origin.key}#${title}`, message, { messageId: origin.mail.messageId, sender: origin.sender, bodyHash: 'follow-up' }, now))) {
        // Its result mail exists already (queued or sent): a second one would only repeat it.
        deps.logError?.(`could not queue the follow-up mail for "${command.text}"`, new Error(`a mail "${title}" for this request was queued already`));
        return;
      }
      deps.audit({
        time: now.toISOString(),
        messageId: origin.mail.messageId,
        sender: origin.sender,
        decision: 'follow-up',
        reason: status,
        commands: [{ command: command.text, ok: outcome.ok, ...(!outcome.ok && { error: outcome.error }), ms: now.getTime() - started }],
      });
    } catch (err) {
      deps.logError?.(`could not queue the follow-up mail for "${command.text}"`, err);
    }
  };
}

async function runCommand(command: Command, deps: PipelineDeps, user: UserConfig, origin?: Origin): Promise<Step> {
  const text = (t: string): Step => ({ text: command.text, outcome: { ok: true, result: { kind: 'text', text: t } } });
  if (command.kind === 'help') return text(renderHelp(registry(deps), deps.config, user, command.service));
  if (command.kind === 'status') return text(await statusText(deps.config, deps.store, user, deps.agentStatus?.()));
  const action = registry(deps)[command.service].actions[command.action];
  try {
    const context = { config: deps.config, now: deps.now, user: user.address, attachments: origin?.mail.attachments ?? [], tempFile: origin?.tempFile, followUp: followUpFor(command, deps, origin) };
    const result = await action.run(command.args, context);
    return { text: command.text, outcome: { ok: true, result } };
  } catch (err) {
    const error = err instanceof CommandError ? err.message : internalError(deps, `${command.service} ${command.action}`, err);
    return { text: command.text, outcome: { ok: false, error } };
  }
}

/** PGP evidence for users with a registered key; only the signed text is read then. */
async function pgpEvidence(raw: Buffer, user: UserConfig): Promise<{ ok: boolean; signedText?: string }> {
  if (!user.pgpKey) return { ok: false };
  const { verifyPgp } = require('../auth/pgp') as typeof import('../auth/pgp');
  let key: string;
  try {
    key = readFileSync(user.pgpKey, 'utf8');
  } catch {
    return { ok: false };
  }
  const result = await verifyPgp(raw, key);
  return result.ok ? { ok: true, signedText: result.signedText } : { ok: false };
}

async function totpEvidence(otpLines: BodyLine[], deps: PipelineDeps, user: UserConfig, now: Date): Promise<TotpResult | 'absent'> {
  if (otpLines.length === 0) return 'absent';
  if (otpLines.length > 1) return 'invalid';
  const { readTotpSecret } = require('../auth/secrets-file') as typeof import('../auth/secrets-file');
  const secret = readTotpSecret(deps.config.secretsFile, user.address.toLowerCase());
  return checkTotp(OTP_LINE.exec(otpLines[0].text)![1], secret, user.address, now, deps.store);
}

const listEvidence = (a: Achieved): string[] => ['allowlist', ...(['dkim', 'totp', 'pgp', 'confirm'] as const).filter((k) => a[k])];

/**
 * The one place where a message becomes actions: parse → loops → sender → replay → rate →
 * evidence → validate every line → authorize → run → reply. Both `run` and `watch` call this.
 */
export async function processMessage(raw: Buffer, deps: PipelineDeps): Promise<Outcome> {
  // The request's attachments live in the spool only while it is handled.
  const spool = Spool.forState(deps.config.state.path);
  try {
    return await handleMessage(raw, deps, spool);
  } finally {
    spool.remove();
  }
}

async function handleMessage(raw: Buffer, deps: PipelineDeps, spool: Spool): Promise<Outcome> {
  const { config, store } = deps;
  const now = deps.now();
  const audit = (record: Omit<AuditRecord, 'time'>) => deps.audit({ time: now.toISOString(), ...record });
  const tooLarge = raw.length > config.limits.maxMessageBytes;

  let mail: IncomingMail;
  try {
    mail = await parseMail(tooLarge ? headerBlock(raw) : raw, { spool, maxAttachmentBytes: config.limits.maxAttachmentBytes });
  } catch (err) {
    audit({ decision: 'dropped', reason: `unparseable message: ${(err as Error).message}` });
    return { kind: 'silent', reason: 'unparseable message' };
  }
  const drop = (reason: string, evidence?: string[]): Outcome => {
    audit({ messageId: mail.messageId, sender: mail.from.map((f) => f.address).join(', '), evidence, decision: 'dropped', reason });
    return { kind: 'silent', reason };
  };

  // Silence first: nothing below may answer automatic mail, strangers or replays.
  const automatic = automaticReason(mail, config, deps.envelopeSender);
  if (automatic) return drop(automatic);
  const { user, reason } = knownSender(mail, config);
  if (!user) return drop(reason!);
  const stale = repeatedField(mail) ?? dateProblem(mail, now, config);
  if (stale) return drop(stale);

  const sender = mail.from[0].address;
  const key = journalKey(mail.messageId, raw);
  const hash = bodyHash(mail);
  // Keys written before Message-IDs kept the case of their local part folded the whole id.
  const legacyKey = mail.messageId ? `mid:${mail.messageId.toLowerCase()}` : key;
  const previous = (await store.get(key)) ?? (legacyKey === key ? undefined : await store.get(legacyKey));
  if (previous && previous.bodyHash !== hash) return drop('Message-ID reused with different content (possible replay)');
  if (previous?.state === 'replied') {
    audit({ messageId: mail.messageId, sender, decision: 'duplicate', reason: 'already answered' });
    return { kind: 'silent', reason: 'duplicate of a message already answered' };
  }
  if (previous?.state === 'reply-pending' && previous.reply) {
    audit({ messageId: mail.messageId, sender, decision: 'resent', reason: 'reply was stored but not yet sent' });
    const { messageId, from, to, raw: bytes } = previous.reply;
    return { kind: 'reply', key, reply: { messageId, envelope: { from, to }, raw: bytes }, decision: 'resent' };
  }

  // Evidence: what the message proves about its sender.
  const dkim = tooLarge ? false : await hasDkimEvidence(raw, mail, config, deps.dnsResolver);
  const pgp = tooLarge ? { ok: false } : await pgpEvidence(raw, user);
  const body = pgp.ok ? pgp.signedText! : mail.body;
  // One line past the cap (and room for the otp= and confirm= lines) is enough to see "too many".
  const readingLimits = { maxLines: config.limits.maxCommands + 3, maxLineChars: config.limits.maxLineBytes + 1 };
  const allLines = requestLines(body, pgp.ok ? '' : mail.subject, readingLimits);
  const otpLines = allLines.filter((l) => OTP_LINE.test(l.text));
  const achieved: Achieved = { dkim, totp: false, pgp: pgp.ok, confirm: false };
  const floor = baseline(config, user);
  // Checking a one-time code spends it. When the floor needs the code it is checked now (a
  // message below the floor must not reach the journal); otherwise only once this handling has
  // claimed the message, so that a twin handled at the same time cannot spend the code and
  // leave the claim to a handling whose code then looks reused.
  let totp = satisfies(achieved, floor) ? undefined : await totpEvidence(otpLines, deps, user, now);
  achieved.totp = totp === 'ok';
  const evidence = listEvidence(achieved);
  if (!satisfies(achieved, floor)) return drop(`missing ${floor} evidence`, evidence);

  const hour = now.getTime() - 3_600_000;
  if ((await store.countEvents('message', sender.toLowerCase(), hour)) >= config.security.messagesPerUserPerHour) {
    return drop(`rate limit: more than ${config.security.messagesPerUserPerHour} messages in an hour`, evidence);
  }
  await store.recordEvent('message', sender.toLowerCase(), now.getTime());

  const base = { messageId: mail.messageId, sender, evidence };
  // Compare-and-set from the attempt read above: of two handlings of this message at the same
  // time (delivered twice, an MTA retry racing the first try) exactly one goes on; the other
  // stays silent and the winner answers.
  let attempt = previous?.attempt ?? 0;
  const claim = async (mutating: boolean): Promise<boolean> => {
    if (!(await store.begin(key, { messageId: mail.messageId, sender, bodyHash: hash, mutates: mutating }, { attempt }))) return false;
    attempt++;
    return true;
  };
  const handledElsewhere = (): Outcome => {
    audit({ ...base, decision: 'duplicate', reason: 'being handled by another process' });
    return { kind: 'silent', reason: 'the same message is being handled by another process' };
  };

  const reply = async (decision: Decision, status: string, text: string, attachments: Attachment[] = []): Promise<Outcome> => {
    if ((await store.countEvents('reply', undefined, hour)) >= config.security.repliesPerHour) {
      audit({ ...base, decision: 'dropped', reason: `global reply cap of ${config.security.repliesPerHour} per hour reached` });
      return { kind: 'silent', reason: 'reply cap reached' };
    }
    const message = await composeReply(config, mail, { to: sender, status, text, attachments }, now);
    // Only the handling holding the latest attempt answers: one that took over meanwhile (it
    // read this one's executing entry as a crash's) has the reply to send.
    if (!(await store.saveReply(key, { messageId: message.messageId, from: message.envelope.from, to: message.envelope.to, raw: message.raw }, { attempt }))) {
      return handledElsewhere();
    }
    await store.recordEvent('reply', sender.toLowerCase(), now.getTime());
    return { kind: 'reply', key, reply: message, decision };
  };
  const reject = (status: string, why: string, text: string) => {
    audit({ ...base, decision: 'rejected', reason: why });
    return reply('rejected', status, text);
  };

  if (previous?.state === 'executing' && previous.mutates) {
    if (!(await claim(true))) return handledElsewhere();
    return reject('outcome unknown', 'interrupted while executing a change',
      'This message was being executed when the agent stopped. It contains commands that change data, so it was not run again.\n' +
      'Check the current state before sending the commands again.\n');
  }
  if (!(await claim(false))) return handledElsewhere();
  if (totp === undefined) {
    totp = await totpEvidence(otpLines, deps, user, now);
    achieved.totp = totp === 'ok';
    base.evidence = listEvidence(achieved);
  }
  if (tooLarge) {
    return reject('not processed (message too large)', 'message too large',
      `Your message is ${raw.length} bytes; this agent reads messages up to ${config.limits.maxMessageBytes} bytes. Nothing was run.\n`);
  }
  if (mail.unreadable && !pgp.ok) {
    return reject('not processed (unreadable message)', `unreadable: ${mail.unreadable}`,
      `Nothing was run: your message could not be read: ${mail.unreadable}.\nSend the commands as plain text.\n`);
  }
  // What the sender saw (the HTML) must be what is read (the plain part): hidden commands are refused.
  if (mail.htmlAlternative !== undefined && !pgp.ok) {
    if (!sameRequest(allLines, requestLines(mail.htmlAlternative, mail.subject, readingLimits))) {
      return reject('not processed (plain and HTML versions differ)', 'the plain-text and HTML parts differ',
        'Nothing was run: the plain-text and HTML versions of your message differ, so it is not clear which commands you meant.\n' +
        'Send the commands as plain text only, or make sure both versions say the same.\n');
    }
  }

  // A reply carrying a confirmation token releases the commands the token was issued for.
  const services = registry(deps);
  let lines = allLines.filter((l) => !OTP_LINE.test(l.text) && !CONFIRM_LINE.test(l.text));
  const commandWords = ['help', 'status', ...configuredServices(config, services)];
  const startsLikeCommand = (l: BodyLine) => commandWords.includes(l.text.split(/\s/)[0].toLowerCase());
  const token = findToken(allLines);
  if (token) {
    const pending = token === 'malformed' ? undefined : await store.takeConfirmation(token, sender.toLowerCase());
    // "Yes, go ahead" is fine in a confirmation; other commands are not.
    const own = lines.filter((l) => l.line > 0 && startsLikeCommand(l)).map(commandSource);
    const problem = !pending || pending.sender !== sender.toLowerCase() || pending.expiresAt < now.getTime()
      ? 'the confirmation token is unknown, expired or already used'
      : own.length && own.join('\n') !== pending.commands.join('\n')
        ? 'the confirmation token was issued for a different list of commands'
        : undefined;
    if (problem) return reject('not processed (confirmation refused)', problem, `Nothing was run: ${problem}.\nSend the commands again to get a new confirmation request.\n`);
    // Read again as written (a here-document spans several lines).
    lines = commandLines(pending!.commands.join('\n'));
    achieved.confirm = true;
    base.evidence = listEvidence(achieved);
  }

  // A token only in the quoted text is not read; a sender who meant to confirm is told where it goes.
  const quotedTokenHint = !token && QUOTED_TOKEN.test(body)
    ? '\nThe confirm= line is only in the quoted part of your message, which is not read: to confirm, write it in your own text, above the quote.\n'
    : '';
  // A Subject is only a command when it starts like one; otherwise the sender gets help.
  lines = lines.filter((l) => l.line > 0 || startsLikeCommand(l));
  // An answer to one of our replies that asks for nothing (an auto-responder that sends none of
  // the usual headers, or a "thanks"): another reply could start a loop.
  if (!token && answersOwnMessage(mail, config) && !lines.some(startsLikeCommand)) {
    audit({ ...base, decision: 'dropped', reason: 'a reply to our message without a command' });
    return { kind: 'silent', reason: 'a reply to our message without a command (an auto-responder?)' };
  }
  if (lines.length === 0) {
    audit({ ...base, decision: 'help', reason: 'no command found' });
    return reply('help', 'no command found', `No command was found in your message.\n${quotedTokenHint}\n${renderHelp(services, config, user)}\n`);
  }
  const request = readRequest(lines, config, user, services, { attachments: mail.attachments });
  if (request.problems.length) {
    const count = request.problems.length;
    return reject(`not processed (${count} problem${count === 1 ? '' : 's'})`, request.problems.slice(0, MAX_LISTED_PROBLEMS).join(' | '),
      `Nothing was run: every line must be valid before any command runs.\n\n${problemList(request.problems)}\n\n` +
      'Send "help" for the list of commands, or "help <service>" for the details of one.\n' + quotedTokenHint);
  }

  // Authentication strong enough for every command, or nothing runs.
  if (totp === 'invalid' || totp === 'reused' || totp === 'not-enrolled') {
    const why = totp === 'not-enrolled' ? 'no one-time code is enrolled for you' : 'the one-time code was not accepted (wrong, expired or already used)';
    return reject('not processed (one-time code)', why, `Nothing was run: ${why}.\n`);
  }
  const requirements: Evidence[] = request.commands.map((c) => (c.kind === 'action' ? requiredFor(config, user, c.service, c.action, c.mutates) : floor));
  const required = strictest(requirements);
  if (!satisfies(achieved, required)) {
    const needing = request.commands.filter((_, i) => !satisfies(achieved, requirements[i])).map((c) => c.text);
    // A confirmation reply does not carry the request's attachments: such a request needs its proof up front.
    const attaching = request.commands.filter((c) => c.kind === 'action' && c.usesAttachments).map((c) => `  ${c.text}`);
    if (acceptsConfirmation(required) && !token && attaching.length) {
      return reject('not processed (more proof needed)', `missing ${required} evidence (attachments cannot be confirmed)`,
        `Nothing was run. These commands use files attached to your message, which a confirmation reply cannot carry:\n\n${attaching.join('\n')}\n\n` +
        'Send the request again with a one-time code (otp=…) or a PGP signature.\n');
    }
    if (acceptsConfirmation(required) && !token) {
      const fresh = newToken();
      await store.saveConfirmation({ token: fresh, sender: sender.toLowerCase(), commands: request.commands.map(commandSource), expiresAt: now.getTime() + config.security.confirmMinutes * 60_000 });
      audit({ ...base, decision: 'confirm-requested', reason: `needs ${required}: ${needing.join(' | ')}` });
      return reply('confirm-requested', 'confirmation needed', `${challengeText(fresh, request.commands.map(commandSource), config.security.confirmMinutes)}\n`);
    }
    return reject('not processed (more proof needed)', `missing ${required} evidence`,
      `Nothing was run. These commands need ${describeEvidence(required)}:\n\n${needing.map((c) => `  ${c}`).join('\n')}\n`);
  }

  if (deps.dryRun) {
    const list = request.commands.map((c) => `  ${c.text}`).join('\n');
    audit({ ...base, decision: 'executed', reason: 'dry run: nothing executed' });
    return reply('executed', `dry run (${request.commands.length} would run)`, `Dry run: authorized, nothing was executed. These commands would run:\n\n${list}\n`);
  }
  const mutates = request.commands.some((c) => c.kind === 'action' && c.mutates);
  // The entry already says executing, read-only: only a change must be recorded before it runs.
  // Still a compare-and-set: a handling that took over meanwhile (it read executing, read-only,
  // as left by a crash) must not run the change a second time.
  if (mutates && !(await claim(true))) return handledElsewhere();
  const steps: Step[] = [];
  const timings: number[] = [];
  for (const command of request.commands) {
    // Not performance.now(): that global loads perf_hooks, a cost at every start of `run`.
    const started = process.hrtime.bigint();
    steps.push(await runCommand(command, deps, user, { mail, key, sender, tempFile: () => spool.nextFile() }));
    timings.push(Math.round(Number(process.hrtime.bigint() - started) / 1e6));
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
