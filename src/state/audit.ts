import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXIT, UserError } from '../core/errors';

/** One line of the audit log: what happened to one message. */
export interface AuditRecord {
  time: string;
  messageId?: string;
  sender?: string;
  evidence?: string;
  decision: 'executed' | 'rejected' | 'help' | 'dropped' | 'duplicate' | 'resent';
  reason?: string;
  commands?: { command: string; ok: boolean; error?: string; ms: number }[];
}

export type AuditSink = (record: AuditRecord) => void;

/** Appends JSON lines; a message is not handled unless its record is written. */
export function fileAudit(path: string): AuditSink {
  let ready = false;
  return (record) => {
    try {
      if (!ready) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      ready = true;
      appendFileSync(path, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    } catch (err) {
      throw new UserError(`audit log ${path} is not writable: ${(err as Error).message}`, EXIT.TEMPFAIL);
    }
  };
}
