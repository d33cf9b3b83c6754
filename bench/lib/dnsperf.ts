/**
 * Running dnsperf (`-m tcp`) in the lab's client namespace and reading its statistics.
 * See docs/background.md for how dnsperf 2.10 behaves over TCP: queries go round-robin
 * over `-c` connections with `-q` in flight in total, and when the server closes a connection
 * dnsperf reconnects at once, counting queries still in flight on it as lost.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Lab } from '../../lab/lab.js';

export interface DnsperfLoad {
  /** Lines of the query file: `name type`, sent in order, over and over. */
  queries: readonly string[];
  /** TCP connections (`-c`). */
  connections: number;
  /** Queries in flight across all connections (`-q`). */
  inFlight: number;
  /** Seconds of load (`-l`). */
  seconds: number;
}

export interface DnsperfResult {
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
  /**
   * User + system CPU seconds dnsperf itself used: near `runSeconds` (one core; dnsperf runs one
   * sending thread) means the client, not the server, set the pace.
   */
  clientCpuSeconds: number;
}

/** dnsperf's own timeout for one query (`-t`): longer than any answer here should take. */
const QUERY_TIMEOUT_SECONDS = 5;

export async function runDnsperf(lab: Lab, server: string, port: number, load: DnsperfLoad): Promise<DnsperfResult> {
  const dataFile = join(lab.tempDir, `dnsperf-${load.queries.length}-${Date.now()}.txt`);
  await writeFile(dataFile, load.queries.join('\n') + '\n');
  const argv = [
    'dnsperf', '-m', 'tcp', '-s', server, '-p', String(port), '-d', dataFile,
    '-l', String(load.seconds), '-c', String(load.connections), '-q', String(load.inFlight),
    '-t', String(QUERY_TIMEOUT_SECONDS),
  ];
  // bash's `time` reports dnsperf's own CPU time on stderr in the format asked for.
  const timed = ['bash', '-c', 'TIMEFORMAT="dnsperf_cpu %U %S"; time "$@"', 'bash', ...argv];
  // dnsperf stops sending after -l and waits up to -t for stragglers; allow that and start-up.
  const result = await lab.exec('client', timed, { timeoutMs: (load.seconds + QUERY_TIMEOUT_SECONDS + 20) * 1000 });
  if (result.code !== 0) {
    const reason = result.timedOut ? 'timed out' : (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-3).join(' | ');
    throw new Error(`dnsperf failed (${argv.join(' ')}): ${reason}`);
  }
  const cpu = /^dnsperf_cpu ([\d.]+) ([\d.]+)$/m.exec(result.stderr);
  return { ...parseDnsperfOutput(result.stdout), clientCpuSeconds: cpu === null ? NaN : Number(cpu[1]) + Number(cpu[2]) };
}

/** The "Statistics:" block dnsperf prints at the end of a run. */
export function parseDnsperfOutput(output: string): Omit<DnsperfResult, 'clientCpuSeconds'> {
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
