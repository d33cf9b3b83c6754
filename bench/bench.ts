/**
 * `npm run bench`: stateless-tcp against what users would run instead, side by side on one machine.
 *
 *   npm run bench [-- --quick] [-- --scenarios transaction,big,idle,http] [-- --contenders stateless,dnsdist] [-- --remote-resolver]
 *
 * Every run gets a fresh lab (lab/lab.ts: client and server namespaces joined by veth, unbound
 * behind the server), so TIME_WAIT and other leftovers of one run cannot slow the next. dnsperf
 * loads each contender from the client namespace; the server's CPU, peak memory and TIME_WAIT
 * sockets are read around the run. The idle scenario holds many idle connections and reports the
 * server's memory per connection. With --remote-resolver, unbound runs in a namespace of its own
 * behind the server (another host, as far as the relays can tell) instead of on its loopback. The http scenario runs wrk against the HTTP front end, nginx as
 * a reverse proxy and the nginx backend itself (bench/lib/http.ts). Results: a table on stdout, bench/results/latest.json and
 * bench/results/latest.svg. docs/performance.md explains the scenarios and the numbers.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { createLab, type Lab } from '../lab/lab.js';
import { requireTools } from '../lab/tools.js';
import {
  CONTENDER_NAMES,
  CONTENDERS,
  SERVICE_PORT,
  SHARED_UNBOUND_CONFIG,
  statelessAcceptsWorkers,
  waitUntilAnswering,
  type ContenderName,
  type StartMode,
} from './lib/contenders.js';
import { runDnsperf, type DnsperfResult } from './lib/dnsperf.js';
import { SCENARIO_NAMES, SCENARIOS, type ScenarioName } from './lib/scenarios.js';
import { type KxdpgunResult, runKxdpgun } from './lib/kxdpgun.js';
import { LAB_ZONE } from '../lab/zone.js';
import { measureIdleConnections, type IdleResult } from './lib/idle.js';
import { cpuSeconds, peakRssBytes } from './lib/proc-stats.js';
import { describeMachine, type MachineInfo } from './lib/machine.js';
import { renderChart, type ChartPanel } from './lib/chart.js';
import { HTTP_BODIES, HTTP_CONTENDER_NAMES, HTTP_CONTENDER_TITLES, httpRun, httpTable, type HttpRun } from './lib/http.js';

const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const IDLE = 'idle';
const HTTP = 'http';
const KXDPGUN = 'kxdpgun';
type BenchScenario = ScenarioName | typeof IDLE | typeof HTTP | typeof KXDPGUN;
/** The contenders that can close after each answer (unbound cannot). */
const KXDPGUN_CONTENDERS: readonly ContenderName[] = ['stateless', 'kernel', 'dnsdist'];
/** The contenders measured with idle connections (unbound caps and times out idle TCP itself). */
const IDLE_CONTENDERS: readonly ContenderName[] = ['stateless', 'kernel', 'dnsdist'];

interface BenchOptions {
  quick: boolean;
  scenarios: BenchScenario[];
  contenders: ContenderName[];
  seconds?: number;
  idleConnections?: number;
  workers?: number;
  budgetMinutes: number;
  /** Runs of each dnsperf cell, the contenders alternating (default 3, quick 1). */
  repetitions?: number;
  out: string;
  remoteResolver: boolean;
  /** Run nothing: write the reports of this results file. */
  render?: string;
}

interface ThroughputRun {
  scenario: ScenarioName;
  contender: ContenderName;
  /** Which of the cell's runs (0 first); the contenders take turns within each repetition. */
  repetition?: number;
  status: 'ok' | 'n/a' | 'failed';
  reason?: string;
  commandLine?: string;
  dnsperf?: DnsperfResult;
  /** CPU seconds of the server process (all its threads) during the load. */
  serverCpuSeconds?: number | null;
  /** CPU seconds of the unbound backend during the load (the server itself for the unbound contender). */
  backendCpuSeconds?: number | null;
  serverPeakRssBytes?: number | null;
  /** TIME_WAIT sockets in the server namespace right after the load (`ss -tan state time-wait`). */
  serverTimeWait?: number;
  /** The server's last output line: stateless-tcp's counters. */
  serverSummary?: string;
  /** dnsperf stalled in an earlier try of this run (`dnsperfStalled`), whose numbers these replace. */
  stalledTry?: DnsperfResult;
}

