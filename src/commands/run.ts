import { readSync } from 'node:fs';
import { isatty } from 'node:tty';
import { loadConfig } from '../config/load';
import { EXIT, UserError } from '../core/errors';
import { processMessage } from '../core/pipeline';
import { sweepSpool } from '../mail/spool';
import { Outbox, outboxLeaseMs } from '../mail/outbox';
import { createSmtpSender } from '../mail/smtp';
import type { Config } from '../config/types';
import { fileAudit } from '../state/audit';
import { openStateStore } from '../state/open';
import { MemoryStore, type StateStore } from '../state/store';
import { closeDatabases } from '../services/db';
import { closeServiceStores } from '../services/stores';

async function readStdin(): Promise<Buffer> {
  if (isatty(0)) throw new UserError('run reads one message from stdin', EXIT.USAGE, 'mailagent run < message.eml');
  const chunks: Buffer[] = [];
  // Blocking reads, as stdin (file or pipe) normally is: process.stdin and its async iterator would
  // set up a stream for it, whose Node internals V8 compiles at every start (~1 ms of a `run`).
  try {
    for (;;) {
      const chunk = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(0, chunk);
      if (n === 0) return Buffer.concat(chunks);
      chunks.push(chunk.subarray(0, n));
    }
  } catch (err) {
    // A non-blocking stdin with nothing to read yet (EAGAIN) goes on as a stream, from where the
    // reads stopped; so does an odd one that gave nothing (closed, a directory), as it always did.
    if (chunks.length && (err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
  }
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Sends the due replies of the outbox (this message's and any left by earlier runs), within the
 * SMTP timeout. Returns why this message's reply is still waiting, or undefined once it was sent.
 */
async function sendFromOutbox(config: Config, store: StateStore, key: string): Promise<string | undefined> {
  const sender = createSmtpSender(config, { pooled: true, maxConnections: 2 });
  // No backoff here: this process will not try again, the next one to look should.
  const outbox = new Outbox({ store, sender: () => sender, intervalMs: 0, retryDelay: () => 0, leaseMs: outboxLeaseMs(config) });
  try {
    await outbox.drain(Date.now() + (config.smtp!.timeoutSeconds ?? 30) * 1000 + 1000);
  } finally {
    sender.close();
  }
  if ((await store.get(key))?.state === 'replied') return undefined;
  return outbox.counters.lastError ?? 'another agent is sending it';
}

/**
 * `mailagent run`: one message from stdin. Exit 0 whenever the message was dealt with (answered,
 * refused or dropped); 75 when it could not be dealt with now, so the MTA keeps it and retries.
 */
export async function handler(argv: { config?: string; print?: boolean; sender?: string }): Promise<number> {
  const config = await loadConfig(argv.config);
  if (!argv.print && !config.smtp) {
    throw new UserError('smtp is not configured, so replies cannot be sent', EXIT.CONFIG, 'add an "smtp" section, or use --print');
  }
  const raw = await readStdin();
  if (raw.length === 0) throw new UserError('stdin was empty: expected one RFC 822 message', EXIT.USAGE);

  const store: StateStore = argv.print ? new MemoryStore() : await openStateStore(config);
  // Attachments a crashed run or watch left behind; those of running processes are theirs.
  sweepSpool(config.state.path);
  try {
    const outcome = await processMessage(raw, {
      config,
      now: () => new Date(),
      store,
      audit: fileAudit(config.audit.path, config.audit),
      envelopeSender: argv.sender,
      logError: (message, err) => process.stderr.write(`mailagent: ${message}: ${(err as Error)?.stack ?? err}\n`),
    });
    if (outcome.kind === 'silent') return EXIT.OK;
    if (argv.print) {
      process.stdout.write(outcome.reply.raw);
      return EXIT.OK;
    }
    // The reply is in the outbox (journal state reply-pending): send it, and whatever else is due.
    const waiting = await sendFromOutbox(config, store, outcome.key);
    if (waiting) {
      // Not a reason for the MTA to retry: the reply is kept, and the next `run` or `watch` sends it.
      process.stderr.write(`mailagent: warning: could not send the reply now (${waiting}); it waits in the outbox and the next run or watch sends it\n`);
    }
    return EXIT.OK;
  } finally {
    // Pools and files opened by the commands.
    await closeDatabases();
    await closeServiceStores();
    await store.close();
  }
}
