import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { validateConfig } from '../src/config/load';
import { HEREDOC } from '../src/core/lines';
import { tokenize } from '../src/core/tokenize';
import { renderHelp, renderManual } from '../src/render/help';
import { services } from '../src/services/registry';

// The operating kit: `config check`, `completion`, `help markdown`, run through the built
// executable alone in an empty directory (as in binary.test.ts), plus the service examples.
const ROOT = resolve(__dirname, '..');
const BUILT = join(ROOT, 'dist', 'mailagent');
const DOCS = join(ROOT, 'docs', 'commands.md');

let dir = '';
let bin = '';

test.before(() => {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), 'mailagent-kit-'));
  bin = join(dir, 'mailagent');
  copyFileSync(BUILT, bin);
  mkdirSync(join(dir, 'home'));
});

test.after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The base environment of every run: the binary first on PATH (the completion scripts call `mailagent`). */
const baseEnv = () => ({ PATH: `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: join(dir, 'home') });

function mailagent(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(bin, args, { cwd: dir, env: { ...baseEnv(), ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function shell(program: string, script: string, env: Record<string, string> = {}) {
  const r = spawnSync(program, program === 'zsh' ? ['-f', '-c', script] : ['--norc', '--noprofile', '-c', script], {
    cwd: dir,
    env: { ...baseEnv(), ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const hasProgram = (name: string) => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;

// --- help markdown and docs/commands.md --------------------------------------------------------

test('docs/commands.md is the output of `mailagent help markdown`', () => {
  const committed = existsSync(DOCS) ? readFileSync(DOCS, 'utf8') : '';
  assert.ok(committed === renderManual(services), 'docs/commands.md is out of date: run `mailagent help markdown > docs/commands.md` (after `npm run build`)');
});

test('the executable prints the same manual, and documents every action with its arguments', () => {
  const r = mailagent(['help', 'markdown']);
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '');
  assert.ok(r.stdout === renderManual(services), 'dist/mailagent is older than the sources: run `npm run build`');
  for (const [name, service] of Object.entries(services)) {
    assert.match(r.stdout, `\n## ${name}\n`);
    for (const [actionName, action] of Object.entries(service.actions)) {
      const section = r.stdout.split(`\n### ${name} ${actionName}\n`)[1]?.split('\n### ')[0];
      assert.ok(section, `no section for ${name} ${actionName}`);
      for (const arg of Object.keys(action.args)) assert.match(section, `| \`${arg}=\``, `${name} ${actionName}: argument ${arg}`);
      assert.match(section, action.mutates ? 'Changes data: **yes**' : 'Changes data: no.');
      assert.match(section, `Example:\n\n\`\`\`\n${action.example}\n\`\`\``);
    }
  }
  for (const builtin of ['`help`', '`help <service>`', '`status`', '`key<<END`']) assert.match(r.stdout, builtin);
  assert.is(mailagent(['help', '--markdown']).stdout, r.stdout, 'help --markdown is the same manual');
});

test('`mailagent help` alone stays the usage text; an unknown format is a usage error', () => {
  const help = mailagent(['help']);
  assert.is(help.status, 0, help.stderr);
  assert.match(help.stdout, /^Commands:/m);
  assert.match(help.stdout, /mailagent help <format>/);
  const bad = mailagent(['help', 'html']);
  assert.is(bad.status, 64, bad.stderr);
  assert.match(bad.stderr, 'Choices: "markdown"');
});

// --- examples ----------------------------------------------------------------------------------

