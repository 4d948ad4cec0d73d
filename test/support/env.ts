import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config/load';
import type { Config } from '../../src/config/types';
import { MemoryStore } from '../../src/state/store';
import type { AuditRecord } from '../../src/state/audit';
import type { PipelineDeps } from '../../src/core/pipeline';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createDemoDatabase } = require('../../examples/demo-db.mjs') as { createDemoDatabase: (file: string) => void };

export const ROOT = join(__dirname, '..', '..');
export const FIXED_NOW = new Date('2026-11-25T10:00:00Z');

/** A private folder under the system temp dir, removed by the returned function. */
export function tempDir(prefix = 'mailagent-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The example config, with its state, audit and demo database moved into `dir`. */
export function exampleConfigObject(dir: string): Record<string, any> {
  const raw = JSON.parse(require('node:fs').readFileSync(join(ROOT, 'config.example.json'), 'utf8'));
  raw.state.path = join(dir, 'state.db');
  raw.audit.path = join(dir, 'audit.jsonl');
  raw.services.db.databases.inventory.sqlite.path = join(dir, 'demo.db');
  return raw;
}

export function demoConfig(dir: string, tweak?: (raw: Record<string, any>) => void): Config {
  createDemoDatabase(join(dir, 'demo.db'));
  const raw = exampleConfigObject(dir);
  tweak?.(raw);
  return validateConfig(raw, join(dir, 'config.json'));
}

/** Pipeline dependencies with the real clock (mail() stamps messages with it); `audits` collects what would go to the audit log. */
export function testDeps(config: Config, extra: Partial<PipelineDeps> = {}): PipelineDeps & { audits: AuditRecord[]; errors: string[] } {
  const audits: AuditRecord[] = [];
  const errors: string[] = [];
  return {
    config,
    now: () => new Date(),
    store: new MemoryStore(),
    audit: (r) => audits.push(r),
    logError: (m) => errors.push(m),
    audits,
    errors,
    ...extra,
  };
}

/** A minimal RFC 5322 message; headers override the defaults, `null` removes one. */
export function mail(body: string, headers: Record<string, string | null> = {}): Buffer {
  const all: Record<string, string | null> = {
    From: 'Ops <ops@example.com>',
    To: 'agent@example.com',
    Subject: 'test',
    Date: new Date().toUTCString(),
    'Message-ID': `<${Math.random().toString(36).slice(2)}@example.com>`,
    ...headers,
  };
  const head = Object.entries(all)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}: ${v}`);
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${body.replace(/\r?\n/g, '\r\n')}`);
}
