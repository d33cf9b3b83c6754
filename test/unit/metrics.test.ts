/** Prometheus exposition merged from shard registries (prom-client's AggregatorRegistry). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exposition, pipelineMetrics, snapshot, type PipelineCounters } from '../../src/metrics.js';
import { DECODE_RESULT_NAMES, DecodeResult } from '../../src/wire/segment.js';
import { OUTCOME_NAMES, Outcome, TCP_EVENT_NAMES } from '../../src/tcp/counters.js';
import { DNS_PROTOCOL } from '../../src/dns/application.js';
import { RELAY_COUNTER_NAMES, RelayCounter } from '../../src/dns/relay.js';

function counters(frames: number, flows: number): PipelineCounters {
  const decodeCounts = new Float64Array(DECODE_RESULT_NAMES.length);
  decodeCounts[DecodeResult.OK] = frames;
  decodeCounts[DecodeResult.TRUNCATED] = 1;
  const outcomeCounts = new Float64Array(OUTCOME_NAMES.length);
  outcomeCounts[Outcome.SYN_ANSWERED] = frames;
  const applicationCounts = new Float64Array(RELAY_COUNTER_NAMES.length);
  applicationCounts[RelayCounter.QUERIES] = frames;
  return {
    decodeCounts, outcomeCounts, events: new Float64Array(TCP_EVENT_NAMES.length),
    protocol: DNS_PROTOCOL, relayCounts: applicationCounts,
    flows: () => flows, queuedBytes: () => 0, packetsSent: () => frames, sendFailures: () => 0,
  };
}

test('two shards: every counter per shard, values read at scrape time, latency histogram', async () => {
  const zero = counters(10, 2);
  const one = counters(5, 0);
  const shards = [pipelineMetrics(0, zero), pipelineMetrics(1, one)];
  shards[0]!.observeUpstreamLatency(0.0003);
  shards[1]!.observeUpstreamLatency(0.2);
  zero.decodeCounts[DecodeResult.OK] = 12; // counted after the registry was made: read when scraped
  const text = await exposition(await Promise.all(shards.map((s) => snapshot(s.registry))));
  assert.match(text, /^stateless_tcp_frames_total\{shard="0",result="ok"\} 12$/m);
  assert.match(text, /^stateless_tcp_frames_total\{shard="1",result="ok"\} 5$/m);
  assert.match(text, /^stateless_tcp_frames_total\{shard="1",result="truncated"\} 1$/m);
  assert.match(text, /^stateless_tcp_segments_total\{shard="0",outcome="syn_answered"\} 10$/m);
  assert.match(text, /^stateless_tcp_dns_total\{shard="1",counter="queries"\} 5$/m);
  assert.match(text, /^stateless_tcp_flows\{shard="0"\} 2$/m);
  assert.match(text, /^stateless_tcp_packets_sent_total\{shard="0",result="sent"\} 10$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_bucket\{le="0.0005",shard="0"\} 1$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_bucket\{le="0.0005",shard="1"\} 0$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_count\{shard="1"\} 1$/m);
  assert.doesNotMatch(text, /result="bad_tcp_checksum"/, 'zeros left out');
});
