import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { processMessage } from '../src/core/pipeline';
import type { Registry } from '../src/core/request';
import { convertArgs } from '../src/services/args';
import { closeDatabases } from '../src/services/db';
import { closeServiceStores } from '../src/services/jobs';
import { bindServiceStore } from '../src/services/stores';
import { services } from '../src/services/registry';
import type { Action, Service } from '../src/services/types';
import { MemoryServiceStore } from '../src/state/service-store';
import { demoConfig, mail, tempDir, testDeps } from './support/env';
import { readReply } from './support/reply';

// Names in a mail (service, action, argument names and name-like values) must never reach the
// properties every JavaScript object inherits. Every case below is generated from the registry,
// so an action added later is covered without touching this file.

const HOSTILE = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];

const { dir, cleanup } = tempDir('mailagent-names-');
// ops@example.com is admin; no DKIM, and every action (mutating ones too) needs only the allow list.
const config = demoConfig(dir, (raw) => {
  raw.security = { evidence: { '*': 'allowlist' } };
  raw.services.files = { shares: { drop: { path: dir } } };
  // Nothing listens there: an action that got past its checks would fail, not reach a server.
  const closed = { host: '127.0.0.1', port: 9, secure: false, user: 'ops', password: { env: 'MAILAGENT_TEST_NO_SUCH_PASSWORD' } };
  raw.services.mail = { accounts: { ops: { address: 'ops@example.com', imap: closed, smtp: closed } } };
  raw.services.nms = {
    timeoutSeconds: 0.2,
    devices: { r1: { snmp: { host: '127.0.0.1', port: 9, version: '2c', community: { env: 'MAILAGENT_TEST_NO_SUCH_PASSWORD' }, retries: 0, writable: ['sysLocation'] } } },
  };
  raw.services.backup = { targets: { t1: { sources: [join(dir, 'src')], destination: join(dir, 'bk') } } };
  raw.services.jobs = {
    timezone: 'UTC',
    jobs: {
      report: { description: 'says report', command: ['echo', 'report'] },
      greet: { description: 'greets someone', command: ['echo', 'hello', '{who}'], params: { who: { type: 'string', pattern: '[a-z]+', default: 'you' } } },
    },
  };
});

/**
 * Valid values for the arguments of an action, so that a hostile word meets the check meant for
 * it (which query, which job) instead of a "missing argument" problem. With a context, the words
 * go into the arguments it names (one at a time, the others keep their valid values) and in as
 * argument names; an action not listed here is tried with each word alone in each of its
 * name-like arguments. If a new action's refusal then does not name the word (say, because a
 * required argument is missing), give it a context here.
 */
const CONTEXTS: Record<string, Record<string, string>[]> = {
  'db describe': [{ table: 'hosts', db: 'inventory' }],
  'db query': [{ name: 'open_tickets', db: 'inventory' }, { name: 'host', hostname: 'web-ams-01' }],
  'db update': [{ name: 'set_ticket_status', id: '1', status: 'open', db: 'inventory' }],
  'db sql': [{ sql: 'SELECT 1', db: 'inventory' }],
  'jobs run': [{ name: 'report' }, { name: 'greet', who: 'bob' }],
  'jobs log': [{ name: 'report' }],
  'jobs schedule': [{ verb: 'set', name: 'report', cron: '0 2 * * *' }, { verb: 'clear', name: 'report' }],
  'files list': [{ share: 'drop', path: 'sub' }],
  'files stat': [{ share: 'drop', path: 'new.txt' }],
  'files get': [{ share: 'drop', path: 'new.txt' }],
  'files put': [{ share: 'drop', path: 'new.txt', attach: 'a.txt' }],
  'files rm': [{ share: 'drop', path: 'new.txt' }],
  'mail send': [{ account: 'ops', to: 'a@example.com', subject: 's', body: 'b', attach: 'a.pdf' }],
  'mail list': [{ account: 'ops' }],
  'mail get': [{ account: 'ops', uid: '1' }],
  'mail folders': [{ account: 'ops' }],
  'nms status': [{ device: 'r1' }],
  'nms config': [{ device: 'r1' }],
  'nms get': [{ device: 'r1', oid: 'sysName' }],
  'nms set': [{ device: 'r1', sysLocation: 'x' }],
  'nms stats': [{ device: 'r1', since: '1h' }],
  'nms alert': [{ verb: 'set', name: 'a1', device: 'r1', when: 'reachable', every: '60s', then: 'mail x@example.com' }],
  'backup run': [{ target: 't1' }],
  'backup list': [{ target: 't1' }],
  'backup verify': [{ target: 't1', id: '20260101T000000Z' }],
  'backup schedule': [{ verb: 'set', target: 't1', cron: '0 2 * * *' }, { verb: 'clear', target: 't1' }],
};

