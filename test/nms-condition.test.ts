import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type Classify,
  type Condition,
  type ConditionValue,
  MAX_CONDITION_DEPTH,
  MAX_CONDITION_LENGTH,
  compareNumbers,
  evaluateCondition,
  formatCondition,
  parseCondition,
} from '../src/services/nms/condition';

// The condition language of network alert rules: parsing (with exact, positioned problems),
// three-valued evaluation, canonical text, and input from a hostile mail.

const IF_STATUS = { up: 1, down: 2, testing: 3, unknown: 4, dormant: 5, notPresent: 6, lowerLayerDown: 7 };
const TRUTH_VALUE = { true: 1, false: 2 };
const KNOWN = new Set(['sysUpTime', 'sysLocation', 'reachable', 'responseMs', 'status', 'ok', 'a', 'b', 'c', 'laLoad']);

/** Like the real caller: MIB names with their enumerations, check results, numeric OIDs. */
const classify: Classify = (ref) => {
  if (/^if(Oper|Admin)Status(\.\d+)+$/.test(ref)) return { ok: true, enumeration: IF_STATUS };
  if (/^snmpEnableAuthenTraps\.0$/.test(ref)) return { ok: true, enumeration: TRUTH_VALUE };
  if (/^(ifInErrors|ifOutErrors|ifHCInOctets|laLoad)(\.\d+)+$/.test(ref) || /^\d+(\.\d+){2,}$/.test(ref) || KNOWN.has(ref)) return { ok: true };
  return { ok: false, problem: `unknown name ${JSON.stringify(ref)}` };
};

function parsed(text: string, by: Classify = classify): Condition {
  const r = parseCondition(text, by);
  if (!r.ok) throw new Error(`${text}: ${r.problem}`);
  return r.condition;
}

function problem(text: string, by: Classify = classify): string {
  const r = parseCondition(text, by);
  if (r.ok) throw new Error(`${text}: parsed as ${formatCondition(r.condition)}`);
  return r.problem;
}

function evaluate(text: string, values: Record<string, ConditionValue>): boolean | string {
  const r = evaluateCondition(parsed(text), new Map(Object.entries(values)));
  return 'value' in r ? r.value : `unknown: ${r.unknown}`;
}

test('the examples parse, with their references in order of appearance', () => {
  const cases: Array<[string, string, string[]]> = [
    ['ifOperStatus.2 != up', 'ifOperStatus.2 != up', ['ifOperStatus.2']],
    ['sysUpTime < 6000', 'sysUpTime < 6000', ['sysUpTime']],
    ['reachable == false', 'reachable == false', ['reachable']],
    ['responseMs > 500 or status != 200', 'responseMs > 500 or status != 200', ['responseMs', 'status']],
    [
      '(ifInErrors.3 > 10 and ifOperStatus.3 == up) or not reachable',
      'ifInErrors.3 > 10 and ifOperStatus.3 == up or not reachable',
      ['ifInErrors.3', 'ifOperStatus.3', 'reachable'],
    ],
    ['1.3.6.1.4.1.8072.9999.1.0 >= 5', '1.3.6.1.4.1.8072.9999.1.0 >= 5', ['1.3.6.1.4.1.8072.9999.1.0']],
    ['sysLocation == "rack 4"', 'sysLocation == "rack 4"', ['sysLocation']],
  ];
  for (const [text, canonical, references] of cases) {
    const r = parseCondition(text, classify);
    assert.ok(r.ok, text);
    if (!r.ok) continue;
    assert.is(formatCondition(r.condition), canonical, text);
    assert.equal(r.references, references, text);
  }
});

