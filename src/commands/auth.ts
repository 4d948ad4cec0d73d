/**
 * `mailagent auth login` and `mailagent auth status`: the OAuth 2 login of the agent's mailbox.
 *
 * login runs the device authorization grant (RFC 8628), made for hosts without a browser: it
 * prints the provider's verification URL and a user code, which the mailbox owner opens and
 * approves on any device; meanwhile it polls the token endpoint and finally stores the refresh
 * token (file mode 0600). status shows the account, scopes and expiry, never a token.
 */
import type { Config, OAuth2Config } from '../config/types';
import { loadConfig } from '../config/load';
import { EXIT, UserError } from '../core/errors';
import { clientConfiguration, readTokens, tokenFileOf, writeTokens } from '../mail/oauth2';

export const ACTIONS = ['login', 'status'] as const;

/** The OAuth2 logins of the config: imap's and smtp's (one entry when they share a token file). */
function logins(config: Config, only?: string): { which: 'imap' | 'smtp'; user: string; o: OAuth2Config; file: string }[] {
  const found: { which: 'imap' | 'smtp'; user: string; o: OAuth2Config; file: string }[] = [];
  for (const which of ['imap', 'smtp'] as const) {
    if (only && only !== which) continue;
    const section = config[which];
    if (!section?.oauth2 || !section.user) continue;
    const file = tokenFileOf(config, section.oauth2, section.user);
    if (!found.some((f) => f.file === file)) found.push({ which, user: section.user, o: section.oauth2, file });
  }
  return found;
}

const when = (ms: number | undefined) => (ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));

async function login(config: Config, only: string | undefined, provider: string | undefined): Promise<number> {
  const targets = logins(config, only).filter((l) => !provider || l.o.provider === provider);
  if (!targets.length) throw new UserError(`no OAuth2 login in the config${only ? ` for ${only}` : ''}${provider ? ` with provider ${provider}` : ''} (imap.oauth2 or smtp.oauth2)`, EXIT.CONFIG);
  const client = require('openid-client') as typeof import('openid-client');
  for (const { which, user, o, file } of targets) {
    const { configuration, endpoints } = clientConfiguration(config, o, `${which}.oauth2`);
    if (!endpoints.deviceAuthorizationUrl) throw new UserError(`${which}.oauth2: no deviceAuthorizationUrl, so no device login is possible`, EXIT.CONFIG);
    const scope = endpoints.scopes.join(' ');
    const started = await client.initiateDeviceAuthorization(configuration, { ...(scope && { scope }) }).catch((err: Error & { error?: string }) => {
      throw new UserError(`${which}: the device login could not start at ${new URL(endpoints.deviceAuthorizationUrl!).host}: ${err.error ?? err.message}`, EXIT.UNAVAILABLE);
    });
    process.stderr.write(
      `To let mailagent read and send mail as ${user} (${which} login):\n` +
        `  open   ${started.verification_uri}\n` +
        `  enter  ${started.user_code}\n` +
        (started.verification_uri_complete ? `  (or open ${started.verification_uri_complete})\n` : '') +
        `Waiting for the approval (the code expires in ${Math.round(started.expires_in / 60)} min)…\n`,
    );
    const tokens = await client.pollDeviceAuthorizationGrant(configuration, started).catch((err: Error & { error?: string }) => {
      const code = err.error;
      const why = code === 'access_denied' ? 'the login was declined' : code === 'expired_token' ? 'the code expired before it was approved' : (code ?? err.message);
      throw new UserError(`${which}: device login failed: ${why}`, EXIT.UNAVAILABLE);
    });
    if (!tokens.refresh_token) {
      throw new UserError(`${which}: the provider gave no refresh token (ask for offline access: add "offline_access" to ${which}.oauth2.scopes)`, EXIT.CONFIG);
    }
    const now = Date.now();
    writeTokens(file, {
      account: user,
      provider: o.provider,
      clientId: o.clientId,
      scopes: tokens.scope ? tokens.scope.split(' ') : endpoints.scopes,
      refreshToken: tokens.refresh_token,
      accessToken: tokens.access_token,
      expiresAt: now + (tokens.expires_in ?? 3600) * 1000,
      loggedInAt: now,
    });
    process.stderr.write(`Logged in as ${user}; the refresh token is stored in ${file} (mode 0600).\n`);
  }
  return EXIT.OK;
}

function status(config: Config, only: string | undefined, json: boolean): number {
  const rows = logins(config, only).map(({ which, user, o, file }) => {
    const t = readTokens(file);
    return {
      login: which,
      account: user,
      provider: o.provider,
      tokenFile: file,
      loggedIn: Boolean(t?.refreshToken),
      scopes: t?.scopes ?? [],
      loggedInAt: t?.loggedInAt !== undefined ? when(t.loggedInAt) : null,
      refreshedAt: t?.refreshedAt !== undefined ? when(t.refreshedAt) : null,
      accessTokenExpiresAt: t?.expiresAt !== undefined ? when(t.expiresAt) : null,
    };
  });
  if (!rows.length) throw new UserError('no OAuth2 login in the config (imap.oauth2 or smtp.oauth2): the mailbox logs in with a password', EXIT.CONFIG);
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    for (const r of rows) {
      process.stdout.write(
        `${r.login}: ${r.account} (${r.provider}) ${r.loggedIn ? 'logged in' : 'NOT logged in: run `mailagent auth login`'}\n` +
          `  scopes:       ${r.scopes.join(' ') || '-'}\n` +
          `  logged in:    ${r.loggedInAt ?? '-'}\n` +
          `  refreshed:    ${r.refreshedAt ?? '-'}\n` +
          `  access token: ${r.accessTokenExpiresAt ? `expires ${r.accessTokenExpiresAt}` : '-'}\n` +
          `  token file:   ${r.tokenFile}\n`,
      );
    }
  }
  // Not logged in is a state monitoring should see.
  return rows.every((r) => r.loggedIn) ? EXIT.OK : EXIT.CONFIG;
}

export async function handler(argv: { action?: string; config?: string; for?: string; provider?: string; json?: boolean }): Promise<number> {
  const config = await loadConfig(argv.config);
  if (argv.action === 'login') return login(config, argv.for, argv.provider);
  if (argv.action === 'status') return status(config, argv.for, Boolean(argv.json));
  throw new UserError(`unknown action "${argv.action}" (known: ${ACTIONS.join(', ')})`, EXIT.USAGE);
}
