/**
 * Turns a mail body into the logical command lines it carries: applies the cut-offs (quit,
 * signature, closing, quoted reply, forwarded message), skips a greeting and uuencoded blocks,
 * joins continuation lines and drops blanks and comments. One pass, linear in the body's size.
 */
export interface BodyLine {
  /** 1-based physical line in the body where the command starts; 0 for the Subject. */
  line: number;
  text: string;
  /** A here-document argument (`body<<END` … `END`): its name and the lines between, as written. */
  heredoc?: { key: string; word: string; value: string };
  /** Why the line cannot be read (an unclosed or oversized here-document). */
  problem?: string;
}

/** `key<<WORD` at the end of a command line opens a here-document that ends at a line `WORD`. */
export const HEREDOC = /(?:^|\s)([A-Za-z][A-Za-z0-9_.-]*)<<([A-Za-z0-9_]+)$/;
/** A command as it was written, its here-document included: what a confirmation stores and shows. */
export function commandSource(line: Pick<BodyLine, 'text' | 'heredoc'>): string {
  return line.heredoc ? `${line.text}\n${line.heredoc.value}${line.heredoc.value === '' ? '' : '\n'}${line.heredoc.word}` : line.text;
}

/**
 * Whether two readings of one message ask for the same thing: the same command lines, or the
 * same words in the same order where only the line breaks differ (a plain part wrapped at 76
 * characters). Whitespace runs count as one space.
 */
export function sameRequest(a: BodyLine[], b: BodyLine[]): boolean {
  const words = (lines: BodyLine[]) => lines.map((l) => l.text.replace(/\s+/g, ' '));
  const [x, y] = [words(a), words(b)];
  return x.join('\n') === y.join('\n') || x.join(' ') === y.join(' ');
}

/** A here-document holds text, not a file: files come as attachments. */
export const MAX_HEREDOC_CHARS = 100_000;

const STOP_WORD = /^(quit|thanks|thank you)[.!,]*$/i;
/**
 * A conventional closing ends the request like a signature separator; the name below it is not read.
 * Non-ASCII characters in patterns are \u escapes (\u00fc\u00df: üß here, \u2019: ’ in GREETING), so
 * that the bundle stays ASCII, which the executable holds in half the bytes (build.mjs).
 */
const CLOSING =
  /^(kind regards|best regards|warm regards|regards|best wishes|best|cheers|many thanks|thanks again|thx|all the best|sincerely|yours|br|mit freundlichen gr\u00fc\u00dfen|viele gr\u00fc\u00dfe|gr\u00fc\u00dfe|cordialement)[.!,]*$/iu;
