/**
 * Turns a mail body into the logical command lines it carries: applies the cut-offs (quit,
 * signature, quoted reply), joins continuation lines and drops blanks and comments.
 */
export interface BodyLine {
  /** 1-based physical line in the body where the command starts; 0 for the Subject. */
  line: number;
  text: string;
}

const STOP_WORD = /^(quit|thanks|thank you)[.!,]*$/i;
const QUOTE_START = [/^>/, /^On\b.*\bwrote:$/i, /^-{2,}\s*Original Message\s*-{2,}$/i, /^_{10,}$/];
const SUBJECT_PREFIX = /^\s*((re|fwd?|aw|wg|sv|tr)\s*(\[\d+\])?\s*:\s*)+/i;

function isStop(line: string): boolean {
  return STOP_WORD.test(line) || line === '--' || QUOTE_START.some((re) => re.test(line));
}

function subjectAsCommand(subject: string): string {
  return subject.replace(SUBJECT_PREFIX, '').trim();
}

/** A mail with an empty body may carry its one command in the Subject (line 0). */
export function requestLines(body: string, subject: string): BodyLine[] {
  if (body.trim() !== '') return commandLines(body);
  const text = subjectAsCommand(subject);
  return text ? [{ line: 0, text }] : [];
}

export function commandLines(body: string): BodyLine[] {
  const physical = body.replace(/\r\n?/g, '\n').split('\n');
  const out: BodyLine[] = [];
  for (let i = 0; i < physical.length; i++) {
    let text = physical[i].trim();
    if (isStop(text)) break;
    const start = i + 1;
    while (text.endsWith('\\') && i + 1 < physical.length) {
      i++;
      text = `${text.slice(0, -1).trimEnd()} ${physical[i].trim()}`.trim();
    }
    if (text.endsWith('\\')) text = text.slice(0, -1).trimEnd();
    if (text === '' || text.startsWith('#')) continue;
    out.push({ line: start, text });
  }
  return out;
}
