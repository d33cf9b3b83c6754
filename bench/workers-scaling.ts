/**
 * Queries per second through the real front end with 1 and with 2 shard workers, side by side,
 * and where the CPU time goes: dnsperf over TCP in the lab's client namespace, `stateless-tcp
 * dns --workers N` capturing on the server's veth, unbound behind it. Not a test: it prints
 * numbers, and nothing is asserted about them.
 *
 *   node dist/bench/workers-scaling.js [rounds=3] [seconds=10] [clients=40]
 *
 * Each round runs every worker count once, alternating, so drift in a shared, noisy machine
 * hits both alike. CPU shares come from /proc/PID/task/TID/stat (utime + stime) over the middle
 * of each run, per thread of the front end (its threads name themselves stcp-capture and
 * stcp-shardN; "node other" is the main thread and V8's helpers), for dnsperf and for unbound,
 * in percent of one core, and "everything else" the machine did meanwhile (other processes, and
 * kernel time charged to no thread above). The machine's cores are the ceiling for their sum.
 */
import { availableParallelism, cpus } from 'node:os';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDnsperf } from '../lab/dnsperf.js';
import { createLab, type Lab } from '../lab/lab.js';
import { startFrontEnd } from '../lab/stateless-tcp.js';
import { requireTools } from '../lab/tools.js';
import { LAB_ZONE } from '../lab/zone.js';

const rounds = Number(process.argv[2] ?? 3);
const seconds = Number(process.argv[3] ?? 10);
const clients = Number(process.argv[4] ?? 40);
const WORKER_COUNTS = [1, 2];
/** CPU is sampled from this long after the start to this long before the end of each run. */
const SAMPLE_MARGIN_MS = 2000;
/** Linux's USER_HZ: the unit of utime and stime in /proc (proc(5)). */
const CLOCK_TICKS_PER_SECOND = 100;
const WATCHDOG_MS = (rounds * WORKER_COUNTS.length * (seconds + 30) + 60) * 1000;

interface Run {
  workers: number;
  qps: number;
  sent: number;
  completed: number;
  /** CPU in percent of one core, by thread or process name. */
  cpu: Map<string, number>;
  ringDrops: number;
  pcapDropped: number;
}

/** CPU ticks so far of every thread of `pid`, by thread name (threads of one name summed). */
function threadTicks(pid: number, prefix: string, into: Map<string, number>): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return; // exited
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after the parenthesised name: state is field 3, utime 14, stime 15 (proc(5)).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const name = `${prefix}${comm.startsWith('stcp-') ? comm.slice(5) : `${comm} other`}`;
      into.set(name, (into.get(name) ?? 0) + ticks);
    } catch {
      // thread ended between readdir and read
    }
  }
}

function processTicks(pid: number, name: string, into: Map<string, number>): void {
  const perThread = new Map<string, number>();
  threadTicks(pid, '', perThread);
  into.set(
    name,
    [...perThread.values()].reduce((a, b) => a + b, 0),
  );
}

/** Busy ticks of the whole machine, all CPUs: the first line of /proc/stat less idle and iowait. */
function machineBusyTicks(): number {
  // "cpu user nice system idle iowait irq softirq steal …" (proc(5))
  const ticks = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, irq, softirq, steal] = [0, 1, 2, 5, 6, 7].map((i) => ticks[i]!);
  return user! + nice! + system! + irq! + softirq! + steal!;
}

/** `MACHINE` is every CPU's busy time; what it has beyond the named ones is other work. */
const MACHINE = 'machine';

function sample(frontEnd: number, dnsperf: number, unbound: number): Map<string, number> {
  const ticks = new Map<string, number>();
  threadTicks(frontEnd, 'front end: ', ticks);
  processTicks(dnsperf, 'dnsperf', ticks);
  processTicks(unbound, 'unbound', ticks);
  ticks.set(MACHINE, machineBusyTicks());
  return ticks;
}

