import { accessSync, constants as fsConstants, realpathSync } from 'node:fs';
import { CommandError } from '../../core/errors';
import type { Config, FilesServiceConfig, FilesShare } from '../../config/types';
import type { Problem } from '../../config/schema-check';
import { convertArgs, ownValue } from '../args';
import type { Action, ArgSpec, Prepared, ProbeResult, RequestAttachment, RequestInfo, Result, Service } from '../types';
import type { Entry, ShareAdapter } from './adapter';
import { checkPath } from './paths';

/** The host gateway's file transfer: local folders and SFTP hosts, each share read-write or read-only. */

const DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024;
const SHARE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function section(config: Config): FilesServiceConfig {
  const cfg = config.services.files;
  if (!cfg) throw new CommandError('the files service is not configured');
  return cfg;
}

const shareNames = (config: Config) => Object.keys(config.services.files?.shares ?? {});

function adapterFor(config: Config, name: string, share: FilesShare): ShareAdapter {
  if (share.sftp) {
    const { SftpShareAdapter } = require('./sftp') as typeof import('./sftp');
    return new SftpShareAdapter(share.sftp, config.file, `services.files.shares.${name}.sftp`);
  }
  const { LocalShare } = require('./local') as typeof import('./local');
  return new LocalShare(share.path!);
}

/** Runs one operation on a share with a fresh adapter, closed afterwards. */
async function onShare<T>(config: Config, name: string, work: (adapter: ShareAdapter) => Promise<T>): Promise<T> {
  const share = ownValue(section(config).shares, name);
  if (!share) throw new CommandError(`no share named "${name}"`);
  const adapter = adapterFor(config, name, share);
  try {
    return await work(adapter);
  } finally {
    await adapter.close();
  }
}

const shareArg: ArgSpec = { type: 'string', required: true, maxLength: 100, description: 'a configured share' };
const pathArg = (required: boolean): ArgSpec => ({ type: 'string', required, maxLength: 4096, description: 'a path inside the share, folders separated by /' });

/**
 * Checks what a command names before anything in the message runs: the share (and that it is
 * writable for a change), the path as text, and for put the attachment it takes.
 */
function prepareFiles(action: Action, options: { writes?: boolean; allowRoot?: boolean; attachment?: boolean } = {}) {
  return (given: Record<string, string>, config: Config, request?: RequestInfo): Prepared => {
    const converted = convertArgs(given, action.args);
    if (!converted.ok) return converted;
    const problems: string[] = [];
    const name = String(converted.args.share);
    const share = ownValue(config.services.files?.shares, name);
    if (!share) return { ok: false, problems: [`no share named "${name}" (shares: ${shareNames(config).join(', ') || 'none'})`] };
    if (options.writes && share.readOnly) problems.push(`share ${name} is read-only`);
    const path = checkPath(converted.args.path === null ? '' : String(converted.args.path), { allowRoot: options.allowRoot });
    if (!path.ok) problems.push(path.problem);
    let attachment: RequestAttachment | undefined;
    if (options.attachment) {
      const found = pickAttachment(request?.attachments ?? [], converted.args.attach === null ? undefined : String(converted.args.attach));
      if (typeof found === 'string') problems.push(`put ${name}:${String(converted.args.path)}: ${found}`);
      else attachment = found;
    }
    if (problems.length) return { ok: false, problems };
    const args = { ...converted.args, parts: path.ok ? path.parts : [] };
    return attachment ? { ok: true, args: { ...args, attachmentIndex: request!.attachments.indexOf(attachment) }, usesAttachments: true } : { ok: true, args };
  };
}

/** The attachment `attach=` names, or the only one; a problem when that is not one usable file. */
function pickAttachment(attachments: RequestAttachment[], name: string | undefined): RequestAttachment | string {
  const names = attachments.map((a) => a.filename).join(', ') || 'none';
  const matching = name === undefined ? attachments : attachments.filter((a) => a.filename === name);
  if (name === undefined && matching.length !== 1) return `attach=… must name the attachment to store (the message has ${attachments.length ? `${attachments.length}: ${names}` : 'none'})`;
  if (matching.length === 0) return `the message has no attachment named "${name}" (attachments: ${names})`;
  if (matching.length > 1) return `the message has ${matching.length} attachments named "${name}": send one`;
  const [found] = matching;
  if (found.storeError) return `the attachment "${found.filename}" could not be stored for this request (${found.storeError})`;
  if (found.tooLarge || !found.path) return `the attachment "${found.filename}" is ${found.size} bytes, over the size limit for attachments (limits.maxAttachmentBytes)`;
  return found;
}

const entryRow = (e: Entry) => [e.name, e.type, e.size, e.modified.toISOString().replace('.000Z', 'Z'), e.mode.toString(8).padStart(4, '0')];
const COLUMNS = ['name', 'type', 'size', 'modified', 'mode'];
const parts = (args: Record<string, unknown>) => args.parts as string[];
const where = (args: Record<string, unknown>) => `${args.share}:${parts(args).join('/') || '.'}`;

const list: Action = {
  summary: 'list a folder of a share',
  example: 'files list logs 2026/11',
  args: { share: shareArg, path: pathArg(false) },
  positional: ['share', 'path'],
  mutates: false,
  prepare: (args, config, request) => prepareFiles(list, { allowRoot: true })(args, config, request),
  run: async (args, ctx): Promise<Result> => {
    const entries = await onShare(ctx.config, String(args.share), (share) => share.list(parts(args)));
    return { kind: 'table', columns: COLUMNS, rows: entries.map(entryRow), name: `files-${args.share}`, note: `${where(args)}: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}` };
  },
};

