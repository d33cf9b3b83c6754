/**
 * Running commands and child processes for the lab, always bounded: a command run to completion
 * is killed after its timeout; a long-running process is tracked until it exits, its output kept
 * so that callers can wait for a line of it and error messages can quote it, and it is stopped
 * with SIGTERM, then SIGKILL.
 */
import { type ChildProcess, spawn as spawnProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this long; default 10 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string | Buffer;
}

export interface ExecResult {
  /** Exit status, or null when the command was ended by a signal (including the timeout's). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
}

const DEFAULT_EXEC_TIMEOUT_MS = 10_000;
const DEFAULT_STOP_TIMEOUT_MS = 3_000;
/** Lines of each spawned process's output kept for waitForLine and for error messages. */
const KEPT_OUTPUT_LINES = 1000;

/**
 * The one way the lab runs a command to completion: output collected, stdin optionally fed, and a
 * timeout that SIGKILLs it. After a timeout the result is returned as soon as the process has
 * exited, without waiting for its pipes, which a leftover grandchild might hold open.
 */
export function runCommand(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('runCommand: empty argv'));
  const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  return new Promise((resolve) => {
    const child = spawnProcess(file, args, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    let settled = false;
    const settle = (code: number | null, signal: NodeJS.Signals | null, extraError = ''): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8') + extraError,
        timedOut,
      });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      if (hasExited(child)) settle(child.exitCode, child.signalCode);
      else child.once('exit', (code, signal) => settle(code, signal));
    }, timeoutMs);
    child.on('error', (error) => settle(null, null, `${file}: ${error.message}`));
    child.on('close', (code, signal) => settle(code, signal));
    if (options.input !== undefined) {
      child.stdin!.on('error', () => {}); // the command may exit without reading its input (EPIPE)
      child.stdin!.end(options.input);
    }
  });
}

/** runCommand for commands that must succeed: throws a one-line error naming the command otherwise. */
export async function runChecked(argv: readonly string[], what: string, input?: string): Promise<void> {
  const result = await runCommand(argv, input === undefined ? {} : { input });
  if (result.code !== 0) {
    const reason = result.timedOut ? 'timed out' : result.stderr.trim() || `exit ${result.code ?? result.signal}`;
    throw new Error(`lab: ${what} failed: ${argv.join(' ')}: ${reason.replace(/\s*\n\s*/g, ' | ')}`);
  }
}

/** Polls `check` every 20 ms until it returns true; throws after `timeoutMs` or if `check` throws. */
export async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`lab: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Output kept per spawned process, and whoever waits for a line of it. */
interface OutputLog {
  lines: string[];
  waiters: Set<(line: string) => void>;
}

/**
 * The long-running processes one owner (a lab) started: each tracked until it exits, with the
 * last lines of its stdout and stderr kept.
 */
export class SpawnedProcesses {
  private readonly children = new Set<ChildProcess>();
  private readonly outputs = new WeakMap<ChildProcess, OutputLog>();

  /** Starts argv with stdout/stderr as pipes, read line by line into the kept output. */
  spawn(argv: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('spawn: empty argv');
    const child = spawnProcess(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    const log: OutputLog = { lines: [], waiters: new Set() };
    this.outputs.set(child, log);
    this.children.add(child);
    const keep = (line: string): void => {
      log.lines.push(line);
      if (log.lines.length > KEPT_OUTPUT_LINES) log.lines.shift();
      for (const waiter of log.waiters) waiter(line);
    };
    forEachLine(child.stdout!, keep);
    forEachLine(child.stderr!, keep);
    // Without a listener a spawn failure would be an uncaught 'error'; 'exit' cannot follow it, so untrack here.
    child.on('error', (error) => {
      keep(`spawn error: ${error.message}`);
      this.children.delete(child);
    });
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /**
   * Resolves with the first line of `child`'s stdout or stderr (including lines already printed)
   * that matches; rejects when `timeoutMs` (default 5 s) passes or the process exits first.
   */
  waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 5_000): Promise<RegExpExecArray> {
    const log = this.outputs.get(child);
    if (log === undefined) return Promise.reject(new Error('waitForLine: not a process spawned by this lab'));
    for (const line of log.lines) {
      const match = pattern.exec(line);
      if (match !== null) return Promise.resolve(match);
    }
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        log.waiters.delete(onLine);
        child.off('exit', onExit);
      };
      const onLine = (line: string): void => {
        const match = pattern.exec(line);
        if (match === null) return;
        finish();
        resolve(match);
      };
      const onExit = (): void => {
        finish();
        reject(
          new Error(`process ${child.pid} exited (${exitDescription(child)}) before printing ${pattern}: ${this.recentOutput(child)}`),
        );
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no line matching ${pattern} from process ${child.pid} within ${timeoutMs} ms: ${this.recentOutput(child)}`));
      }, timeoutMs);
      log.waiters.add(onLine);
      if (hasExited(child)) onExit();
      else child.once('exit', onExit);
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited after `timeoutMs` (default 3 s); resolves once it has exited. */
  async stop(child: ChildProcess, timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
    // No pid: it never started (the 'error' event says why), so there is nothing to stop.
    if (hasExited(child) || child.pid === undefined) return;
    child.kill('SIGTERM');
    if (await exited(child, timeoutMs)) return;
    child.kill('SIGKILL');
    if (!(await exited(child, 2_000))) throw new Error(`process ${child.pid} survived SIGKILL for 2 s`);
  }

  /** Those still running. */
  running(): ChildProcess[] {
    return [...this.children];
  }

  /** The 'exit' path, where nothing can wait: SIGKILL to every one still running. */
  killAllSync(): void {
    for (const child of this.children) child.kill('SIGKILL');
  }

  /** The last few lines `child` printed, for error messages. */
  recentOutput(child: ChildProcess): string {
    const lines = this.outputs.get(child)?.lines ?? [];
    return lines.length === 0 ? '(no output)' : lines.slice(-5).join(' | ');
  }
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves true once `child` has exited, false if it is still running after `timeoutMs`. */
function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

export function exitDescription(child: ChildProcess): string {
  return child.signalCode !== null ? `signal ${child.signalCode}` : `exit ${child.exitCode}`;
}

/** SIGKILL each pid listed one per line (the output of `ip netns pids`), never this process. */
export function killPids(listing: string): void {
  for (const pid of listing
    .split('\n')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (partial + decoder.write(chunk)).split('\n');
    partial = lines.pop()!;
    lines.forEach(onLine);
  });
  stream.on('end', () => {
    const rest = partial + decoder.end();
    if (rest !== '') onLine(rest);
  });
}

/** True while `pid` is a live process (a zombie, killed but not yet reaped, counts as gone). */
export function isProcessRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name (which may itself contain spaces or parentheses).
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
