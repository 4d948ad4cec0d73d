import { randomUUID } from 'node:crypto';
import type { Config } from '../../config/types';
import { CommandError } from '../../core/errors';
import { MAX_HEREDOC_CHARS } from '../../core/lines';
import { convertArgs } from '../args';
import type { Action, RequestAttachment, RequestInfo } from '../types';
import { accountArg, accountNamed, accountProblem, plural } from './accounts';
import { smtpFailure, smtpTransport } from './clients';

const MAX_RECIPIENTS = 50;
const ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/**
 * One plain addr-spec: dot-atom local part, host name domain. No display name, no quoted local
 * part, no comment, no group, no route, no whitespace or line break: nothing a header could be
 * bent with.
 */
const ADDRESS = new RegExp(`^${ATEXT}(?:\\.${ATEXT})*@${LABEL}(?:\\.${LABEL})*$`);

const shown = (value: string): string => JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}…` : value);

/** A comma-separated list of plain addresses; each problem names the argument and the address. */
function addressList(key: string, raw: string | undefined, problems: string[]): string[] {
  if (raw === undefined) return [];
  const out: string[] = [];
  for (const item of raw.split(',').map((s) => s.trim())) {
    if (item === '') problems.push(`${key}=: an empty address (separate addresses with commas)`);
    else if (!ADDRESS.test(item) || item.length > 254 || item.indexOf('@') > 64) {
      problems.push(`${key}: ${shown(item)} is not a plain address like name@example.com (one address each, no display name)`);
    } else out.push(item);
  }
  return out;
}

/** The request mail's attachments named in attach=, each exactly once among them, kept and within the limit. */
function attachmentProblems(names: string[], attachments: RequestAttachment[], config: Config): string[] {
  const problems: string[] = [];
  const available = [...new Set(attachments.map((a) => a.filename))];
  const list = available.length ? available.map((n) => JSON.stringify(n)).join(', ') : 'none';
  const seen = new Set<string>();
  for (const name of names) {
    if (name === '') {
      problems.push('attach=: an empty name (separate names with commas)');
      continue;
    }
    if (seen.has(name)) problems.push(`attach: ${shown(name)} is named twice`);
    seen.add(name);
    const matching = attachments.filter((a) => a.filename === name);
    if (matching.length === 0) problems.push(`attach: this mail has no attachment named ${shown(name)} (its attachments: ${list})`);
    else if (matching.length > 1) problems.push(`attach: this mail has ${matching.length} attachments named ${shown(name)}; attach each under its own name`);
    else if (matching[0].storeError) problems.push(`attach: ${shown(name)} could not be stored for this request (${matching[0].storeError})`);
    else if (matching[0].tooLarge || !matching[0].path) {
      problems.push(`attach: ${shown(name)} is ${matching[0].size} bytes, over the limit of ${config.limits.maxAttachmentBytes} bytes per attachment (limits.maxAttachmentBytes)`);
    }
  }
  return problems;
}

export const send: Action = {
  summary: 'send a mail from an account; the text as body<<END … END, files attached to your request as attach=',
  example: 'mail send ops to=team@example.com subject="Nightly report" attach=report.pdf body<<END\nHi all,\nthe nightly report is attached.\nEND',
  args: {
    account: accountArg,
    to: { type: 'string', required: true, maxLength: 4000, description: 'recipients, comma-separated plain addresses' },
    cc: { type: 'string', maxLength: 4000, description: 'copy recipients, comma-separated plain addresses' },
    subject: { type: 'string', required: true, maxLength: 250, description: 'the subject, in double quotes' },
    body: {
      type: 'string',
      required: true,
      maxLength: MAX_HEREDOC_CHARS,
      description: 'the text: write body<<END, then the lines, then a line END',
    },
    attach: { type: 'string', maxLength: 4000, description: 'names of files attached to this request mail, comma-separated' },
  },
  positional: ['account'],
  mutates: true,
  prepare: (args, config, request?: RequestInfo) => {
    const converted = convertArgs(args, send.args);
    const problems = converted.ok ? [] : [...converted.problems];
    if (args.account !== undefined) {
      const problem = accountProblem(config, args.account);
      if (problem) problems.push(problem);
    }
    const to = addressList('to', args.to, problems);
    const cc = addressList('cc', args.cc, problems);
    const seen = new Set<string>();
    for (const address of [...to, ...cc]) {
      if (seen.has(address.toLowerCase())) problems.push(`${address} is given twice among to= and cc=`);
      seen.add(address.toLowerCase());
    }
    if (to.length + cc.length > MAX_RECIPIENTS) problems.push(`too many recipients: ${to.length + cc.length} (at most ${MAX_RECIPIENTS})`);
    if (args.subject !== undefined && /[\u0000-\u001f\u007f]/.test(args.subject)) problems.push('subject: contains a control character');
    if (args.body !== undefined && /[\u0000-\u0008\u000b-\u001f\u007f]/.test(args.body)) problems.push('body: contains a control character (only line breaks and tabs may)');
    const attach = args.attach === undefined ? [] : args.attach.split(',').map((s) => s.trim());
    problems.push(...attachmentProblems(attach, request?.attachments ?? [], config));
    if (problems.length || !converted.ok) return { ok: false, problems };
    return { ok: true, args: { account: args.account, to, cc, subject: args.subject, body: args.body, attach }, usesAttachments: attach.length > 0 };
  },
  run: async (args, ctx) => {
    const named = accountNamed(ctx.config, args.account);
    const to = args.to as string[];
    const cc = args.cc as string[];
    const files = (args.attach as string[]).map((name) => {
      const matching = (ctx.attachments ?? []).filter((a) => a.filename === name);
      if (matching.length !== 1 || !matching[0].path) throw new CommandError(`attach: the attachment ${shown(name)} of this mail is not available`);
      return matching[0];
    });
    const { account } = named;
    const messageId = `<${randomUUID()}@${account.address.slice(account.address.lastIndexOf('@') + 1)}>`;
    const { transport, password } = smtpTransport(ctx.config, named);
    let rejected: string[] = [];
    try {
      const info = await transport.sendMail({
        from: account.name ? { name: account.name, address: account.address } : account.address,
        to,
        ...(cc.length && { cc }),
        subject: String(args.subject),
        text: String(args.body),
        messageId,
        date: ctx.now(),
        ...(ctx.user && { headers: { 'X-Mailagent-Requested-By': ctx.user } }),
        // Streamed from the spool file: the attachment is never held in memory whole.
        attachments: files.map((f) => ({ filename: f.filename, path: f.path!, contentType: f.contentType })),
      });
      rejected = ((info.rejected ?? []) as (string | { address: string })[]).map((r) => (typeof r === 'string' ? r : r.address));
    } catch (err) {
      throw smtpFailure(err, named, password);
    } finally {
      transport.close();
    }
    const names = files.length ? ` (${files.map((f) => f.filename).join(', ')})` : '';
    const refused = rejected.length ? `; the server did not accept ${rejected.join(', ')}` : '';
    return {
      kind: 'text',
      text: `sent to ${to.join(', ')}${cc.length ? ` (cc ${cc.join(', ')})` : ''} from ${account.address}, Message-ID ${messageId}, ${plural(files.length, 'attachment')}${names}${refused}`,
    };
  },
};
