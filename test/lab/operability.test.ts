/**
 * Issue 7: what an operator sees — options from a config file (the command line winning),
 * structured logs, and Prometheus metrics aggregated over the shard worker threads.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createLab, type Lab } from '../../lab/lab.js';
import { startCli, type RunningFrontEnd } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_ZONE } from '../../lab/zone.js';

/** The value of one series in Prometheus text (0 when absent). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('config file, logs and metrics', () => {
  let lab: Lab;
  let frontEnd: RunningFrontEnd;
  let metricsText = '';

  before(async () => {
    requireTools('dig', 'curl');
    lab = await createLab();
    const config = `${lab.tempDir}/stateless-tcp.yaml`;
    writeFileSync(
      config,
      [
        `interface: ${lab.serverInterface}`,
        'listen:',
        `  - ${lab.serverV4}:53`,
        `  - "[${lab.serverV6}]:53"`,
        `upstream: ${lab.upstream.v4.address}:${lab.upstream.v4.port}`,
        'workers: 1',
        'metrics: 127.0.0.1:9100',
        'close-after-response: true',
        '',
      ].join('\n'),
    );
    // The command line wins over the file.
    frontEnd = await startCli(lab, ['dns', '--config', config, '--workers', '2']);
    for (const server of [lab.serverV4, lab.serverV6, lab.serverV4, lab.serverV6]) {
      const dig = await lab.exec('client', ['dig', '+tcp', '+short', '+tries=1', '+time=3', `@${server}`, LAB_ZONE.www.name, 'A']);
      assert.equal(dig.stdout.trim(), LAB_ZONE.www.a);
    }
    // Shards report their metrics every second.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const scrape = await lab.exec('server', ['curl', '-sS', 'http://127.0.0.1:9100/metrics']);
    assert.equal(scrape.code, 0, scrape.stderr);
    metricsText = scrape.stdout;
  });
  after(async () => {
    await lab?.close();
  });

  test('options come from the file, the command line overriding it', () => {
    assert.match(frontEnd.output(), /listening on 198\.18\.0\.2:53, \[2001:2::2\]:53 at \S+ with 2 shard workers/);
  });

  test('logs are JSON lines with a level, a time and a message', () => {
    const lines = frontEnd.output().trim().split('\n');
    const start = JSON.parse(lines.find((line) => line.includes('listening on'))!) as Record<string, unknown>;
    assert.equal(start.level, 30);
    assert.equal(start.name, 'stateless-tcp dns');
    assert.match(String(start.time), /^\d{4}-\d\d-\d\dT/);
  });

  test('/metrics: per-shard counters summing to what was done, the capture and rings, upstream latency', () => {
    const perShard = (name: string): number =>
      sample(metricsText, name.replace('SHARD', '0')) + sample(metricsText, name.replace('SHARD', '1'));
    // SYNs are answered by the capture thread itself (workers/capture/thread.ts), in the same series.
    const withCapture = (name: string): number => perShard(name) + sample(metricsText, name.replace('SHARD', 'capture'));
    assert.equal(withCapture('stateless_tcp_segments_total{shard="SHARD",outcome="syn_answered"}'), 4, metricsText);
    assert.equal(
      sample(metricsText, 'stateless_tcp_segments_total{shard="capture",outcome="syn_answered"}'),
      4,
      'no flow lives for these 4-tuples: the capture thread answers',
    );
    assert.equal(perShard('stateless_tcp_dns_total{shard="SHARD",counter="queries"}'), 4);
    assert.equal(perShard('stateless_tcp_upstream_latency_seconds_count{shard="SHARD"}'), 4);
    assert.ok(
      withCapture('stateless_tcp_packets_sent_total{shard="SHARD",result="sent"}') >= 12,
      'SYN+ACK, answer+FIN, ACK of FIN per query',
    );
    assert.ok(sample(metricsText, 'stateless_tcp_capture_packets_total{result="received"}') >= 16);
    assert.equal(sample(metricsText, 'stateless_tcp_capture_packets_total{result="dropped"}'), 0);
    assert.match(
      metricsText,
      /^stateless_tcp_capture_established_dropped_total 0$/m,
      'reported, and nothing of an open connection dropped',
    );
    assert.ok(
      perShard('stateless_tcp_ring_frames_total{shard="SHARD",result="in"}') >= 8,
      'the query and the FIN of each: the capture thread handles SYNs and the bare ACKs of connections without a flow',
    );
    assert.ok(
      sample(metricsText, 'stateless_tcp_segments_total{shard="capture",outcome="ignored"}') >= 4,
      'the ACK that completes each handshake',
    );
    assert.equal(sample(metricsText, 'stateless_tcp_shard_restarts_total{shard="0"}'), 0);
    assert.match(metricsText, /^# TYPE stateless_tcp_upstream_latency_seconds histogram$/m);
  });

  test('the stop line carries every counter', async () => {
    const summary = await frontEnd.stop();
    assert.match(summary, /"msg":"stopped on SIGTERM: .*dns\.queries=4 /);
  });
});
