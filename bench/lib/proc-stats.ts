/**
 * What a benchmark reads about a server process from /proc: CPU time and memory. Every reader
 * returns null instead of throwing when the process is gone, so a contender that died mid-run
 * shows as a missing number rather than a crashed benchmark.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second for /proc/PID/stat's utime and stime (getconf CLK_TCK; 100 on Linux x86). */
const CLOCK_TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/**
 * User + system CPU seconds of the whole process so far. /proc/PID/stat of a thread-group leader
 * sums every thread of the group, live and exited (worker_threads, dnsdist's and unbound's
 * threads), so one read covers them all.
 */
export function cpuSeconds(pid: number): number | null {
  const stat = readOrNull(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // Fields after the parenthesised command name (which may contain spaces): state is field 3,
  // utime field 14 and stime field 15 (proc(5)).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  return (utime + stime) / CLOCK_TICKS_PER_SECOND;
}

/** A `Vm…:` line of /proc/PID/status in bytes (the kernel prints kB). */
function statusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  const status = readOrNull(`/proc/${pid}/status`);
  const match = status === null ? null : new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  return match === null ? null : Number(match[1]) * 1024;
}

/** Peak resident set size since the process started (VmHWM). */
export const peakRssBytes = (pid: number): number | null => statusBytes(pid, 'VmHWM');

/** Resident set size now (VmRSS). */
export const rssBytes = (pid: number): number | null => statusBytes(pid, 'VmRSS');

/**
 * Kernel slab memory of the whole machine (/proc/meminfo `Slab:`), in bytes. Kernel TCP sockets
 * live there (tcp_sock, the file, dentry and inode of each socket), not in any process's RSS, so
 * this is the only place a kernel-held connection's cost shows. Machine-wide, hence noisy.
 */
export function slabBytes(): number {
  const match = /^Slab:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  if (match === null) throw new Error('no Slab: line in /proc/meminfo');
  return Number(match[1]) * 1024;
}
