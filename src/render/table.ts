/** Plain-text tables that stay aligned in any mail client showing a monospace font. */
const MAX_CELL = 60;

export function cellText(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function fit(text: string): string {
  const flat = text.replace(/\r?\n/g, ' ⏎ ').replace(/\t/g, ' ');
  return flat.length > MAX_CELL ? `${flat.slice(0, MAX_CELL - 1)}…` : flat;
}

const isNumeric = (v: unknown) => typeof v === 'number' || typeof v === 'bigint';

export function renderTable(columns: string[], rows: unknown[][]): string {
  const cells = rows.map((row) => columns.map((_, i) => fit(cellText(row[i]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const rightAlign = columns.map((_, i) => rows.length > 0 && rows.every((r) => r[i] === null || isNumeric(r[i])));
  const line = (values: string[]) =>
    values
      .map((v, i) => (rightAlign[i] ? v.padStart(widths[i]) : v.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}
