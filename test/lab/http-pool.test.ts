/**
 * An HTTP backend pool in the lab: two nginx in the server namespace (127.0.0.1:8080 and :8081)
 * serving the same file behind `stateless-tcp http --upstream … --upstream …`. The first is
 * stopped (SIGTERM to its PID) during a wrk run: requests go on (those it refused or reset are
 * retried on the second), the health checks mark it down, and once restarted it is marked up
 * again and gets requests. At start, a backend that does not answer gets one line and the front
 * end starts with the other; none answering is a one-line error.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, type Lab } from '../../lab/lab.js';
import { NGINX_PORT, serveFile, startNginx, type Nginx } from '../../lab/nginx.js';
import { CLI, listenArgs, METRICS_ENDPOINT, scrapeMetrics, startCli, summaryCounter as counter } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { parseWrk } from '../../lab/wrk.js';
import { METRICS_INTERVAL_MS } from '../../workers/shard/protocol.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const SECOND_PORT = NGINX_PORT + 1;
/** A port nothing listens on in the server namespace. */
const ABSENT = 'http://127.0.0.1:8099';
const FILE = Buffer.from('the same file on both backends\n');
/** wrk's connections: at most this many requests are in flight when a backend stops. */
const CONNECTIONS = 16;

/** The values of `metric`'s series for backend `index`, one per shard worker (Prometheus text). */
function seriesOf(metrics: string, metric: string, index: number): number[] {
  const series = new RegExp(`^${metric}\\{[^}]*upstream="${index}"[^}]*\\} (\\S+)$`, 'gm');
  return [...metrics.matchAll(series)].map((m) => Number(m[1]));
}

/** The relay counter `name` (e.g. upstream0_requests) summed over shard workers, from the metrics. */
function relayCounter(metrics: string, name: string): number {
  const series = new RegExp(`^stateless_tcp_http_total\\{[^}]*counter="${name}"[^}]*\\} (\\S+)$`, 'gm');
  return [...metrics.matchAll(series)].reduce((sum, m) => sum + Number(m[1]), 0);
}