test('the tree: precedence (not > and > or), flattening, literals and enumeration values', () => {
  assert.equal(parsed('a or b and not c'), {
    kind: 'or',
    operands: [
      { kind: 'truthy', reference: 'a' },
      { kind: 'and', operands: [{ kind: 'truthy', reference: 'b' }, { kind: 'not', operand: { kind: 'truthy', reference: 'c' } }] },
    ],
  });
  // Parentheses group; nested ands (or ors) are one list.
  assert.equal(parsed('(a and b) and (c)'), {
    kind: 'and',
    operands: [{ kind: 'truthy', reference: 'a' }, { kind: 'truthy', reference: 'b' }, { kind: 'truthy', reference: 'c' }],
  });
  // not binds to the whole comparison that follows it.
  assert.equal(parsed('not ifOperStatus.2 == up'), {
    kind: 'not',
    operand: { kind: 'compare', op: '==', left: { kind: 'reference', name: 'ifOperStatus.2' }, right: { kind: 'enumeration', word: 'up', value: 1 } },
  });
  assert.equal(parsed('down == ifAdminStatus.1.4'), {
    kind: 'compare',
    op: '==',
    left: { kind: 'enumeration', word: 'down', value: 2 },
    right: { kind: 'reference', name: 'ifAdminStatus.1.4' },
  });
  assert.equal(parsed('status != -1.50'), {
    kind: 'compare',
    op: '!=',
    left: { kind: 'reference', name: 'status' },
    right: { kind: 'number', text: '-1.50' },
  });
  assert.equal(parsed('sysLocation == "say \\"hi\\" C:\\\\x \\n"'), {
    kind: 'compare',
    op: '==',
    left: { kind: 'reference', name: 'sysLocation' },
    right: { kind: 'string', value: 'say "hi" C:\\x \\n' },
  });
  // An OID's leading dot is dropped: values are looked up without it.
  assert.equal(parsed('.1.3.6.1.2.1.1.3.0 > 0'), {
    kind: 'compare',
    op: '>',
    left: { kind: 'reference', name: '1.3.6.1.2.1.1.3.0' },
    right: { kind: 'number', text: '0' },
  });
});

test('keywords are case-insensitive, names are not; spacing is free', () => {
  assert.is(formatCondition(parsed('NOT reachable AND status==200 Or (responseMs>=5)')), 'not reachable and status == 200 or responseMs >= 5');
  assert.is(formatCondition(parsed('reachable == TRUE')), 'reachable == true');
  assert.is(formatCondition(parsed('\treachable\t==\tFalse ')), 'reachable == false');
  assert.is(formatCondition(parsed('ifOperStatus.2==down')), 'ifOperStatus.2 == down');
  assert.is(problem('Reachable'), 'at column 1: unknown name "Reachable"');
  // An enumeration word matches its own spelling, else the one case-insensitive match.
  assert.is(formatCondition(parsed('ifOperStatus.2 == LOWERLAYERDOWN')), 'ifOperStatus.2 == lowerLayerDown');
});

