// A running process and the machine, read from /proc (bench/watch.mjs): procMemory (VmRSS,
// VmHWM) and resetPeakRss, procCpuSeconds (user + system of all its threads), procSchedstat (a
// thread's time on a CPU and waiting for one), machineCpu (how busy the whole machine is),
// cpuByProgram (every process's CPU by program name), descendants, and watchMemory, which polls
// a process and its children for the peak of their summed RSS. Node built-ins only.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** { rssKiB: VmRSS, hwmKiB: VmHWM (the peak so far) } of a process; undefined once it is gone. */
export function procMemory(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kib = (field) => Number(new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(text)?.[1]);
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

/** Resets a process's VmHWM to its current RSS (proc(5): clear_refs 5), so that a later read is the peak since now. */
export function resetPeakRss(pid) {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

let clockTicks;
/** CPU seconds (user + system, every thread) a process has used so far; undefined once it is gone. */
export function procCpuSeconds(pid) {
  clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // After the command name (in parentheses, may hold spaces): utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/**
 * The scheduler's account of one thread (default: the main thread) from /proc/PID/task/TID/schedstat:
 * seconds on a CPU, and seconds runnable but waiting for a CPU (the machine was busy). The rest of
 * its wall time it slept: waiting for I/O (sockets, timers) or blocked in a system call (fsync).
 */
export function procSchedstat(pid, tid = pid) {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
    return { runSeconds: run / 1e9, waitSeconds: wait / 1e9 };
  } catch {
    return undefined;
  }
}

/** Jiffies of the whole machine from /proc/stat: { busy, total, cpus }. */
export function machineCpu() {
  const text = readFileSync('/proc/stat', 'utf8');
  const f = text.split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0); // idle + iowait
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is already in user
  return { busy: total - idle, total, cpus: (text.match(/^cpu\d+ /gm) ?? []).length };
}

/** Every process's CPU seconds from /proc/PID/stat: its own (utime + stime) and its waited-for children's (cutime + cstime). */
function allProcessCpu() {
  clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
  const out = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    out.set(Number(entry), {
      name: stat.slice(stat.indexOf('(') + 1, close),
      own: (Number(fields[11]) + Number(fields[12])) / clockTicks,
      children: (Number(fields[13]) + Number(fields[14])) / clockTicks,
    });
  }
  return out;
}

/**
 * CPU seconds by program name from now until end(): what live processes used, plus what exited
 * ones used, counted where their parent waited for them ("exited children of NAME": Postfix's
 * master runs smtpd, cleanup and the delivery agents as short-lived children). A child that ran
 * before the start and exited after it is counted whole: the figures are a breakdown, not a clock.
 */
export function cpuByProgram() {
  const before = allProcessCpu();
  return {
    end() {
      const totals = new Map();
      const add = (name, seconds) => seconds > 0 && totals.set(name, (totals.get(name) ?? 0) + seconds);
      for (const [pid, now] of allProcessCpu()) {
        const then = before.get(pid)?.name === now.name ? before.get(pid) : { own: 0, children: 0 };
        add(now.name, now.own - then.own);
        add(`exited children of ${now.name}`, now.children - then.children);
      }
      return [...totals].sort((a, b) => b[1] - a[1]);
    },
  };
}

/** Pids of a process's children, grandchildren, … (from /proc/PID/task/TID/children). */
export function descendants(pid) {
  const out = [];
  let tasks = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    let children = '';
    try {
      children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.trim().split(/\s+/).filter(Boolean).map(Number)) out.push(child, ...descendants(child));
  }
  return out;
}

/**
 * Polls a process and its descendants every `everyMs`: stop() returns the peak of their summed
 * VmRSS (a child's own peak between polls can be missed; the process's is not: VmHWM), the
 * process's VmHWM, and the pids of the children seen.
 */
export function watchMemory(pid, everyMs = 50) {
  let peakKiB = 0;
  const children = new Set();
  const poll = () => {
    const kids = descendants(pid);
    for (const k of kids) children.add(k);
    const sum = [pid, ...kids].reduce((n, p) => n + (procMemory(p)?.rssKiB ?? 0), 0);
    peakKiB = Math.max(peakKiB, sum);
  };
  poll();
  const timer = setInterval(poll, everyMs);
  return {
    stop() {
      poll();
      clearInterval(timer);
      const own = procMemory(pid);
      return { treePeakKiB: peakKiB, hwmKiB: own?.hwmKiB, rssKiB: own?.rssKiB, children: [...children] };
    },
  };
}
