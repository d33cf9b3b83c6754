/** The machine a benchmark ran on, for the report: results mean little without it. */
import { execFileSync } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cpus: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  dnsperf: string;
  dnsdist: string;
  unbound: string;
  /** Load average at the start: other work on the machine makes numbers noisy. */
  loadAverage: string;
}

function firstMatch(argv: readonly string[], pattern: RegExp): string {
  try {
    const [file, ...args] = argv;
    const output = execFileSync(file!, args, { encoding: 'utf8', timeout: 5_000, stdio: ['ignore', 'pipe', 'pipe'] });
    return pattern.exec(output)?.[1]?.trim() ?? 'unknown';
  } catch (error) {
    // dnsperf -h prints its usage and exits non-zero; the text is still there.
    const output = String((error as { stdout?: unknown }).stdout ?? '') + String((error as { stderr?: unknown }).stderr ?? '');
    return pattern.exec(output)?.[1]?.trim() ?? 'not installed';
  }
}

export function describeMachine(): MachineInfo {
  return {
    cpuModel: firstMatch(['lscpu'], /^Model name:\s+(.*)$/m),
    cpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    dnsperf: firstMatch(['dnsperf', '-H'], /^Version (.*)$/m),
    dnsdist: firstMatch(['dnsdist', '--version'], /^dnsdist (\S+)/m),
    unbound: firstMatch(['unbound', '-V'], /^Version (.*)$/m),
    loadAverage: firstMatch(['cat', '/proc/loadavg'], /^(\S+ \S+ \S+)/),
  };
}
