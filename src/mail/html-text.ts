/**
 * The text a reader sees in an HTML mail, as lines. One streaming pass over the tags
 * (htmlparser2's tokenizer, no DOM, no recursion), so the cost is linear in the size; nesting
 * deeper than any real mail, or style rules that would need too much matching, make the mail
 * unreadable instead of slow. Text that CSS hides is left out: commands must be visible to be read.
 */

export class UnreadableMail extends Error {}

/** Real mail nests tables a few dozen levels deep; far beyond that is an attack on the reader. */
export const MAX_HTML_DEPTH = 128;
/** Selector steps tried against elements; a real mail needs a tiny fraction of this. */
const MATCH_BUDGET = 20_000_000;
const MAX_SELECTOR = 256;
const MAX_HIDING_SELECTORS = 500;

const SKIPPED = new Set(['head', 'title', 'style', 'script', 'template', 'object', 'svg', 'math']);
const BLOCK = new Set([
  'address', 'article', 'aside', 'blockquote', 'caption', 'center', 'dd', 'details', 'dialog', 'div', 'dl', 'dt', 'fieldset',
  'figcaption', 'figure', 'footer', 'form', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'li', 'main', 'nav', 'ol', 'p',
  'pre', 'section', 'summary', 'table', 'tbody', 'thead', 'tfoot', 'tr', 'ul', 'body', 'html',
]);
/** Blocks set off by a blank line, as mail clients show them (and html-to-text writes them). */
const PARAGRAPH = new Set(['p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'table', 'pre', 'blockquote']);
const CELL = new Set(['td', 'th']);
/** Outlook puts an <hr> above the quoted message; it ends the request like its plain "____" line. */
const HR_LINE = '_'.repeat(32);

type Rgba = [number, number, number, number];
const NAMED: Record<string, Rgba> = {
  white: [255, 255, 255, 1], black: [0, 0, 0, 1], red: [255, 0, 0, 1], green: [0, 128, 0, 1], blue: [0, 0, 255, 1],
  yellow: [255, 255, 0, 1], gray: [128, 128, 128, 1], grey: [128, 128, 128, 1], silver: [192, 192, 192, 1],
  navy: [0, 0, 128, 1], whitesmoke: [245, 245, 245, 1], snow: [255, 250, 250, 1], ivory: [255, 255, 240, 1],
  transparent: [0, 0, 0, 0],
};

function parseColor(value: string | undefined): Rgba | undefined {
  if (!value) return undefined;
  const v = value.trim().toLowerCase();
  if (Object.hasOwn(NAMED, v)) return NAMED[v];
  let m = /^#?([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/.exec(v);
  if (m) {
    const hex = m[1].length === 3 ? [...m[1]].map((c) => c + c).join('') : m[1];
    const alpha = hex.length === 8 ? parseInt(hex.slice(6), 16) / 255 : 1;
    return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16), alpha];
  }
  m = /^rgba?\(\s*([\d.]+)%?[\s,]+([\d.]+)%?[\s,]+([\d.]+)%?(?:[\s,/]+([\d.]+)(%?))?\s*\)$/.exec(v);
  if (m) return [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : m[5] ? +m[4] / 100 : +m[4]];
  return undefined;
}

/** Invisible: (almost) transparent, or (almost) the colour of what is behind it. */
function invisibleOn(color: Rgba, background: Rgba): boolean {
  return color[3] < 0.1 || Math.abs(color[0] - background[0]) + Math.abs(color[1] - background[1]) + Math.abs(color[2] - background[2]) < 24;
}

/** A CSS length in px (em and rem at 16 px), or undefined when it is not a plain length. */
function px(value: string | undefined): number | undefined {
  const m = /^(-?[\d.]+)\s*(px|pt|em|rem|%)?$/.exec(value?.trim() ?? '');
  if (!m) return undefined;
  const n = parseFloat(m[1]);
  return m[2] === 'pt' ? n * 1.33 : m[2] === 'em' || m[2] === 'rem' ? n * 16 : m[2] === '%' ? n * 0.16 : n;
}

/** Declarations of a style attribute or rule, last one winning; property names lower-cased. */
function declarations(style: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const declaration of style.split(';')) {
    const colon = declaration.indexOf(':');
    if (colon > 0) map.set(declaration.slice(0, colon).trim().toLowerCase(), declaration.slice(colon + 1).replace(/!\s*important/gi, '').trim().toLowerCase());
  }
  return map;
}