test('every action of every service has an example that starts with its service and action', () => {
  for (const [name, service] of Object.entries(services)) {
    for (const [actionName, action] of Object.entries(service.actions)) {
      const where = `${name} ${actionName}`;
      assert.type(action.example, 'string', `${where}: no example`);
      const [first, ...heredoc] = action.example!.split('\n');
      assert.equal(first.split(/\s+/).slice(0, 2), [name, actionName], `${where}: example "${first}"`);

      // And it is a command line the action accepts: words, known keys, required arguments.
      const opener = HEREDOC.exec(first);
      const { tokens, problem } = tokenize(opener ? first.replace(HEREDOC, '') : first);
      assert.is(problem, undefined, `${where}: ${problem}`);
      if (opener) {
        assert.is(heredoc.at(-1), opener[2], `${where}: the here-document is not closed by ${opener[2]}`);
        tokens.push({ key: opener[1], value: heredoc.slice(0, -1).join('\n') });
      } else assert.equal(heredoc, [], `${where}: lines after a command without a here-document`);
      const rest = tokens.slice(2);
      const words = rest.filter((t) => t.key === undefined);
      const positional = action.positional ?? [];
      assert.ok(words.length <= positional.length, `${where}: more words than positional arguments`);
      const given = new Set([...positional.slice(0, words.length), ...rest.filter((t) => t.key !== undefined).map((t) => t.key!)]);
      for (const key of given) assert.ok(key in action.args || action.extraArgs, `${where}: unknown argument ${key}`);
      for (const [arg, spec] of Object.entries(action.args)) if (spec.required) assert.ok(given.has(arg), `${where}: required ${arg} missing`);
    }
  }
});

test('help teaches what the sender may run, with examples, and nothing else', () => {
  const raw = JSON.parse(readFileSync(join(ROOT, 'config.example.json'), 'utf8'));
  raw.services.files = { shares: { logs: { path: dir, readOnly: true } } };
  const config = validateConfig(raw, join(dir, 'example.json'));
  const [ops, helpdesk] = config.users; // admin ["*"], viewer ["db:tables", "db:query"]

  const all = renderHelp(services, config, ops);
  for (const name of ['db', 'jobs', 'files']) {
    for (const action of Object.values(services[name].actions)) assert.match(all, `      e.g. ${action.example!.split('\n')[0]}\n`);
  }
  assert.not.match(all, 'mail send', 'mail is not configured here');

  const viewer = renderHelp(services, config, helpdesk);
  assert.match(viewer, 'db tables [db=...]');
  assert.match(viewer, 'e.g. db query host hostname=web-ams-01');
  const allowed = ['db tables', 'db query'];
  for (const [name, service] of Object.entries(services)) {
    for (const action of Object.keys(service.actions)) {
      if (!allowed.includes(`${name} ${action}`)) assert.not.match(viewer, `${name} ${action}`, `the viewer is shown ${name} ${action}`);
    }
  }
  assert.not.match(viewer, /^(jobs|files):/m, 'a service that grants the viewer nothing');
  assert.match(viewer, 'key<<END');

  const details = renderHelp(services, config, helpdesk, 'db');
  assert.match(details, '      name=<string>  named query');
  assert.match(details, 'e.g. db query host hostname=web-ams-01');
  assert.not.match(details, 'e.g. db update');
  const none = renderHelp(services, config, helpdesk, 'jobs');
  assert.match(none, '(your roles grant no actions here)');
  assert.not.match(none, 'disk-usage', 'the config of a service the sender cannot use');
});

// --- config check ------------------------------------------------------------------------------

const SECRET_ENV = 'mailagent-kit-env-secret-4711';
const SECRET_FILE = 'mailagent-kit-file-secret-0815';

function writeJson(name: string, value: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(value, null, 2));
  return file;
}

