/**
 * The HTTP scenario: wrk from the client namespace against
 *   - stateless-tcp http (raw transport) relaying to an nginx backend,
 *   - the same over kernel sockets (--transport kernel),
 *   - nginx as a reverse proxy to the same backend (keep-alive upstream connections), and
 *   - the backend itself (the ceiling),
 * each in a fresh lab, for a small body (1 KiB) and a large one (100 KiB), keep-alive connections.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, type Lab } from '../../lab/lab.js';
import { NGINX_PORT, nginxPreamble, serveFile, startNginx } from '../../lab/nginx.js';
import { startHttpFrontEnd } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { parseWrk } from '../../lab/wrk.js';
import { cpuSeconds, peakRssBytes } from './proc-stats.js';

export const HTTP_CONTENDER_NAMES = ['stateless', 'kernel', 'nginx-proxy', 'backend'] as const;
export type HttpContenderName = (typeof HTTP_CONTENDER_NAMES)[number];
export const HTTP_CONTENDER_TITLES: Record<HttpContenderName, string> = {
  stateless: 'stateless-tcp http (raw)',
  kernel: 'stateless-tcp http --transport kernel',
  'nginx-proxy': 'nginx reverse proxy',
  backend: 'nginx backend directly (ceiling)',
};

export const HTTP_BODIES = [
  { name: 'small.bin', title: '1 KiB body', bytes: 1024 },
  { name: 'large.bin', title: '100 KiB body', bytes: 100 * 1024 },
] as const;

/** wrk's load: two threads (the client namespace shares the 2 cores with the server), 32 connections. */
const WRK_THREADS = 2;
const WRK_CONNECTIONS = 32;
const PROXY_PORT = 8081;

export interface HttpRun {
  contender: HttpContenderName;
  body: string;
  status: 'ok' | 'failed';
  reason?: string;
  requestsPerSecond?: number;
  transferMiBPerSecond?: number;
  requests?: number;
  /** Socket errors (connect, read, write, timeout) plus non-2xx responses, as wrk counts them. */
  errors?: number;
  averageLatencyMs?: number;
  maxLatencyMs?: number;
  /** CPU seconds of the front end (all threads; for nginx, its worker) during the load. */
  serverCpuSeconds?: number | null;
  /** CPU seconds of the backend nginx's worker during the load. */
  backendCpuSeconds?: number | null;
  serverPeakRssBytes?: number | null;
}