const stat: Action = {
  summary: 'type, size, time and mode of one file or folder',
  example: 'files stat logs 2026/11/app.log',
  args: { share: shareArg, path: pathArg(true) },
  positional: ['share', 'path'],
  mutates: false,
  prepare: (args, config, request) => prepareFiles(stat)(args, config, request),
  run: async (args, ctx): Promise<Result> => {
    const entry = await onShare(ctx.config, String(args.share), (share) => share.stat(parts(args)));
    return { kind: 'table', columns: COLUMNS, rows: [entryRow(entry)], note: where(args) };
  },
};

const get: Action = {
  summary: 'send a file of a share as an attachment',
  example: 'files get share=logs path=2026/11/app.log',
  args: { share: shareArg, path: pathArg(true) },
  positional: ['share', 'path'],
  mutates: false,
  prepare: (args, config, request) => prepareFiles(get)(args, config, request),
  run: async (args, ctx): Promise<Result> => {
    const max = section(ctx.config).maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    if (!ctx.tempFile) throw new CommandError('files get needs a temporary folder for the file');
    const target = ctx.tempFile();
    const entry = await onShare(ctx.config, String(args.share), (share) => share.read(parts(args), max, target));
    // Streamed from the temporary copy into the reply, not held in memory.
    return { kind: 'files', text: `${where(args)}: ${entry.size} bytes, modified ${entry.modified.toISOString()}`, files: [{ filename: entry.name, contentType: 'application/octet-stream', path: target }] };
  },
};

const put: Action = {
  summary: 'store an attachment of this message in a share (temporary name, then rename)',
  example: 'files put drop incoming/report.pdf attach=report.pdf',
  args: {
    share: shareArg,
    path: pathArg(true),
    attach: { type: 'string', maxLength: 255, description: 'the attachment to store (may be left out when the message has exactly one)' },
    overwrite: { type: 'bool', default: 0, description: 'replace an existing file' },
  },
  positional: ['share', 'path'],
  mutates: true,
  prepare: (args, config, request) => prepareFiles(put, { writes: true, attachment: true })(args, config, request),
  run: async (args, ctx): Promise<Result> => {
    const attachment = ctx.attachments?.[Number(args.attachmentIndex)];
    if (!attachment?.path) throw new CommandError('the attachment is no longer available');
    const bytes = await onShare(ctx.config, String(args.share), (share) => share.write(parts(args), attachment.path!, args.overwrite === 1));
    return { kind: 'text', text: `${where(args)}: stored ${bytes} bytes from the attachment "${attachment.filename}"` };
  },
};

const rm: Action = {
  summary: 'remove a file of a share',
  example: 'files rm drop incoming/old.pdf',
  args: { share: shareArg, path: pathArg(true) },
  positional: ['share', 'path'],
  mutates: true,
  prepare: (args, config, request) => prepareFiles(rm, { writes: true })(args, config, request),
  run: async (args, ctx): Promise<Result> => {
    await onShare(ctx.config, String(args.share), (share) => share.remove(parts(args)));
    return { kind: 'text', text: `${where(args)}: removed` };
  },
};

function checkConfig(raw: unknown, path: string): Problem[] {
  const problems: Problem[] = [];
  const shares = (raw as { shares?: Record<string, { path?: unknown; sftp?: unknown }> }).shares ?? {};
  for (const [name, share] of Object.entries(shares)) {
    const at = `${path}.shares.${name}`;
    if (!SHARE_NAME.test(name)) problems.push({ path: at, message: 'a share name is letters, digits, . _ - (starting with a letter or digit)' });
    if ((share.path === undefined) === (share.sftp === undefined)) problems.push({ path: at, message: 'give exactly one of path (a local folder) or sftp' });
  }
  return problems;
}

/** Each share: a local folder exists and allows what the share may do; an SFTP root lists (host key checked). */
function probe(config: Config): Promise<ProbeResult[]> {
  return Promise.all(
    Object.entries(section(config).shares).map(async ([name, share]) => {
      const access = share.readOnly ? 'read-only' : 'read-write';
      try {
        if (share.path) {
          const real = realpathSync(share.path);
          accessSync(real, share.readOnly ? fsConstants.R_OK : fsConstants.R_OK | fsConstants.W_OK);
          return { target: name, ok: true, detail: `local folder ${real}, ${access}` };
        }
        const entries = await onShare(config, name, (adapter) => adapter.list([]));
        return { target: name, ok: true, detail: `sftp ${share.sftp!.user}@${share.sftp!.host}:${share.sftp!.path} (host key as pinned), ${entries.length} entries, ${access}` };
      } catch (err) {
        return { target: name, ok: false, detail: (err as Error).message };
      }
    }),
  );
}

export const files: Service = {
  name: 'files',
  summary: 'file transfer with the host gateway: list, stat, get, put, rm on configured shares (local folders, SFTP)',
  actions: { list, stat, get, put, rm },
  checkConfig,
  helpDetails: (config) =>
    Object.entries(config.services.files?.shares ?? {}).map(
      ([name, s]) => `share ${name}: ${s.sftp ? `sftp ${s.sftp.user}@${s.sftp.host}:${s.sftp.path}` : 'local folder'}${s.readOnly ? ', read-only' : ''}${s.description ? ` — ${s.description}` : ''}`,
    ),
  probe,
};