test('problems name their column, what was expected and what was found', () => {
  const cases: Array<[string, string]> = [
    ['ifOperStatus.2 !! up', 'at column 16: expected a comparison operator (==, !=, <, <=, >, >=), found "!!"'],
    ['ifOperStatus.2 = up', 'at column 16: expected a comparison operator (==, !=, <, <=, >, >=), found "="'],
    ['sysUpTime === 5', 'at column 11: expected a comparison operator (==, !=, <, <=, >, >=), found "==="'],
    ['sysUpTime <> 5', 'at column 11: expected a comparison operator (==, !=, <, <=, >, >=), found "<>"'],
    ['reachable && ok', 'at column 11: expected a comparison operator (==, !=, <, <=, >, >=), found "&&"'],
    ['reachable ok', 'at column 11: expected a comparison operator (==, !=, <, <=, >, >=), found "ok"'],
    ['5', 'at column 2: expected a comparison operator (==, !=, <, <=, >, >=), found the end of the condition'],
    ['sysUpTime <', 'at column 12: expected a value after < (a reference, number, "string", true, false or a word like up), found the end of the condition'],
    ['sysUpTime < (5)', 'at column 13: expected a value after < (a reference, number, "string", true, false or a word like up), found "("'],
    ['ifOperStatus.2 == upp', 'at column 19: "upp" is not a value of ifOperStatus.2 (up, down, testing, unknown, dormant, notPresent, lowerLayerDown)'],
    ['ifOperStatus.2 == "up "', 'at column 19: "up " is not a value of ifOperStatus.2 (up, down, testing, unknown, dormant, notPresent, lowerLayerDown)'],
    ['ifOperStatus.2 == true', 'at column 19: "true" is not a value of ifOperStatus.2 (up, down, testing, unknown, dormant, notPresent, lowerLayerDown)'],
    ['ifOperStatus.2', 'at column 1: ifOperStatus.2 is not true or false; compare it with a value, like ifOperStatus.2 == up'],
    ['nosuch > 1', 'at column 1: unknown name "nosuch"'],
    ['reachable and nosuch.4 > 1', 'at column 15: unknown name "nosuch.4"'],
    ['status == nosuch', 'at column 11: unknown name "nosuch"'],
    ['sysLocation == "rack 4', 'at column 16: unterminated string (no closing ")'],
    ['sysLocation == "rack 4\\"', 'at column 16: unterminated string (no closing ")'],
    ['reachable or', 'at column 13: expected a condition (a comparison, a reference, not or "("), found the end of the condition'],
    ['and reachable', 'at column 1: expected a condition (a comparison, a reference, not or "("), found "and"'],
    ['not', 'at column 4: expected a condition (a comparison, a reference, not or "("), found the end of the condition'],
    ['()', 'at column 2: expected a condition (a comparison, a reference, not or "("), found ")"'],
    ['(reachable', 'at column 11: expected and, or, or ")" to close the "(" at column 1, found the end of the condition'],
    ['(reachable or (ok) status == 1', 'at column 20: expected and, or, or ")" to close the "(" at column 1, found "status"'],
    ['reachable)', 'at column 10: expected and, or, or the end of the condition, found ")"'],
    ['(reachable) ok', 'at column 13: expected and, or, or the end of the condition, found "ok"'],
    ['status == 200 404', 'at column 15: expected and, or, or the end of the condition, found "404"'],
    ['reachable "yes"', 'at column 11: expected a comparison operator (==, !=, <, <=, >, >=), found the string "yes"'],
    ['1 < 2', 'at column 1: a comparison needs a reference on one side, found "1 < 2"'],
    ['"a" == true', 'at column 1: a comparison needs a reference on one side, found ""a" == true"'],
    ['sysLocation < "rack 4"', 'at column 13: < compares numbers, and "rack 4" is a string (use == or !=)'],
    ['false >= reachable', 'at column 7: >= compares numbers, and false is a boolean (use == or !=)'],
    ['sysUpTime > 1e5', 'at column 13: "1e5" is not a valid number or OID (a number is like 42, -1 or 0.5; an OID has at least 3 numbers separated by dots)'],
    ['sysUpTime > 1.3.', 'at column 13: "1.3." is not a valid number or OID (a number is like 42, -1 or 0.5; an OID has at least 3 numbers separated by dots)'],
    ['.5 < sysUpTime', 'at column 1: ".5" is not a valid number or OID (a number is like 42, -1 or 0.5; an OID has at least 3 numbers separated by dots)'],
    ['-1.3.6.1 > 0', 'at column 1: "-1.3.6.1" is not a valid number or OID (a number is like 42, -1 or 0.5; an OID has at least 3 numbers separated by dots)'],
    ['ifOperStatus. == up', 'at column 1: "ifOperStatus." is not a valid reference (a name like sysUpTime or http.status, then an optional index of numbers, like ifOperStatus.2)'],
    ['ifOperStatus.2.x == up', 'at column 1: "ifOperStatus.2.x" is not a valid reference (a name like sysUpTime or http.status, then an optional index of numbers, like ifOperStatus.2)'],
    ['ifOperStatus..2 == up', 'at column 1: "ifOperStatus..2" is not a valid reference (a name like sysUpTime or http.status, then an optional index of numbers, like ifOperStatus.2)'],
    ['ifOperStatus.x == up', 'at column 1: unknown name "ifOperStatus.x"'],
    ["sysLocation == 'rack'", 'at column 16: expected a value after == (a reference, number, "string", true, false or a word like up), found "\'"'],
    ['', 'the condition is empty'],
    ['  \t ', 'the condition is empty'],
  ];
  for (const [text, expected] of cases) assert.is(problem(text), expected, text);
});

test('the first problem in the text is the one reported; columns count characters', () => {
  // "!!" comes before the malformed number, so it is reported, not "1e5".
  assert.is(problem('sysUpTime !! 1e5'), 'at column 11: expected a comparison operator (==, !=, <, <=, >, >=), found "!!"');
  assert.is(problem('reachable or 1e5 > sysUpTime and "x'), 'at column 14: "1e5" is not a valid number or OID (a number is like 42, -1 or 0.5; an OID has at least 3 numbers separated by dots)');
  // A character outside the BMP is one column.
  assert.is(problem('sysLocation == "😀" !'), 'at column 20: expected and, or, or the end of the condition, found "!"');
  assert.is(problem('😀 == 1'), 'at column 1: expected a condition (a comparison, a reference, not or "("), found "😀"');
});