async function runOnce(lab: Lab, queryFile: string, workers: number): Promise<Run> {
  const frontEnd = await startFrontEnd(lab, ['--workers', String(workers)]);
  try {
    const load = startDnsperf(lab, queryFile, ['-c', String(clients), '-l', String(seconds)]);
    const child = load.process;
    await sleep(SAMPLE_MARGIN_MS);
    const t0 = performance.now();
    const before = sample(frontEnd.process.pid!, child.pid!, lab.unbound!.pid!);
    await sleep(seconds * 1000 - 2 * SAMPLE_MARGIN_MS);
    const after = sample(frontEnd.process.pid!, child.pid!, lab.unbound!.pid!);
    const elapsed = (performance.now() - t0) / 1000;
    const result = await load.result;
    const summary = await frontEnd.stop();
    const cpu = new Map<string, number>();
    for (const [name, ticks] of after) {
      cpu.set(name, (100 * (ticks - (before.get(name) ?? 0))) / CLOCK_TICKS_PER_SECOND / elapsed);
    }
    // What the machine did beyond our processes: other tenants' work, and kernel time (softirq)
    // not charged to any of our threads.
    const ours = [...cpu].filter(([name]) => name !== MACHINE).reduce((sum, [, pct]) => sum + pct, 0);
    cpu.set('everything else', cpu.get(MACHINE)! - ours);
    cpu.delete(MACHINE);
    let ringDrops = 0;
    for (const m of summary.matchAll(/shard\d+\.ring_drops=(\d+)/g)) ringDrops += Number(m[1]);
    return {
      workers,
      qps: result.qps,
      sent: result.sent,
      completed: result.completed,
      cpu,
      ringDrops,
      pcapDropped: Number(/pcap\.dropped=(\d+)/.exec(summary)?.[1] ?? NaN),
    };
  } finally {
    await frontEnd.stop();
  }
}

const watchdog = setTimeout(() => {
  console.error(`workers-scaling: not finished after ${WATCHDOG_MS} ms`);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

requireTools('dnsperf');
console.log(`${availableParallelism()} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}`);
console.log(
  `dnsperf -m tcp -c ${clients} -l ${seconds}, ${rounds} rounds; CPU in % of one core over the middle ${seconds - (2 * SAMPLE_MARGIN_MS) / 1000} s\n`,
);
const lab = await createLab();
const runs: Run[] = [];
try {
  const queryFile = `${lab.tempDir}/queries`;
  writeFileSync(queryFile, `${LAB_ZONE.www.name} A\n${LAB_ZONE.missing} A\n`);
  for (let round = 0; round < rounds; round++) {
    for (const workers of round % 2 === 0 ? WORKER_COUNTS : [...WORKER_COUNTS].reverse()) {
      const run = await runOnce(lab, queryFile, workers);
      runs.push(run);
      const cpu = [...run.cpu].filter(([, pct]) => pct >= 1).sort((a, b) => b[1] - a[1]);
      // CPU time per query does not depend on how much of the machine others took meanwhile.
      const perQuery = (pct: number): string => `${((pct / 100 / run.qps) * 1e6).toFixed(0)} µs`;
      const frontEndPct = [...run.cpu].filter(([name]) => name.startsWith('front end')).reduce((sum, [, pct]) => sum + pct, 0);
      console.log(
        `round ${round + 1}, --workers ${workers}: ${run.qps.toFixed(0)} qps, ${run.completed}/${run.sent} completed, ` +
          `ring drops ${run.ringDrops}, pcap drops ${run.pcapDropped}\n  CPU: ${cpu.map(([n, p]) => `${n} ${p.toFixed(0)}%`).join(', ')}` +
          `\n  CPU per query: front end ${perQuery(frontEndPct)} (` +
          [...run.cpu]
            .filter(([name]) => name.startsWith('front end'))
            .map(([n, p]) => `${n.slice(11)} ${perQuery(p)}`)
            .join(', ') +
          `), dnsperf ${perQuery(run.cpu.get('dnsperf') ?? 0)}, unbound ${perQuery(run.cpu.get('unbound') ?? 0)}`,
      );
    }
  }
} finally {
  await lab.close();
}

console.log('\nworkers  qps (min … max, median)');
for (const workers of WORKER_COUNTS) {
  const qps = runs
    .filter((r) => r.workers === workers)
    .map((r) => r.qps)
    .sort((a, b) => a - b);
  console.log(
    `${String(workers).padStart(7)}  ${qps[0]!.toFixed(0)} … ${qps.at(-1)!.toFixed(0)}, ${qps[Math.floor(qps.length / 2)]!.toFixed(0)}`,
  );
}
const median = (workers: number): number => {
  const qps = runs
    .filter((r) => r.workers === workers)
    .map((r) => r.qps)
    .sort((a, b) => a - b);
  return qps[Math.floor(qps.length / 2)]!;
};
console.log(`2 workers / 1 worker (medians): ${(median(2) / median(1)).toFixed(2)}`);
