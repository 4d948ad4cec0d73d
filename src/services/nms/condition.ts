// The condition language of network alert rules, e.g.
//   (ifInErrors.3 > 10 and ifOperStatus.3 == up) or not reachable
//
// Conditions arrive by mail, so the text is hostile: it is parsed (never evaluated as code), its
// length and nesting are bounded, and every lookup by a name taken from it goes through a Map, a
// Set or Object.hasOwn, so that `__proto__` or `constructor` are names like any other.
//
//   or         := and ('or' and)*
//   and        := unary ('and' unary)*
//   unary      := 'not' unary | '(' or ')' | comparison | reference      (bare reference = "== true")
//   comparison := operand ('==' | '!=' | '<' | '<=' | '>' | '>=') operand
//   operand    := reference | number | "string" | true | false | enumeration word
//
// A reference is a name with an optional numeric index (ifOperStatus.2), a numeric OID of at
// least 3 components (an optional leading dot is dropped), or a check result name (reachable,
// http.status: dotted name parts come before any index).
// The caller's `classify` decides which references exist, and may give a reference's
// enumeration (ifOperStatus: up = 1, down = 2, …): a bare word, quoted string or true/false
// compared with such a reference is one of its values. Keywords are case-insensitive.

export const MAX_CONDITION_LENGTH = 500;
export const MAX_CONDITION_DEPTH = 20;

export type CompareOp = '==' | '!=' | '<' | '<=' | '>' | '>=';

export type Operand =
  | { kind: 'reference'; name: string }
  /** As written: integers compare exactly as bigint, decimals as numbers. */
  | { kind: 'number'; text: string }
  | { kind: 'string'; value: string }
  | { kind: 'boolean'; value: boolean }
  /** A value of the enumeration of the reference on the other side (word as the enumeration spells it). */
  | { kind: 'enumeration'; word: string; value: number };

export type Condition =
  | { kind: 'or'; operands: Condition[] }
  | { kind: 'and'; operands: Condition[] }
  | { kind: 'not'; operand: Condition }
  | { kind: 'compare'; op: CompareOp; left: Operand; right: Operand }
  /** A bare reference: true when its value is the boolean true. */
  | { kind: 'truthy'; reference: string };

export type Classification = { ok: true; enumeration?: Record<string, number> } | { ok: false; problem: string };
export type Classify = (ref: string) => Classification;

export type ParseResult = { ok: true; condition: Condition; references: string[] } | { ok: false; problem: string };
export type Evaluation = { value: boolean } | { unknown: string };
export type ConditionValue = string | number | bigint | boolean | null;

// ---------------------------------------------------------------------------------------------
// Tokens

type TokenType = 'name' | 'oid' | 'number' | 'string' | 'and' | 'or' | 'not' | 'true' | 'false' | 'op' | '(' | ')' | 'other' | 'bad' | 'end';

interface Token {
  type: TokenType;
  /** The source text of the token (a string token's decoded value is in `value`). */
  text: string;
  index: number;
  value?: string;
  /** Why a 'bad' token cannot be read; reported only when the parser reaches it, so the first problem in the text wins. */
  problem?: string;
}

