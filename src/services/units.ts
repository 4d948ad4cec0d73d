/** Sizes and rates as people read them in a reply; exact numbers go to CSV attachments. */

const BINARY = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
const DECIMAL = ['', 'k', 'M', 'G', 'T'];

/** 1536 → "1.5 KiB"; below 1024 the exact count. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < BINARY.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${BINARY[unit]}`;
}

/** 12_300_000 and "bit/s" → "12.3 Mbit/s" (SI prefixes, as link speeds are given). */
export function formatRate(value: number, unit: string): string {
  let scaled = value;
  let prefix = 0;
  while (Math.abs(scaled) >= 1000 && prefix < DECIMAL.length - 1) {
    scaled /= 1000;
    prefix++;
  }
  const digits = prefix === 0 && Number.isInteger(scaled) ? 0 : scaled < 10 ? 2 : scaled < 100 ? 1 : 0;
  return `${scaled.toFixed(digits)} ${DECIMAL[prefix]}${unit}`;
}

/** 93784000 ms → "1d 2h 3m"; under a minute "42 s". */
export function formatDuration(ms: number): string {
  const total = Math.floor(ms / 1000);
  if (total < 60) return `${total} s`;
  const d = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  return [d && `${d}d`, (d || h) && `${h}h`, `${m}m`].filter(Boolean).join(' ');
}

/** "90s", "15m", "24h", "7d" (or plain seconds) → milliseconds; undefined when it is none of these. */
export function parseSpan(text: string): number | undefined {
  const m = /^(\d{1,9})\s*(s|m|h|d)?$/i.exec(text.trim());
  if (!m) return undefined;
  const factor = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's').toLowerCase() as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * factor;
}
