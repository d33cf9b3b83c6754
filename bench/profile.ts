/**
 * `npm run profile`: stateless-tcp under dnsperf load with V8's CPU profiler on every thread, turned
 * into flamegraphs.
 *
 *   npm run profile [-- --scenario persistent|transaction|big] [-- --transport raw|kernel] [-- --seconds 15]
 *
 * `node --cpu-prof` writes one .cpuprofile per thread when the process exits — the main thread and
 * every worker_threads worker (clinic flame and 0x see only the main thread on Node 20). Each is
 * converted to a flamegraph SVG and a self-time summary under bench/profiles/<run>/, with an
 * index.html that shows them all; bench/profiles/latest points at the newest run.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { createLab } from '../lab/lab.js';
import { requireTools } from '../lab/tools.js';
import { CONTENDERS, SERVICE_PORT, SHARED_UNBOUND_CONFIG, statelessAcceptsWorkers, waitUntilAnswering } from './lib/contenders.js';
import { runDnsperf, type DnsperfResult } from './lib/dnsperf.js';
import { SCENARIO_NAMES, SCENARIOS, type ScenarioName } from './lib/scenarios.js';
import {
  flamegraphSvg,
  foldedStacks,
  frameTree,
  selfTimes,
  type CpuProfile,
  type FrameTree,
  type SelfTimeEntry,
} from './lib/flamegraph.js';
import { describeMachine } from './lib/machine.js';

const PROFILES_DIR = fileURLToPath(new URL('../../bench/profiles/', import.meta.url));
/** Entries shown per thread in the summary. */
const TOP_ENTRIES = 20;

interface ProfileOptions {
  scenario: ScenarioName;
  transport: 'raw' | 'kernel';
  seconds: number;
  workers?: number;
  out: string;
}

interface ThreadReport {
  file: string;
  thread: string;
  svg: string;
  busyMs: number;
  idleMs: number;
  top: SelfTimeEntry[];
  byFile: SelfTimeEntry[];
}

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

function oneOf<T extends string>(allowed: readonly T[]) {
  return (value: string): T => {
    if (!allowed.includes(value as T)) throw new InvalidArgumentError(`"${value}" is not one of ${allowed.join(', ')}`);
    return value as T;
  };
}

/**
 * CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile: thread id 0 is the main thread. A worker is
 * also named after the script under workers/ its stacks run in (capture, shard, …), when there is
 * exactly one.
 */
function threadName(file: string, tree: FrameTree): string {
  const threadId = basename(file).split('.')[4];
  if (threadId === '0') return 'main thread';
  const scripts = new Set<string>();
  const walk = (frame: FrameTree): void => {
    const script = /\bworkers\/([\w-]+)\.js:\d+$/.exec(frame.label)?.[1];
    if (script !== undefined) scripts.add(script);
    for (const child of frame.children.values()) walk(child);
  };
  walk(tree);
  return scripts.size === 1 ? `worker thread ${threadId} (${[...scripts][0]})` : `worker thread ${threadId}`;
}

/** Self time summed per source file (the label less its function name and line). */
function byFile(entries: readonly SelfTimeEntry[]): SelfTimeEntry[] {
  const sums = new Map<string, SelfTimeEntry>();
  for (const e of entries) {
    const file = / (\S+):\d+$/.exec(e.label)?.[1] ?? `${e.label} (V8/native)`;
    const sum = sums.get(file) ?? { label: file, selfUs: 0, busyShare: 0 };
    sum.selfUs += e.selfUs;
    sum.busyShare += e.busyShare;
    sums.set(file, sum);
  }
  return [...sums.values()].sort((a, b) => b.selfUs - a.selfUs);
}

function analyse(dir: string, subtitle: string): ThreadReport[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort();
  const folded: string[] = [];
  const reports = files.map((file) => {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const tree = frameTree(profile);
    const thread = threadName(file, tree);
    const slug = thread.replace(/[^\w]+/g, '-').replace(/-$/, '');
    const svg = `${slug}.svg`;
    writeFileSync(join(dir, svg), flamegraphSvg(tree, `stateless-tcp, ${thread}`, subtitle));
    folded.push(...foldedStacks(tree, slug));
    const times = selfTimes(tree);
    return {
      file,
      thread,
      svg,
      busyMs: times.busyUs / 1000,
      idleMs: times.idleUs / 1000,
      top: times.entries.slice(0, TOP_ENTRIES),
      byFile: byFile(times.entries).slice(0, 10),
    };
  });
  writeFileSync(join(dir, 'stacks.folded'), `${folded.join('\n')}\n`);
  return reports;
}

const percent = (share: number): string => `${(100 * share).toFixed(1)} %`;