/**
 * dnsperf 2.10 sometimes stops for good at the start of a transaction run against a server that
 * answers and closes at once: it writes a second query on each of its first connections before
 * it has seen their FIN, gets no answer (or RST), and then never reconnects, spinning on its
 * sockets until the run ends — a few dozen queries in all. Seen with the kernel transport in
 * about one quick run in three, before and after any change of ours; such a run measures
 * dnsperf, so it is run again, once, in a fresh lab.
 */
function dnsperfStalled(run: ThroughputRun): boolean {
  const d = run.dnsperf;
  return run.status === 'ok' && d !== undefined && d.completedPercent < 90 && d.sent < 1000;
}

interface Results {
  startedAt: string;
  finishedAt?: string;
  elapsedSeconds?: number;
  machine: MachineInfo;
  options: {
    quick: boolean;
    seconds: number;
    idleConnections: number;
    workers: string;
    scenarios: string[];
    contenders: string[];
    remoteResolver: boolean;
  };
  throughput: ThroughputRun[];
  idle: IdleResult[];
  http: HttpRun[];
  /** Short connections under kxdpgun, per offered rate and contender. */
  kxdpgun: KxdpgunCell[];
}

function list<T extends string>(allowed: readonly T[]) {
  return (value: string): T[] => {
    const items = value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    for (const item of items) {
      if (!allowed.includes(item as T)) throw new InvalidArgumentError(`"${item}" is not one of ${allowed.join(', ')}`);
    }
    return items as T[];
  };
}

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

/** dnsdist is the one contender that is not part of the project's own setup; install it when missing. */
function ensureDnsdist(): void {
  try {
    requireTools('dnsdist');
    return;
  } catch {
    console.log('dnsdist not found: installing it (apt-get install -y dnsdist) for the benchmark');
  }
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'dnsdist'], {
      stdio: 'inherit',
      timeout: 300_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } catch {
    throw new Error('dnsdist could not be installed: run apt-get update && apt-get install -y dnsdist, or leave it out with --contenders');
  }
  requireTools('dnsdist');
}

async function countTimeWait(lab: Lab): Promise<number> {
  const result = await lab.exec('server', ['ss', '-Htan', 'state', 'time-wait'], { timeoutMs: 30_000 });
  return result.stdout.split('\n').filter((line) => line.trim() !== '').length;
}

async function withLab<T>(unboundExtraConfig: readonly string[], body: (lab: Lab) => Promise<T>, remoteResolver = false): Promise<T> {
  const lab = await createLab({ unboundServerConfig: [...SHARED_UNBOUND_CONFIG, ...unboundExtraConfig], remoteResolver });
  try {
    return await body(lab);
  } finally {
    await lab.close();
  }
}

async function throughputRun(
  scenarioName: ScenarioName,
  contenderName: ContenderName,
  seconds: number,
  workers: number | null,
  remoteResolver: boolean,
): Promise<ThroughputRun> {
  const scenario = SCENARIOS[scenarioName];
  const contender = CONTENDERS[contenderName];
  const mode: StartMode = {
    closeAfterEachAnswer: scenario.closeAfterEachAnswer,
    holdIdleConnections: false,
    packetCacheEntries: scenario.packetCacheEntries,
    workers,
  };
  const unsupported =
    remoteResolver && contenderName === 'unbound'
      ? 'unbound answers in the server namespace; here it is the remote resolver'
      : contender.unsupported(mode);
  if (unsupported !== null) return { scenario: scenarioName, contender: contenderName, status: 'n/a', reason: unsupported };
  return withLab(
    contender.unboundExtraConfig,
    async (lab) => {
      const server = await contender.start(lab, mode);
      let summary = '';
      try {
        await waitUntilAnswering(lab, server);
        await runDnsperf(lab, lab.serverV6, SERVICE_PORT, scenario.load(WARM_UP_SECONDS));
        const backendPid = lab.unbound!.pid!;
        const cpuBefore = cpuSeconds(server.pid);
        const backendBefore = cpuSeconds(backendPid);
        const dnsperf = await runDnsperf(lab, lab.serverV4, SERVICE_PORT, scenario.load(seconds));
        const cpuAfter = cpuSeconds(server.pid);
        const backendAfter = cpuSeconds(backendPid);
        const peak = peakRssBytes(server.pid);
        const timeWait = await countTimeWait(lab);
        summary = await server.stop();
        const delta = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : b - a);
        return {
          scenario: scenarioName,
          contender: contenderName,
          status: 'ok' as const,
          commandLine: server.commandLine,
          dnsperf,
          serverCpuSeconds: delta(cpuBefore, cpuAfter),
          backendCpuSeconds: delta(backendBefore, backendAfter),
          serverPeakRssBytes: peak,
          serverTimeWait: timeWait,
          serverSummary: summary,
        };
      } finally {
        await server.stop();
      }
    },
    remoteResolver,
  );
}

