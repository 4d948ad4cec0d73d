/**
 * Paths from a mail, checked as text before any file system sees them: relative, '/'-separated,
 * no '..', no encoded or look-alike separators, no control characters, bounded lengths. What
 * passes is a list of plain name components; the adapters then keep the real (resolved) location
 * inside the share as well.
 */

export const MAX_PATH_CHARS = 1024;
/** Bytes per name component (NAME_MAX on Linux). */
export const MAX_NAME_BYTES = 255;

/** Characters that are, or that Unicode normalisation turns into, a separator or a dot. */
const LOOKALIKE = /[\u2024\u2025\u2026\u2215\u2044\u29f8\u29f9\uff0e\uff0f\uff3c\ufe52\ufe68\u2216\u3002\uff61]/u;

export type CheckedPath = { ok: true; parts: string[] } | { ok: false; problem: string };

export function checkPath(input: string, { allowRoot = false }: { allowRoot?: boolean } = {}): CheckedPath {
  const refuse = (problem: string): CheckedPath => ({ ok: false, problem: `path "${printable(input)}": ${problem}` });
  if (input.length > MAX_PATH_CHARS) return refuse(`longer than ${MAX_PATH_CHARS} characters`);
  if (/[\u0000-\u001f\u007f-\u009f]/.test(input)) return refuse('control characters (NUL, line breaks…) are not allowed');
  if (input.includes('\\')) return refuse('use / between folders (\\ is not a separator here)');
  if (/%[0-9a-f]{2}/i.test(input)) return refuse('percent-encoded characters are not accepted: write the name as it is');
  if (LOOKALIKE.test(input) || input.normalize('NFKC') !== input.normalize('NFC')) {
    return refuse('characters that look like a dot or a slash (or turn into one when normalised) are not allowed');
  }
  if (input.startsWith('/') || /^[A-Za-z]:/.test(input) || input.startsWith('~')) return refuse('must be relative to the share (no leading /, drive letter or ~)');
  const parts = input.normalize('NFC').split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return refuse('".." is not allowed');
  const long = parts.find((p) => Buffer.byteLength(p) > MAX_NAME_BYTES);
  if (long) return refuse(`a name is longer than ${MAX_NAME_BYTES} bytes`);
  if (parts.length === 0 && !allowRoot) return refuse('names no file (the share itself)');
  return { ok: true, parts };
}

/** A path for messages: control characters shown as escapes, long ones cut. */
export function printable(path: string): string {
  const shown = path.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return shown.length > 120 ? `${shown.slice(0, 117)}…` : shown;
}