test('config check: a valid config is printed resolved, secrets as references only (exit 0)', () => {
  writeFileSync(join(dir, 'imap.pw'), `${SECRET_FILE}\n`, { mode: 0o600 });
  const file = writeJson('ok.json', {
    agent: { address: 'agent@example.com' },
    smtp: { host: 'smtp.example.com', user: 'agent', password: { env: 'MAILAGENT_KIT_SMTP' } },
    imap: { host: 'imap.example.com', user: 'agent', password: { file: 'imap.pw' } },
    state: { path: 'var/state.db' },
    users: [{ address: 'ops@example.com', roles: ['admin'] }],
    roles: { admin: ['*'], typo: ['db:qurey'] },
    security: { dkim: {} },
    services: {
      jobs: { jobs: { backup: { command: ['backup'], env: { TOKEN: { env: 'MAILAGENT_KIT_TOKEN' }, MODE: 'full' } } } },
    },
  });
  const r = mailagent(['config', 'check', '--config', file], { MAILAGENT_KIT_SMTP: SECRET_ENV });
  assert.is(r.status, 0, r.stderr);
  const shown = JSON.parse(r.stdout);
  assert.is(shown.file, file);
  assert.equal(shown.smtp.password, { env: 'MAILAGENT_KIT_SMTP' });
  assert.equal(shown.imap.password, { file: join(dir, 'imap.pw') }, 'a secret file reference, made absolute');
  assert.equal(shown.services.jobs.jobs.backup.env, { TOKEN: { env: 'MAILAGENT_KIT_TOKEN' }, MODE: 'full' });
  assert.is(shown.state.path, join(dir, 'var', 'state.db'));
  assert.is(shown.audit.path, join(dir, 'home', '.local', 'state', 'mailagent', 'audit.jsonl'));
  assert.is(shown.limits.maxCommands, 50);
  assert.is(shown.security.replayWindowHours, 24);
  for (const secret of [SECRET_ENV, SECRET_FILE]) assert.not.ok(`${r.stdout}${r.stderr}`.includes(secret), `secret ${secret} printed`);
  // Warnings name the path; none for what is set and readable.
  assert.match(r.stderr, 'mailagent: warning: services.jobs.jobs.backup.env.TOKEN: environment variable MAILAGENT_KIT_TOKEN is not set here');
  assert.match(r.stderr, 'mailagent: warning: roles.typo[0]: "db:qurey": db has no action "qurey"');
  assert.not.match(r.stderr, 'smtp.password');
  assert.not.match(r.stderr, 'imap.password');
  assert.not.match(r.stderr, 'security.dkim');
});

test('config check: every problem with its JSON path, nothing on stdout (exit 78)', () => {
  const file = writeJson('broken.json', {
    agent: { address: 'not an address' },
    smtp: { host: 'smtp.example.com', port: 'twenty-five', password: 'inline-secret' },
    users: [{ address: 'ops@example.com', roles: ['admin', 'superuser'] }],
    roles: { admin: ['*'] },
    surprise: true,
  });
  const r = mailagent(['config', 'check', '--config', file]);
  assert.is(r.status, 78, r.stderr);
  assert.is(r.stdout, '');
  assert.match(r.stderr, `mailagent: ${file}: 5 problems\n`);
  for (const path of ['agent.address', 'smtp.port', 'smtp.password', 'surprise', 'users[0].roles[1]']) assert.match(r.stderr, `\n  ${path}: `);

  const missing = mailagent(['config', 'check', '--config', join(dir, 'missing.json')]);
  assert.is(missing.status, 78);
  assert.match(missing.stderr, 'config file not found');
});

test('config check: a state URL with its password written inline is a problem, and the password is not shown', () => {
  const file = writeJson('pg-inline.json', {
    agent: { address: 'agent@example.com' },
    state: { path: 'var/state.db', postgres: { url: 'postgres://agent:kit-inline-pw-42@db.example.com/mailagent' } },
    users: [{ address: 'ops@example.com', roles: [] }],
  });
  const r = mailagent(['config', 'check', '--config', file]);
  assert.is(r.status, 78, r.stderr);
  assert.is(r.stdout, '');
  assert.match(r.stderr, '\n  state.postgres.url: ');
  assert.not.match(`${r.stdout}${r.stderr}`, 'kit-inline-pw-42');
});

// --- completion --------------------------------------------------------------------------------

