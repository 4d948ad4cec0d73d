import type { AddressObject, EmailAddress } from 'mailparser';

/** What the pipeline needs from an incoming message. */
export interface IncomingMail {
  /** Every mailbox in From:, groups flattened; the pipeline accepts exactly one. */
  from: { address: string; name: string }[];
  subject: string;
  messageId?: string;
  references: string[];
  date?: Date;
  /** Lower-case header name → raw values, for loop detection. */
  header: (name: string) => string[];
  /** The first text/plain part; text converted from the first HTML part when there is none. */
  body: string;
  bodySource: 'plain' | 'html' | 'none';
}

interface TreeNode {
  contentType?: string;
  textContent?: string;
  isAttachment?: boolean;
  children?: TreeNode[];
}

/** mailparser joins every text part; commands come from the first one only, so read its tree. */
function firstPart(tree: TreeNode | undefined, type: string): string | undefined {
  if (!tree) return undefined;
  if (tree.contentType === type && !tree.isAttachment && typeof tree.textContent === 'string') return tree.textContent;
  for (const child of tree.children ?? []) {
    const found = firstPart(child, type);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Inline styles that hide text from the reader; such text must not become commands. */
const HIDDEN_STYLE = /(display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0*(\.0+)?\s*(px|pt|em|rem|%)?\s*(;|$|!)|opacity\s*:\s*0*(\.0+)?\s*(;|$|!)|max-height\s*:\s*0|line-height\s*:\s*0)/i;
/** A box of zero height or width whose overflow is cut off shows nothing. */
const ZERO_BOX = /(^|[;\s{])(height|width)\s*:\s*0*(\.0+)?\s*(px|pt|em|rem|%)?\s*(;|$|!|})/i;
/** Text pushed far off the page. */
const OFF_PAGE = /(^|[;\s{])(left|top|text-indent|margin-left|margin-top)\s*:\s*-\d{3,}/i;

function hides(style: string): boolean {
  // Runs of blanks collapsed first: next to the optional units above they make the regexes quadratic.
  const declarations = style.replace(/\s+/g, ' ');
  return HIDDEN_STYLE.test(declarations) || OFF_PAGE.test(declarations) || (ZERO_BOX.test(declarations) && /overflow\s*:\s*hidden/i.test(declarations));
}

type Element = import('domhandler').Element;
/** One compound selector: `p`, `.x`, `div#main.note`; pseudo-classes and attribute tests are ignored. */
type Compound = { tag?: string; id?: string; classes: string[] };

function compound(text: string): Compound {
  const bare = text.replace(/\[[^\]]*\]|::?[\w-]+(\([^)]*\))?/g, '');
  const tag = /^[a-z][\w-]*/i.exec(bare)?.[0].toLowerCase();
  return { tag, id: /#([\w-]+)/.exec(bare)?.[1], classes: [...bare.matchAll(/\.([\w-]+)/g)].map((m) => m[1].toLowerCase()) };
}

function matchesCompound(el: Element, c: Compound): boolean {
  const classes = (el.attribs.class ?? '').toLowerCase().split(/\s+/);
  return (!c.tag || el.name === c.tag) && (!c.id || el.attribs.id === c.id) && c.classes.every((k) => classes.includes(k));
}

/** CSS without its comments, in linear time. */
function stripComments(css: string): string {
  let out = '';
  let at = 0;
  for (let open = css.indexOf('/*'); open >= 0; open = css.indexOf('/*', at)) {
    out += css.slice(at, open);
    const close = css.indexOf('*/', open + 2);
    at = close < 0 ? css.length : close + 2;
  }
  return out + css.slice(at);
}

/**
 * Longer selectors, or more hiding selectors, are not read but hide everything: a real mail has
 * neither, and the work stays bounded.
 */
const MAX_SELECTOR = 256;
const MAX_HIDING_SELECTORS = 500;
const HIDE_ALL: Compound[][] = [[{ classes: [] }]];

/**
 * Selectors of <style> rules that hide what they match. Errs on the side of hiding: rules inside
 * @media count, sibling combinators match any position, pseudo-classes are ignored. Split by
 * braces with indexOf, so a hostile style sheet costs linear time.
 */
function hidingSelectors(doc: import('domhandler').Document): Compound[][] {
  const { DomUtils } = require('htmlparser2') as typeof import('htmlparser2');
  const css = stripComments(DomUtils.getElementsByTagName('style', doc).map((el) => DomUtils.textContent(el)).join('\n'));
  const selectors: Compound[][] = [];
  for (const block of css.split('}')) {
    const open = block.lastIndexOf('{');
    if (open < 0 || !hides(block.slice(open + 1))) continue;
    const prelude = block.slice(block.lastIndexOf('{', open - 1) + 1, open);
    for (const selector of prelude.slice(prelude.lastIndexOf(';') + 1).split(',').map((t) => t.trim())) {
      if (selector === '' || selector.startsWith('@')) continue;
      if (selector.length > MAX_SELECTOR || selectors.length >= MAX_HIDING_SELECTORS) return HIDE_ALL;
      const path = selector.split(/\s*[+~]\s*/).pop()!.split(/\s*>\s*|\s+/).filter(Boolean);
      if (path.length) selectors.push(path.map(compound));
    }
  }
  return selectors;
}

/** Descendant semantics for every step of the path (a child is also a descendant). */
function selectorMatches(el: Element, ancestors: Element[], path: Compound[]): boolean {
  if (!matchesCompound(el, path[path.length - 1])) return false;
  let i = path.length - 2;
  for (let a = ancestors.length - 1; a >= 0 && i >= 0; a--) if (matchesCompound(ancestors[a], path[i])) i--;
  return i < 0;
}

/** Removes elements a mail client would not show (hidden attribute, hiding styles and style rules, templates). */
function visibleHtml(html: string): string {
  const { parseDocument } = require('htmlparser2') as typeof import('htmlparser2');
  const render = (require('dom-serializer') as { default: typeof import('dom-serializer').default }).default;
  type Node = import('domhandler').ChildNode;
  const doc = parseDocument(html);
  const sheet = hidingSelectors(doc);
  const prune = (nodes: Node[], ancestors: Element[]): Node[] =>
    nodes.filter((node) => {
      if (node.type === 'tag' || node.type === 'script' || node.type === 'style') {
        const el = node as Element;
        if (el.name === 'template' || 'hidden' in el.attribs || hides(el.attribs.style ?? '')) return false;
        if (sheet.some((path) => selectorMatches(el, ancestors, path))) return false;
        ancestors.push(el);
        el.children = prune(el.children, ancestors);
        ancestors.pop();
      }
      return true;
    });
  doc.children = prune(doc.children, []);
  return render(doc);
}

function htmlToText(html: string): string {
  const { convert } = require('html-to-text') as typeof import('html-to-text');
  return convert(visibleHtml(html), {
    wordwrap: false,
    selectors: [
      { selector: 'a', options: { ignoreHref: true } },
      { selector: 'img', format: 'skip' },
      { selector: 'head', format: 'skip' },
      { selector: 'style', format: 'skip' },
      { selector: 'script', format: 'skip' },
    ],
  });
}

function mailboxes(value: unknown): { address: string; name: string }[] {
  const objects = ([] as AddressObject[]).concat((value as AddressObject | AddressObject[]) ?? []);
  const flat = (list: EmailAddress[]): EmailAddress[] => list.flatMap((a) => (a.group ? flat(a.group) : [a]));
  return objects.flatMap((o) => flat(o.value ?? [])).map((a) => ({ address: a.address ?? '', name: a.name ?? '' }));
}

function idList(value: unknown): string[] {
  const list = ([] as string[]).concat((value as string | string[]) ?? []);
  return list.flatMap((v) => v.match(/<[^<>\s]+>/g) ?? []);
}

export async function parseMail(raw: Buffer): Promise<IncomingMail> {
  const { MailParser } = require('mailparser') as typeof import('mailparser');
  // The message size cap (limits.maxMessageBytes) bounds the header too; mailparser's own 1 MiB
  // cap would turn a known user's message with a long header line into an unparseable one. Its
  // header cost counts each line as at least 64 bytes, hence the margin.
  const parser = new MailParser({
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipImageLinks: true,
    maxHeadSize: Math.max(2 * raw.length, 1024 * 1024),
  } as ConstructorParameters<typeof MailParser>[0]);
  const headers = await new Promise<Map<string, unknown>>((resolve, reject) => {
    let headerMap: Map<string, unknown> = new Map();
    parser.on('headers', (h: Map<string, unknown>) => (headerMap = h));
    parser.on('data', (data: { type: string; content?: NodeJS.ReadableStream; release?: () => void }) => {
      // Attachments are not read; drain them so the parser does not stall.
      if (data.type === 'attachment') {
        data.content!.on('end', () => data.release!());
        data.content!.resume();
      }
    });
    parser.on('error', reject);
    parser.on('end', () => resolve(headerMap));
    parser.end(raw);
  });

  const tree = (parser as unknown as { tree?: TreeNode }).tree;
  const plain = firstPart(tree, 'text/plain');
  const html = plain === undefined ? firstPart(tree, 'text/html') : undefined;
  const lines = (parser as unknown as { headerLines: { key: string; line: string }[] }).headerLines ?? [];
  const rawHeader = (name: string) =>
    lines.filter((l) => l.key === name).map((l) => l.line.slice(l.line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim());
  const date = headers.get('date');
  return {
    from: mailboxes(headers.get('from')),
    subject: String(headers.get('subject') ?? ''),
    messageId: idList(headers.get('message-id'))[0],
    references: idList(headers.get('references')),
    date: date instanceof Date && !Number.isNaN(date.getTime()) ? date : undefined,
    header: rawHeader,
    body: plain ?? (html !== undefined ? htmlToText(html) : ''),
    bodySource: plain !== undefined ? 'plain' : html !== undefined ? 'html' : 'none',
  };
}