describe('stateless-tcp http with two nginx backends', () => {
  let lab: Lab;
  const backend = async (name: string, port: number): Promise<Nginx> => {
    const nginx = await startNginx(lab, { name, port });
    await serveFile(nginx, 'file.txt', FILE);
    return nginx;
  };
  before(async () => {
    requireTools('nginx', 'curl', 'wrk');
    lab = await createLab({ unbound: false });
  });
  after(async () => {
    await lab?.close();
  });

  test('start-up: one line for a backend that does not answer, and it starts with the other; none answering fails with one line', async (t) => {
    const nginx = await backend('start-up', NGINX_PORT);
    t.after(() => nginx.stop());
    // The absent one first: it would get the first requests (ties go to the first) if it started up.
    const frontEnd = await startCli(lab, ['http', ...listenArgs(lab, 80), '--upstream', ABSENT, '--upstream', nginx.origin]);
    t.after(() => frontEnd.stop());
    const lines = frontEnd
      .output()
      .split('\n')
      .filter((line) => line.includes('127.0.0.1:8099'));
    assert.equal(lines.length, 2, `one line, and the start line naming both: ${frontEnd.output()}`);
    assert.match(lines[0]!, /backend 127\.0\.0\.1:8099 is unreachable \(.*ECONNREFUSED.*\) \(starting with the others\)/);
    assert.match(lines[1]!, /listening on .*backends http:\/\/127\.0\.0\.1:8099, http:\/\/127\.0\.0\.1:8080/);
    for (let i = 0; i < 3; i++) {
      const curl = await lab.exec('client', ['curl', '-sS', '--max-time', '5', `http://${lab.serverV4}/file.txt`], { timeoutMs: 8000 });
      assert.equal(curl.stdout, FILE.toString(), curl.stderr);
    }
    const summary = await frontEnd.stop();
    assert.equal(counter(summary, 'http.upstream0_requests'), 0, `down from the start: ${summary}`);
    assert.equal(counter(summary, 'http.upstream1_requests'), 3, summary);

    const failed = await lab.exec(
      'server',
      [process.execPath, CLI, 'http', ...listenArgs(lab, 80), '--upstream', ABSENT, '--upstream', 'http://127.0.0.1:8098'],
      { timeoutMs: 10_000 },
    );
    assert.notEqual(failed.code, 0);
    const errorLines = failed.stderr.trimEnd().split('\n');
    assert.equal(errorLines.length, 1, failed.stderr);
    assert.match(errorLines[0]!, /no backend passed the health check: .*127\.0\.0\.1:8099.*127\.0\.0\.1:8098/);
  });

  test('one backend stopped under wrk: no errors beyond the requests in flight, it is marked down, then up and used again once restarted', async (t) => {
    let first = await backend('first', NGINX_PORT);
    const second = await backend('second', SECOND_PORT);
    t.after(() => second.stop());
    t.after(() => first.stop());
    const frontEnd = await startCli(lab, [
      'http',
      ...listenArgs(lab, 80),
      '--upstream',
      first.origin,
      '--upstream',
      second.origin,
      '--timeout',
      '3000',
      '--metrics',
      METRICS_ENDPOINT,
    ]);
    t.after(() => frontEnd.stop());
    const wrk = (seconds: number) =>
      lab.exec('client', ['wrk', '-t2', `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '5s', `http://${lab.serverV4}/file.txt`], {
        timeoutMs: (seconds + 30) * 1000,
      });
    const load = wrk(8);
    await sleep(2500);
    await first.stop();
    const run = await load;
    assert.equal(run.code, 0, run.stderr);
    const report = parseWrk(run.stdout);
    t.diagnostic(
      `${report.requests} requests, ${report.requestsPerSecond} req/s, ${report.socketErrors} socket errors, ${report.non2xx} non-2xx`,
    );
    assert.ok(report.requests > 1000, `a real load: ${run.stdout}`);
    // A response cut off mid-body when nginx closed its connections can only be a reset for the
    // client; every request it refused or reset before a response went to the other backend.
    assert.ok(report.socketErrors + report.non2xx <= CONNECTIONS, `at most the requests in flight failed:\n${run.stdout}`);
    assert.match(frontEnd.output(), /backend 127\.0\.0\.1:8080 is down after 3 failures in a row/);

    // Every shard worker's pool probes on its own: after the run (5 s down) all see it down.
    await sleep(2 * METRICS_INTERVAL_MS + 500);
    const down = await scrapeMetrics(lab);
    assert.deepEqual([...new Set(seriesOf(down, 'stateless_tcp_http_upstream_up', 0))], [0], `down in every shard worker:\n${down}`);
    const requestsWhileDown = relayCounter(down, 'upstream0_requests');

    first = await backend('first', NGINX_PORT);
    await lab.waitForLine(frontEnd.process, /backend 127\.0\.0\.1:8080 is up again/, 10_000);
    const upDeadline = Date.now() + 15_000;
    let upNow = '';
    for (;;) {
      await sleep(METRICS_INTERVAL_MS);
      upNow = await scrapeMetrics(lab);
      const states = seriesOf(upNow, 'stateless_tcp_http_upstream_up', 0);
      if (states.length > 0 && states.every((v) => v === 1)) break;
      assert.ok(Date.now() < upDeadline, `up again in every shard worker:\n${upNow}`);
    }
    const after = await wrk(2);
    const afterReport = parseWrk(after.stdout);
    assert.equal(afterReport.socketErrors + afterReport.non2xx, 0, after.stdout);

    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    assert.ok(counter(summary, 'http.upstream0_requests') > requestsWhileDown, `used again: ${summary}`);
    assert.ok(counter(summary, 'http.upstream0_failures') >= 3, summary);
    assert.ok(counter(summary, 'http.upstream0_marked_down') >= 1, summary);
    assert.equal(counter(summary, 'http.upstream0_marked_down'), counter(summary, 'http.upstream0_marked_up'), `up again: ${summary}`);
    assert.equal(counter(summary, 'http.upstream1_marked_down'), 0, summary);
    assert.equal(counter(summary, 'http.upstream1_failures'), 0, summary);
    assert.ok(counter(summary, 'http.upstream1_requests') > 0, summary);
    assert.equal(counter(summary, 'http.no_backend_up'), 0, summary);
  });
});
