/**
 * An upstream pool in the lab: the lab's unbound (127.0.0.1@5300) and a second one on
 * 127.0.0.1@5301, both in the server namespace. The first is stopped during a dnsperf run: queries
 * keep being answered (failover, then the health checks mark it down), and it comes back up once
 * restarted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dnsperf } from '../../lab/dnsperf.js';
import { createLab, type Lab } from '../../lab/lab.js';
import { CLI, startCli, startFrontEnd, summaryCounter as counter } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_UPSTREAM, startUnbound, type UpstreamEndpoints } from '../../lab/unbound.js';
import { LAB_ZONE } from '../../lab/zone.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const SECOND: UpstreamEndpoints = { v4: { address: '127.0.0.1', port: 5301 }, v6: { address: '::1', port: 5301 } };

describe('stateless-tcp dns with two upstreams', () => {
  let lab: Lab;
  let queryFile: string;
  const unboundIn = (directory: string, where: UpstreamEndpoints) => {
    mkdirSync(directory, { recursive: true });
    return startUnbound(
      {
        spawn: (argv) => lab.spawn('server', argv),
        exec: (argv, options) => lab.exec('server', argv, options),
        assertOpen: () => {},
        recentOutput: () => '',
      },
      directory,
      [],
      where,
    );
  };
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
