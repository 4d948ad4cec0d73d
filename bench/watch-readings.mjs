// What bench/watch.mjs reads besides /proc: the Maildirs replies arrive in, Dovecot's rawlog of the
// agent's IMAP commands, Postfix's log of the agent's SMTP sessions, strace of the agent's system
// calls, and the agent's own log records split into the stages of a request. Node built-ins only.

import { spawn } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Files in a Maildir's new/ (Dovecot's LMTP delivers there); [] before the first delivery. */
function newMail(maildir) {
  try {
    return readdirSync(join(maildir, 'new'));
  } catch (e) {
    if (e.code === 'ENOENT') return [];
    throw e;
  }
}

export async function waitForFiles(maildir, n, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const files = newMail(maildir);
    if (files.length >= n) return files;
    if (Date.now() > deadline) throw new Error(`${maildir}: ${files.length} of ${n} messages after ${timeoutMs} ms`);
    await sleep(25); // not faster: this bench shares the CPUs with what it measures
  }
}

/** header value (e.g. In-Reply-To) → delivery time (mtime, ms) of every mail in a Maildir/new. */
export function arrivals(maildir, header) {
  const out = new Map();
  const pattern = new RegExp(`^${header}:\\s*(<[^>]+>)`, 'im');
  for (const f of newMail(maildir)) {
    const file = join(maildir, 'new', f);
    const head = readFileSync(file, 'latin1').split(/\r?\n\r?\n/, 1)[0].replace(/\r?\n[ \t]+/g, ' ');
    const m = pattern.exec(head);
    if (m) out.set(m[1], statSync(file).mtimeMs);
  }
  return out;
}

/**
 * Each request's send → reply split at the agent's log records (key mid:<Message-ID>): the
 * pipeline started at "handled".time − ms, the outbox handed the reply to Postfix at "sent".time.
 */
export function requestStages(sentAt, replies, records) {
  const at = (r) => Date.parse(r.time);
  const handled = new Map(records.filter((r) => r.msg === 'handled' && typeof r.ms === 'number').map((r) => [r.key, r]));
  const sent = new Map(records.filter((r) => r.msg === 'sent').map((r) => [r.key, r]));
  const rows = [
    ['send → pipeline starts (delivery, wait in INBOX, fetch, lease, MOVE)', []],
    ['pipeline (check, run, compose, store the reply)', []],
    ['pipeline ends → reply handed to Postfix (outbox)', []],
    ['handed to Postfix → reply delivered', []],
  ];
  for (const [id, sendAt] of sentAt) {
    const h = handled.get(`mid:${id}`);
    const s = sent.get(`mid:${id}`);
    const delivered = replies.get(id);
    if (!h || !s || delivered === undefined) continue;
    const end = at(h);
    [end - h.ms - sendAt, h.ms, at(s) - end, delivered - at(s)].forEach((v, i) => rows[i][1].push(v));
  }
  for (const [, values] of rows) values.sort((a, b) => a - b);
  return rows[0][1].length ? { n: rows[0][1].length, rows } : undefined;
}

/** Dovecot writes every IMAP connection of every user to rawlog/<user>/*.in and *.out; restarts Dovecot to take it. */
export async function enableRawlog(stack) {
  const dir = join(stack.dir, 'rawlog');
  const mailUid = statSync(join(stack.dir, 'mail')).uid; // Dovecot's imap runs as the mail user
  for (const user of Object.keys(stack.users)) {
    mkdirSync(join(dir, user), { recursive: true });
    chownSync(join(dir, user), mailUid, -1);
  }
  appendFileSync(join(stack.dir, 'dovecot.conf'), `# added by bench/watch.mjs\nprotocol imap {\n  rawlog_dir = ${dir}/%n\n}\n`);
  await stack.restartDovecot();
  return join(dir, 'agent');
}

/**
 * The agent's IMAP commands sent between two times (epoch ms), from the rawlog: Dovecot stamps
 * every line it reads (*.in) and writes (*.out). By name (UID FETCH, not UID): how many, and the
 * seconds from each command to its tagged answer (for IDLE: how long the connection idled).
 */
export function imapCommands(rawlogDir, fromMs, toMs) {
  const byTag = new Map();
  const counts = new Map();
  const files = readdirSync(rawlogDir);
  for (const f of files.filter((f) => f.endsWith('.in'))) {
    for (const line of readFileSync(join(rawlogDir, f), 'latin1').split(/\r?\n/)) {
      // "<time> <tag> [UID] COMMAND …"; "<time> DONE" ends an IDLE.
      const m = /^([\d.]+) (\S+)(?: (UID \S+|\S+))?/i.exec(line);
      if (!m || m[1] * 1000 < fromMs || m[1] * 1000 > toMs || m[2].toUpperCase() === 'DONE') continue;
      const name = (m[3] ?? '?').toUpperCase();
      const c = counts.get(name) ?? { n: 0, seconds: 0 };
      c.n++;
      counts.set(name, c);
      byTag.set(`${f.slice(0, -3)} ${m[2]}`, { c, at: Number(m[1]) });
    }
  }
  for (const f of files.filter((f) => f.endsWith('.out'))) {
    for (const line of readFileSync(join(rawlogDir, f), 'latin1').split(/\r?\n/)) {
      const m = /^([\d.]+) (\S+) (?:OK|NO|BAD)\b/.exec(line);
      const sent = m && byTag.get(`${f.slice(0, -4)} ${m[2]}`);
      if (sent) sent.c.seconds += Number(m[1]) - sent.at;
    }
  }
  return counts;
}

