import type { ImapFlow, SearchObject } from 'imapflow';
import type { Config } from '../../config/types';
import { CommandError } from '../../core/errors';
import { convertArgs } from '../args';
import type { Action, Prepared, Result } from '../types';
import { accountArg, accountNamed, accountProblem, folderArg, folderProblem, isMissingFolder, maxMessageBytes } from './accounts';
import { withImap, type NamedAccount } from './clients';
import { firstPlainText, fitsMessagePart, formatAddresses, formatDate, oneLine } from './message';

const MAX_LIST = 200;
const MAX_TEXT_CHARS = 20_000;

/** Arguments converted, the account and the folder checked: every problem at once. */
function prepareRead(action: Action) {
  return (args: Record<string, string>, config: Config): Prepared => {
    const converted = convertArgs(args, action.args);
    const problems = converted.ok ? [] : [...converted.problems];
    if (args.account !== undefined) {
      const problem = accountProblem(config, args.account);
      if (problem) problems.push(problem);
    }
    const folder = folderProblem(args.folder);
    if (folder) problems.push(folder);
    if (args.from !== undefined && /[\u0000-\u001f\u007f]/.test(args.from)) problems.push('from: contains a control character');
    return problems.length || !converted.ok ? { ok: false, problems } : converted;
  };
}

/**
 * Opens the folder read-only (EXAMINE): nothing a read does can change a flag, not even \Recent.
 * A missing folder is the sender's mistake, said as such.
 */
async function openFolder(client: ImapFlow, named: NamedAccount, folder: string): Promise<{ release(): void }> {
  try {
    return await client.getMailboxLock(folder, { readOnly: true });
  } catch (err) {
    if (isMissingFolder(err)) throw new CommandError(`account ${named.name} has no folder "${folder}" (mail folders ${named.name} lists them)`);
    throw err;
  }
}

const list: Action = {
  summary: 'list messages of a folder, newest first, optionally only unseen, from someone, or since a day',
  example: 'mail list ops unseen=yes since=2026-11-01 limit=10',
  args: {
    account: accountArg,
    folder: folderArg,
    unseen: { type: 'bool', description: 'yes: only unseen messages; no: only seen ones' },
    from: { type: 'string', maxLength: 200, description: 'only messages whose From contains this text' },
    since: { type: 'date', description: 'only messages received on or after this day (YYYY-MM-DD)' },
    limit: { type: 'int', min: 1, max: MAX_LIST, default: 20, description: `at most this many messages (1-${MAX_LIST})` },
  },
  positional: ['account'],
  mutates: false,
  prepare: (args, config) => prepareRead(list)(args, config),
  run: async (args, ctx): Promise<Result> => {
    const named = accountNamed(ctx.config, args.account);
    const folder = String(args.folder);
    const limit = Number(args.limit);
    const query: SearchObject = {};
    if (args.unseen !== null) query.seen = args.unseen === 0;
    if (args.from !== null) query.from = String(args.from);
    if (args.since !== null) query.since = new Date(`${args.since}T00:00:00Z`);
    if (Object.keys(query).length === 0) query.all = true;
    return withImap(ctx.config, named, maxMessageBytes(ctx.config), async (client) => {
      const lock = await openFolder(client, named, folder);
      try {
        const found = await client.search(query, { uid: true });
        if (found === false) throw new CommandError(`account ${named.name}: the server refused to search ${folder}`);
        // Newest first: the highest UIDs arrived last.
        const uids = [...found].sort((a, b) => b - a);
        const chosen = uids.slice(0, limit);
        const rows: unknown[][] = [];
        if (chosen.length) {
          const messages = [];
          for await (const m of client.fetch(chosen.join(','), { uid: true, flags: true, envelope: true, internalDate: true, size: true }, { uid: true })) messages.push(m);
          messages.sort((a, b) => b.uid - a.uid);
          for (const m of messages) {
            const flags = [...(m.flags ?? [])].filter((f) => f !== '\\Recent').sort().join(' ');
            const date = m.internalDate instanceof Date ? m.internalDate : m.internalDate ? new Date(m.internalDate) : undefined;
            rows.push([m.uid, formatDate(date), formatAddresses(m.envelope?.from), oneLine(m.envelope?.subject).slice(0, 200), m.size ?? '', flags]);
          }
        }
        const notes = ['newest first; date = when the message arrived'];
        if (uids.length > chosen.length) notes.push(`the newest ${chosen.length} of ${uids.length} matching messages; limit=N shows more (at most ${MAX_LIST})`);
        return { kind: 'table', columns: ['uid', 'date', 'from', 'subject', 'size', 'flags'], rows, note: notes.join('; '), name: `mail-${named.name}` };
      } finally {
        lock.release();
      }
    });
  },
};