const OPS: ReadonlySet<string> = new Set(['==', '!=', '<', '<=', '>', '>=']);
const KEYWORDS: ReadonlySet<string> = new Set(['and', 'or', 'not', 'true', 'false']);
// Name parts first (sysUpTime, http.status), then an optional numeric index (ifOperStatus.2).
const NAME = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\.\d+)*$/;
const BARE_WORD = /^[A-Za-z_][A-Za-z0-9_]*$/;
const INTEGER = /^-?\d+$/;
const DECIMAL = /^-?\d+\.\d+$/;
const OID = /^\.?\d+(?:\.\d+){2,}$/;
const WORD_CHAR = /[A-Za-z0-9_.]/;
const OP_CHAR = /[=!<>]/;
const SPACE = /\s/;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (SPACE.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      tokens.push({ type: c, text: c, index: i });
      i++;
    } else if (c === '"') {
      tokens.push(readString(text, i));
      i += tokens[tokens.length - 1].text.length;
    } else if (OP_CHAR.test(c)) {
      let j = i;
      while (j < text.length && OP_CHAR.test(text[j])) j++;
      const run = text.slice(i, j);
      tokens.push({ type: OPS.has(run) ? 'op' : 'other', text: run, index: i });
      i = j;
    } else if (WORD_CHAR.test(c) || (c === '-' && i + 1 < text.length && WORD_CHAR.test(text[i + 1]))) {
      let j = i + 1;
      while (j < text.length && WORD_CHAR.test(text[j])) j++;
      tokens.push(wordToken(text.slice(i, j), i));
      i = j;
    } else {
      // Anything else (&&, ', ;, non-ASCII…): one token, so that "found" shows the whole run.
      let j = i + 1;
      while (j < text.length && !SPACE.test(text[j]) && !WORD_CHAR.test(text[j]) && !OP_CHAR.test(text[j]) && !'()"'.includes(text[j])) j++;
      tokens.push({ type: 'other', text: text.slice(i, j), index: i });
      i = j;
    }
  }
  tokens.push({ type: 'end', text: '', index: text.length });
  return tokens;
}

function wordToken(word: string, index: number): Token {
  const lower = word.toLowerCase();
  if (KEYWORDS.has(lower)) return { type: lower as TokenType, text: word, index };
  if (INTEGER.test(word) || DECIMAL.test(word)) return { type: 'number', text: word, index };
  if (OID.test(word)) return { type: 'oid', text: word.startsWith('.') ? word.slice(1) : word, index };
  if (NAME.test(word)) return { type: 'name', text: word, index };
  const problem = /^[A-Za-z_]/.test(word)
    ? `${quote(word)} is not a valid reference (a name like sysUpTime or http.status, then an optional index of numbers, like ifOperStatus.2)`
    : `${quote(word)} is not a valid number or OID (a number is like 42, -1 or 0.5; an OID has at least 3 numbers separated by dots)`;
  return { type: 'bad', text: word, index, problem };
}

/** A "…" string; \" is a quote and \\ a backslash, any other backslash stays as it is. */
function readString(text: string, start: number): Token {
  let value = '';
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') return { type: 'string', text: text.slice(start, i + 1), index: start, value };
    if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
      value += text[i + 1];
      i += 2;
    } else {
      value += c;
      i++;
    }
  }
  return { type: 'bad', text: text.slice(start), index: start, problem: 'unterminated string (no closing ")' };
}

// ---------------------------------------------------------------------------------------------
// Parser

class ParseError extends Error {}

/** Source text for messages: quoted, one line, at most 30 characters. */
function quote(text: string): string {
  const flat = text.replace(/[\u0000-\u001f\u007f]/g, ' ');
  const short = [...flat].length > 30 ? [...flat].slice(0, 29).join('') + '…' : flat;
  return `"${short}"`;
}

function found(token: Token): string {
  if (token.type === 'end') return 'the end of the condition';
  return token.type === 'string' ? `the string ${quote(token.value!)}` : quote(token.text);
}

/** Columns count characters (code points), not UTF-16 units, and start at 1. */
function column(text: string, index: number): number {
  return [...text.slice(0, index)].length + 1;
}

const COMPARISON_OPS = 'a comparison operator (==, !=, <, <=, >, >=)';

/** A comparison side as read, before `classify` decides what its names are. */
interface RawOperand {
  token: Token;
  resolved?: Operand;
  enumeration?: Record<string, number>;
}

class Parser {
  private pos = 0;
  private depth = 0;
  private readonly seen = new Set<string>();
  readonly references: string[] = [];

  constructor(
    private readonly text: string,
    private readonly tokens: Token[],
    private readonly classify: Classify,
  ) {}

  fail(token: Token, message: string): never {
    throw new ParseError(`at column ${column(this.text, token.index)}: ${message}`);
  }

  peek(): Token {
    const token = this.tokens[this.pos];
    if (token.type === 'bad') this.fail(token, token.problem!);
    return token;
  }

  take(): Token {
    const token = this.peek();
    this.pos++;
    return token;
  }

  parseAll(): Condition {
    const condition = this.parseOr();
    const next = this.peek();
    if (next.type !== 'end') this.fail(next, `expected and, or, or the end of the condition, found ${found(next)}`);
    return condition;
  }

