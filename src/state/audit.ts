import { appendFileSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXIT, UserError } from '../core/errors';

/** One line of the audit log: what happened to one message. */
export interface AuditRecord {
  time: string;
  messageId?: string;
  sender?: string;
  /** Evidence the message carried, e.g. ["allowlist", "dkim", "totp"]. */
  evidence?: string[];
  /**
   * follow-up: the result of work that outlived the first reply (a long job), mailed later;
   * notice: a mail of the agent's own (a scheduled result, an alert), `sender` is its recipient.
   */
  decision: 'executed' | 'rejected' | 'help' | 'dropped' | 'duplicate' | 'resent' | 'confirm-requested' | 'follow-up' | 'notice';
  reason?: string;
  commands?: { command: string; ok: boolean; error?: string; ms: number }[];
}

export type AuditSink = (record: AuditRecord) => void;

/** One-time codes and confirmation tokens never reach the log, whatever field they hide in. */
export function redact(text: string): string {
  return text.replace(/\b(otp\s*[=:]\s*)\S+/gi, '$1[redacted]').replace(/\b(confirm=)[0-9a-f]{32}\b/gi, '$1[redacted]');
}

/**
 * Appends JSON lines (one per message, easy to read with jq) and rotates by size:
 * audit.jsonl → audit.jsonl.1 → … → audit.jsonl.<keep>. A message is not handled unless its
 * record is written, so a failure here is a temporary failure.
 */
export function fileAudit(path: string, options: { maxBytes?: number; keep?: number } = {}): AuditSink {
  const maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
  const keep = options.keep ?? 5;
  let ready = false;
  const rotate = () => {
    let size = 0;
    try {
      size = statSync(path).size;
    } catch {
      return;
    }
    if (size < maxBytes) return;
    for (let i = keep - 1; i >= 1; i--) {
      try {
        renameSync(`${path}.${i}`, `${path}.${i + 1}`);
      } catch {
        // that generation does not exist yet
      }
    }
    renameSync(path, `${path}.1`);
  };
  return (record) => {
    try {
      if (!ready) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      ready = true;
      rotate();
      appendFileSync(path, `${redact(JSON.stringify(record))}\n`, { mode: 0o600 });
    } catch (err) {
      throw new UserError(`audit log ${path} is not writable: ${(err as Error).message}`, EXIT.TEMPFAIL);
    }
  };
}
