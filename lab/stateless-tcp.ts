/**
 * Running the real `stateless-tcp` command (src/cli.ts: dns or http) inside a lab's server
 * namespace, for integration tests, the demo and benchmarks, and reading what it counts: its
 * summary when it stops, and its Prometheus metrics while it runs.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { METRICS_INTERVAL_MS } from '../workers/shard/protocol.js';
import type { Lab } from './lab.js';

/** The compiled CLI (dist/src/cli.js), found from this file's place in dist/lab/. */
export const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
/** How long the CLI may take to say it is listening. */
const START_TIMEOUT_MS = 20_000;

export interface RunningFrontEnd {
  readonly process: ChildProcess;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM; resolves to the process's last line (its counter summary) once it has exited. */
  stop(): Promise<string>;
}

/**
 * `stateless-tcp dns` on the lab's server interface, both addresses, port 53, relaying to unbound;
 * `env` adds to the environment (e.g. STATELESS_TCP_TEST_HOOKS).
 */
export function startFrontEnd(lab: Lab, extraArgs: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<RunningFrontEnd> {
  return startCli(
    lab,
    ['dns', '--upstream', `${lab.upstream.v4.address}:${lab.upstream.v4.port}`, ...listenArgs(lab, 53), ...extraArgs],
    env,
  );
}

/** `stateless-tcp http` on the lab's server interface, both addresses, port 80, relaying to `origin`. */
export function startHttpFrontEnd(lab: Lab, origin: string, extraArgs: readonly string[] = []): Promise<RunningFrontEnd> {
  return startCli(lab, ['http', '--upstream', origin, ...listenArgs(lab, 80), ...extraArgs]);
}

/** `--interface` and `--listen` on both of the server's lab addresses, at `port`. */
export function listenArgs(lab: Lab, port: number): string[] {
  return ['--interface', lab.serverInterface, '--listen', `${lab.serverV4}:${port}`, '--listen', `[${lab.serverV6}]:${port}`];
}

/** The CLI with any arguments, in the server namespace; resolves once it says it is listening. */
export async function startCli(lab: Lab, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<RunningFrontEnd> {
  const child = lab.spawn('server', [process.execPath, CLI, ...args], { env: { ...process.env, ...env } });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // Usually one or two seconds (a Node thread per shard plus the capture thread), but several
  // times that while other tests load a small machine.
  await lab.waitForLine(child, /listening on/, START_TIMEOUT_MS);
  return {
    process: child,
    output: () => output,
    async stop() {
      await lab.stop(child);
      return output.trimEnd().split('\n').at(-1) ?? '';
    },
  };
}

/**
 * A counter from the front end's stop summary (`name=value` pairs after "stopped on …"), 0 when
 * absent (zeros are left out).
 */
export function summaryCounter(summary: string, name: string): number {
  return Number(new RegExp(`(?:^|\\s)${name.replaceAll('.', '\\.')}=(\\d+)`).exec(summary)?.[1] ?? 0);
}

/**
 * Where to serve metrics (`--metrics METRICS_ENDPOINT`): the server namespace's own loopback, so it
 * meets nothing outside the lab.
 */
export const METRICS_ENDPOINT = '127.0.0.1:9100';

/** The running CLI's Prometheus metrics (it was started with `--metrics METRICS_ENDPOINT`). */
export async function scrapeMetrics(lab: Lab): Promise<string> {
  const scrape = await lab.exec('server', ['curl', '-sS', '--max-time', '2', `http://${METRICS_ENDPOINT}/metrics`], { timeoutMs: 5_000 });
  if (scrape.code !== 0) throw new Error(`cannot read metrics at ${METRICS_ENDPOINT} (was --metrics given?): ${scrape.stderr.trim()}`);
  return scrape.stdout;
}

/** The sum of every series of `metric` (over shards and other labels) in Prometheus text; 0 when absent. */
export function metricTotal(text: string, metric: string): number {
  const series = new RegExp(`^${metric}(?:\\{[^}]*\\})? (\\S+)$`, 'gm');
  return [...text.matchAll(series)].reduce((sum, match) => sum + Number(match[1]), 0);
}

/**
 * Waits until no connection holds soft state — `stateless_tcp_flows` and
 * `stateless_tcp_queued_bytes` zero in every shard — for the CLI started with `--metrics
 * METRICS_ENDPOINT`. After traffic that met loss, the last segments may still be retransmitted
 * for a while (RTO 200 ms, doubling) before the client's ACK releases the flow; the summary
 * written at stop would show such a flow. Shards report every METRICS_INTERVAL_MS, so a reading only
 * counts once two intervals have passed since the wait began: an earlier one may describe the time
 * before the last exchange. Polls every 100 ms; throws with the last reading after `timeoutMs`.
 */
export async function waitUntilNoSoftState(lab: Lab, timeoutMs = 30_000): Promise<void> {
  const began = Date.now();
  const trustedFrom = began + 2 * METRICS_INTERVAL_MS;
  let reading = '';
  for (;;) {
    const asked = Date.now();
    const metrics = await scrapeMetrics(lab);
    const flows = metricTotal(metrics, 'stateless_tcp_flows');
    const queuedBytes = metricTotal(metrics, 'stateless_tcp_queued_bytes');
    reading = `${flows} flows, ${queuedBytes} queued bytes`;
    if (flows === 0 && queuedBytes === 0 && asked >= trustedFrom) return;
    if (Date.now() - began > timeoutMs) throw new Error(`soft state still held after ${timeoutMs} ms: ${reading}`);
    await sleep(100);
  }
}
