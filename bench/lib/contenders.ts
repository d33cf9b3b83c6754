/**
 * The servers a benchmark compares, each started the same way inside a fresh lab's server
 * namespace, answering on 198.18.0.2:53 (and [2001:2::2]:53) with the lab's unbound behind it.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Lab } from '../../lab/lab.js';
import { CLI } from '../../lab/stateless-tcp.js';
import { LAB_ZONE } from '../../lab/zone.js';

export const CONTENDER_NAMES = ['stateless', 'kernel', 'dnsdist', 'unbound'] as const;
export type ContenderName = (typeof CONTENDER_NAMES)[number];

/** The port every contender answers on, in the server namespace. */
export const SERVICE_PORT = 53;

/**
 * The hard limit on open files (RLIMIT_NOFILE) this process and its children run under. A server
 * that holds a kernel socket per connection can hold at most about this many connections; raising
 * it needs CAP_SYS_RESOURCE, which a container may not grant. Node raises its soft limit to the hard
 * one by itself; dnsdist asks for what it needs.
 */
export function openFilesHardLimit(): number {
  const match = /^Max open files\s+\S+\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return match === null || match[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(match[1]);
}

export interface StartMode {
  /** Close each connection after its answer (transaction mode). */
  closeAfterEachAnswer: boolean;
  /** Keep idle connections open as long as the server allows (the idle-connection scenario). */
  holdIdleConnections: boolean;
  /** Answers the relay keeps in a packet cache (0 or absent: none). */
  packetCacheEntries?: number;
  /** Extra `node` flags for the stateless-tcp processes (e.g. --cpu-prof); ignored by the others. */
  nodeFlags?: readonly string[];
  /** `--workers N` for the raw transport, passed only when the CLI accepts it; null: its default. */
  workers?: number | null;
}

export interface RunningContender {
  /** The process whose CPU and memory count as the server's. */
  readonly pid: number;
  readonly process: ChildProcess;
  /** What was started, for the report (the command line's interesting part). */
  readonly commandLine: string;
  /** Its last lines of output, for error messages. */
  recentOutput(): string;
  /** Stops it; resolves to its last line of output (stateless-tcp's counter summary). */
  stop(): Promise<string>;
}

export interface Contender {
  readonly name: ContenderName;
  readonly title: string;
  /** Extra lines for the lab unbound's `server:` clause, on top of the shared backend configuration. */
  readonly unboundExtraConfig: readonly string[];
  /** Null when it can run in this mode; else why not (reported as n/a). */
  unsupported(mode: StartMode): string | null;
  start(lab: Lab, mode: StartMode): Promise<RunningContender>;
}

/**
 * The one backend configuration every contender gets: unbound with two threads on this two-core
 * machine, room for many TCP clients (dnsdist and the ceiling run reach it over TCP), a UDP
 * receive buffer for relays that send their queries in bursts (stateless-tcp sends a turn's
 * queries with one sendmmsg; the 208 KiB default dropped 0.6 % of them under persistent load,
 * each then resent after a quarter of the timeout), and access for the lab's client ranges (the
 * ceiling run answers them directly).
 */
export const SHARED_UNBOUND_CONFIG: readonly string[] = [
  'num-threads: 2',
  'so-reuseport: yes',
  'so-rcvbuf: 4m',
  'incoming-num-tcp: 2048',
  'num-queries-per-thread: 4096',
  'tcp-idle-timeout: 30000',
  'access-control: 198.18.0.0/15 allow',
  'access-control: 2001:2::/48 allow',
];

let cliAcceptsWorkers: boolean | null = null;

/** Whether `stateless-tcp dns --help` lists `--workers` (another change adds it; detect, do not assume). */
export function statelessAcceptsWorkers(): boolean {
  if (cliAcceptsWorkers === null) {
    const help = execFileSync(process.execPath, [CLI, 'dns', '--help'], { encoding: 'utf8', timeout: 10_000 });
    cliAcceptsWorkers = /--workers\b/.test(help);
  }
  return cliAcceptsWorkers;
}

function lastLine(output: string[]): string {
  return output.at(-1) ?? '';
}

/** Spawns `argv` in the server namespace and keeps its output lines. */
function spawnServer(lab: Lab, argv: readonly string[]): { child: ChildProcess; output: string[] } {
  const child = lab.spawn('server', argv);
  const output: string[] = [];
  const keep = (chunk: Buffer): void => {
    output.push(
      ...chunk
        .toString()
        .split('\n')
        .filter((line) => line.trim() !== ''),
    );
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output };
}

function running(lab: Lab, child: ChildProcess, output: string[], commandLine: string): RunningContender {
  if (child.pid === undefined) throw new Error(`${commandLine}: did not start: ${output.join(' | ')}`);
  return {
    pid: child.pid,
    process: child,
    commandLine,
    recentOutput: () => output.slice(-4).join(' | '),
    async stop() {
      await lab.stop(child, 10_000);
      return lastLine(output);
    },
  };
}

/**
 * Waits until the contender answers `dig +tcp` from the client namespace correctly: the A record,
 * and the 4 KB TXT whole. A contender that answers wrongly fails here, before any load.
 */
export async function waitUntilAnswering(lab: Lab, contender: RunningContender, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastProblem = 'no answer yet';
  while (Date.now() < deadline) {
    if (contender.process.exitCode !== null || contender.process.signalCode !== null) {
      throw new Error(`${contender.commandLine} exited before answering: ${contender.recentOutput()}`);
    }
    const a = await lab.exec('client', ['dig', '+tcp', '+time=1', '+tries=1', `@${lab.serverV4}`, LAB_ZONE.www.name, 'A', '+short'], {
      timeoutMs: 3_000,
    });
    if (a.code === 0 && a.stdout.trim() === LAB_ZONE.www.a) {
      const big = await lab.exec('client', ['dig', '+tcp', '+time=2', '+tries=1', `@${lab.serverV4}`, LAB_ZONE.big.name, 'TXT'], {
        timeoutMs: 4_000,
      });
      if (new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.big.responseBytes}$`, 'm').test(big.stdout)) return;
      lastProblem = `4 KB TXT not whole: ${big.stdout
        .split('\n')
        .filter((l) => l.includes('MSG SIZE') || l.includes('status'))
        .join(' ')}`;
    } else {
      lastProblem = `dig: ${(a.stdout + a.stderr).trim().split('\n').at(-1) ?? ''}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${contender.commandLine} did not answer correctly within ${timeoutMs} ms: ${lastProblem}; ${contender.recentOutput()}`);
}

function statelessContender(name: 'stateless' | 'kernel'): Contender {
  const kernel = name === 'kernel';
  return {
    name,
    title: kernel ? 'stateless-tcp --transport kernel' : 'stateless-tcp (raw)',
    unboundExtraConfig: [],
    unsupported: () => null,
    async start(lab, mode) {
      // What differs between runs; the rest is the lab's interface, addresses and upstream.
      const variant = [
        ...(kernel ? ['--transport', 'kernel'] : []),
        ...(mode.closeAfterEachAnswer ? ['--close-after-response'] : []),
        ...(mode.packetCacheEntries ? ['--cache-size', String(mode.packetCacheEntries)] : []),
        ...(!kernel && mode.workers != null && statelessAcceptsWorkers() ? ['--workers', String(mode.workers)] : []),
      ];
      const args = [
        'dns',
        '--interface',
        lab.serverInterface,
        '--listen',
        `${lab.serverV4}:${SERVICE_PORT}`,
        '--listen',
        `[${lab.serverV6}]:${SERVICE_PORT}`,
        '--upstream',
        `${lab.upstream.v4.address}:${lab.upstream.v4.port}`,
        ...variant,
      ];
      const { child, output } = spawnServer(lab, [process.execPath, ...(mode.nodeFlags ?? []), CLI, ...args]);
      await lab.waitForLine(child, /listening on/, 15_000);
      return running(lab, child, output, ['stateless-tcp dns', ...variant].join(' '));
    },
  };
}

/** Queries dnsdist works on at once per client connection, and pipelines per backend connection. */
const DNSDIST_MAX_IN_FLIGHT = 100;

/**
 * dnsdist 1.7 as a TCP front end for the same unbound. dnsdist relays queries that arrive over TCP
 * to the backend over TCP (reusing its backend connections); it has no TCP-to-UDP mode.
 */
const dnsdistContender: Contender = {
  name: 'dnsdist',
  title: 'dnsdist',
  unboundExtraConfig: [],
  unsupported: () => null,
  async start(lab, mode) {
    // Tuned as dnsdist's docs advise for TCP clients that pipeline ("Tuning", "Out-of-order"):
    // maxInFlight on the listeners lets it work on a connection's queries concurrently (0, the
    // default, takes them one at a time), and on the backend lets it pipeline them to unbound;
    // 100 as stateless-tcp's --max-pipelined. One TCP worker thread per core.
    const config = [
      `setLocal('${lab.serverV4}:${SERVICE_PORT}', {maxInFlight=${DNSDIST_MAX_IN_FLIGHT}})`,
      `addLocal('[${lab.serverV6}]:${SERVICE_PORT}', {maxInFlight=${DNSDIST_MAX_IN_FLIGHT}})`,
      `setMaxTCPClientThreads(${availableParallelism()})`,
      // The default ACL covers only loopback and RFC 1918 ranges, not the lab's benchmarking range.
      `setACL({'198.18.0.0/15', '2001:2::/48'})`,
      `newServer({address='${lab.upstream.v4.address}:${lab.upstream.v4.port}', name='unbound', maxInFlight=${DNSDIST_MAX_IN_FLIGHT}})`,
      // No security-status polling: it would send DNS queries toward the Internet.
      `setSecurityPollSuffix('')`,
      // The nearest dnsdist has to transaction mode. dnsdist 1.7.3 still answers a second query on
      // the connection before closing (dig +keepopen: two answers, then EOF), which the
      // answers-per-connection column shows.
      ...(mode.closeAfterEachAnswer ? ['setMaxTCPQueriesPerConnection(1)'] : []),
      ...(mode.packetCacheEntries ? [`getPool(''):setCache(newPacketCache(${mode.packetCacheEntries}))`] : []),
      // The default read timeout (2 s) would close idle connections long before they can be counted.
      ...(mode.holdIdleConnections ? ['setTCPRecvTimeout(600)'] : []),
    ];
    const file = join(lab.tempDir, `dnsdist-${Date.now()}.conf`);
    await writeFile(file, `${config.join('\n')}\n`);
    const { child, output } = spawnServer(lab, ['dnsdist', '--supervised', '--disable-syslog', '-C', file]);
    return running(lab, child, output, `dnsdist${mode.closeAfterEachAnswer ? ' setMaxTCPQueriesPerConnection(1)' : ''}`);
  },
};

/**
 * unbound answering TCP itself on the service address: no relay at all, the ceiling. It has no
 * option to close a connection after one answer, so it sits out transaction mode.
 */
const unboundContender: Contender = {
  name: 'unbound',
  title: 'unbound answering TCP (ceiling)',
  unboundExtraConfig: [`interface: 198.18.0.2@${SERVICE_PORT}`, `interface: 2001:2::2@${SERVICE_PORT}`],
  unsupported: (mode) =>
    mode.closeAfterEachAnswer
      ? 'unbound has no close-after-answer option'
      : mode.holdIdleConnections
        ? 'not measured: unbound drops idle TCP after tcp-idle-timeout and caps connections at incoming-num-tcp'
        : mode.packetCacheEntries
          ? 'a relay scenario: unbound answering itself is the "4 KB answers" ceiling'
          : null,
  async start(lab) {
    const unbound = lab.unbound;
    if (unbound === null || unbound.pid === undefined) throw new Error('the lab has no unbound');
    return {
      pid: unbound.pid,
      process: unbound,
      commandLine: 'unbound (the backend itself, also on :53)',
      recentOutput: () => '',
      // The lab owns unbound and stops it on close.
      stop: () => Promise.resolve(''),
    };
  },
};

export const CONTENDERS: Readonly<Record<ContenderName, Contender>> = {
  stateless: statelessContender('stateless'),
  kernel: statelessContender('kernel'),
  dnsdist: dnsdistContender,
  unbound: unboundContender,
};