test('check result names may be dotted: http.status, tcp.reachable', () => {
  const checks: Classify = (ref) => (['http.status', 'tcp.reachable', 'http.responseMs'].includes(ref) ? { ok: true } : { ok: false, problem: `unknown name "${ref}"` });
  const r = parseCondition('not tcp.reachable or http.status != 200 or http.responseMs > 1500.5', checks);
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.equal(r.references, ['tcp.reachable', 'http.status', 'http.responseMs']);
  assert.is(formatCondition(r.condition), 'not tcp.reachable or http.status != 200 or http.responseMs > 1500.5');
  const values = new Map<string, ConditionValue>([['tcp.reachable', true], ['http.status', 200], ['http.responseMs', 1500.75]]);
  assert.equal(evaluateCondition(r.condition, values), { value: true });
  values.set('http.responseMs', 1500.5);
  assert.equal(evaluateCondition(r.condition, values), { value: false });
  // A dotted name is a reference even opposite an enumeration.
  assert.is(parseCondition('ifOperStatus.1 == http.status', (ref) => (ref === 'http.status' ? { ok: true } : classify(ref))).ok, true);
});

test('classify decides about every reference, with its position', () => {
  const asked: string[] = [];
  const r = parseCondition('a == 1 or x.1 < 2 or 1.3.6.1.2 > 0 or a', (ref) => {
    asked.push(ref);
    return ref === 'x.1' ? { ok: false, problem: 'x.1 is not in the device MIBs' } : { ok: true };
  });
  assert.equal(r, { ok: false, problem: 'at column 11: x.1 is not in the device MIBs' });
  assert.equal(asked, ['a', 'x.1']);
  const everything: Classify = () => ({ ok: true });
  const all = parseCondition('a == 1 or x.1 < 2 or .1.3.6.1.2 > 0 or a', everything);
  assert.equal(all.ok && all.references, ['a', 'x.1', '1.3.6.1.2']);
});

test('bounds: length and nesting', () => {
  const started = performance.now();
  assert.is(problem('('.repeat(10_000) + 'reachable' + ')'.repeat(10_000)), 'the condition is longer than 500 characters (20009)');
  assert.is(problem('x'.repeat(500_000)), 'the condition is longer than 500 characters (500000)');
  assert.is(problem('sysLocation == "' + 'a'.repeat(500_000) + '"'), 'the condition is longer than 500 characters (500017)');
  assert.ok(performance.now() - started < 2000, 'rejected without reading it all');

  // Exactly the limit is fine, one more is not.
  const long = ('reachable or ').repeat(37) + 'reachable';
  assert.ok(long.length <= MAX_CONDITION_LENGTH);
  const padded = long + ' '.repeat(MAX_CONDITION_LENGTH - long.length);
  assert.is(padded.length, 500);
  assert.ok(parseCondition(padded, classify).ok);
  assert.is(problem(padded + ' '), 'the condition is longer than 500 characters (501)');

  const nested = (n: number) => '('.repeat(n) + 'reachable' + ')'.repeat(n);
  assert.is(MAX_CONDITION_DEPTH, 20);
  assert.equal(parsed(nested(20)), { kind: 'truthy', reference: 'reachable' });
  assert.is(problem(nested(21)), 'at column 21: nested more than 20 levels deep');
  assert.is(problem(nested(200)), 'at column 21: nested more than 20 levels deep');
  assert.is(problem('not '.repeat(21) + 'reachable'), 'at column 81: nested more than 20 levels deep');
  assert.ok(parseCondition('not '.repeat(20) + 'reachable', classify).ok);
  // "not (" is one level, as in the canonical text of a negated comparison.
  assert.ok(parseCondition('not ('.repeat(20) + 'reachable' + ')'.repeat(20), classify).ok);
  assert.is(problem('not ('.repeat(21) + 'reachable' + ')'.repeat(21)), 'at column 105: nested more than 20 levels deep');
  // A problem found later never hides the depth bound behind unbounded work: 499 parens.
  assert.is(problem('('.repeat(499)), 'at column 21: nested more than 20 levels deep');
});

