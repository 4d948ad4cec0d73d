import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tokenize } from '../src/core/tokenize';
import { readRequest } from '../src/core/request';
import { commandLines } from '../src/core/lines';
import { services } from '../src/services/registry';
import { demoConfig, tempDir } from './support/env';

const { dir, cleanup } = tempDir();
const config = demoConfig(dir);
const admin = config.users.find((u) => u.roles.includes('admin'))!;
const viewer = config.users.find((u) => u.roles.includes('viewer'))!;
const read = (body: string, user = admin) => readRequest(commandLines(body), config, user, services);

test('words, key=value pairs and quoted values', () => {
  assert.equal(tokenize('db query name=host name2="web 01" x=\'a b\'').tokens, [
    { value: 'db' },
    { value: 'query' },
    { key: 'name', value: 'host' },
    { key: 'name2', value: 'web 01' },
    { key: 'x', value: 'a b' },
  ]);
});

test('typographic quotes from mail clients count as quotes', () => {
  assert.equal(tokenize('db query note=“two words”').tokens[2], { key: 'note', value: 'two words' });
});

test('escapes inside quotes', () => {
  assert.equal(tokenize('x a="say \\"hi\\" \\\\ bye"').tokens[1], { key: 'a', value: 'say "hi" \\ bye' });
});

test('malformed quoting is a problem, not a guess', () => {
  assert.is(tokenize('db query name="open').problem, 'unterminated quote');
  assert.match(tokenize('db query name="a"b').problem!, 'closing quote');
  assert.match(tokenize('db query =x').problem!, 'without a name');
  assert.match(tokenize('db query na$me=x').problem!, 'not a valid argument name');
});

test('shell metacharacters stay literal text inside one value', () => {
  assert.equal(tokenize('db query name=host hostname="$(id); rm -rf / `x`"').tokens[3], { key: 'hostname', value: '$(id); rm -rf / `x`' });
});

test('a valid request converts typed arguments and applies defaults', () => {
  const r = read('db query name=tickets_by_priority\ndb query open_tickets since=2026-11-01');
  assert.equal(r.problems, []);
  const [a, b] = r.commands;
  assert.equal(a.kind === 'action' && a.args, { name: 'tickets_by_priority', db: null, params: { priority: 1 } });
  assert.equal(b.kind === 'action' && b.args, { name: 'open_tickets', db: null, params: { since: '2026-11-01' } });
});

test('every problem is reported with its line, and suggestions for typos', () => {
  const r = read('db tables\ndb qurey name=host\nbd tables\ndb query name=host name=x\ndb query name=hosts_by_site site=paris\ndb query name=nope\ndb describe');
  assert.is(r.problems.length, 6);
  assert.match(r.problems[0], /^line 2: "db qurey name=host": unknown action "qurey" for db — did you mean "query"\?/);
  assert.match(r.problems[1], /^line 3: .*unknown command "bd" — did you mean "db"\?/);
  assert.match(r.problems[2], /^line 4: .*name is given twice/);
  assert.match(r.problems[3], /^line 5: .*site=paris: expected one of ams, fra, lon/);
  assert.match(r.problems[4], /^line 6: .*no query named "nope" in database inventory \(available: open_tickets, /);
  assert.match(r.problems[5], /^line 7: .*missing table=/);
});

test('argument types are enforced', () => {
  const r = read('db query name=open_tickets since=2026-02-30\ndb query name=tickets_by_priority priority=9\ndb query name=tickets_by_priority priority=one\ndb query name=host hostname=UPPER');
  assert.is(r.problems.length, 4);
  assert.match(r.problems[0], 'expected a date YYYY-MM-DD');
  assert.match(r.problems[1], 'must be ≤ 4');
  assert.match(r.problems[2], 'expected an integer');
  assert.match(r.problems[3], 'does not match the allowed form');
});

test('unknown arguments and stray words are refused', () => {
  const r = read('db tables extra\ndb tables colour=red\ndb query name=host hostname=a bogus=1');
  assert.match(r.problems[0], 'unexpected word "extra"');
  assert.match(r.problems[1], 'unknown argument "colour"');
  assert.match(r.problems[2], 'unknown argument "bogus"');
});

test('roles limit what a user may run', () => {
  const r = read('db tables\ndb describe hosts', viewer);
  assert.equal(r.problems, ['line 2: "db describe hosts": not allowed: your roles do not grant db:describe']);
});

test('role grants can constrain arguments', () => {
  const constrained = demoConfig(dir, (raw) => {
    raw.roles.sites = ['db:query name=hosts_by_site site=a*', 'db:tables'];
    raw.users.push({ address: 'site@example.com', roles: ['sites'] });
  });
  const user = constrained.users.at(-1)!;
  const r = readRequest(commandLines('db query name=hosts_by_site site=ams\ndb query name=hosts_by_site site=fra\ndb query name=all_tickets\ndb describe hosts'), constrained, user, services);
  assert.equal(r.problems, [
    'line 2: "db query name=hosts_by_site site=fra": not allowed: your roles do not grant db:query with these arguments',
    'line 3: "db query name=all_tickets": not allowed: your roles do not grant db:query with these arguments',
    'line 4: "db describe hosts": not allowed: your roles do not grant db:describe',
  ]);
});

test('caps: 50 commands and 4 KB per line', () => {
  const many = read(Array.from({ length: 51 }, () => 'db tables').join('\n'));
  assert.equal(many.problems, ['too many commands: more than 50 (at most 50 per message)']);
  const long = read(`db query name=host hostname=${'a'.repeat(5000)}`);
  assert.match(long.problems[0], 'longer than 4096 bytes');
  assert.is(read(Array.from({ length: 50 }, () => 'db tables').join('\n')).problems.length, 0);
});

test('built-ins: help, help <service>, status', () => {
  const r = read('help\nhelp db\nstatus\nhelp nms\nstatus now');
  assert.is(r.commands.length, 3);
  assert.match(r.problems[0], 'no service "nms"');
  assert.match(r.problems[1], 'status takes no arguments');
});

test.after(cleanup);
test.run();
