import type { Config, MailServiceConfig } from '../../config/types';
import { CommandError } from '../../core/errors';
import { ownValue } from '../args';
import type { ArgSpec } from '../types';
import type { NamedAccount } from './clients';

export const DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024;
export const ACCOUNT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function section(config: Config): MailServiceConfig {
  const mail = config.services.mail;
  if (!mail) throw new CommandError('the mail service is not configured');
  return mail;
}

export const maxMessageBytes = (config: Config): number => config.services.mail?.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;

const accountNames = (config: Config): string[] => Object.keys(config.services.mail?.accounts ?? {});

/** Why `name` is not an account, or undefined when it is one (own property: a mail may say "constructor"). */
export function accountProblem(config: Config, name: string): string | undefined {
  if (ownValue(config.services.mail?.accounts, name)) return undefined;
  return `no mail account "${name}" (accounts: ${accountNames(config).join(', ') || 'none'})`;
}

export function accountNamed(config: Config, name: unknown): NamedAccount {
  const account = typeof name === 'string' ? ownValue(section(config).accounts, name) : undefined;
  if (!account) throw new CommandError(accountProblem(config, String(name))!);
  return { name: String(name), account };
}

export const accountArg: ArgSpec = { type: 'string', required: true, maxLength: 64, description: 'the account (see the list below); may be written first, without account=' };

export const folderArg: ArgSpec = { type: 'string', default: 'INBOX', maxLength: 255, description: 'the folder (mail folders lists them)' };

/** A folder name from a mail goes to the server as one quoted string: no control characters. */
export function folderProblem(folder: string | undefined): string | undefined {
  if (folder === undefined) return undefined;
  if (folder.trim() === '') return 'folder=: empty folder name';
  if (/[\u0000-\u001f\u007f]/.test(folder)) return 'folder: contains a control character';
  return undefined;
}

/** An IMAP error that means the folder is not there (Dovecot: NONEXISTENT, "Mailbox doesn't exist"). */
export function isMissingFolder(err: unknown): boolean {
  const e = err as { mailboxMissing?: boolean; serverResponseCode?: string; responseText?: string } | undefined;
  return Boolean(e?.mailboxMissing || e?.serverResponseCode === 'NONEXISTENT' || /doesn't exist|does not exist|no such mailbox|unknown mailbox/i.test(e?.responseText ?? ''));
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
