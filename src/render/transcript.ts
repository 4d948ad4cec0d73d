import type { Result, ResultFile } from '../services/types';
import { renderCsv } from './csv';
import { renderTable } from './table';

/** What the reply attaches: content, or a file it is streamed from. */
export type Attachment = ResultFile;

export interface Step {
  text: string;
  /** A result, or the message of a failure. */
  outcome: { ok: true; result: Result } | { ok: false; error: string };
}

function slug(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60) || 'result';
}

/** The reply body: each command quoted as `> command`, then what it produced. */
export function renderTranscript(steps: Step[], rowsInBody: number): { text: string; attachments: Attachment[] } {
  const attachments: Attachment[] = [];
  const blocks = steps.map((step) => {
    const head = `> ${step.text}`;
    if (!step.outcome.ok) return `${head}\nERROR: ${step.outcome.error}`;
    const result = step.outcome.result;
    if (result.kind === 'text') return `${head}\n${result.text}`;
    /** Attaches files under names unique in this reply; returns the "(attached: …)" line, or ''. */
    const attach = (files: ResultFile[]): string => {
      const names = files.map((file) => {
        const taken = new Set(attachments.map((a) => a.filename));
        let filename = file.filename;
        for (let n = 2; taken.has(filename); n++) filename = file.filename.replace(/(\.[^.]*)?$/, `-${n}$1`);
        attachments.push({ ...file, filename });
        return filename;
      });
      return names.length ? `\n(attached: ${names.join(', ')})` : '';
    };
    if (result.kind === 'files') return `${head}\n${result.text}${attach(result.files)}`;
    const { columns, rows } = result;
    const notes: string[] = [];
    if (result.note) notes.push(result.note);
    let shown = rows;
    if (rows.length > rowsInBody) {
      const taken = new Set(attachments.map((a) => a.filename));
      let filename = `${slug(result.name ?? step.text)}.csv`;
      for (let n = 2; taken.has(filename); n++) filename = `${slug(result.name ?? step.text)}-${n}.csv`;
      attachments.push({ filename, contentType: 'text/csv; charset=utf-8', content: renderCsv(columns, rows) });
      shown = rows.slice(0, rowsInBody);
      notes.push(`${rows.length} rows: the first ${rowsInBody} are shown, all of them are in ${filename}`);
    } else {
      notes.push(`${rows.length} row${rows.length === 1 ? '' : 's'}`);
    }
    const table = columns.length ? renderTable(columns, shown) : '(no columns)';
    return `${head}\n${result.intro ? `${result.intro}\n\n` : ''}${table}\n(${notes.join('; ')})${attach(result.files ?? [])}`;
  });
  return { text: `${blocks.join('\n\n')}\n`, attachments };
}
