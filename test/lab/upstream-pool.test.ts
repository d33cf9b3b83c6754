/**
 * An upstream pool in the lab: the lab's unbound (127.0.0.1@5300) and a second one on
 * 127.0.0.1@5301, both in the server namespace. The first is stopped during a dnsperf run: queries
 * keep being answered (failover, then the health checks mark it down), and it comes back up once
 * restarted. Weights split the queries; the health check's options take effect; an upstream that
 * answers probes but drops real queries (an nftables rule) is marked down by their timeouts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dnsperf } from '../../lab/dnsperf.js';
import { createLab, type Lab, type Side } from '../../lab/lab.js';
import {
  CLI,
  listenArgs,
  METRICS_ENDPOINT,
  metricTotal,
  scrapeMetrics,
  startCli,
  startFrontEnd,
  summaryCounter as counter,
} from '../../lab/stateless-tcp.js';
import { startPcapCapture, readUdpDatagrams } from '../support/tcpdump.js';
import { METRICS_INTERVAL_MS } from '../../workers/shard/protocol.js';
import dnsPacket from 'dns-packet';
import { requireTools } from '../../lab/tools.js';
import { LAB_UPSTREAM, REMOTE_UPSTREAM, startUnbound, type UpstreamEndpoints } from '../../lab/unbound.js';
import { LAB_ZONE } from '../../lab/zone.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const SECOND: UpstreamEndpoints = { v4: { address: '127.0.0.1', port: 5301 }, v6: { address: '::1', port: 5301 } };

/** Another unbound serving the lab's zone, in namespace `side`, listening on `where`. */
function startUnboundIn(lab: Lab, side: Side, directory: string, where: UpstreamEndpoints) {
  mkdirSync(directory, { recursive: true });
  return startUnbound(
    {
      spawn: (argv) => lab.spawn(side, argv),
      exec: (argv, options) => lab.exec(side, argv, options),
      assertOpen: () => {},
      recentOutput: () => '',
    },
    directory,
    [],
    where,
  );
}

describe('stateless-tcp dns with two upstreams', () => {
  let lab: Lab;
  let queryFile: string;
  const unboundIn = (directory: string, where: UpstreamEndpoints) => startUnboundIn(lab, 'server', directory, where);
  before(async () => {
    requireTools('dnsperf', 'dig', 'unbound');
    lab = await createLab();
    queryFile = `${lab.tempDir}/queries`;
    writeFileSync(queryFile, `${LAB_ZONE.www.name} A\n`);
  });
  after(async () => {
    await lab?.close();
  });

  test('start-up: one line for each upstream that does not answer, and it starts; none answering fails with one line', async (t) => {
    // The silent one first: it would get the first queries (ties go to the first) if it started up.
    const frontEnd = await startCli(lab, [
      'dns',
      '--interface',
      lab.serverInterface,
      '--listen',
      `${lab.serverV4}:53`,
      '--upstream',
      '127.0.0.1:5399',
      '--upstream',
      `${lab.upstream.v4.address}:${lab.upstream.v4.port}`,
    ]);
    t.after(() => frontEnd.stop());
    const silent = frontEnd
      .output()
      .split('\n')
      .filter((line) => /127\.0\.0\.1:5399 (did not answer|is unreachable)/.test(line));
    assert.equal(silent.length, 1, `one line: ${frontEnd.output()}`);
    assert.match(silent[0]!, /starting with the others/);
    const dig = await lab.exec('client', ['dig', '+tcp', '+short', '+tries=1', '+time=3', `@${lab.serverV4}`, LAB_ZONE.www.name, 'A']);
    assert.equal(dig.stdout.trim(), LAB_ZONE.www.a);
    const startSummary = await frontEnd.stop();
    assert.equal(counter(startSummary, 'dns.upstream0_queries'), 0, `down from the start: ${startSummary}`);
    assert.equal(counter(startSummary, 'dns.failovers'), 0, startSummary);
    const failed = await lab.exec(
      'server',
      [
        process.execPath,
        CLI,
        'dns',
        '--interface',
        lab.serverInterface,
        '--listen',
        `${lab.serverV4}:53`,
        '--upstream',
        '127.0.0.1:5398',
        '--upstream',
        '127.0.0.1:5399',
      ],
      { timeoutMs: 8000 },
    );
    assert.notEqual(failed.code, 0);
    const lines = failed.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, failed.stderr);
    assert.match(lines[0]!, /no upstream answered: .*127\.0\.0\.1:5398.*127\.0\.0\.1:5399/);
  });

  test('one upstream stopped under dnsperf: ≥ 99.9 % NOERROR, answers go on, and it is marked down, then up once restarted', async (t) => {
    const second = await unboundIn(`${lab.tempDir}/second`, SECOND);
    t.after(() => lab.stop(second));
    const frontEnd = await startFrontEnd(lab, ['--upstream', `${SECOND.v4.address}:${SECOND.v4.port}`, '--timeout', '1000']);
    t.after(() => frontEnd.stop());
    const load = dnsperf(lab, queryFile, ['-c', '10', '-q', '20', '-l', '8']);
    await sleep(2000);
    await lab.stop(lab.unbound!);
    const result = await load;
    t.diagnostic(
      `${result.qps} qps, ${result.completed}/${result.sent} completed, ${result.lost} lost, ${JSON.stringify(result.responseCodes)}`,
    );
    const noerror = result.responseCodes.NOERROR ?? 0;
    assert.ok(result.sent > 1000, `a real load: ${result.sent} queries`);
    assert.ok(noerror / result.sent >= 0.999, `≥ 99.9 % NOERROR: ${noerror}/${result.sent}\n${result.output}`);
    const dig = await lab.exec('client', ['dig', '+tcp', '+short', '+tries=1', '+time=3', `@${lab.serverV4}`, LAB_ZONE.www.name, 'A']);
    assert.equal(dig.stdout.trim(), LAB_ZONE.www.a, 'answered after the stop');
    assert.match(frontEnd.output(), /upstream 127\.0\.0\.1:5300 is down/);

    const restarted = await unboundIn(`${lab.tempDir}/restarted`, LAB_UPSTREAM);
    t.after(() => lab.stop(restarted));
    await lab.waitForLine(frontEnd.process, /upstream 127\.0\.0\.1:5300 is up again/, 5000);
    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    assert.ok(counter(summary, 'dns.upstreams_marked_down') >= 1, summary);
    assert.ok(counter(summary, 'dns.upstreams_marked_up') >= 1, summary);
    assert.ok(counter(summary, 'dns.upstream0_failed_over') >= 1, summary);
    assert.ok(counter(summary, 'dns.upstream0_probe_failures') >= 3, summary);
    assert.ok(counter(summary, 'dns.upstream1_queries') > 0, summary);
    assert.equal(counter(summary, 'dns.upstream0_marked_down'), counter(summary, 'dns.upstream0_marked_up'), `up again: ${summary}`);
    assert.equal(counter(summary, 'dns.upstream1_marked_down'), 0, summary);
  });
});

