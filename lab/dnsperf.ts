/**
 * dnsperf over TCP from the lab's client namespace, and its report read into numbers, for lab
 * tests and benchmarks.
 */
import type { ChildProcess } from 'node:child_process';
import type { Lab } from './lab.js';

export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  /** dnsperf's whole report. */
  output: string;
}

/** The dnsperf command line against the server's IPv4 address; `-l SECONDS` in `args` bounds it. */
export function dnsperfArgv(lab: Lab, queryFile: string, args: readonly string[]): string[] {
  return ['dnsperf', '-m', 'tcp', '-s', lab.serverV4, '-d', queryFile, ...args];
}

/** Runs dnsperf to the end; throws if it fails or its report lacks a number. */
export async function dnsperf(lab: Lab, queryFile: string, args: readonly string[]): Promise<DnsperfResult> {
  const run = await lab.exec('client', dnsperfArgv(lab, queryFile, args), { timeoutMs: 40_000 });
  if (run.code !== 0) throw new Error(`dnsperf failed (${run.code}): ${run.stderr}${run.stdout}`);
  return parseDnsperf(run.stdout);
}

/** Starts dnsperf in the background (for sampling it while it runs); `result` resolves when it ends. */
export function startDnsperf(lab: Lab, queryFile: string, args: readonly string[]): { process: ChildProcess; result: Promise<DnsperfResult> } {
  const child = lab.spawn('client', dnsperfArgv(lab, queryFile, args));
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const result = new Promise<DnsperfResult>((resolve, reject) => {
    child.once('exit', (code) => {
      if (code === 0) resolve(parseDnsperf(output));
      else reject(new Error(`dnsperf failed (${code}): ${output}`));
    });
  });
  return { process: child, result };
}

export function parseDnsperf(output: string): DnsperfResult {
  const number = (pattern: RegExp): number => {
    const m = pattern.exec(output);
    if (m === null) throw new Error(`no ${pattern} in dnsperf's report:\n${output}`);
    return Number(m[1]);
  };
  return {
    sent: number(/Queries sent:\s+(\d+)/),
    completed: number(/Queries completed:\s+(\d+)/),
    lost: number(/Queries lost:\s+(\d+)/),
    qps: number(/Queries per second:\s+([\d.]+)/),
    output,
  };
}