/** A conventional greeting as the first line is skipped: "Hi,", "Hello team,", "Dear all,". */
const GREETING = /^(hi|hello|hey|dear|good (morning|afternoon|evening)|greetings|hallo|moin)(\s+[\p{L}\p{N}'\u2019.-]+){0,4}\s*[,!.:]?$/iu;
/**
 * The words GREETING starts with: a line without them is no greeting. V8 compiles GREETING (letter
 * classes, case-insensitive) at its first use, ~0.7 ms: only for a first line that may be one.
 */
const GREETING_START = /^(hi|hello|hey|dear|good (morning|afternoon|evening)|greetings|hallo|moin)/iu;
const QUOTE_START = [/^>/, /^On\b.*\bwrote:$/i, /^-{2,}\s*Original Message\s*-{2,}$/i, /^_{10,}$/];
/** Forwarded text is someone else's: Gmail, Thunderbird and Apple Mail markers. */
const FORWARD_START = [/^-{2,}\s*Forwarded message\s*-{2,}$/i, /^Begin forwarded message:$/i];
/** Outlook's forward or reply header block: "From: …" followed by "Sent: …" or "Date: …". */
const OUTLOOK_FROM = /^\*?From:\*?\s/i;
const OUTLOOK_NEXT = /^\*?(Sent|Date):\*?\s/i;
/** uuencode (and its base64 variant) blocks are attachments written into the text. */
const UU_BEGIN = /^begin(-base64)? [0-7]{3,4} \S/;
const UU_END = /^(end|====)$/;
const SUBJECT_PREFIX = /^\s*((re|fwd?|aw|wg|sv|tr)\s*(\[\d+\])?\s*:\s*)+/i;

function isStop(line: string): boolean {
  return STOP_WORD.test(line) || CLOSING.test(line) || line === '--' || QUOTE_START.some((re) => re.test(line)) || FORWARD_START.some((re) => re.test(line));
}

function subjectAsCommand(subject: string): string {
  return subject.replace(SUBJECT_PREFIX, '').trim();
}

/** A mail with an empty body may carry its one command in the Subject (line 0). */
export function requestLines(body: string, subject: string, limits: LineLimits = {}): BodyLine[] {
  if (/\S/.test(body)) return commandLines(body, limits);
  const text = subjectAsCommand(subject);
  return text ? [{ line: 0, text }] : [];
}

/** Reading limits: past them the rest of a huge body is walked over, never copied. */
export interface LineLimits {
  /** Lines returned at most: the caller's command cap + 1 still shows "too many commands". */
  maxLines?: number;
  /** A logical line is kept up to this many characters; any longer line is refused anyway. */
  maxLineChars?: number;
}

/**
 * Lines of a text, one at a time, ending at "\n", "\r\n" or a lone "\r". Only a text with a lone
 * "\r" (old Mac mail) is copied; any other is read in place, so a hostile body of a million lines
 * costs a scan, not a million live strings or a second copy.
 */
export class LineCursor {
  private at = 0;
  private readonly text: string;
  /** 1-based number of the line last returned. */
  lineNo = 0;

  constructor(text: string) {
    this.text = /\r(?!\n)/.test(text) ? text.replace(/\r\n?/g, '\n') : text;
  }

  private lineAt(from: number): { line: string; next: number } | undefined {
    if (from > this.text.length) return undefined;
    let end = this.text.indexOf('\n', from);
    if (end < 0) end = this.text.length;
    const stop = end > from && this.text.charCodeAt(end - 1) === 13 ? end - 1 : end;
    return { line: this.text.slice(from, stop), next: end + 1 };
  }

  /** The next line without its line end; undefined past the end. */
  next(): string | undefined {
    const found = this.lineAt(this.at);
    if (!found) return undefined;
    this.at = found.next;
    this.lineNo++;
    return found.line;
  }

  /** The next line that is not blank, trimmed, without moving on ('' when there is none). */
  peekNonBlank(): string {
    for (let found = this.lineAt(this.at); found; found = this.lineAt(found.next)) {
      const line = found.line.trim();
      if (line !== '') return line;
    }
    return '';
  }
}

export function commandLines(body: string, { maxLines = Infinity, maxLineChars = Infinity }: LineLimits = {}): BodyLine[] {
  const cursor = new LineCursor(body);
  const nextLine = () => cursor.next()?.trim();
  const out: BodyLine[] = [];
  let greetingChecked = false;
  for (let line = nextLine(); line !== undefined && out.length < maxLines; line = nextLine()) {
    if (line === '') continue;
    if (!greetingChecked) {
      greetingChecked = true;
      if (GREETING_START.test(line) && GREETING.test(line)) continue;
    }
    if (isStop(line) || (OUTLOOK_FROM.test(line) && OUTLOOK_NEXT.test(cursor.peekNonBlank()))) break;
    if (UU_BEGIN.test(line)) {
      for (let skipped = nextLine(); skipped !== undefined && !UU_END.test(skipped); skipped = nextLine());
      continue;
    }
    const start = cursor.lineNo;
    let command = line;
    if (line.endsWith('\\')) {
      // Parts are joined once at the end (appending line by line is quadratic), and only up to
      // the line limit: the rest of an endless continuation is read over, not kept.
      const parts: string[] = [];
      let kept = 0;
      for (let part: string | undefined = line; part !== undefined; part = nextLine()) {
        const continues = part.endsWith('\\');
        const piece = continues ? part.slice(0, -1).trimEnd() : part;
        if (piece !== '' && kept <= maxLineChars) {
          parts.push(piece);
          kept += piece.length + 1;
        }
        if (!continues) break;
      }
      command = parts.join(' ');
    }
    if (command === '' || command.startsWith('#')) continue;
    const text = command.length > maxLineChars ? command.slice(0, maxLineChars) : command;
    const opener = HEREDOC.exec(command);
    if (opener) {
      // Its lines are text, not commands: no stop word, quote or closing ends it, only its word.
      const [, key, word] = opener;
      const body: string[] = [];
      let size = 0;
      let closed = false;
      for (let raw = cursor.next(); raw !== undefined; raw = cursor.next()) {
        if (raw.trim() === word) {
          closed = true;
          break;
        }
        size += raw.length + 1;
        if (size <= MAX_HEREDOC_CHARS) body.push(raw);
      }
      const problem = !closed
        ? `the here-document ${key}<<${word} is not closed by a line "${word}"`
        : size > MAX_HEREDOC_CHARS ? `the here-document ${key}<<${word} is longer than ${MAX_HEREDOC_CHARS} characters` : undefined;
      out.push({ line: start, text, heredoc: { key, word, value: body.join('\n') }, ...(problem && { problem }) });
      continue;
    }
    out.push({ line: start, text });
  }
  return out;
}