/**
 * The pool's options, with the resolvers on another host: the lab's unbound (198.18.1.1@5300),
 * which stays up, and for each test a second one of its own (198.18.1.1@5301), both in the
 * resolver's namespace, where a capture sees each datagram once (on lo it would see each twice).
 */
describe('stateless-tcp dns pool options: weights, health checks, query timeouts', () => {
  const SECOND_REMOTE: UpstreamEndpoints = {
    v4: { address: REMOTE_UPSTREAM.v4.address, port: 5301 },
    v6: { address: REMOTE_UPSTREAM.v6.address, port: 5301 },
  };
  const FIRST_ADDRESS = `${REMOTE_UPSTREAM.v4.address}:${REMOTE_UPSTREAM.v4.port}`;
  const SECOND_ADDRESS = `${SECOND_REMOTE.v4.address}:${SECOND_REMOTE.v4.port}`;
  /** A log line's "upstream ADDR:PORT" as a pattern. */
  const upstreamPattern = (address: string, rest: string): RegExp => new RegExp(`upstream ${address.replaceAll('.', '\\.')} ${rest}`);
  let lab: Lab;
  let queryFile: string;
  const unboundIn = (directory: string) => startUnboundIn(lab, 'resolver', directory, SECOND_REMOTE);
  before(async () => {
    requireTools('dnsperf', 'dig', 'unbound');
    lab = await createLab({ remoteResolver: true });
    queryFile = `${lab.tempDir}/queries`;
    writeFileSync(queryFile, `${LAB_ZONE.www.name} A\n`);
  });
  after(async () => {
    await lab?.close();
  });

  test('weights 1 and 3 (--upstream-policy weighted): the queries split 1:3; metrics show each upstream up, with its latency', async (t) => {
    const second = await unboundIn(`${lab.tempDir}/weighted`);
    t.after(() => lab.stop(second));
    const frontEnd = await startCli(lab, [
      'dns',
      ...listenArgs(lab, 53),
      '--upstream',
      `${FIRST_ADDRESS},weight=1`,
      '--upstream',
      `${SECOND_ADDRESS},weight=3`,
      '--upstream-policy',
      'weighted',
      '--metrics',
      METRICS_ENDPOINT,
    ]);
    t.after(() => frontEnd.stop());
    assert.match(
      frontEnd.output(),
      upstreamPattern(FIRST_ADDRESS, `\\(weight 1\\), ${SECOND_ADDRESS.replaceAll('.', '\\.')} \\(weight 3\\)`),
    );
    const result = await dnsperf(lab, queryFile, ['-c', '4', '-q', '20', '-l', '4']);
    assert.ok(result.sent > 1000, `a real load: ${result.sent} queries`);
    assert.equal(result.responseCodes.NOERROR, result.sent, result.output);
    // Every shard worker reports its metrics each second: two reports after the run, all is in.
    await sleep(2 * METRICS_INTERVAL_MS + 500);
    const metrics = await scrapeMetrics(lab);
    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    const queries = [counter(summary, 'dns.upstream0_queries'), counter(summary, 'dns.upstream1_queries')];
    const share = queries[1]! / (queries[0]! + queries[1]!);
    t.diagnostic(`queries ${queries.join(' : ')}, the second's share ${share.toFixed(4)}`);
    assert.ok(share > 0.72 && share < 0.78, `3/4 of the queries to the weight-3 upstream: ${queries.join(' : ')}`);
    for (const n of [0, 1]) {
      // Each query sent is answered or left unanswered, once: the counts add up.
      const answers = counter(summary, `dns.upstream${n}_answers`);
      assert.equal(answers + counter(summary, `dns.upstream${n}_timeouts`), queries[n], `upstream${n}: ${summary}`);
      const series = (metric: string): RegExp =>
        new RegExp(
          `^${metric}\\{[^}]*upstream="${n}",address="${[FIRST_ADDRESS, SECOND_ADDRESS][n]!.replaceAll('.', '\\.')}"\\} (\\S+)$`,
          'gm',
        );
      const up = [...metrics.matchAll(series('stateless_tcp_dns_upstream_up'))].map((m) => Number(m[1]));
      assert.ok(up.length > 0 && up.every((v) => v === 1), `upstream${n} up in every shard worker:\n${metrics}`);
      const answered = [...metrics.matchAll(series('stateless_tcp_dns_upstream_latency_seconds_count'))].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      );
      assert.equal(answered, answers, `upstream${n}: one latency per answer`);
    }
    // The stop line's upstreamN_up: how many shard workers see it up (all of them).
    assert.equal(
      counter(summary, 'dns.upstream0_up') + counter(summary, 'dns.upstream1_up'),
      metricTotal(metrics, 'stateless_tcp_dns_upstream_up'),
    );
  });

  test('health-check options: probes ask the configured question each --health-check-interval; a stopped upstream is down after --health-check-down-after of them', async (t) => {
    requireTools('tcpdump');
    const second = await unboundIn(`${lab.tempDir}/probed`);
    t.after(() => lab.stop(second));
    const frontEnd = await startCli(lab, [
      'dns',
      ...listenArgs(lab, 53),
      '--upstream',
      FIRST_ADDRESS,
      '--upstream',
      SECOND_ADDRESS,
      '--health-check-name',
      LAB_ZONE.www.name,
      '--health-check-type',
      'AAAA',
      '--health-check-interval',
      '250',
      '--health-check-timeout',
      '200',
      '--health-check-down-after',
      '2',
    ]);
    t.after(() => frontEnd.stop());
    // What reaches the first upstream: no client asks anything, so these are the probes.
    const file = `${lab.tempDir}/probes.pcap`;
    const capture = await startPcapCapture(lab, 'resolver', lab.resolverInterface!, file, `udp and dst port ${REMOTE_UPSTREAM.v4.port}`);
    await sleep(1500);
    await capture.stop();
    const probes = readUdpDatagrams(file).map((d) => dnsPacket.decode(Buffer.from(d.payload)));
    t.diagnostic(`${probes.length} probes to the first upstream in 1.5 s`);
    assert.ok(probes.length >= 2, `probes each 250 ms: ${probes.length}`);
    for (const probe of probes) assert.deepEqual(probe.questions, [{ name: 'www.lab.test', type: 'AAAA', class: 'IN' }]);

    await lab.stop(second);
    const stopped = Date.now();
    const [line] = await lab.waitForLine(frontEnd.process, upstreamPattern(SECOND_ADDRESS, 'is down.*'), 10_000);
    t.diagnostic(`${line} (${Date.now() - stopped} ms after the stop)`);
    assert.match(
      line,
      // Its host refuses the probes at once (ICMP port unreachable); a silent one would let each run out its 200 ms.
      upstreamPattern(SECOND_ADDRESS, 'is down after 2 failures in a row; the last: upstream .* is unreachable'),
    );
    // Probes go on each 250 ms: 3 s of them are far more than the default 1 s would make (at most 2 × 4).
    await sleep(3000);
    const summary = await frontEnd.stop();
    const failures = counter(summary, 'dns.upstream1_probe_failures');
    t.diagnostic(`${failures} probe failures; ${summary}`);
    assert.ok(failures >= 3000 / 250, `probed each 250 ms: ${failures} failures in 3 s and more`);
    assert.equal(counter(summary, 'dns.upstream1_up'), 0, `down in every shard worker: ${summary}`);
  });

  test('an upstream that answers probes but drops real queries is marked down by their timeouts before the next probe, and up again by it', async (t) => {
    requireTools('nft');
    const second = await unboundIn(`${lab.tempDir}/dropping`);
    t.after(() => lab.stop(second));
    // The first upstream drops every UDP query whose name is not the root: the first byte of the
    // question (UDP header 8 + DNS header 12 bytes into the datagram, 160 bits) is 0 only for "."
    // — the probes' `. SOA`.
    const table = 'stateless_tcp_lab_drop_queries';
    const nft = async (...args: string[]): Promise<string> => {
      const result = await lab.exec('resolver', ['nft', ...args]);
      assert.equal(result.code, 0, `nft ${args.join(' ')}: ${result.stderr}`);
      return result.stdout;
    };
    await nft('add', 'table', 'inet', table);
    t.after(() => lab.exec('server', ['nft', 'delete', 'table', 'inet', table]));
    await nft('add', 'chain', 'inet', table, 'input', '{ type filter hook input priority 0; }');
    await nft(
      'add',
      'rule',
      'inet',
      table,
      'input',
      'udp',
      'dport',
      String(LAB_UPSTREAM.v4.port),
      '@th,160,8',
      '!=',
      '0',
      'counter',
      'drop',
    );
    // One shard worker, so one pool sees every query; probes far apart, so that none comes between the queries.
    const frontEnd = await startCli(lab, [
      'dns',
      ...listenArgs(lab, 53),
      '--workers',
      '1',
      '--upstream',
      FIRST_ADDRESS,
      '--upstream',
      SECOND_ADDRESS,
      '--timeout',
      '1000',
      '--health-check-interval',
      '10000',
    ]);
    t.after(() => frontEnd.stop());
    const ask = async (): Promise<string> => {
      const out = await lab.exec('client', ['dig', '+tcp', '+short', '+tries=1', '+time=5', `@${lab.serverV4}`, LAB_ZONE.www.name, 'A']);
      return out.stdout.trim();
    };
    // Each goes to the first upstream (least outstanding, ties to the first) and is answered by
    // the second after half the timeout; the third unanswered marks the first down.
    for (let i = 0; i < 3; i++) assert.equal(await ask(), LAB_ZONE.www.a, `query ${i}`);
    const [line] = await lab.waitForLine(frontEnd.process, upstreamPattern(FIRST_ADDRESS, 'is down.*'), 5000);
    assert.match(line, /after 3 failures in a row; the last: it left a query unanswered within its time/);
    assert.equal(await ask(), LAB_ZONE.www.a, 'the next query straight to the second upstream');
    // The next probe gets through the rule and brings it back.
    await lab.waitForLine(frontEnd.process, upstreamPattern(FIRST_ADDRESS, 'is up again'), 20_000);
    const dropped = /counter packets (\d+)/.exec(await nft('list', 'table', 'inet', table))?.[1];
    const summary = await frontEnd.stop();
    t.diagnostic(`${dropped} queries dropped by the rule; ${summary}`);
    assert.equal(counter(summary, 'dns.upstream0_queries'), 3, summary);
    assert.equal(counter(summary, 'dns.upstream0_timeouts'), 3, summary);
    assert.equal(counter(summary, 'dns.upstream0_answers'), 0, summary);
    assert.equal(counter(summary, 'dns.upstream0_probe_failures'), 0, `its probes were answered: ${summary}`);
    assert.equal(counter(summary, 'dns.upstream0_marked_down'), 1, summary);
    assert.equal(counter(summary, 'dns.upstream0_marked_up'), 1, summary);
    assert.equal(counter(summary, 'dns.upstream0_up'), 1, summary);
    assert.equal(counter(summary, 'dns.failovers'), 3, summary);
    assert.equal(counter(summary, 'dns.upstream1_answers'), 4, summary);
    assert.ok(Number(dropped) >= 3, `the rule dropped the queries: ${dropped}`);
  });
});