test('names from the mail never reach the prototype: __proto__, constructor, toString', () => {
  // The caller decides about references; the parser only passes them on.
  const everything: Classify = () => ({ ok: true });
  for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
    const r = parseCondition(`${name} > 1 or ${name}`, everything);
    assert.ok(r.ok, name);
    if (!r.ok) continue;
    assert.equal(r.references, [name]);
    // No value: unknown, not something every object inherits.
    assert.equal(evaluateCondition(r.condition, new Map()), { unknown: `${name} has no value` }, name);
    assert.equal(evaluateCondition(r.condition, new Map([[name, 5]])), { value: true }, name);
    // Not a value of an enumeration either.
    assert.match(problem(`ifOperStatus.1 == ${name}`), `at column 19: "${name}" is not a value of ifOperStatus.1 (`);
  }
  const refused = parseCondition('__proto__ == 1', (ref) => (ref === '__proto__' ? { ok: false, problem: 'no such object' } : { ok: true }));
  assert.equal(refused, { ok: false, problem: 'at column 1: no such object' });
  // An enumeration that really has such a key (JSON makes an own __proto__ property) finds it.
  const odd = JSON.parse('{"__proto__": 9, "up": 1}') as Record<string, number>;
  assert.equal(parsed('x.1 == __proto__', () => ({ ok: true, enumeration: odd })), {
    kind: 'compare',
    op: '==',
    left: { kind: 'reference', name: 'x.1' },
    right: { kind: 'enumeration', word: '__proto__', value: 9 },
  });
  // Object.prototype is untouched.
  assert.is(({} as Record<string, unknown>).polluted, undefined);
});

test('three-valued logic: truth tables for and, or, not with unknown', () => {
  type V = true | false | 'u';
  const value = (v: V): ConditionValue => (v === 'u' ? null : v);
  const and = (x: V, y: V): V => (x === false || y === false ? false : x === 'u' || y === 'u' ? 'u' : true);
  const or = (x: V, y: V): V => (x === true || y === true ? true : x === 'u' || y === 'u' ? 'u' : false);
  const all: V[] = [true, false, 'u'];
  const result = (text: string, x: V, y: V): V => {
    const r = evaluateCondition(parsed(text), new Map([['a', value(x)], ['b', value(y)]]));
    return 'value' in r ? r.value : 'u';
  };
  let checked = 0;
  for (const x of all) {
    for (const y of all) {
      assert.is(result('a and b', x, y), and(x, y), `${x} and ${y}`);
      assert.is(result('a or b', x, y), or(x, y), `${x} or ${y}`);
      assert.is(result('not a', x, y), x === 'u' ? 'u' : !x, `not ${x}`);
      assert.is(result('not (a and b)', x, y), ((v: V) => (v === 'u' ? 'u' : !v))(and(x, y)), `not (${x} and ${y})`);
      checked++;
    }
  }
  assert.is(checked, 9);
  // The reason travels: the first unknown operand's.
  const r = evaluateCondition(parsed('a or b or c'), new Map<string, ConditionValue>([['a', false], ['c', null]]));
  assert.equal(r, { unknown: 'b has no value' });
  assert.equal(evaluateCondition(parsed('a and b'), new Map([['a', true]]), (ref) => (ref === 'b' ? 'noSuchInstance' : undefined)), {
    unknown: 'b has no value (noSuchInstance)',
  });
  assert.equal(
    evaluateCondition(parsed('ifOperStatus.9 == up'), new Map(), () => 'noSuchInstance'),
    { unknown: 'ifOperStatus.9 has no value (noSuchInstance)' },
  );
});

