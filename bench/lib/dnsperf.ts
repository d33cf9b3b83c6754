/**
 * Running dnsperf (`-m tcp`) in the lab's client namespace and reading its statistics.
 * See docs/background.md for how dnsperf 2.10 behaves over TCP: queries go round-robin
 * over `-c` connections with `-q` in flight in total, and when the server closes a connection
 * dnsperf reconnects at once, counting queries still in flight on it as lost.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDnsperfStats, type DnsperfStats } from '../../lab/dnsperf.js';
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

export interface DnsperfResult extends DnsperfStats {
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
  await writeFile(dataFile, `${load.queries.join('\n')}\n`);
  const argv = [
    'dnsperf',
    '-m',
    'tcp',
    '-s',
    server,
    '-p',
    String(port),
    '-d',
    dataFile,
    '-l',
    String(load.seconds),
    '-c',
    String(load.connections),
    '-q',
    String(load.inFlight),
    '-t',
    String(QUERY_TIMEOUT_SECONDS),
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
  return { ...parseDnsperfStats(result.stdout), clientCpuSeconds: cpu === null ? NaN : Number(cpu[1]) + Number(cpu[2]) };
}