const get: Action = {
  summary: 'show one message (headers and text) and attach it whole as <uid>.eml; it stays unread',
  example: 'mail get ops 4711 folder=Archive',
  args: {
    account: accountArg,
    uid: { type: 'int', required: true, min: 1, max: 4294967295, description: 'the message (its uid, as mail list shows it)' },
    folder: folderArg,
  },
  positional: ['account', 'uid'],
  mutates: false,
  prepare: (args, config) => prepareRead(get)(args, config),
  run: async (args, ctx): Promise<Result> => {
    const named = accountNamed(ctx.config, args.account);
    const folder = String(args.folder);
    const uid = Number(args.uid);
    const max = maxMessageBytes(ctx.config);
    return withImap(ctx.config, named, max, async (client) => {
      const lock = await openFolder(client, named, folder);
      try {
        const meta = await client.fetchOne(String(uid), { uid: true, size: true, flags: true, envelope: true, internalDate: true }, { uid: true });
        if (!meta) throw new CommandError(`no message with uid ${uid} in ${folder} of account ${named.name} (mail list ${named.name} shows the uids)`);
        const tooLarge = (size: number) =>
          new CommandError(`message ${uid} is ${size} bytes, larger than the ${max} bytes mail get attaches (services.mail.maxMessageBytes); nothing was downloaded`);
        // The size first: a message over the limit is never downloaded.
        if ((meta.size ?? 0) > max) throw tooLarge(meta.size!);
        // imapflow asks for BODY.PEEK[]: reading does not set \Seen (the folder is read-only anyway).
        const fetched = await client.fetchOne(String(uid), { uid: true, source: { maxLength: max + 1 } }, { uid: true });
        const raw = fetched ? fetched.source : undefined;
        if (!raw) throw new CommandError(`message ${uid} in ${folder} of account ${named.name} is gone (expunged meanwhile?)`);
        if (raw.length > max) throw new CommandError(`message ${uid} is larger than the ${max} bytes mail get attaches (services.mail.maxMessageBytes), although the server announced ${meta.size} bytes`);

        const envelope = meta.envelope ?? {};
        const lines = [
          `Date: ${formatDate(envelope.date)}`,
          `From: ${formatAddresses(envelope.from)}`,
          `To: ${formatAddresses(envelope.to)}`,
          ...(envelope.cc?.length ? [`Cc: ${formatAddresses(envelope.cc)}`] : []),
          `Subject: ${oneLine(envelope.subject)}`,
        ];
        const flags = [...(meta.flags ?? [])].filter((f) => f !== '\\Recent').sort();
        lines.push(`(uid ${uid} in ${folder}, ${raw.length} bytes${flags.length ? `, flags ${flags.join(' ')}` : ''})`, '');
        const text = (await firstPlainText(raw))?.replace(/\s+$/, '');
        if (text === undefined) lines.push(`(the message has no text/plain part; it is attached whole as ${uid}.eml)`);
        else if (text.length > MAX_TEXT_CHARS) lines.push(text.slice(0, MAX_TEXT_CHARS), '', `[… the text is cut at ${MAX_TEXT_CHARS} of ${text.length} characters; the whole message is attached as ${uid}.eml]`);
        else lines.push(text);
        // message/rfc822 may not be base64-encoded: only a message that can travel as it is goes that way.
        const asMessage = fitsMessagePart(raw);
        if (!asMessage) lines.push('', `(${uid}.eml is attached as application/octet-stream: it has line ends or line lengths a message/rfc822 part cannot carry unchanged)`);
        return {
          kind: 'files',
          text: lines.join('\n'),
          files: [{ filename: `${uid}.eml`, contentType: asMessage ? 'message/rfc822' : 'application/octet-stream', content: raw }],
        };
      } finally {
        lock.release();
      }
    });
  },
};

const folders: Action = {
  summary: 'list the folders of an account with their message and unseen counts',
  example: 'mail folders ops',
  args: { account: accountArg },
  positional: ['account'],
  mutates: false,
  prepare: (args, config) => prepareRead(folders)(args, config),
  run: async (args, ctx): Promise<Result> => {
    const named = accountNamed(ctx.config, args.account);
    return withImap(ctx.config, named, maxMessageBytes(ctx.config), async (client) => {
      const boxes = await client.list({ statusQuery: { messages: true, unseen: true } });
      const inboxFirst = (path: string) => (path.toUpperCase() === 'INBOX' ? '' : path);
      const rows = boxes
        .sort((a, b) => inboxFirst(a.path).localeCompare(inboxFirst(b.path)))
        .map((box) => [oneLine(box.path), box.specialUse ?? '', box.status?.messages ?? '', box.status?.unseen ?? '']);
      return { kind: 'table', columns: ['folder', 'special use', 'messages', 'unseen'], rows, name: `mail-${named.name}-folders` };
    });
  },
};

export const readActions = { list, get, folders };
