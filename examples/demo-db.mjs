// Creates the demo inventory database (hosts, tickets) used by config.example.json.
// Deterministic: the same rows every time, so replies in the README stay true.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));

export function createDemoDatabase(file) {
  const Database = require('better-sqlite3');
  mkdirSync(dirname(file), { recursive: true });
  rmSync(file, { force: true });
  const db = new Database(file);
  db.exec(readFileSync(join(here, 'demo-data.sql'), 'utf8'));
  const sites = ['ams', 'fra', 'lon'];
  const roles = ['web', 'db', 'mail', 'cache', 'backup', 'proxy'];
  const oses = ['Debian 12', 'Debian 13', 'Ubuntu 24.04', 'RHEL 9'];
  const addHost = db.prepare('INSERT INTO hosts (name, ip, os, site, role, last_seen) VALUES (?, ?, ?, ?, ?, ?)');
  for (let i = 0; i < 24; i++) {
    const role = roles[i % roles.length];
    const name = `${role}-${sites[i % 3]}-${String(Math.floor(i / 6) + 1).padStart(2, '0')}`;
    addHost.run(name, `10.${i % 3}.0.${10 + i}`, oses[i % oses.length], sites[i % 3], role, `2026-11-${String(1 + (i % 24)).padStart(2, '0')}T0${i % 10}:15:00Z`);
  }
  const titles = ['disk almost full', 'certificate expires soon', 'high load at night', 'backup job failed', 'NTP drift', 'kernel update pending', 'fan speed warning', 'RAID degraded'];
  const statuses = ['open', 'in progress', 'closed', 'open', 'closed'];
  const addTicket = db.prepare('INSERT INTO tickets (host_id, priority, status, title, opened) VALUES (?, ?, ?, ?, ?)');
  for (let i = 0; i < 60; i++) {
    addTicket.run(1 + ((i * 7) % 24), 1 + (i % 4), statuses[i % statuses.length], titles[i % titles.length], `2026-${String(9 + (i % 3)).padStart(2, '0')}-${String(1 + ((i * 11) % 28)).padStart(2, '0')}`);
  }
  db.close();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2] ?? join(here, '..', 'var', 'demo.db');
  createDemoDatabase(file);
  console.log(`demo database written to ${file}`);
}
