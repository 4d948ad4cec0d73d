/** Splits one command line into words and key=value pairs; values may be "quoted". */
export interface Token {
  key?: string;
  value: string;
}

const OPEN_QUOTES: Record<string, string> = { '"': '"', '“': '”', '„': '“', "'": "'" };
const KEY = /^[A-Za-z][A-Za-z0-9_.-]*$/;

export function tokenize(line: string): { tokens: Token[]; problem?: string } {
  const tokens: Token[] = [];
  let i = 0;
  const readValue = (): { value: string; problem?: string } => {
    const close = OPEN_QUOTES[line[i]];
    if (!close) {
      const start = i;
      while (i < line.length && !/\s/.test(line[i])) {
        if (OPEN_QUOTES[line[i]] && i > start) return { value: '', problem: `a quote inside a word (${line.slice(start, i + 1)}…): quote the whole value` };
        i++;
      }
      return { value: line.slice(start, i) };
    }
    // Mail clients turn "…" into “…”; both are accepted, with \" and \\ escapes.
    let value = '';
    i++;
    while (i < line.length && line[i] !== close && !(close === '”' && line[i] === '"')) {
      if (line[i] === '\\' && i + 1 < line.length) i++;
      value += line[i++];
    }
    if (i >= line.length) return { value, problem: 'unterminated quote' };
    i++;
    if (i < line.length && !/\s/.test(line[i])) return { value, problem: 'text right after a closing quote: separate words with a space' };
    return { value };
  };

  while (i < line.length) {
    if (/\s/.test(line[i])) {
      i++;
      continue;
    }
    // \u201c \u201e: the opening quotes “ „, escaped to keep the bundle ASCII (see CLOSING in lines.ts).
    const eq = line.slice(i).search(/[=\s"\u201c\u201e']/);
    if (eq > 0 && line[i + eq] === '=') {
      const key = line.slice(i, i + eq);
      if (!KEY.test(key)) return { tokens, problem: `"${key}" is not a valid argument name` };
      i += eq + 1;
      const { value, problem } = readValue();
      if (problem) return { tokens, problem };
      tokens.push({ key, value });
    } else {
      if (line[i] === '=') return { tokens, problem: 'an argument without a name (=…)' };
      const { value, problem } = readValue();
      if (problem) return { tokens, problem };
      tokens.push({ value });
    }
  }
  return { tokens };
}