/** The nginx worker of a master process (nginx forks it at start). */
async function nginxWorker(lab: Lab, masterPid: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const found = await lab.exec('server', ['pgrep', '-P', String(masterPid)]);
    const pid = Number(found.stdout.trim().split('\n')[0]);
    if (pid > 0) return pid;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no nginx worker under pid ${masterPid}`);
}

/** Seconds of wrk load before the measured run, not counted (bench.ts WARM_UP_SECONDS). */
const WARM_UP_SECONDS = 2;

/** One contender and body size in a fresh lab. */
export async function httpRun(
  contender: HttpContenderName,
  body: (typeof HTTP_BODIES)[number],
  seconds: number,
  workers: number | null,
): Promise<HttpRun> {
  requireTools('nginx', 'wrk');
  const lab = await createLab({ unbound: false });
  try {
    const backend = await startNginx(lab, { alsoListen: [`${lab.serverV4}:${NGINX_PORT}`] });
    await serveFile(backend, body.name, randomBytes(body.bytes));
    const backendWorker = await nginxWorker(lab, backend.process.pid!);
    let url: string;
    let serverPid: number;
    let stop: () => Promise<unknown>;
    if (contender === 'stateless' || contender === 'kernel') {
      const args = contender === 'kernel' ? ['--transport', 'kernel'] : workers === null ? [] : ['--workers', String(workers)];
      const front = await startHttpFrontEnd(lab, backend.origin, args);
      url = `http://${lab.serverV4}/${body.name}`;
      serverPid = front.process.pid!;
      stop = () => front.stop();
    } else if (contender === 'nginx-proxy') {
      const dir = join(lab.tempDir, 'proxy');
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        join(dir, 'nginx.conf'),
        `
${nginxPreamble(dir, 1)}
  upstream backend { server 127.0.0.1:${NGINX_PORT}; keepalive 64; }
  server {
    listen ${lab.serverV4}:${PROXY_PORT} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering on;
    }
  }
}
`,
      );
      const proxy = lab.spawn('server', ['nginx', '-p', dir, '-c', join(dir, 'nginx.conf')]);
      serverPid = await nginxWorker(lab, proxy.pid!);
      url = `http://${lab.serverV4}:${PROXY_PORT}/${body.name}`;
      stop = () => lab.stop(proxy);
    } else {
      serverPid = backendWorker;
      url = `http://${lab.serverV4}:${NGINX_PORT}/${body.name}`;
      stop = async () => {};
    }
    // Warm up (and check) with one request.
    const check = await lab.exec('client', ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', url]);
    if (check.stdout !== `200 ${body.bytes}`) throw new Error(`${url} answered ${check.stdout} ${check.stderr.trim()}`);
    // The same warm-up for every contender, not counted (bench.ts WARM_UP_SECONDS says why).
    await lab.exec('client', ['wrk', `-t${WRK_THREADS}`, `-c${WRK_CONNECTIONS}`, `-d${WARM_UP_SECONDS}s`, '--timeout', '5s', url], {
      timeoutMs: (WARM_UP_SECONDS + 30) * 1000,
    });
    const cpuBefore = cpuSeconds(serverPid);
    const backendBefore = contender === 'backend' ? null : cpuSeconds(backendWorker);
    const wrk = await lab.exec(
      'client',
      ['wrk', `-t${WRK_THREADS}`, `-c${WRK_CONNECTIONS}`, `-d${seconds}s`, '--timeout', '5s', '--latency', url],
      { timeoutMs: (seconds + 30) * 1000 },
    );
    const cpuAfter = cpuSeconds(serverPid);
    const backendAfter = contender === 'backend' ? null : cpuSeconds(backendWorker);
    const peak = peakRssBytes(serverPid);
    await stop();
    if (wrk.code !== 0) throw new Error(`wrk failed: ${wrk.stderr.trim() || wrk.stdout.trim()}`);
    const delta = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : b - a);
    const report = parseWrk(wrk.stdout);
    return {
      contender,
      body: body.title,
      status: 'ok',
      requestsPerSecond: report.requestsPerSecond,
      transferMiBPerSecond: report.transferMiBPerSecond,
      requests: report.requests,
      errors: report.socketErrors + report.non2xx,
      averageLatencyMs: report.averageLatencyMs,
      maxLatencyMs: report.maxLatencyMs,
      serverCpuSeconds: delta(cpuBefore, cpuAfter),
      backendCpuSeconds: delta(backendBefore, backendAfter),
      serverPeakRssBytes: peak,
    };
  } finally {
    await lab.close();
  }
}

export function httpTable(runs: readonly HttpRun[]): string {
  const lines = [
    '| body | contender | requests/s | vs nginx proxy | MiB/s | errors | avg ms | max ms | server CPU s | server CPU µs/request | backend CPU s | peak RSS MiB |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const fixed = (v: number | null | undefined, d: number): string => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(d));
  for (const body of HTTP_BODIES) {
    const inBody = runs.filter((r) => r.body === body.title);
    const proxy = inBody.find((r) => r.contender === 'nginx-proxy' && r.status === 'ok')?.requestsPerSecond;
    for (const r of inBody) {
      if (r.status !== 'ok') {
        lines.push(`| ${body.title} | ${HTTP_CONTENDER_TITLES[r.contender]} | ${r.status}: ${r.reason ?? ''} |  |  |  |  |  |  |  |  |  |`);
        continue;
      }
      lines.push(
        `| ${body.title} | ${HTTP_CONTENDER_TITLES[r.contender]} | ${fixed(r.requestsPerSecond, 0)} | ${proxy === undefined ? '–' : `${(r.requestsPerSecond! / proxy).toFixed(2)}×`} | ` +
          `${fixed(r.transferMiBPerSecond, 1)} | ${r.errors} | ${fixed(r.averageLatencyMs, 2)} | ${fixed(r.maxLatencyMs, 1)} | ${fixed(r.serverCpuSeconds, 1)} | ` +
          `${r.serverCpuSeconds == null || !r.requests ? '–' : ((r.serverCpuSeconds * 1e6) / r.requests).toFixed(0)} | ${fixed(r.backendCpuSeconds, 1)} | ` +
          `${r.serverPeakRssBytes == null ? '–' : (r.serverPeakRssBytes / 2 ** 20).toFixed(0)} |`,
      );
    }
  }
  return lines.join('\n');
}
