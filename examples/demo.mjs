// `npm run demo`: builds nothing, needs no server. Creates the demo database, then feeds each
// sample mail in examples/ to `dist/mailagent run --print` and shows what would be sent back.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDemoDatabase } from './demo-db.mjs';

const require = createRequire(import.meta.url);
const { simpleParser } = require('mailparser');
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const binary = join(root, 'dist', 'mailagent');
const config = join(root, 'config.example.json');

if (!existsSync(binary)) {
  console.error('dist/mailagent is missing: run `npm run build` first.');
  process.exit(1);
}
createDemoDatabase(join(root, 'var', 'demo.db'));

const rule = (title) => `\n${'='.repeat(78)}\n${title}\n${'='.repeat(78)}`;
for (const name of readdirSync(here).filter((f) => f.endsWith('.eml')).sort()) {
  // Stamped with the current time: the agent refuses mail dated outside its replay window.
  const mail = Buffer.from(readFileSync(join(here, name), 'latin1').replace(/^Date: .*$/m, `Date: ${new Date().toUTCString()}`), 'latin1');
  const request = await simpleParser(mail);
  console.log(rule(`${relative(root, join(here, name))}  from ${request.from?.text}  "${request.subject}"`));
  console.log(request.text.trimEnd().replace(/^/gm, '  | '));
  const run = spawnSync(binary, ['run', '--print', '--config', config], { input: mail, cwd: root });
  console.log(`\n$ mailagent run --print < ${name}   (exit ${run.status})`);
  if (run.stderr.length) console.log(run.stderr.toString().trimEnd());
  if (run.stdout.length === 0) {
    console.log('(no reply: the agent stays silent, see var/audit.jsonl)');
    continue;
  }
  const reply = await simpleParser(run.stdout);
  for (const header of ['subject', 'to', 'in-reply-to', 'references', 'auto-submitted', 'x-loop']) {
    const value = reply.headers.get(header);
    if (value) console.log(`${header.replace(/(^|-)\w/g, (c) => c.toUpperCase())}: ${typeof value === 'object' && 'text' in value ? value.text : value}`);
  }
  console.log('');
  console.log(reply.text.trimEnd());
  for (const a of reply.attachments) console.log(`\n[attachment ${a.filename}, ${a.contentType}, ${a.size} bytes]`);
}
console.log(`\nThe replies above were printed, not sent. The audit log is ${join('var', 'audit.jsonl')}.`);