test('numbers compare exactly, Counter64 bigint values included', () => {
  const big = 9007199254740993n; // 2^53 + 1: not a double
  assert.is(evaluate('ifHCInOctets.1 > 9007199254740992', { 'ifHCInOctets.1': big }), true);
  assert.is(evaluate('ifHCInOctets.1 == 9007199254740993', { 'ifHCInOctets.1': big }), true);
  assert.is(evaluate('ifHCInOctets.1 >= 9007199254740994', { 'ifHCInOctets.1': big }), false);
  // The double 2^53 is below the literal 2^53 + 1, although Number() would call them equal.
  assert.is(evaluate('ifHCInOctets.1 < 9007199254740993', { 'ifHCInOctets.1': 2 ** 53 }), true);
  assert.is(evaluate('ifHCInOctets.1 == 18446744073709551615', { 'ifHCInOctets.1': 18446744073709551615n }), true);
  assert.is(evaluate('ifHCInOctets.1 != 18446744073709551615', { 'ifHCInOctets.1': 18446744073709551614n }), true);
  // bigint against decimals, both ways round.
  assert.is(evaluate('ifHCInOctets.1 > 2.5', { 'ifHCInOctets.1': 3n }), true);
  assert.is(evaluate('ifHCInOctets.1 > 2.5', { 'ifHCInOctets.1': 2n }), false);
  assert.is(evaluate('2.5 < ifHCInOctets.1', { 'ifHCInOctets.1': 3n }), true);
  assert.is(evaluate('-3.5 > ifHCInOctets.1', { 'ifHCInOctets.1': -4n }), true);
  assert.is(evaluate('ifHCInOctets.1 == 3.0', { 'ifHCInOctets.1': 3n }), true);
  // Literal on the left reverses the order.
  assert.is(evaluate('10 < sysUpTime', { sysUpTime: 11 }), true);
  assert.is(evaluate('10 < sysUpTime', { sysUpTime: 10 }), false);
  assert.is(evaluate('10 <= sysUpTime', { sysUpTime: 10 }), true);
  // Every operator, both outcomes.
  const ops: Array<[string, number, boolean]> = [
    ['==', 5, true], ['==', 6, false], ['!=', 6, true], ['!=', 5, false],
    ['<', 4, true], ['<', 5, false], ['<=', 5, true], ['<=', 6, false],
    ['>', 6, true], ['>', 5, false], ['>=', 5, true], ['>=', 4, false],
  ];
  for (const [op, v, expected] of ops) assert.is(evaluate(`sysUpTime ${op} 5`, { sysUpTime: v }), expected, `${v} ${op} 5`);
  // Two references: number with bigint.
  assert.is(evaluate('ifInErrors.1 > ifOutErrors.1', { 'ifInErrors.1': 2 ** 53, 'ifOutErrors.1': big }), false);
  assert.is(evaluate('ifInErrors.1 < ifOutErrors.1', { 'ifInErrors.1': 2 ** 53, 'ifOutErrors.1': big }), true);
  // Text that is a plain number counts as one (agents report loads as "0.15").
  assert.is(evaluate('laLoad.1 > 2', { 'laLoad.1': '0.15' }), false);
  assert.is(evaluate('laLoad.1 < 2', { 'laLoad.1': ' 0.15 ' }), true);
  assert.is(evaluate('laLoad.1 > 2', { 'laLoad.1': 'high' }), 'unknown: laLoad.1 is "high", not a number');
  assert.is(evaluate('sysUpTime > 2', { sysUpTime: true }), 'unknown: sysUpTime is true, not a number');
  assert.is(evaluate('sysUpTime > 2', { sysUpTime: NaN }), 'unknown: sysUpTime is NaN, not a number');
});

test('compareNumbers is exact across number and bigint', () => {
  const cases: Array<[number | bigint, number | bigint, -1 | 0 | 1 | undefined]> = [
    [1n, 1, 0], [1, 1n, 0], [2n ** 64n, 2 ** 64, 0], [2n ** 64n + 1n, 2 ** 64, 1], [2 ** 64, 2n ** 64n + 1n, -1],
    [3n, 2.5, 1], [2n, 2.5, -1], [-3n, -2.5, -1], [-2n, -2.5, 1], [0n, -0, 0], [5n, Infinity, -1], [5n, -Infinity, 1],
    [5n, NaN, undefined], [NaN, 5n, undefined], [NaN, NaN, undefined], [1.5, 1.25, 1],
  ];
  for (const [a, b, expected] of cases) assert.is(compareNumbers(a, b), expected, `${a} vs ${b}`);
});

