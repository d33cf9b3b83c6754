/**
 * Names the calling OS thread, so that `top -H`, `ps -L`, perf and /proc/PID/task/TID/comm tell
 * the capture thread and the shard workers apart (Node names every thread "node"). Linux takes a
 * thread's own name from a write to /proc/thread-self/comm (proc(5); at most 15 bytes).
 * Best effort: a system without /proc/thread-self keeps the old name.
 */
import { writeFileSync } from 'node:fs';

export function nameThisThread(name: string): void {
  try {
    writeFileSync('/proc/thread-self/comm', name.slice(0, 15));
  } catch {
    // Only diagnostics depend on it.
  }
}
