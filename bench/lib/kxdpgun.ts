/**
 * kxdpgun (Knot DNS's load generator, knot-dnsutils) for the short-connection scenario: with `-T`
 * it opens one TCP connection per query from AF_XDP, at the rate asked, without a kernel socket of
 * its own, so the server rather than the client's connect loop is what is measured (dnsperf opens
 * its connections one at a time). Run in the lab's client namespace on its veth (native XDP mode).
 *
 * Two limits of kxdpgun shape the runs: it counts a connection closed only when the server's FIN
 * comes in an empty segment of its own, so against stateless-tcp (FIN on the answer) it reports no
 * closes (docs/tcp-behaviour.md, "Closing"); and it never frees its connections, so one run may
 * open at most its 63,536 source ports. Each run therefore lasts at most MAX_CONNECTIONS / rate s.
 */
import { writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../../lab/lab.js';

/** Connections one kxdpgun run may open: below its 63,536 source ports (2000–65535). */
export const MAX_CONNECTIONS = 60_000;

export interface KxdpgunResult {
  offeredPerSecond: number;
  seconds: number;
  established: number;
  replies: number;
  noError: number;
  /** Replies per second over the run. */
  answeredPerSecond: number;
  /** CPU seconds of the whole machine (every process and the kernel) during the run. */
  machineCpuSeconds: number;
  /** Machine CPU per answered connection, µs. */
  cpuMicrosPerTransaction: number;
}

/** Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait). */
function machineBusySeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = fields as [number, number, number, number, number, number, number, number];
  return (user + nice + system + irq + softirq + steal) / 100; // USER_HZ
}

/** One run at `offeredPerSecond` connections (one query each) against `server` port 53. */
export async function runKxdpgun(
  lab: Lab,
  server: string,
  queryLine: string,
  offeredPerSecond: number,
  maxSeconds: number,
): Promise<KxdpgunResult> {
  const seconds = Math.max(1, Math.min(maxSeconds, Math.floor(MAX_CONNECTIONS / offeredPerSecond)));
  const file = join(lab.tempDir, 'kxdpgun-queries.txt');
  await writeFile(file, `${queryLine}\n`);
  const busyBefore = machineBusySeconds();
  const run = await lab.exec(
    'client',
    ['kxdpgun', '-t', String(seconds), '-T', '-Q', String(offeredPerSecond), '-I', lab.clientInterface, '-i', file, server],
    { timeoutMs: (seconds + 30) * 1000 },
  );
  const machineCpuSeconds = machineBusySeconds() - busyBefore;
  if (run.code !== 0) throw new Error(`kxdpgun failed (${run.code}): ${run.stderr.trim() || run.stdout.trim()}`);
  const count = (label: string): number => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(run.stdout)?.[1] ?? Number.NaN);
  const replies = count('total replies');
  if (!Number.isFinite(replies))
    throw new Error(`kxdpgun printed no totals: ${run.stdout.trim().split('\n').at(-1) ?? ''} ${run.stderr.trim()}`);
  return {
    offeredPerSecond,
    seconds,
    established: count('total established'),
    replies,
    noError: count('responded NOERROR'),
    answeredPerSecond: replies / seconds,
    machineCpuSeconds,
    cpuMicrosPerTransaction: replies > 0 ? (machineCpuSeconds * 1e6) / replies : Number.NaN,
  };
}
