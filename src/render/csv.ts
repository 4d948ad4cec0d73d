import { cellText } from './table';

/** RFC 4180 CSV. Text that a spreadsheet would run as a formula is prefixed with an apostrophe. */
function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = cellText(value);
  if (typeof value === 'string' && /^[=+@\t\r-]/.test(text) && !/^-?\d/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function renderCsv(columns: string[], rows: unknown[][]): string {
  return [columns, ...rows].map((row) => row.map(csvCell).join(',')).join('\r\n') + '\r\n';
}