  parseOr(): Condition {
    const operands = [this.parseAnd()];
    while (this.peek().type === 'or') {
      this.take();
      operands.push(this.parseAnd());
    }
    return operands.length === 1 ? operands[0] : { kind: 'or', operands: operands.flatMap((c) => (c.kind === 'or' ? c.operands : [c])) };
  }

  parseAnd(): Condition {
    const operands = [this.parseUnary()];
    while (this.peek().type === 'and') {
      this.take();
      operands.push(this.parseUnary());
    }
    return operands.length === 1 ? operands[0] : { kind: 'and', operands: operands.flatMap((c) => (c.kind === 'and' ? c.operands : [c])) };
  }

  /** Each `(` and each `not` is a level (`not (` is one); the bound keeps the recursion, and the reader, sane. */
  enter(token: Token): void {
    if (++this.depth > MAX_CONDITION_DEPTH) this.fail(token, `nested more than ${MAX_CONDITION_DEPTH} levels deep`);
  }

  parseUnary(): Condition {
    const token = this.peek();
    if (token.type === 'not') {
      this.take();
      const counts = this.peek().type !== '(';
      if (counts) this.enter(token);
      const operand = this.parseUnary();
      if (counts) this.depth--;
      return { kind: 'not', operand };
    }
    if (token.type === '(') {
      this.take();
      this.enter(token);
      const inner = this.parseOr();
      const close = this.peek();
      if (close.type !== ')') {
        this.fail(close, `expected and, or, or ")" to close the "(" at column ${column(this.text, token.index)}, found ${found(close)}`);
      }
      this.take();
      this.depth--;
      return inner;
    }
    if (!isOperandToken(token)) this.fail(token, `expected a condition (a comparison, a reference, not or "("), found ${found(token)}`);
    return this.parseComparison();
  }

  parseComparison(): Condition {
    const left: RawOperand = { token: this.take() };
    const opToken = this.peek();
    if (opToken.type !== 'op') {
      const ends = opToken.type === 'and' || opToken.type === 'or' || opToken.type === ')' || opToken.type === 'end';
      if (!ends || !isReferenceToken(left.token)) this.fail(opToken, `expected ${COMPARISON_OPS}, found ${found(opToken)}`);
      return this.truthy(left.token);
    }
    this.take();
    const rightToken = this.peek();
    if (!isOperandToken(rightToken)) {
      this.fail(rightToken, `expected a value after ${opToken.text} (a reference, number, "string", true, false or a word like up), found ${found(rightToken)}`);
    }
    const right: RawOperand = { token: this.take() };
    const op = opToken.text as CompareOp;

    // References with an index and OIDs are always references; a bare word is a value of the
    // enumeration on the other side when there is one, else a reference too; a string or
    // true/false opposite an enumerated reference is also one of its values (TruthValue).
    const pairs = [[left, right], [right, left]] as const;
    for (const side of [left, right]) {
      if (side.token.type === 'oid' || (side.token.type === 'name' && !BARE_WORD.test(side.token.text))) this.reference(side);
    }
    for (const [side, other] of pairs) {
      if (side.resolved || side.token.type !== 'name') continue;
      if (other.enumeration) this.enumerationValue(side, other);
      else this.reference(side);
    }
    for (const [side, other] of pairs) {
      if (side.resolved) continue;
      if (other.enumeration && side.token.type !== 'number') this.enumerationValue(side, other);
      else side.resolved = literal(side.token);
    }

    const l = left.resolved!;
    const r = right.resolved!;
    if (l.kind !== 'reference' && r.kind !== 'reference') {
      this.fail(left.token, `a comparison needs a reference on one side, found ${quote(`${formatOperand(l)} ${op} ${formatOperand(r)}`)}`);
    }
    if (op !== '==' && op !== '!=') {
      for (const side of [l, r]) {
        if (side.kind === 'string') this.fail(opToken, `${op} compares numbers, and ${quote(side.value)} is a string (use == or !=)`);
        if (side.kind === 'boolean') this.fail(opToken, `${op} compares numbers, and ${side.value} is a boolean (use == or !=)`);
      }
    }
    return { kind: 'compare', op, left: l, right: r };
  }