test('completion: bash and zsh scripts; the default follows $SHELL; other shells are a usage error', () => {
  const bash = mailagent(['completion', 'bash'], { SHELL: '/bin/zsh' });
  assert.is(bash.status, 0, bash.stderr);
  assert.match(bash.stdout, 'complete -o bashdefault -o default -F _mailagent_yargs_completions mailagent');
  assert.match(bash.stdout, 'SHELL=bash mailagent --get-yargs-completions');
  const zsh = mailagent(['completion', 'zsh'], { SHELL: '/bin/bash' });
  assert.is(zsh.status, 0, zsh.stderr);
  assert.match(zsh.stdout, /^#compdef mailagent\n/);
  assert.match(zsh.stdout, 'SHELL=zsh COMP_CWORD=');
  assert.is(mailagent(['completion'], { SHELL: '/usr/bin/zsh' }).stdout, zsh.stdout);
  assert.is(mailagent(['completion'], { SHELL: '/bin/bash' }).stdout, bash.stdout);
  assert.is(mailagent(['completion', 'fish']).status, 64);
  assert.is(shell('bash', `bash -n <<'EOF'\n${bash.stdout}\nEOF`).status, 0, 'bash syntax');
});

const lines = (text: string) => text.split('\n').filter(Boolean);

test('completion: the executable lists subcommands, flags and the users actions', () => {
  const top = mailagent(['--get-yargs-completions', 'mailagent', ''], { SHELL: '/bin/bash' });
  assert.is(top.status, 0, top.stderr);
  assert.equal(lines(top.stdout), ['watch', 'run', 'users', 'test-service', 'config', 'auth', 'health', 'completion', 'help']);
  const users = lines(mailagent(['--get-yargs-completions', 'mailagent', 'users', ''], { SHELL: '/bin/bash' }).stdout);
  for (const action of ['list', 'add', 'remove', 'set-roles', 'enroll-totp', 'set-pgp-key']) assert.ok(users.includes(action), `users ${action}: ${users}`);
  assert.equal(lines(mailagent(['--get-yargs-completions', 'mailagent', 'users', 'set-'], { SHELL: '/bin/bash' }).stdout), ['set-roles', 'set-pgp-key']);
  assert.ok(lines(mailagent(['--get-yargs-completions', 'mailagent', 'config', ''], { SHELL: '/bin/bash' }).stdout).includes('check'));
  const watch = lines(mailagent(['--get-yargs-completions', 'mailagent', 'watch', '--'], { SHELL: '/bin/bash' }).stdout);
  for (const flag of ['--once', '--dry-run', '--config', '--debug']) assert.ok(watch.includes(flag), `watch ${flag}: ${watch}`);
  // zsh gets descriptions.
  const described = lines(mailagent(['--get-yargs-completions', 'mailagent', ''], { SHELL: '/bin/zsh' }).stdout);
  assert.ok(described.includes('users:Manage the allow list: users, roles, TOTP enrolment'), described.join('\n'));
});

test('completion: the bash script completes through the executable, also from a zsh login', () => {
  const complete = (...words: string[]) => {
    const script = [
      'source <(mailagent completion bash)',
      `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}`,
      '_mailagent_yargs_completions',
      'printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n');
    const r = shell('bash', script, { SHELL: '/bin/zsh' });
    assert.is(r.status, 0, r.stderr);
    return lines(r.stdout);
  };
  assert.equal(complete('mailagent', 'co'), ['config', 'completion']);
  assert.equal(complete('mailagent', 'users', 'set-'), ['set-roles', 'set-pgp-key']);
  assert.equal(complete('mailagent', 'users', 'enroll-totp', 'ops@example.com', '--k'), ['--key-file']);
});

test('completion: the zsh script completes through the executable, with descriptions', () => {
  if (!hasProgram('zsh')) {
    console.log('  (zsh is not installed: zsh completion not run)');
    return;
  }
  const script = (words: string[]) =>
    [
      // The completion system's functions, as stubs that print what they are given.
      'compdef() { print -r -- "compdef $*" }',
      '_default() { print -r -- "(files)" }',
      '_describe() { print -rl -- "${(@P)2}" }',
      'source <(mailagent completion zsh)',
      `words=(${words.map((w) => `'${w}'`).join(' ')}); CURRENT=${words.length}`,
      '_mailagent_yargs_completions',
    ].join('\n');
  const top = shell('zsh', script(['mailagent', '']), { SHELL: '/bin/bash' });
  assert.is(top.status, 0, top.stderr);
  const out = lines(top.stdout);
  assert.is(out[0], 'compdef _mailagent_yargs_completions mailagent');
  assert.ok(out.includes('config:Check the config: print it resolved as JSON (secrets stay references), or list every problem (exit 78)'), out.join('\n'));
  const users = lines(shell('zsh', script(['mailagent', 'users', '']), { SHELL: '/bin/bash' }).stdout);
  for (const action of ['list', 'add', 'remove', 'set-roles', 'enroll-totp', 'set-pgp-key']) assert.ok(users.includes(action), users.join('\n'));
  assert.ok(users.includes('--key-file:Armored public key file (set-pgp-key)'), users.join('\n'));
});

test.run();