/**
 * The agent's SMTP sessions in Postfix's log (mail from agent@example.com), from `fromLine` on:
 * { sessions, messages }. A session is an smtpd process's lines from "connect from" to
 * "disconnect from"; its messages are the queue ids it logged `client=` for.
 */
export function agentSmtpSessions(postfixLog, fromLine) {
  const lines = readFileSync(postfixLog, 'utf8').split('\n').slice(fromLine);
  const senderOf = new Map();
  for (const l of lines) {
    const m = /postfix\/qmgr\[\d+\]: (\w+): from=<([^>]*)>/.exec(l);
    if (m) senderOf.set(m[1], m[2]);
  }
  const open = new Map();
  const sessions = [];
  for (const l of lines) {
    const m = /postfix\/smtpd\[(\d+)\]: (?:(connect from)|(disconnect from)|(\w+): client=)/.exec(l);
    if (!m) continue;
    if (m[2]) open.set(m[1], []);
    else if (m[3]) sessions.push(open.get(m[1]) ?? []), open.delete(m[1]);
    else open.get(m[1])?.push(m[4]);
  }
  sessions.push(...open.values()); // still connected: the agent's pool keeps its connections
  const ours = sessions.filter((ids) => ids.length && ids.every((id) => senderOf.get(id) === 'agent@example.com'));
  return { sessions: ours.length, messages: ours.reduce((n, ids) => n + ids.length, 0), perSession: ours.map((ids) => ids.length) };
}

/** strace attached to every thread of pid, writing to file; stop() detaches it. */
export async function startStrace(pid, file) {
  const trace = 'fsync,fdatasync,write,writev,pwrite64,read,epoll_wait,epoll_pwait';
  const child = spawn('strace', ['-f', '-T', '-yy', '-s', '0', '-qq', '-e', `trace=${trace}`, '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  // Attached once the output file has its first lines; an idle agent sits in epoll_wait, so give it a moment.
  const deadline = Date.now() + 5000;
  while (!(existsSync(file) && statSync(file).size > 0) && Date.now() < deadline && child.exitCode === null) await sleep(20);
  if (child.exitCode !== null) throw new Error(`strace: ${err.trim()}`);
  return {
    async stop() {
      child.kill('SIGINT');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}

/**
 * strace -f -T -yy output → per (syscall, target) { calls, seconds }, and the main thread's time in
 * epoll_wait. The target is what the fd names: a file (by base name; the state store's -wal and
 * the audit log are the ones that matter), a TCP peer port, or a pipe.
 */
export function readStrace(file, pid, ports) {
  const calls = new Map();
  let idle = 0;
  let first = Infinity;
  let last = 0;
  const pending = new Map(); // tid → key of an <unfinished …> call
  const add = (key, sec) => {
    const c = calls.get(key) ?? { calls: 0, seconds: 0 };
    if (sec === undefined) c.calls++;
    else c.seconds += sec;
    calls.set(key, c);
  };
  const target = (fdText) => {
    const tcp = /TCP(?:v6)?:\[[^\]]*->[^\]]*:(\d+)\]/.exec(fdText);
    if (tcp) return ports[tcp[1]] ?? `TCP :${tcp[1]}`;
    if (/^2</.test(fdText)) return 'stderr (the log)';
    const path = /<(\/[^>]*)>/.exec(fdText);
    if (path) return path[1].split('/').pop();
    return fdText.includes('anon_inode') ? 'eventfd/epoll' : 'other';
  };
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^(\d+) +(?:(\w+)\(([^,)]*)|<\.\.\. (\w+) resumed>)/.exec(line);
    if (!m) continue;
    const tid = Number(m[1]);
    const time = /<([\d.]+)>$/.exec(line);
    const sec = time ? Number(time[1]) : undefined;
    let key;
    if (m[2]) {
      const name = m[2] === 'epoll_pwait' ? 'epoll_wait' : m[2];
      key = `${name}\t${name.startsWith('epoll') ? (tid === pid ? 'main thread' : 'other threads') : target(m[3])}`;
      add(key);
      if (line.includes('<unfinished ...>')) pending.set(tid, key);
    } else {
      key = pending.get(tid);
      pending.delete(tid);
    }
    if (key && sec !== undefined) {
      add(key, sec);
      if (key === 'epoll_wait\tmain thread') idle += sec;
    }
  }
  return { calls, idle };
}