const backgroundOf = (d: Map<string, string>) => parseColor(d.get('background-color')) ?? parseColor(d.get('background')?.split(/\s+/)[0]);

/** Styles that hide an element's content from the reader, whatever its colour. */
function hidesBox(d: Map<string, string>): boolean {
  const is = (prop: string, re: RegExp) => re.test(d.get(prop) ?? '');
  if (is('display', /^none/) || is('visibility', /^(hidden|collapse)/) || is('mso-hide', /^all/)) return true;
  const opacity = parseFloat(d.get('opacity') ?? '');
  if (opacity < 0.1) return true;
  const fontSize = px(d.get('font-size'));
  if (fontSize !== undefined && fontSize < 4) return true;
  if (px(d.get('max-height')) === 0 || px(d.get('max-width')) === 0 || px(d.get('line-height')) === 0) return true;
  const clipped = ['overflow', 'overflow-x', 'overflow-y'].some((p) => is(p, /^(hidden|clip)/));
  if (clipped && ['height', 'width'].some((p) => (px(d.get(p)) ?? Infinity) <= 2)) return true;
  if (is('clip', /^rect\(/) || is('clip-path', /^(inset\(\s*(4\d|[5-9]\d|100)(\.\d+)?%|circle\(\s*0|ellipse\(\s*0)/)) return true;
  if (is('transform', /scale[xy]?\(\s*0*(\.0\d*)?\s*[,)]/)) return true;
  // Pushed far off the page.
  return ['left', 'top', 'text-indent', 'margin-left', 'margin-top'].some((p) => (px(d.get(p)) ?? 0) <= -100);
}

/** A style sheet rule hides when it hides the box, or gives text the colour of its own background. */
function ruleHides(d: Map<string, string>): boolean {
  const color = parseColor(d.get('color'));
  const background = backgroundOf(d);
  return hidesBox(d) || (color !== undefined && (color[3] < 0.1 || (background !== undefined && invisibleOn(color, background))));
}

type Attribs = Record<string, string>;
/** One compound selector: `p`, `.x`, `div#main.note`; pseudo-classes and attribute tests are ignored. */
type Compound = { tag?: string; id?: string; classes: string[] };
interface Open {
  name: string;
  attribs: Attribs;
  classes: string[];
  hidden: boolean;
  color: Rgba;
  background: Rgba;
  pre: boolean;
  quote: number;
}

function compound(text: string): Compound {
  const bare = text.replace(/\[[^\]]*\]|::?[\w-]+(\([^)]*\))?/g, '');
  const tag = /^[a-z][\w-]*/i.exec(bare)?.[0].toLowerCase();
  return { tag, id: /#([\w-]+)/.exec(bare)?.[1], classes: [...bare.matchAll(/\.([\w-]+)/g)].map((m) => m[1].toLowerCase()) };
}

const matchesCompound = (el: Open, c: Compound) =>
  (!c.tag || el.name === c.tag) && (!c.id || el.attribs.id === c.id) && c.classes.every((k) => el.classes.includes(k));

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

const HIDE_ALL: Compound[][] = [[{ classes: [] }]];

/**
 * Selectors of style sheet rules that hide what they match. Errs on the side of hiding: rules
 * inside @media count, sibling combinators match any position, pseudo-classes are ignored. Longer
 * selectors, or more hiding selectors, than a real mail has hide everything. Split by braces with
 * indexOf, so a hostile style sheet costs linear time.
 */
function hidingSelectors(css: string): Compound[][] {
  const selectors: Compound[][] = [];
  for (const block of stripComments(css).split('}')) {
    const open = block.lastIndexOf('{');
    if (open < 0 || !ruleHides(declarations(block.slice(open + 1)))) continue;
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

/** The text of every <style> element: a first pass, because a rule may come after what it hides. */
function styleSheets(html: string): string {
  const { Parser } = require('htmlparser2') as typeof import('htmlparser2');
  const css: string[] = [];
  let inStyle = 0;
  let depth = 0;
  const parser = new Parser({
    onopentag: (name) => {
      // Checked here too: the parser's own bookkeeping grows with the depth of every tag.
      if (++depth > MAX_HTML_DEPTH) throw new UnreadableMail(`its HTML is nested more than ${MAX_HTML_DEPTH} levels deep`);
      if (name === 'style') inStyle++;
    },
    onclosetag: (name) => {
      depth--;
      if (name === 'style') inStyle--;
    },
    ontext: (text) => void (inStyle > 0 && css.push(text)),
  });
  parser.end(html);
  return css.join('\n');
}

const NO_CLASSES: string[] = [];
const WHITE: Rgba = [255, 255, 255, 1];
const BLACK: Rgba = [0, 0, 0, 1];

/** Visible text of an HTML part, one line per rendered line; quoted (blockquote) lines start with "> ". */
export function htmlToText(html: string): string {
  const { Parser } = require('htmlparser2') as typeof import('htmlparser2');
  const sheet = /<style/i.test(html) ? hidingSelectors(styleSheets(html)) : [];
  let work = 0;
  const hiddenBySheet = (el: Open, ancestors: Open[]): boolean => {
    for (const path of sheet) {
      work++;
      if (!matchesCompound(el, path[path.length - 1])) continue;
      // Descendant semantics for every step of the path (a child is also a descendant).
      let i = path.length - 2;
      for (let a = ancestors.length - 1; a >= 0 && i >= 0; a--, work++) if (matchesCompound(ancestors[a], path[i])) i--;
      if (i < 0) return true;
    }
    if (work > MATCH_BUDGET) throw new UnreadableMail('its HTML is too complex to read (too many style rules for its size)');
    return false;
  };

  const root: Open = { name: '#root', attribs: {}, classes: [], hidden: false, color: BLACK, background: WHITE, pre: false, quote: 0 };
  const stack: Open[] = [root];
  const lines: string[] = [];
  let line = '';
  let lineHasText = false;
  let lineQuote = 0;
  const breakLine = (force = false) => {
    if (lineHasText) lines.push(`${'> '.repeat(lineQuote)}${line.trim()}`);
    else if (force) lines.push('');
    line = '';
    lineHasText = false;
  };
  const blockBreak = (name: string) => {
    breakLine();
    if (PARAGRAPH.has(name) && lines.length > 0 && lines[lines.length - 1] !== '') lines.push('');
  };
  const top = () => stack[stack.length - 1];

  const parser = new Parser(
    {
      onopentag(name, attribs) {
        const parent = top();
        if (stack.length > MAX_HTML_DEPTH) throw new UnreadableMail(`its HTML is nested more than ${MAX_HTML_DEPTH} levels deep`);
        // Most elements have no style: they cost no parsing.
        const style = attribs.style ? declarations(attribs.style) : undefined;
        const background = (style && backgroundOf(style)) ?? parseColor(attribs.bgcolor);
        const el: Open = {
          name,
          attribs,
          classes: attribs.class ? attribs.class.toLowerCase().split(/\s+/).filter(Boolean) : NO_CLASSES,
          hidden: parent.hidden,
          color: parseColor(style?.get('color')) ?? parseColor(name === 'font' ? attribs.color : undefined) ?? parent.color,
          background: background && background[3] >= 0.1 ? background : parent.background,
          pre: parent.pre || name === 'pre',
          quote: parent.quote + (name === 'blockquote' ? 1 : 0),
        };
        if (!el.hidden) {
          el.hidden = SKIPPED.has(name) || 'hidden' in attribs || (style !== undefined && hidesBox(style)) || (sheet.length > 0 && hiddenBySheet(el, stack.slice(1)));
        }
        stack.push(el);
        if (el.hidden) return;
        if (name === 'br') breakLine(true);
        else if (name === 'hr') {
          breakLine();
          lines.push(HR_LINE);
        } else if (BLOCK.has(name)) blockBreak(name);
        else if (CELL.has(name)) line += ' ';
      },
      onclosetag(name) {
        const el = stack.length > 1 ? stack.pop()! : root;
        if (!el.hidden && (BLOCK.has(name) || CELL.has(name))) {
          if (BLOCK.has(name)) blockBreak(name);
          else line += ' ';
        }
      },
      ontext(text) {
        const el = top();
        if (el.hidden || invisibleOn(el.color, el.background)) return;
        const pieces = el.pre ? text.split('\n') : [text.replace(/[ \t\r\n\f]+/g, ' ')];
        pieces.forEach((piece, i) => {
          if (i > 0) breakLine(true);
          // A line's quote depth is that of its first text (a flag, not a trim: lines can be long).
          if (!lineHasText && /\S/.test(piece)) {
            lineHasText = true;
            lineQuote = el.quote;
          }
          line += piece;
        });
      },
    },
    { decodeEntities: true },
  );
  parser.end(html);
  breakLine();
  return lines.join('\n');
}