const quote = (v: string) => (/[\s"]/.test(v) ? `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : v);

/** A command line: positional arguments as bare words while they are contiguous, the rest as key=value. */
function line(service: string, actionName: string, action: Action, args: [string, string][], bare: boolean): string {
  const given = new Map(args);
  const words: string[] = [];
  if (bare) {
    for (const p of action.positional ?? []) {
      if (!given.has(p)) break;
      words.push(quote(given.get(p)!));
      given.delete(p);
    }
  }
  return [service, actionName, ...words, ...[...given].map(([k, v]) => `${k}=${quote(v)}`)].join(' ');
}

interface Case {
  command: string;
  /** When set, the reply must refuse the line with a problem matching this. */
  refusal?: RegExp;
  /** The hostile word, which the problem or the error must name. */
  word: string;
  /** The argument whose value the word is, if any. */
  arg?: string;
}

/** Arguments that name something: positional ones, strings and enums. */
/**
 * Arguments that are text handed to a server or a file system as it is (a subject, a folder on
 * the IMAP server, a path in a share), never a key looked up in the agent's own objects: a
 * hostile word there is a valid value.
 */
const FREE_TEXT = new Set([
  'mail send to', 'mail send cc', 'mail send subject', 'mail send body', 'mail list folder', 'mail list from', 'mail get folder', 'mail folders folder',
  // Matched against the interface descriptions a device reported (ifDescr), by comparison.
  'nms stats interface',
  // The name of a new rule, a key of the state store (never a property of an object here).
  'nms alert name',
]);

function nameLikeArgs(serviceName: string, actionName: string, action: Action): string[] {
  const positional = action.positional ?? [];
  const names = Object.entries(action.args).filter(([name, spec]) => positional.includes(name) || spec.type === 'string' || spec.type === 'enum').map(([name]) => name);
  return [...new Set([...names, ...positional])].filter((name) => !FREE_TEXT.has(`${serviceName} ${actionName} ${name}`));
}

function cases(registry: Record<string, Service>): Case[] {
  const all: Case[] = [];
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const [serviceName, service] of Object.entries(registry)) {
    const firstAction = Object.keys(service.actions)[0];
    for (const word of HOSTILE) {
      all.push({ command: `${word} ${firstAction}`, word, refusal: new RegExp(`unknown command "${esc(word)}"`) });
      all.push({ command: `${serviceName} ${word}`, word, refusal: new RegExp(`unknown action "${esc(word)}" for ${serviceName}`) });
    }
    for (const [actionName, action] of Object.entries(service.actions)) {
      const positional = action.positional ?? [];
      const nameLike = nameLikeArgs(serviceName, actionName, action);
      const contexts = CONTEXTS[`${serviceName} ${actionName}`] ?? [{}];
      for (const context of contexts) {
        const tested = CONTEXTS[`${serviceName} ${actionName}`] ? nameLike.filter((a) => Object.hasOwn(context, a)) : nameLike;
        for (const word of HOSTILE) {
          // As an argument's name: never a declared argument, never a parameter of a named query or job.
          // (The tokenizer already refuses a name that does not start with a letter, like __proto__.)
          const args = Object.entries(context);
          const refusal = new RegExp(`unknown argument "${esc(word)}"|^"${esc(word)}" is not a valid argument name$`);
          all.push({ command: line(serviceName, actionName, action, [...args, [word, 'x']], true), word, refusal });
          // As the value of each name-like argument, bare word and key=value.
          for (const arg of tested) {
            const withWord: [string, string][] = [...args.filter(([k]) => k !== arg), [arg, word]];
            const forms = positional.includes(arg) ? [true, false] : [false];
            for (const bare of forms) all.push({ command: line(serviceName, actionName, action, withWord, bare), word, arg });
          }
        }
      }
    }
  }
  return [...new Map(all.map((c) => [c.command, c])).values()];
}

/** The real registry, each action wrapped so that every run is recorded. */
function recording(ran: string[]): Registry {
  return Object.fromEntries(
    Object.entries(services).map(([name, s]) => [
      name,
      {
        ...s,
        actions: Object.fromEntries(
          Object.entries(s.actions).map(([a, action]) => [a, { ...action, run: (args: Record<string, unknown>, ctx: Parameters<Action['run']>[1]) => (ran.push(`${name} ${a}`), action.run(args, ctx)) }]),
        ),
      },
    ]),
  );
}

const generated = cases(services);

test('the cases cover every service, every action and every hostile word', () => {
  for (const [serviceName, service] of Object.entries(services)) {
    assert.ok(Object.hasOwn(config.services, serviceName), `${serviceName} is configured in this test, so its actions are reachable`);
    for (const actionName of Object.keys(service.actions)) {
      for (const word of HOSTILE) {
        assert.ok(generated.some((c) => c.command.startsWith(`${serviceName} ${actionName} `) && c.word === word && !c.arg), `${serviceName} ${actionName} ${word}=x`);
        for (const arg of nameLikeArgs(serviceName, actionName, service.actions[actionName])) {
          assert.ok(generated.some((c) => c.command.startsWith(`${serviceName} ${actionName} `) && c.word === word && c.arg === arg), `${serviceName} ${actionName} ${arg}=${word}`);
        }
      }
    }
  }
});

test('prepare: a hostile argument name is an unknown argument, even one the tokenizer would refuse', () => {
  for (const [serviceName, service] of Object.entries(services)) {
    for (const [actionName, action] of Object.entries(service.actions)) {
      for (const context of CONTEXTS[`${serviceName} ${actionName}`] ?? [{}]) {
        for (const word of HOSTILE) {
          // As core collects them: an object without a prototype, so "__proto__" is an own key.
          const args: Record<string, string> = Object.assign(Object.create(null), context);
          args[word] = '1';
          const prepared = action.prepare ? action.prepare(args, config) : convertArgs(args, action.args);
          const where = `${serviceName} ${actionName} ${JSON.stringify(context)} ${word}=1`;
          assert.ok(!prepared.ok, `${where}: refused`);
          if (!prepared.ok) assert.ok(prepared.problems.some((p) => p.startsWith(`unknown argument "${word}"`)), `${where}: ${prepared.problems.join('; ')}`);
        }
      }
    }
  }
});

for (const c of generated) {
  test(`${c.command}: refused or failed, naming "${c.word}"; nothing runs`, async () => {
    const ran: string[] = [];
    const jobsStore = new MemoryServiceStore();
    bindServiceStore(config, jobsStore);
    const deps = testDeps(config, { services: recording(ran) });
    let outcome;
    try {
      outcome = await processMessage(mail(c.command), deps);
    } catch (err) {
      assert.unreachable(`processMessage threw: ${(err as Error).stack}`);
      return;
    }
    assert.is(outcome.kind, 'reply', `a reply, never silence (${outcome.kind === 'silent' ? outcome.reason : ''})`);
    const reply = await readReply(outcome);
    const text = reply.text ?? '';
    const subject = reply.subject ?? '';
    assert.not.match(text, /internal error/, text);
    assert.equal(deps.errors, [], 'nothing was logged as an internal error');

    // As the reply quotes a line: cut at 80 characters.
    const quoted = c.command.length > 80 ? `${c.command.slice(0, 77)}…` : c.command;
    const prefix = `- line 1: "${quoted}": `;
    const problem = text.split('\n').find((l) => l.startsWith(prefix))?.slice(prefix.length);
    if (c.refusal) {
      assert.match(subject, 'not processed', `${subject}\n${text}`);
      assert.ok(problem !== undefined && c.refusal.test(problem), `expected ${c.refusal} in:\n${text}`);
    } else if (subject.includes('not processed')) {
      assert.ok(problem?.includes(c.word), `the problem names "${c.word}":\n${text}`);
    } else {
      assert.match(subject, 'processed (0 ok, 1 failed)', `refused or failed:\n${text}`);
      const error = /^ERROR: (.*)$/m.exec(text)?.[1];
      assert.ok(error?.includes(c.word), `the error names "${c.word}":\n${text}`);
    }
    // A run that was attempted (e.g. db describe of a table that does not exist) changed nothing.
    if (ran.length) assert.match(subject, '(0 ok, 1 failed)', `${ran.join(', ')} ran: ${text}`);
    assert.equal(await jobsStore.listRuns({ limit: 100 }), [], 'no job run was recorded');
    assert.equal(await jobsStore.listSchedules(), [], 'no schedule was stored');
  });
}

test.after(async () => {
  await closeDatabases();
  await closeServiceStores();
  cleanup();
});

test.run();