function summaryText(reports: readonly ThreadReport[], header: string): string {
  const lines = [header, ''];
  for (const r of reports) {
    lines.push(`${r.thread} (${r.file}): busy ${(r.busyMs / 1000).toFixed(1)} s, idle ${(r.idleMs / 1000).toFixed(1)} s`);
    lines.push('  self time, share of busy time:');
    for (const e of r.top) lines.push(`  ${percent(e.busyShare).padStart(7)}  ${e.label}`);
    lines.push('  by file:');
    for (const e of r.byFile) lines.push(`  ${percent(e.busyShare).padStart(7)}  ${e.label}`);
    lines.push('');
  }
  return lines.join('\n');
}

function indexHtml(reports: readonly ThreadReport[], header: string): string {
  const escapeHtml = (s: string): string => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);
  const sections = reports.map(
    (r) => `
<h2>${escapeHtml(r.thread)} <small>busy ${(r.busyMs / 1000).toFixed(1)} s, idle ${(r.idleMs / 1000).toFixed(1)} s</small></h2>
<object type="image/svg+xml" data="${r.svg}" style="width:100%"></object>
<details><summary>top self time (share of busy time)</summary><table>
${r.top.map((e) => `<tr><td align="right">${percent(e.busyShare)}</td><td><code>${escapeHtml(e.label)}</code></td></tr>`).join('\n')}
</table></details>`,
  );
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>stateless-tcp CPU profile</title>
<style>body{font-family:sans-serif;margin:1em 2em}small{color:#666;font-weight:normal}td{padding:0 .6em}</style></head>
<body><h1>stateless-tcp CPU profile</h1><p>${escapeHtml(header)}</p>
<p>One flamegraph per thread (node --cpu-prof). Hover a frame for its time. Orange: stateless-tcp's own code; green: Node's; blue: dependencies; red: V8 and native code; grey: idle. <code>stacks.folded</code> holds the same stacks in folded format; each <code>.cpuprofile</code> opens in Chrome DevTools or speedscope.</p>
${sections.join('\n')}
</body></html>
`;
}

async function main(options: ProfileOptions): Promise<void> {
  requireTools('ip', 'ethtool', 'unbound', 'dig', 'dnsperf', 'nft');
  const scenario = SCENARIOS[options.scenario];
  const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, '');
  const dir = join(options.out, `${stamp}-${options.scenario}-${options.transport}`);
  mkdirSync(dir, { recursive: true });
  const contender = CONTENDERS[options.transport === 'raw' ? 'stateless' : 'kernel'];
  const workers = options.workers !== undefined && statelessAcceptsWorkers() ? options.workers : null;
  let dnsperf: DnsperfResult;
  let commandLine: string;
  const lab = await createLab({ unboundServerConfig: SHARED_UNBOUND_CONFIG });
  try {
    const server = await contender.start(lab, {
      closeAfterEachAnswer: scenario.closeAfterEachAnswer,
      holdIdleConnections: false,
      workers,
      nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`],
    });
    commandLine = server.commandLine;
    try {
      await waitUntilAnswering(lab, server);
      console.log(`profile: ${commandLine}, ${scenario.title}, ${options.seconds} s of dnsperf load`);
      dnsperf = await runDnsperf(lab, lab.serverV4, SERVICE_PORT, scenario.load(options.seconds));
    } finally {
      // SIGTERM: the CLI exits through process.exit, which is when V8 writes every thread's profile.
      await server.stop();
    }
  } finally {
    await lab.close();
  }
  const m = describeMachine();
  const header =
    `${commandLine}; ${scenario.title}; dnsperf ${dnsperf.qps.toFixed(0)} qps, ${dnsperf.completedPercent.toFixed(2)} % completed; ` +
    `${m.cpus}× ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}, load ${m.loadAverage}; ${new Date().toISOString().slice(0, 16)}Z`;
  const reports = analyse(dir, header);
  if (reports.length === 0) throw new Error(`no .cpuprofile was written to ${dir}: did the server exit through process.exit?`);
  const summary = summaryText(reports, header);
  writeFileSync(join(dir, 'summary.txt'), summary);
  writeFileSync(join(dir, 'index.html'), indexHtml(reports, header));
  const latest = join(options.out, 'latest');
  rmSync(latest, { force: true });
  symlinkSync(relative(options.out, dir), latest);
  console.log(summary);
  console.log(`${reports.length} thread profile(s) in ${dir}`);
  console.log(`view: xdg-open ${join(latest, 'index.html')}`);
}

const program = new Command('profile')
  .description('CPU flamegraphs of every stateless-tcp thread under dnsperf load')
  .option('--scenario <name>', `load: ${SCENARIO_NAMES.join(', ')}`, oneOf(SCENARIO_NAMES), 'persistent')
  .option('--transport <raw|kernel>', 'which transport to profile', oneOf(['raw', 'kernel'] as const), 'raw')
  .option('--seconds <n>', 'seconds of load', positiveInteger, 15)
  .option('--workers <n>', 'shard workers, passed only if the CLI has --workers', positiveInteger)
  .option('--out <dir>', 'where the run directory goes', PROFILES_DIR)
  .action((options: ProfileOptions) => main(options));

program.parseAsync().catch((error: unknown) => {
  console.error(`profile: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