/**
 * Before each measured run, every contender gets the same load for this long, not counted: over
 * IPv6, while the measured run is over IPv4. stateless-tcp is JavaScript, and V8 compiles its hot
 * paths in the first seconds under load (measured: a first 1 s kxdpgun run at 40,000/s answered
 * 24,900 connections/s at 95 µs of machine CPU each, the three after it on the same server
 * 38,000–38,900/s at 53–55 µs); a C++ server has nothing to warm up, so this costs it nothing.
 */
const WARM_UP_SECONDS = 2;
/** The kxdpgun warm-up's offered rate: 40,000 connections, well within kxdpgun's 63,536 source ports. */
const KXDPGUN_WARM_UP_RATE = 20_000;

/** One kxdpgun run (bench/lib/kxdpgun.ts) against `contenderName` in transaction mode, in a fresh lab. */
async function kxdpgunRun(contenderName: ContenderName, offered: number, seconds: number, workers: number | null): Promise<KxdpgunResult> {
  const contender = CONTENDERS[contenderName];
  const mode: StartMode = { closeAfterEachAnswer: true, holdIdleConnections: false, workers };
  return withLab(contender.unboundExtraConfig, async (lab) => {
    const server = await contender.start(lab, mode);
    try {
      await waitUntilAnswering(lab, server);
      const query = `${LAB_ZONE.www.name.replace(/\.$/, '')} A`;
      // The warm-up's connections come from the IPv6 address, so that none of the measured run's
      // finds a TIME_WAIT socket left by it in a kernel-TCP contender.
      await runKxdpgun(lab, lab.serverV6, query, KXDPGUN_WARM_UP_RATE, WARM_UP_SECONDS);
      return await runKxdpgun(lab, lab.serverV4, query, offered, seconds);
    } finally {
      await server.stop();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

interface KxdpgunCell {
  contender: ContenderName;
  offeredPerSecond: number;
  runs: KxdpgunResult[];
  failures: string[];
}

/** Median and range of `values`, e.g. "15,800 (15,100–16,600)". */
function medianRange(values: number[], digits = 0): string {
  if (values.length === 0) return '–';
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const f = (v: number): string => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return sorted.length === 1 ? f(median) : `${f(median)} (${f(sorted[0]!)}–${f(sorted.at(-1)!)})`;
}

function kxdpgunTable(cells: KxdpgunCell[]): string {
  const lines = [
    '| offered conn/s | contender | answered conn/s, median (range) | vs dnsdist | machine CPU µs per transaction | runs |',
    '|--:|---|--:|--:|--:|--:|',
  ];
  // A run whose output had no totals (results files from before runKxdpgun refused them) counts as failed.
  const parsed = (cell: KxdpgunCell): KxdpgunResult[] => cell.runs.filter((r) => Number.isFinite(r.answeredPerSecond));
  for (const cell of cells) {
    const runs = parsed(cell);
    const failed = cell.failures.length + cell.runs.length - runs.length;
    const answered = runs.map((r) => r.answeredPerSecond);
    const dnsdistCell = cells.find((c) => c.contender === 'dnsdist' && c.offeredPerSecond === cell.offeredPerSecond);
    const dnsdist = dnsdistCell === undefined ? undefined : parsed(dnsdistCell).map((r) => r.answeredPerSecond);
    const median = (v: number[] | undefined): number | undefined =>
      v === undefined || v.length === 0 ? undefined : [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
    lines.push(
      `| ${cell.offeredPerSecond} | ${CONTENDERS[cell.contender].title} | ${medianRange(answered)} | ${ratio(median(answered), median(dnsdist))} | ` +
        `${medianRange(runs.map((r) => r.cpuMicrosPerTransaction))} | ${runs.length}${failed > 0 ? ` (+${failed} failed)` : ''} |`,
    );
  }
  return lines.join('\n');
}

const mib = (bytes: number | null | undefined): string => (bytes == null ? '–' : (bytes / 2 ** 20).toFixed(0));
const fixed = (value: number | null | undefined, digits: number): string =>
  value == null || !Number.isFinite(value) ? '–' : value.toFixed(digits);
const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || b === 0 ? '–' : `${(a / b).toFixed(2)}×`;

/** Answers that were not NOERROR (the lab's names all exist): SERVFAILs from upstream timeouts, mostly. */
function notNoError(d: DnsperfResult): string {
  const bad = Object.entries(d.responseCodes).filter(([code]) => code !== 'NOERROR');
  return bad.length === 0 ? '0' : bad.map(([code, n]) => `${n} ${code}`).join(', ');
}

/**
 * Answers per TCP connection: dnsperf's reconnections plus its initial connections. 1.0 is strict
 * transaction mode; a server that answers a second query already sent before it closes shows more.
 */
function answersPerConnection(d: DnsperfResult, initialConnections: number): string {
  return (d.completed / (d.reconnections + initialConnections)).toFixed(d.reconnections > 0 ? 2 : 0);
}

/** Server CPU µs per answer of a run, or null. */
function cpuPerAnswer(run: ThroughputRun): number | null {
  const completed = run.dnsperf?.completed ?? 0;
  return run.serverCpuSeconds == null || completed === 0 ? null : (run.serverCpuSeconds * 1e6) / completed;
}

/** The ok runs of one cell, and the one whose qps is their median (its other columns are shown). */
function cellRuns(
  runs: readonly ThroughputRun[],
  scenario: ScenarioName,
  contender: ContenderName,
): { ok: ThroughputRun[]; median?: ThroughputRun } {
  const ok = runs.filter((r) => r.scenario === scenario && r.contender === contender && r.status === 'ok');
  const sorted = [...ok].sort((a, b) => a.dnsperf!.qps - b.dnsperf!.qps);
  return { ok, median: sorted[Math.floor(sorted.length / 2)] };
}

function throughputTable(runs: readonly ThroughputRun[]): string {
  const lines = [
    '| scenario | contender | qps, median (range) | vs dnsdist | vs kernel | runs | completed | not NOERROR | answers/conn | avg ms | max ms | server CPU µs/answer, median (range) | unbound CPU s | dnsperf CPU s | peak RSS MiB | TIME_WAIT |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const scenario of SCENARIO_NAMES) {
    const contenders = [...new Set(runs.filter((r) => r.scenario === scenario).map((r) => r.contender))];
    const qpsOf = (name: ContenderName): number | undefined => cellRuns(runs, scenario, name).median?.dnsperf?.qps;
    for (const contender of contenders) {
      const who = CONTENDERS[contender].title;
      const { ok, median: run } = cellRuns(runs, scenario, contender);
      const failed = runs.filter((r) => r.scenario === scenario && r.contender === contender && r.status !== 'ok');
      if (run === undefined) {
        const first = failed[0]!;
        lines.push(`| ${scenario} | ${who} | ${first.status}: ${first.reason ?? ''} |  |  |  |  |  |  |  |  |  |  |  |  |  |`);
        continue;
      }
      const d = run.dnsperf!;
      const isUnbound = contender === 'unbound';
      const cpu = ok.map(cpuPerAnswer).filter((v): v is number => v !== null);
      lines.push(
        `| ${scenario} | ${who} | ${medianRange(ok.map((r) => r.dnsperf!.qps))} | ${ratio(d.qps, qpsOf('dnsdist'))} | ${ratio(d.qps, qpsOf('kernel'))} | ` +
          `${ok.length}${failed.length > 0 ? ` (+${failed.length} failed)` : ''} | ` +
          `${d.completedPercent.toFixed(2)} % | ${notNoError(d)} | ${answersPerConnection(d, SCENARIOS[scenario].load(1).connections)} | ${fixed(d.averageLatencyMs, 2)} | ${fixed(d.maxLatencyMs, 1)} | ` +
          `${medianRange(cpu)} | ${isUnbound ? '(same)' : fixed(run.backendCpuSeconds, 1)} | ${fixed(d.clientCpuSeconds, 1)} | ${mib(run.serverPeakRssBytes)} | ${run.serverTimeWait ?? '–'} |`,
      );
    }
  }
  return lines.join('\n');
}

function idleTable(results: readonly IdleResult[]): string {
  const lines = [
    '| contender | held | failed | closed by server | server kernel sockets | s to open | RSS before MiB | RSS after MiB | RSS B/conn | slab B/conn (machine) | server kernel B/conn (est.) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of results) {
    const who = CONTENDERS[r.contender as ContenderName]?.title ?? r.contender;
    if (r.status !== 'ok') {
      lines.push(`| ${who} | ${r.status}: ${r.reason ?? ''} |  |  |  |  |  |  |  |  |  |`);
      continue;
    }
    lines.push(
      `| ${who} | ${r.held} | ${r.failed} | ${r.closedByServer} | ${r.serverKernelSockets} | ${r.secondsToOpen.toFixed(1)} | ${mib(r.rssBeforeBytes)} | ${mib(r.rssAfterBytes)} | ` +
        `${r.rssBytesPerConnection.toFixed(0)} | ${r.slabBytesPerConnection.toFixed(0)} | ${fixed(r.serverKernelBytesPerConnection, 0)} |`,
    );
  }
  return lines.join('\n');
}

function chart(results: Results): string {
  const contenders = results.options.contenders as ContenderName[];
  const scenarios = SCENARIO_NAMES.filter((s) => results.throughput.some((r) => r.scenario === s));
  const value = (s: ScenarioName, c: ContenderName, pick: (r: ThroughputRun) => number | null | undefined): number | null => {
    const run = cellRuns(results.throughput, s, c).median;
    return run === undefined ? null : (pick(run) ?? null);
  };
  const titles = contenders.map((c) => CONTENDERS[c].title);
  const panels: ChartPanel[] = [];
  if (scenarios.length > 0) {
    panels.push({
      title: 'Queries per second (dnsperf -m tcp), higher is better',
      unit: 'qps',
      groups: scenarios.map((s) => SCENARIOS[s].title),
      series: titles,
      values: scenarios.map((s) => contenders.map((c) => value(s, c, (r) => r.dnsperf?.qps))),
    });
    panels.push({
      title: 'Server CPU seconds per 10,000 answers, lower is better',
      unit: 'CPU s / 10k',
      groups: scenarios.map((s) => SCENARIOS[s].title),
      series: titles,
      values: scenarios.map((s) =>
        contenders.map((c) =>
          value(s, c, (r) =>
            r.serverCpuSeconds == null || !r.dnsperf?.completed ? null : (r.serverCpuSeconds * 10_000) / r.dnsperf.completed,
          ),
        ),
      ),
    });
  }
  if (results.idle.some((r) => r.status === 'ok')) {
    const idleValue = (c: ContenderName, pick: (r: IdleResult) => number | null): number | null => {
      const r = results.idle.find((x) => x.contender === c && x.status === 'ok');
      return r === undefined ? null : pick(r);
    };
    panels.push({
      title: 'Server memory per idle connection (bytes), lower is better',
      unit: 'bytes',
      groups: ['process RSS', 'kernel sockets (est.)', 'total'],
      series: titles,
      values: [
        contenders.map((c) => idleValue(c, (r) => Math.max(0, r.rssBytesPerConnection))),
        contenders.map((c) =>
          idleValue(c, (r) => (r.serverKernelBytesPerConnection === null ? null : Math.max(0, r.serverKernelBytesPerConnection))),
        ),
        contenders.map((c) =>
          idleValue(c, (r) => Math.max(0, r.rssBytesPerConnection) + Math.max(0, r.serverKernelBytesPerConnection ?? 0)),
        ),
      ],
    });
  }
  if (results.http.some((r) => r.status === 'ok')) {
    panels.push({
      title: 'HTTP requests per second (wrk, keep-alive), higher is better',
      unit: 'requests/s',
      groups: HTTP_BODIES.map((b) => b.title),
      series: HTTP_CONTENDER_NAMES.map((c) => HTTP_CONTENDER_TITLES[c]),
      values: HTTP_BODIES.map((b) =>
        HTTP_CONTENDER_NAMES.map(
          (c) => results.http.find((r) => r.body === b.title && r.contender === c && r.status === 'ok')?.requestsPerSecond ?? null,
        ),
      ),
    });
  }
  const m = results.machine;
  return renderChart(
    panels,
    `${results.startedAt.slice(0, 16)}Z · ${m.cpus}× ${m.cpuModel} · Linux ${m.kernel} · Node ${m.node} · ${results.options.seconds} s per run${results.options.quick ? ' (quick)' : ''}`,
  );
}

function save(results: Results, outDir: string): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(outDir, 'latest.svg'), chart(results));
  writeFileSync(join(outDir, 'latest.md'), markdownReport(results));
}

/** The tables and the machine, ready to paste into docs/performance.md. */
function markdownReport(results: Results): string {
  const m = results.machine;
  return [
    `Run ${results.startedAt}${results.elapsedSeconds === undefined ? ' (unfinished)' : `, ${results.elapsedSeconds} s`}; ` +
      `${results.options.seconds} s of load per run${results.options.quick ? ' (--quick)' : ''}; stateless-tcp workers: ${results.options.workers}` +
      `${results.options.remoteResolver ? '; unbound in its own namespace behind the server (--remote-resolver)' : ''}.`,
    '',
    `Machine: ${m.cpus}× ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}; dnsperf ${m.dnsperf}, dnsdist ${m.dnsdist}, unbound ${m.unbound}; ` +
      `load average at start ${m.loadAverage}.`,
    '',
    ...(results.throughput.length > 0 ? [throughputTable(results.throughput), ''] : []),
    ...(results.idle.length > 0 ? [idleTable(results.idle), ''] : []),
    ...(results.http.length > 0 ? [httpTable(results.http), ''] : []),
    ...(results.kxdpgun.length > 0 ? [kxdpgunTable(results.kxdpgun), ''] : []),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async function main(options: BenchOptions): Promise<void> {
  const seconds = options.seconds ?? (options.quick ? 5 : 10);
  const idleConnections = options.idleConnections ?? (options.quick ? 5_000 : 50_000);
  requireTools('ip', 'ethtool', 'unbound', 'dig', 'dnsperf', 'nft', 'ss');
  if (options.contenders.includes('dnsdist')) ensureDnsdist();
  const workersPassed = options.workers !== undefined && statelessAcceptsWorkers();
  if (options.workers !== undefined && !workersPassed)
    console.log(`note: this stateless-tcp has no --workers option; --workers ${options.workers} is ignored`);
  const startedMs = Date.now();
  const deadlineMs = startedMs + options.budgetMinutes * 60_000;
  const results: Results = {
    startedAt: new Date(startedMs).toISOString(),
    machine: describeMachine(),
    options: {
      quick: options.quick,
      seconds,
      idleConnections,
      workers: workersPassed ? String(options.workers) : statelessAcceptsWorkers() ? 'default' : 'n/a (single thread)',
      scenarios: options.scenarios,
      contenders: options.contenders,
      remoteResolver: options.remoteResolver,
    },
    throughput: [],
    idle: [],
    http: [],
    kxdpgun: [],
  };
  const elapsed = (): string => `${((Date.now() - startedMs) / 1000).toFixed(0)} s`;
  console.log(
    `bench: ${seconds} s per run, a fresh lab for each; machine: ${results.machine.cpus}× ${results.machine.cpuModel}, load ${results.machine.loadAverage}`,
  );

  // Each cell several times, the contenders taking turns, so that the machine's noise shows as a
  // range and falls on every contender alike.
  const repetitions = options.repetitions ?? (options.quick ? 1 : 3);
  for (const scenario of SCENARIO_NAMES.filter((s) => options.scenarios.includes(s))) {
    for (let repetition = 0; repetition < repetitions; repetition++) {
      for (const contender of options.contenders) {
        let run: ThroughputRun;
        if (Date.now() > deadlineMs) {
          run = { scenario, contender, repetition, status: 'failed', reason: `skipped: past the ${options.budgetMinutes}-minute budget` };
        } else {
          try {
            const runOnce = (): Promise<ThroughputRun> =>
              throughputRun(scenario, contender, seconds, workersPassed ? options.workers! : null, options.remoteResolver);
            run = { ...(await runOnce()), repetition };
            if (dnsperfStalled(run)) {
              console.log(
                `[${elapsed()}] ${scenario} / ${contender}: dnsperf stalled (${run.dnsperf!.sent} queries sent); once more in a fresh lab`,
              );
              run = { ...(await runOnce()), repetition, stalledTry: run.dnsperf };
            }
          } catch (error) {
            run = { scenario, contender, repetition, status: 'failed', reason: (error as Error).message.split('\n')[0]! };
          }
        }
        results.throughput.push(run);
        const d = run.dnsperf;
        console.log(
          `[${elapsed()}] ${scenario} / ${contender}: ` +
            (d === undefined
              ? `${run.status}: ${run.reason}`
              : `${d.qps.toFixed(0)} qps, ${d.completedPercent.toFixed(2)} % completed, avg ${d.averageLatencyMs.toFixed(2)} ms, ` +
                `CPU ${fixed(run.serverCpuSeconds, 1)} s, peak RSS ${mib(run.serverPeakRssBytes)} MiB, TIME_WAIT ${run.serverTimeWait}`),
        );
        save(results, options.out);
      }
    }
  }

  if (options.scenarios.includes(IDLE)) {
    let rawSlab: number | null = null;
    // The raw transport first: its slab growth is the client's own share, subtracted from the others'.
    for (const name of IDLE_CONTENDERS.filter((c) => options.contenders.includes(c))) {
      const contender = CONTENDERS[name];
      let result: IdleResult;
      const empty = {
        commandLine: '',
        serverSummary: '',
        requested: idleConnections,
        held: 0,
        failed: 0,
        closedByServer: 0,
        serverKernelSockets: 0,
        secondsToOpen: 0,
        rssBeforeBytes: 0,
        rssAfterBytes: 0,
        rssBytesPerConnection: 0,
        slabBytesPerConnection: 0,
        serverKernelBytesPerConnection: null,
      };
      if (Date.now() > deadlineMs) {
        result = { ...empty, contender: name, status: 'failed', reason: `skipped: past the ${options.budgetMinutes}-minute budget` };
      } else {
        try {
          result = await withLab(contender.unboundExtraConfig, (lab) =>
            measureIdleConnections(
              lab,
              contender,
              idleConnections,
              { closeAfterEachAnswer: false, holdIdleConnections: true, workers: workersPassed ? options.workers! : null },
              rawSlab,
            ),
          );
          if (name === 'stateless') rawSlab = result.slabBytesPerConnection;
        } catch (error) {
          result = { ...empty, contender: name, status: 'failed', reason: (error as Error).message.split('\n')[0]! };
        }
      }
      results.idle.push(result);
      console.log(
        `[${elapsed()}] idle / ${name}: ` +
          (result.status !== 'ok'
            ? `${result.status}: ${result.reason}`
            : `${result.held} held in ${result.secondsToOpen.toFixed(1)} s, RSS ${result.rssBytesPerConnection.toFixed(0)} B/conn, ` +
              `slab ${result.slabBytesPerConnection.toFixed(0)} B/conn, server kernel est. ${fixed(result.serverKernelBytesPerConnection, 0)} B/conn, closed by server ${result.closedByServer}`),
      );
      save(results, options.out);
    }
  }

  if (options.scenarios.includes(HTTP)) {
    for (const body of HTTP_BODIES) {
      for (const contender of HTTP_CONTENDER_NAMES) {
        let run: HttpRun;
        if (Date.now() > deadlineMs) {
          run = { contender, body: body.title, status: 'failed', reason: `skipped: past the ${options.budgetMinutes}-minute budget` };
        } else {
          try {
            run = await httpRun(contender, body, seconds, workersPassed ? options.workers! : null);
          } catch (error) {
            run = { contender, body: body.title, status: 'failed', reason: (error as Error).message.split('\n')[0]! };
          }
        }
        results.http.push(run);
        console.log(
          `[${elapsed()}] http ${body.title} / ${contender}: ` +
            (run.status !== 'ok'
              ? `${run.status}: ${run.reason}`
              : `${run.requestsPerSecond!.toFixed(0)} requests/s, ${run.errors} errors, avg ${fixed(run.averageLatencyMs, 2)} ms, CPU ${fixed(run.serverCpuSeconds, 1)} s`),
        );
        save(results, options.out);
      }
    }
  }

  if (options.scenarios.includes(KXDPGUN)) {
    // Offered rates, and repetitions alternating the contenders (the machine is noisy: ranges).
    const rates = options.quick ? [40_000] : [20_000, 40_000, 60_000];
    const repetitions = options.quick ? 1 : 3;
    const contenders = KXDPGUN_CONTENDERS.filter((c) => options.contenders.includes(c));
    for (const offered of rates) {
      const cells = new Map(
        contenders.map((c) => [c, { contender: c, offeredPerSecond: offered, runs: [] as KxdpgunResult[], failures: [] as string[] }]),
      );
      for (let repetition = 0; repetition < repetitions && Date.now() <= deadlineMs; repetition++) {
        for (const contender of contenders) {
          const cell = cells.get(contender)!;
          try {
            const run = await kxdpgunRun(contender, offered, seconds, workersPassed ? options.workers! : null);
            cell.runs.push(run);
            console.log(
              `[${elapsed()}] kxdpgun ${offered}/s / ${contender}: ${run.answeredPerSecond.toFixed(0)} answered/s, ` +
                `${run.cpuMicrosPerTransaction.toFixed(0)} µs machine CPU per transaction`,
            );
          } catch (error) {
            cell.failures.push((error as Error).message.split('\n')[0]!);
            console.log(`[${elapsed()}] kxdpgun ${offered}/s / ${contender}: failed: ${cell.failures.at(-1)}`);
          }
        }
      }
      results.kxdpgun.push(...cells.values());
      save(results, options.out);
    }
  }

  results.finishedAt = new Date().toISOString();
  results.elapsedSeconds = Math.round((Date.now() - startedMs) / 1000);
  save(results, options.out);
  console.log('');
  if (results.throughput.length > 0) console.log(`${throughputTable(results.throughput)}\n`);
  if (results.idle.length > 0) console.log(`${idleTable(results.idle)}\n`);
  if (results.http.length > 0) console.log(`${httpTable(results.http)}\n`);
  if (results.kxdpgun.length > 0) console.log(`${kxdpgunTable(results.kxdpgun)}\n`);
  console.log(`finished in ${elapsed()}; wrote ${join(options.out, 'latest.json')} and ${join(options.out, 'latest.svg')}`);
}

const program = new Command('bench')
  .description('dnsperf against stateless-tcp, its kernel transport, dnsdist and unbound, each in a fresh lab; plus idle-connection memory')
  .option('--quick', '5 s per run and 5,000 idle connections (a smoke run of the whole harness)', false)
  .option(
    '--scenarios <list>',
    `comma-separated: ${[...SCENARIO_NAMES, IDLE, HTTP, KXDPGUN].join(',')}`,
    list<BenchScenario>([...SCENARIO_NAMES, IDLE, HTTP, KXDPGUN]),
    [...SCENARIO_NAMES, IDLE, HTTP, KXDPGUN],
  )
  .option('--contenders <list>', `comma-separated: ${CONTENDER_NAMES.join(',')}`, list<ContenderName>(CONTENDER_NAMES), [
    ...CONTENDER_NAMES,
  ])
  .option('--seconds <n>', 'seconds of load per measured run (default 10, quick 5)', positiveInteger)
  .option('--idle-connections <n>', 'connections held in the idle scenario (default 50000, quick 5000)', positiveInteger)
  .option(
    '--workers <n>',
    'shard workers for the raw transport, passed only if its CLI has --workers (default: its own default)',
    positiveInteger,
  )
  .option('--budget-minutes <n>', 'skip runs that would start after this many minutes', positiveInteger, 45)
  .option(
    '--repetitions <n>',
    'runs of each dnsperf scenario and contender, the contenders alternating (default 3, quick 1)',
    positiveInteger,
  )
  .option('--out <dir>', 'where latest.json and latest.svg go', RESULTS_DIR)
  .option('--remote-resolver', 'unbound in a namespace of its own behind the server, not on its loopback (throughput scenarios)', false)
  .option('--render <file>', 'run nothing: write latest.md and latest.svg in --out from this results file (a latest.json)')
  .action((options: BenchOptions) => (options.render === undefined ? main(options) : render(options.render, options.out)));

/** `--render`: the reports of a finished run again, as this version of the bench writes them. */
async function render(file: string, outDir: string): Promise<void> {
  const results = JSON.parse(readFileSync(file, 'utf8')) as Results;
  save(results, outDir);
  console.log(`wrote ${join(outDir, 'latest.json')}, latest.svg and latest.md from ${file}`);
}

program.parseAsync().catch((error: unknown) => {
  console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