test('enumerations, strings and booleans', () => {
  assert.is(evaluate('ifOperStatus.2 != up', { 'ifOperStatus.2': 1 }), false);
  assert.is(evaluate('ifOperStatus.2 != up', { 'ifOperStatus.2': 7 }), true);
  assert.is(evaluate('ifOperStatus.2 == lowerLayerDown', { 'ifOperStatus.2': 7 }), true);
  assert.is(evaluate('up == ifOperStatus.2', { 'ifOperStatus.2': 1 }), true);
  assert.is(evaluate('ifOperStatus.2 == 2', { 'ifOperStatus.2': 2 }), true);
  assert.is(evaluate('ifOperStatus.2 == up', { 'ifOperStatus.2': 1n }), true);
  assert.is(evaluate('ifOperStatus.2 >= down', { 'ifOperStatus.2': 7 }), true, 'ordered by their numbers');
  // A value already given by name counts; any other text is not a value of the enumeration.
  assert.is(evaluate('ifOperStatus.2 == up', { 'ifOperStatus.2': 'up' }), true);
  assert.is(evaluate('ifOperStatus.2 == up', { 'ifOperStatus.2': 'gone' }), 'unknown: ifOperStatus.2 is "gone", not a number');
  // Two references sharing an enumeration compare by number.
  assert.is(evaluate('ifOperStatus.2 != ifAdminStatus.2', { 'ifOperStatus.2': 2, 'ifAdminStatus.2': 1 }), true);
  // A TruthValue (true = 1, false = 2) reads as a boolean.
  assert.is(evaluate('snmpEnableAuthenTraps.0', { 'snmpEnableAuthenTraps.0': 1 }), true);
  assert.is(evaluate('snmpEnableAuthenTraps.0 == false', { 'snmpEnableAuthenTraps.0': 1 }), false);
  assert.is(evaluate('not snmpEnableAuthenTraps.0', { 'snmpEnableAuthenTraps.0': 2 }), true);

  assert.is(evaluate('sysLocation == "rack 4"', { sysLocation: 'rack 4' }), true);
  assert.is(evaluate('sysLocation == "rack 4"', { sysLocation: 'Rack 4' }), false);
  assert.is(evaluate('sysLocation != "rack 4"', { sysLocation: 'rack 5' }), true);
  assert.is(evaluate('"say \\"hi\\"" == sysLocation', { sysLocation: 'say "hi"' }), true);
  assert.is(evaluate('sysLocation == "4"', { sysLocation: 4 }), 'unknown: sysLocation is 4, not a string');
  // Two text references can be equal or not, but have no order.
  assert.is(evaluate('sysLocation == status', { sysLocation: 'x', status: 'x' }), true);
  assert.is(evaluate('sysLocation < status', { sysLocation: 'a', status: 'b' }), 'unknown: sysLocation < status: "a" and "b" cannot be ordered');
  assert.is(evaluate('sysLocation < status', { sysLocation: 'a', status: 5 }), 'unknown: sysLocation < status: cannot compare "a" with 5');

  assert.is(evaluate('reachable == false', { reachable: false }), true);
  assert.is(evaluate('reachable != false', { reachable: false }), false);
  assert.is(evaluate('reachable', { reachable: true }), true);
  assert.is(evaluate('not reachable', { reachable: true }), false);
  assert.is(evaluate('reachable', { reachable: 1 }), 'unknown: reachable is 1, not true or false');
  assert.is(evaluate('reachable == true', { reachable: 'yes' }), 'unknown: reachable is "yes", not true or false');
  assert.is(evaluate('reachable == ok', { reachable: true, ok: false }), false);
  // A long value from a device is shortened in the reason.
  assert.is(evaluate('sysUpTime > 1', { sysUpTime: 'x'.repeat(10_000) }), `unknown: sysUpTime is "${'x'.repeat(29)}…", not a number`);
});

test('a missing or null value makes its comparison unknown', () => {
  assert.is(evaluate('status != 200', {}), 'unknown: status has no value');
  assert.is(evaluate('status != 200', { status: null }), 'unknown: status has no value');
  // The alert a check result needs: down is reachable == false, a bad status is status != 200.
  assert.is(evaluate('reachable == false or status != 200', { reachable: false }), true);
  assert.is(evaluate('reachable == false or status != 200', { reachable: true, status: 503 }), true);
  assert.is(evaluate('reachable == false or status != 200', { reachable: true, status: 200 }), false);
  assert.is(evaluate('(ifInErrors.3 > 10 and ifOperStatus.3 == up) or not reachable', { reachable: true, 'ifOperStatus.3': 2 }), false);
  assert.is(
    evaluate('(ifInErrors.3 > 10 and ifOperStatus.3 == up) or not reachable', { reachable: true, 'ifOperStatus.3': 1 }),
    'unknown: ifInErrors.3 has no value',
  );
});