  /** Classifies a reference (remembering it once) and notes its enumeration. */
  reference(side: RawOperand): void {
    const name = side.token.text;
    const verdict = this.classify(name);
    if (!verdict.ok) this.fail(side.token, verdict.problem);
    if (!this.seen.has(name)) {
      this.seen.add(name);
      this.references.push(name);
    }
    side.resolved = { kind: 'reference', name };
    side.enumeration = verdict.enumeration;
  }

  enumerationValue(side: RawOperand, other: RawOperand): void {
    const enumeration = other.enumeration!;
    const token = side.token;
    const word = token.type === 'string' ? token.value! : token.text;
    const key = enumerationKey(enumeration, word);
    if (key === undefined) {
      const names = Object.keys(enumeration);
      const list = names.length > 12 ? [...names.slice(0, 12), '…'].join(', ') : names.join(', ');
      this.fail(token, `${quote(word)} is not a value of ${formatOperand(other.resolved!)} (${list})`);
    }
    side.resolved = { kind: 'enumeration', word: key, value: enumeration[key] };
  }

  truthy(token: Token): Condition {
    const side: RawOperand = { token };
    this.reference(side);
    const name = token.text;
    if (side.enumeration) {
      // An SNMP TruthValue (true = 1, false = 2) reads naturally as a boolean.
      const t = enumerationKey(side.enumeration, 'true');
      if (t !== undefined) return { kind: 'compare', op: '==', left: side.resolved!, right: { kind: 'enumeration', word: t, value: side.enumeration[t] } };
      const example = Object.keys(side.enumeration)[0] ?? 'value';
      this.fail(token, `${name} is not true or false; compare it with a value, like ${name} == ${example}`);
    }
    return { kind: 'truthy', reference: name };
  }
}

function isReferenceToken(token: Token): boolean {
  return token.type === 'name' || token.type === 'oid';
}

function isOperandToken(token: Token): boolean {
  return isReferenceToken(token) || token.type === 'number' || token.type === 'string' || token.type === 'true' || token.type === 'false';
}

function literal(token: Token): Operand {
  switch (token.type) {
    case 'number':
      return { kind: 'number', text: token.text };
    case 'string':
      return { kind: 'string', value: token.value! };
    default:
      return { kind: 'boolean', value: token.type === 'true' };
  }
}

/** The enumeration's own spelling of `word`: exact, else the one case-insensitive match. */
function enumerationKey(enumeration: Record<string, number>, word: string): string | undefined {
  if (Object.hasOwn(enumeration, word)) return word;
  const lower = word.toLowerCase();
  const matches = Object.keys(enumeration).filter((k) => k.toLowerCase() === lower);
  return matches.length === 1 ? matches[0] : undefined;
}

/**
 * Parses a condition; `classify` is asked about every reference once per occurrence. A problem
 * starts with "at column N: " (1-based, in `text`) when it has a place; callers prefix it with
 * where the condition came from, e.g. `when="…": at column 16: …`.
 */
