/**
 * dnsperf over TCP from the lab's client namespace, and its report read into numbers, for lab
 * tests and benchmarks.
 */
import type { ChildProcess } from 'node:child_process';
import type { Lab } from './lab.js';

/** The numbers of dnsperf's "Statistics:" report. */
export interface DnsperfStats {
  sent: number;
  completed: number;
  lost: number;
  completedPercent: number;
  reconnections: number;
  runSeconds: number;
  qps: number;
  averageLatencyMs: number;
  maxLatencyMs: number;
  /** Response codes as dnsperf prints them, e.g. { NOERROR: 123 }. */
  responseCodes: Record<string, number>;
}

export interface DnsperfResult extends DnsperfStats {
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
export function startDnsperf(
  lab: Lab,
  queryFile: string,
  args: readonly string[],
): { process: ChildProcess; result: Promise<DnsperfResult> } {
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
  return { ...parseDnsperfStats(output), output };
}

/** The "Statistics:" block dnsperf prints at the end of a run; throws if a number is missing. */
export function parseDnsperfStats(output: string): DnsperfStats {
  const number = (label: string): number => {
    const match = new RegExp(`^\\s*${label}:\\s+([\\d.]+)`, 'm').exec(output);
    if (match === null) throw new Error(`dnsperf output has no "${label}" line: ${output.trim().split('\n').slice(-12).join(' | ')}`);
    return Number(match[1]);
  };
  const latency = /^\s*Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)/m.exec(output);
  const codes: Record<string, number> = {};
  const codesLine = /^\s*Response codes:\s+(.*)$/m.exec(output);
  for (const [, code, count] of codesLine?.[1]?.matchAll(/([A-Z]+) (\d+)/g) ?? []) codes[code!] = Number(count);
  const sent = number('Queries sent');
  const completed = number('Queries completed');
  const reconnections = /^\s*Reconnections:\s+(\d+)/m.exec(output);
  return {
    sent,
    completed,
    lost: number('Queries lost'),
    completedPercent: sent === 0 ? 0 : (100 * completed) / sent,
    reconnections: reconnections === null ? 0 : Number(reconnections[1]),
    runSeconds: number('Run time \\(s\\)'),
    qps: number('Queries per second'),
    averageLatencyMs: latency === null ? NaN : Number(latency[1]) * 1000,
    maxLatencyMs: latency === null ? NaN : Number(latency[3]) * 1000,
    responseCodes: codes,
  };
}