test('canonical text round-trips', () => {
  const cases: Array<[string, string]> = [
    ['NOT  reachable', 'not reachable'],
    ['not ifOperStatus.2==up', 'not (ifOperStatus.2 == up)'],
    ['not (a and b)', 'not (a and b)'],
    ['not not a', 'not not a'],
    ['(a or b) and c', '(a or b) and c'],
    ['a or (b and c)', 'a or b and c'],
    ['((a)) or ((b or c))', 'a or b or c'],
    ['a and (b or not (c or a))', 'a and (b or not (c or a))'],
    ['sysLocation == "a\\"b\\\\c"', 'sysLocation == "a\\"b\\\\c"'],
    ['sysLocation=="C:\\temp"', 'sysLocation == "C:\\\\temp"'],
    ['ifOperStatus.1 == "DOWN"', 'ifOperStatus.1 == down'],
    ['.1.3.6.1.2.1.2.2.1.8.1 >= -0.50', '1.3.6.1.2.1.2.2.1.8.1 >= -0.50'],
    ['snmpEnableAuthenTraps.0', 'snmpEnableAuthenTraps.0 == true'],
    ['ok == TRUE OR ok', 'ok == true or ok'],
  ];
  for (const [text, canonical] of cases) {
    const first = parsed(text);
    const formatted = formatCondition(first);
    assert.is(formatted, canonical, text);
    assert.equal(parsed(formatted), first, `${text}: same tree again`);
    assert.is(formatCondition(parsed(formatted)), formatted);
  }
  // An enumeration word that is not a bare word is written as a string, and reads back.
  const spaced: Classify = () => ({ ok: true, enumeration: { 'rack 4': 4, or: 5 } });
  for (const text of ['x.1 == "rack 4"', 'x.1 != "or"']) {
    const c = parsed(text, spaced);
    assert.is(formatCondition(c), text);
    assert.equal(parsed(formatCondition(c), spaced), c);
  }
});

test('random input never throws, and whatever parses round-trips (seeded)', () => {
  let seed = 12345;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pieces = [
    'a', 'b', 'c', 'reachable', 'status', 'ifOperStatus.2', 'ifHCInOctets.1', '.1.3.6.1.2', 'sysLocation', 'up', 'down', 'UP',
    '__proto__', 'nosuch', '0', '-7', '2.5', '18446744073709551616', '"x"', '"a\\"b"', '"', 'true', 'FALSE',
    'and', 'or', 'not', 'AND', '(', ')', '==', '!=', '<', '<=', '>', '>=', '=', '!', '&&', '1e5', '.', '-', '😀',
  ];
  const values = new Map<string, ConditionValue>([
    ['a', true], ['b', false], ['reachable', true], ['status', 200], ['ifOperStatus.2', 1], ['ifHCInOctets.1', 2n ** 64n], ['sysLocation', 'x'],
  ]);
  let parsedCount = 0;
  for (let i = 0; i < 3000; i++) {
    const n = 1 + random(12);
    let text = '';
    for (let k = 0; k < n; k++) text += pieces[random(pieces.length)] + (random(3) ? ' ' : '');
    const r = parseCondition(text, classify);
    if (!r.ok) {
      assert.ok(/^(at column \d+: |the condition is )/.test(r.problem), `${text}: ${r.problem}`);
      continue;
    }
    parsedCount++;
    const again = parseCondition(formatCondition(r.condition), classify);
    assert.ok(again.ok, `${text} → ${formatCondition(r.condition)}`);
    if (!again.ok) continue;
    assert.equal(again.condition, r.condition, text);
    assert.equal(evaluateCondition(again.condition, values), evaluateCondition(r.condition, values), text);
  }
  assert.ok(parsedCount > 100, `only ${parsedCount} random conditions parsed`);
});

test.run();