export function parseCondition(text: string, classify: Classify): ParseResult {
  if (typeof text !== 'string') return { ok: false, problem: 'the condition is not text' };
  if (text.length > MAX_CONDITION_LENGTH) {
    return { ok: false, problem: `the condition is longer than ${MAX_CONDITION_LENGTH} characters (${text.length})` };
  }
  if (text.trim() === '') return { ok: false, problem: 'the condition is empty' };
  const parser = new Parser(text, tokenize(text), classify);
  try {
    const condition = parser.parseAll();
    return { ok: true, condition, references: parser.references };
  } catch (err) {
    if (err instanceof ParseError) return { ok: false, problem: err.message };
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation (three-valued: a missing value makes a comparison unknown, not false)

/**
 * Evaluates against the values read for the references. A missing or null value makes its
 * comparison unknown; `and`/`or` then follow three-valued logic (false and unknown = false,
 * true or unknown = true). `whyMissing` may explain a missing value, e.g. "noSuchInstance".
 */
export function evaluateCondition(
  condition: Condition,
  values: ReadonlyMap<string, ConditionValue>,
  whyMissing?: (ref: string) => string | undefined,
): Evaluation {
  const noValue = (ref: string): Evaluation => {
    const why = whyMissing?.(ref);
    return { unknown: `${ref} has no value${why ? ` (${why})` : ''}` };
  };
  const evaluate = (c: Condition): Evaluation => {
    switch (c.kind) {
      case 'or':
      case 'and': {
        // The deciding value (true for or, false for and) wins over unknown.
        const decisive = c.kind === 'or';
        let unknown: Evaluation | undefined;
        for (const operand of c.operands) {
          const r = evaluate(operand);
          if ('unknown' in r) unknown ??= r;
          else if (r.value === decisive) return r;
        }
        return unknown ?? { value: !decisive };
      }
      case 'not': {
        const r = evaluate(c.operand);
        return 'unknown' in r ? r : { value: !r.value };
      }
      case 'truthy': {
        const v = values.get(c.reference);
        if (v === undefined || v === null) return noValue(c.reference);
        if (typeof v === 'boolean') return { value: v };
        return { unknown: `${c.reference} is ${describe(v)}, not true or false` };
      }
      case 'compare':
        return compare(c, values, noValue);
    }
  };
  return evaluate(condition);
}

function compare(c: Extract<Condition, { kind: 'compare' }>, values: ReadonlyMap<string, ConditionValue>, noValue: (ref: string) => Evaluation): Evaluation {
  const sides: Array<{ operand: Operand; raw?: ConditionValue }> = [{ operand: c.left }, { operand: c.right }];
  for (const side of sides) {
    if (side.operand.kind !== 'reference') continue;
    const v = values.get(side.operand.name);
    if (v === undefined || v === null) return noValue(side.operand.name);
    side.raw = v;
  }
  const [a, b] = sides;
  const order = (n: number | undefined): Evaluation => (n === undefined ? { unknown: `${formatCondition(c)}: cannot compare ${describe(a.raw)} with ${describe(b.raw)}` } : { value: holds(c.op, n) });
  const refName = (s: { operand: Operand }) => (s.operand.kind === 'reference' ? s.operand.name : formatOperand(s.operand));

  // A literal on one side decides what the reference's value must be.
  for (const [lit, ref] of [[a, b], [b, a]] as const) {
    if (lit.operand.kind === 'reference') continue;
    const v = ref.raw!;
    const name = refName(ref);
    switch (lit.operand.kind) {
      case 'number':
      case 'enumeration': {
        const o = lit.operand;
        const target = o.kind === 'number' ? literalNumber(o.text) : Number.isInteger(o.value) ? BigInt(o.value) : o.value;
        // A value already given by its enumeration name counts as that value.
        if (o.kind === 'enumeration' && typeof v === 'string' && v === o.word) return order(0);
        const n = toNumber(v);
        if (n === undefined) return { unknown: `${name} is ${describe(v)}, not a number` };
        return order(lit === a ? compareNumbers(target, n) : compareNumbers(n, target));
      }
      case 'string':
        if (typeof v !== 'string') return { unknown: `${name} is ${describe(v)}, not a string` };
        if (c.op !== '==' && c.op !== '!=') return { unknown: `${formatCondition(c)}: strings can only be compared with == or !=` };
        return { value: holds(c.op, v === lit.operand.value ? 0 : 1) };
      case 'boolean':
        if (typeof v !== 'boolean') return { unknown: `${name} is ${describe(v)}, not true or false` };
        if (c.op !== '==' && c.op !== '!=') return { unknown: `${formatCondition(c)}: true and false can only be compared with == or !=` };
        return { value: holds(c.op, v === lit.operand.value ? 0 : 1) };
    }
  }

  // Two references: numbers (or numeric text) in order, strings and booleans by equality.
  const x = a.raw!;
  const y = b.raw!;
  const nx = toNumber(x);
  const ny = toNumber(y);
  if ((typeof x === 'number' || typeof x === 'bigint' || typeof y === 'number' || typeof y === 'bigint') && nx !== undefined && ny !== undefined) {
    return order(compareNumbers(nx, ny));
  }
  if (typeof x === typeof y && (typeof x === 'string' || typeof x === 'boolean')) {
    if (c.op !== '==' && c.op !== '!=') return { unknown: `${formatCondition(c)}: ${describe(x)} and ${describe(y)} cannot be ordered` };
    return { value: holds(c.op, x === y ? 0 : 1) };
  }
  return order(undefined);
}

function holds(op: CompareOp, cmp: number): boolean {
  switch (op) {
    case '==':
      return cmp === 0;
    case '!=':
      return cmp !== 0;
    case '<':
      return cmp < 0;
    case '<=':
      return cmp <= 0;
    case '>':
      return cmp > 0;
    case '>=':
      return cmp >= 0;
  }
}

function literalNumber(text: string): number | bigint {
  return INTEGER.test(text) ? BigInt(text) : Number(text);
}

const NUMERIC_TEXT = /^\s*(-?\d+(?:\.\d+)?)\s*$/;

/** Numbers as they are; text that is a plain number (some agents report loads as "0.15") too. */
function toNumber(v: ConditionValue): number | bigint | undefined {
  if (typeof v === 'bigint' || (typeof v === 'number' && !Number.isNaN(v))) return v;
  if (typeof v === 'string' && v.length <= 100) {
    const m = NUMERIC_TEXT.exec(v);
    if (m) return literalNumber(m[1]);
  }
  return undefined;
}

/** Exact order of two numbers that may be bigint (Counter64) or floating point; undefined for NaN. */
export function compareNumbers(a: number | bigint, b: number | bigint): -1 | 0 | 1 | undefined {
  if (typeof a === 'number' && typeof b === 'number') {
    if (Number.isNaN(a) || Number.isNaN(b)) return undefined;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'number') {
    const r = compareNumbers(b, a);
    return r === undefined ? undefined : ((-r || 0) as -1 | 0 | 1);
  }
  // a is bigint, b a number: converting a to a double would round above 2^53.
  const n = b as number;
  if (Number.isNaN(n)) return undefined;
  if (n === Infinity) return -1;
  if (n === -Infinity) return 1;
  if (Number.isInteger(n)) {
    const m = BigInt(n);
    return a < m ? -1 : a > m ? 1 : 0;
  }
  return a <= BigInt(Math.floor(n)) ? -1 : 1;
}

/** A value for a message: text quoted and shortened (it comes from a device). */
function describe(v: ConditionValue | undefined): string {
  if (typeof v === 'string') return quote(v);
  return String(v);
}

// ---------------------------------------------------------------------------------------------
// Canonical text

/**
 * Canonical text: lower-case keywords, single spaces, parentheses only where needed, plus around
 * a negated comparison for the reader (`not (a == b)` nests no deeper than `not a == b`). Parsing
 * it again with the same `classify` gives the same condition; it never nests deeper than the text
 * it was parsed from, but spacing may make it longer.
 */
export function formatCondition(condition: Condition): string {
  const format = (c: Condition, parent: 'top' | 'or' | 'and' | 'not'): string => {
    switch (c.kind) {
      case 'or': {
        const text = c.operands.map((o) => format(o, 'or')).join(' or ');
        return parent === 'and' || parent === 'not' ? `(${text})` : text;
      }
      case 'and': {
        const text = c.operands.map((o) => format(o, 'and')).join(' and ');
        return parent === 'not' ? `(${text})` : text;
      }
      case 'not':
        return `not ${format(c.operand, 'not')}`;
      case 'truthy':
        return c.reference;
      case 'compare': {
        const text = `${formatOperand(c.left)} ${c.op} ${formatOperand(c.right)}`;
        return parent === 'not' ? `(${text})` : text;
      }
    }
  };
  return format(condition, 'top');
}

function formatOperand(o: Operand): string {
  switch (o.kind) {
    case 'reference':
      return o.name;
    case 'number':
      return o.text;
    case 'boolean':
      return String(o.value);
    case 'string':
      return formatString(o.value);
    case 'enumeration': {
      // Bare when it reads back as a word (true/false do: they resolve to the enumeration again).
      const lower = o.word.toLowerCase();
      return BARE_WORD.test(o.word) && lower !== 'and' && lower !== 'or' && lower !== 'not' ? o.word : formatString(o.word);
    }
  }
}

function formatString(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => '\\' + c)}"`;
}
