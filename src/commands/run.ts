import { loadConfig } from '../config/load';
import { EXIT, UserError } from '../core/errors';
import { processMessage } from '../core/pipeline';
import { sendReply } from '../mail/smtp';
import { fileAudit } from '../state/audit';
import { MemoryStore, SqliteStore, type StateStore } from '../state/store';
import { closeDatabases } from '../services/db';

async function readStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) throw new UserError('run reads one message from stdin', EXIT.USAGE, 'mailagent run < message.eml');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
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

  const store: StateStore = argv.print ? new MemoryStore() : new SqliteStore(config.state.path);
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
    try {
      await sendReply(config, outcome.reply);
    } catch (err) {
      // The reply stays in the journal; the MTA's retry sends it without running anything again.
      throw new UserError(`could not send the reply: ${(err as Error).message}`, EXIT.TEMPFAIL);
    }
    await store.markReplied(outcome.key);
    return EXIT.OK;
  } finally {
    await closeDatabases(); // database pools opened by the commands
    await store.close();
  }
}
