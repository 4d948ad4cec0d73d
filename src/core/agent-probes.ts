import { accessSync, constants, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../config/types';
import type { ProbeResult } from '../services/types';
import type { Logger } from './log';

/** What the agent itself depends on, probed like a service: mailbox, SMTP, state store, audit log. */
export interface ProbeSet {
  service: string;
  probe: () => Promise<ProbeResult[]>;
}

const fail = (target: string, err: unknown): ProbeResult[] => [{ target, ok: false, detail: (err as Error).message ?? String(err) }];

/** Logs in, reads the folders `watch` uses (read-only: nothing is created), logs out. */
async function probeImap(config: Config): Promise<ProbeResult[]> {
  const imap = config.imap!;
  const target = `${imap.user}@${imap.host}:${imap.port ?? (imap.secure ? 993 : 143)}`;
  const { ImapSource } = require('../mail/imap-source') as typeof import('../mail/imap-source');
  const missing: string[] = [];
  const log: Logger = {
    debug: () => {},
    info: (message, fields) => void (message.startsWith('folder missing') && missing.push(String(fields?.folder))),
    warn: () => {},
    error: () => {},
  };
  try {
    const source = await ImapSource.connect(config, log, { onEvent: () => {}, onMail: () => {}, onClose: () => {} }, { readOnly: true, reportedMissing: new Set() });
    const waiting = source.pollSeconds ? `no IDLE: polls every ${source.pollSeconds} s` : 'IDLE';
    await source.close();
    const { inbox, processing, processed, rejected } = source.folders;
    const folders = missing.length ? `${missing.join(', ')} missing (watch creates them)` : `${processing}, ${processed}, ${rejected} present`;
    return [{ target, ok: true, detail: `logged in; ${inbox} selected, ${waiting}; ${folders}` }];
  } catch (err) {
    return fail(target, err);
  }
}

async function probeSmtp(config: Config): Promise<ProbeResult[]> {
  const smtp = config.smtp!;
  const target = `${smtp.host}:${smtp.port ?? (smtp.secure ? 465 : 25)}`;
  const { verifySmtp } = require('../mail/smtp') as typeof import('../mail/smtp');
  try {
    await verifySmtp(config);
    return [{ target, ok: true, detail: `EHLO${smtp.secure ? ' over TLS' : smtp.requireTLS ? ', STARTTLS' : ''}${smtp.user ? `, logged in as ${smtp.user}` : ''}` }];
  } catch (err) {
    return fail(target, err);
  }
}

async function probeState(config: Config): Promise<ProbeResult[]> {
  const target = config.state.postgres ? `PostgreSQL${config.state.postgres.schema ? ` (schema ${config.state.postgres.schema})` : ''}` : config.state.path;
  const { openStateStore } = require('../state/open') as typeof import('../state/open');
  try {
    const store = await openStateStore(config);
    try {
      const since = Date.now() - 3_600_000;
      const replies = await store.countEvents('reply', undefined, since);
      return [{ target, ok: true, detail: `open; ${replies} repl${replies === 1 ? 'y' : 'ies'} in the last hour` }];
    } finally {
      await store.close();
    }
  } catch (err) {
    return fail(target, err);
  }
}

async function probeAudit(config: Config): Promise<ProbeResult[]> {
  const path = config.audit.path;
  try {
    accessSync(existsSync(path) ? path : dirname(path), constants.W_OK);
    return [{ target: path, ok: true, detail: existsSync(path) ? 'writable' : 'its folder is writable (the file is created with the first record)' }];
  } catch (err) {
    return [{ target: path, ok: false, detail: `not writable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` }];
  }
}

export function agentProbes(config: Config): ProbeSet[] {
  return [
    ...(config.imap ? [{ service: 'imap', probe: () => probeImap(config) }] : []),
    ...(config.smtp ? [{ service: 'smtp', probe: () => probeSmtp(config) }] : []),
    { service: 'state', probe: () => probeState(config) },
    { service: 'audit', probe: () => probeAudit(config) },
  ];
}
