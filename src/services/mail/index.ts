import type { Config, MailServiceConfig } from '../../config/types';
import type { Problem } from '../../config/schema-check';
import { isSecretRef } from '../../config/secrets';
import type { Service } from '../types';
import { ACCOUNT_NAME, maxMessageBytes, plural, section } from './accounts';
import { connectImap, imapFailure, smtpFailure, smtpTransport, type NamedAccount } from './clients';
import { readActions } from './read';
import { send } from './send';

const PROBE_TIMEOUT_MS = 20_000;

function checkConfig(raw: unknown, path: string): Problem[] {
  const cfg = raw as MailServiceConfig;
  const problems: Problem[] = [];
  for (const [name, account] of Object.entries(cfg.accounts)) {
    const at = `${path}.accounts.${name}`;
    if (!ACCOUNT_NAME.test(name)) problems.push({ path: at, message: 'an account name is letters, digits, ".", "_" or "-", starting with a letter or digit' });
    const secretForm = 'a secret reference {"env": "VARIABLE"} or {"file": "path"}, never the password itself';
    if (account.imap.password === undefined) problems.push({ path: `${at}.imap.password`, message: `is required to log in: ${secretForm}` });
    else if (!isSecretRef(account.imap.password)) problems.push({ path: `${at}.imap.password`, message: `must be ${secretForm}` });
    if (account.smtp.password !== undefined && !isSecretRef(account.smtp.password)) problems.push({ path: `${at}.smtp.password`, message: `must be ${secretForm}` });
    if (account.smtp.user !== undefined && account.smtp.password === undefined) problems.push({ path: `${at}.smtp.password`, message: `is required when smtp.user is set: ${secretForm}` });
    if (account.smtp.password !== undefined && account.smtp.user === undefined) problems.push({ path: `${at}.smtp.user`, message: 'is required when smtp.password is set' });
  }
  return problems;
}

/** Rejects after `ms`, calling `onTimeout` first (so the connection it waits for is closed). */
function deadline<T>(work: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(`no answer within ${ms / 1000} s`));
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

async function probeImap(config: Config, named: NamedAccount): Promise<string> {
  let close = () => {};
  let password: string | undefined;
  const work = (async () => {
    const connected = await connectImap(config, named, maxMessageBytes(config));
    const client = connected.client;
    password = connected.password;
    close = () => client.close();
    try {
      const inbox = await client.status('INBOX', { messages: true });
      await client.logout();
      return `IMAP ok (INBOX: ${inbox.messages === undefined ? '? messages' : plural(inbox.messages, 'message')})`;
    } catch (err) {
      client.close();
      throw err;
    }
  })();
  try {
    return await deadline(work, PROBE_TIMEOUT_MS, () => close());
  } catch (err) {
    return `IMAP failed: ${imapFailure(err, named, password).message.replace(/^account \S+: /, '')}`;
  }
}

async function probeSmtp(config: Config, named: NamedAccount): Promise<string> {
  let transport: ReturnType<typeof smtpTransport> | undefined;
  try {
    transport = smtpTransport(config, named);
    const t = transport;
    await deadline(t.transport.verify(), PROBE_TIMEOUT_MS, () => t.transport.close());
    return 'SMTP ok';
  } catch (err) {
    return `SMTP failed: ${smtpFailure(err, named, transport?.password).message.replace(/^account \S+: /, '')}`;
  } finally {
    transport?.transport.close();
  }
}

export const mail: Service = {
  name: 'mail',
  summary: 'read and send mail of configured accounts of the internal mail system (IMAP, SMTP)',
  actions: { send, ...readActions },
  checkConfig,
  helpDetails: (config) => {
    const lines = ['Accounts:'];
    for (const [name, account] of Object.entries(config.services.mail?.accounts ?? {})) {
      const who = account.name ? `${account.name} <${account.address}>` : account.address;
      lines.push(`  ${name} - ${who}${account.description ? ` - ${account.description}` : ''}`);
    }
    lines.push(`mail get attaches messages of up to ${maxMessageBytes(config)} bytes (services.mail.maxMessageBytes).`);
    return lines;
  },
  probe: async (config) => {
    const accounts = Object.entries(section(config).accounts);
    const rows = await Promise.all(
      accounts.map(async ([name, account]) => {
        const named = { name, account };
        const [imap, smtp] = await Promise.all([probeImap(config, named), probeSmtp(config, named)]);
        return [
          { target: `${name} imap`, ok: imap.startsWith('IMAP ok'), detail: `${account.address}: ${imap}` },
          { target: `${name} smtp`, ok: smtp === 'SMTP ok', detail: `${account.address}: ${smtp}` },
        ];
      }),
    );
    return rows.flat();
  },
};
