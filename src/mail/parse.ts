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

/** Removes elements a mail client would not show (hidden attribute, hiding styles, templates). */
function visibleHtml(html: string): string {
  const { parseDocument } = require('htmlparser2') as typeof import('htmlparser2');
  const render = (require('dom-serializer') as { default: typeof import('dom-serializer').default }).default;
  type Node = import('domhandler').ChildNode;
  const doc = parseDocument(html);
  const prune = (nodes: Node[]): Node[] =>
    nodes.filter((node) => {
      if (node.type === 'tag' || node.type === 'script' || node.type === 'style') {
        const el = node as import('domhandler').Element;
        if (el.name === 'template' || 'hidden' in el.attribs || HIDDEN_STYLE.test(el.attribs.style ?? '')) return false;
        el.children = prune(el.children);
      }
      return true;
    });
  doc.children = prune(doc.children);
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
  const parser = new MailParser({ skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
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
