/**
 * Prometheus exposition merged from shard registries (prom-client's AggregatorRegistry), and the
 * stop summary rendered from the same snapshots (shards', the main thread's, the kernel
 * transport's).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  countersOnly,
  exposition,
  frontEndMetrics,
  kernelTransportMetrics,
  pipelineMetrics,
  snapshot,
  summaryLine,
  type FrontEndCounters,
  type PipelineCounters,
} from '../../src/metrics.js';
import { DECODE_RESULT_NAMES, DecodeResult } from '../../src/wire/segment.js';
import { OUTCOME_NAMES, Outcome, TCP_EVENT_NAMES, TcpEvent } from '../../src/tcp/counters.js';
import { DNS_PROTOCOL } from '../../src/dns/application.js';
import { RELAY_COUNTER_NAMES, RelayCounter } from '../../src/dns/relay.js';
import { HTTP_PROTOCOL } from '../../src/http/application.js';
import { HTTP_COUNTER_NAMES, HttpCounter } from '../../src/http/relay.js';
import type { UpstreamsView } from '../../src/tcp/transport.js';

function counters(frames: number, flows: number): PipelineCounters {
  const decodeCounts = new Float64Array(DECODE_RESULT_NAMES.length);
  decodeCounts[DecodeResult.OK] = frames;
  decodeCounts[DecodeResult.TRUNCATED] = 1;
  const outcomeCounts = new Float64Array(OUTCOME_NAMES.length);
  outcomeCounts[Outcome.SYN_ANSWERED] = frames;
  const applicationCounts = new Float64Array(RELAY_COUNTER_NAMES.length);
  applicationCounts[RelayCounter.QUERIES] = frames;
  return {
    decodeCounts,
    checksumOffloaded: () => 0,
    checksumValidated: () => 0,
    linkFrames: () => 0,
    linkSegments: () => 0,
    outcomeCounts,
    events: new Float64Array(TCP_EVENT_NAMES.length),
    protocol: DNS_PROTOCOL,
    relayCounts: applicationCounts,
    flows: () => flows,
    queuedBytes: () => 0,
    packetsSent: () => frames,
    sendFailures: () => 0,
  };
}

test('two shards: every counter per shard, values read at scrape time, latency histogram', async () => {
  const zero = counters(10, 2);
  const one = counters(5, 0);
  const shards = [pipelineMetrics(0, zero), pipelineMetrics(1, one)];
  shards[0]!.observeUpstreamLatency(0.0003);
  shards[1]!.observeUpstreamLatency(0.2);
  shards[1]!.observeUpstreamLatency(0.25); // on a bound: counted in its bucket (le, less or equal)
  shards[1]!.observeUpstreamLatency(7); // above the last bound: +Inf only
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
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_bucket\{le="0.1",shard="1"\} 0$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_bucket\{le="0.25",shard="1"\} 2$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_bucket\{le="5",shard="1"\} 2$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_bucket\{le="\+Inf",shard="1"\} 3$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_sum\{shard="1"\} 7.45$/m);
  assert.match(text, /^stateless_tcp_upstream_latency_seconds_count\{shard="1"\} 3$/m);
  assert.doesNotMatch(text, /result="bad_tcp_checksum"/, 'zeros left out');
});

// ---------------------------------------------------------------------------------------------
// The stop summary
// ---------------------------------------------------------------------------------------------

/** A shard's counters with distinct values, so that a sum or a misattribution shows. */
function shardCounters(base: number, flows: number): PipelineCounters {
  const decodeCounts = new Float64Array(DECODE_RESULT_NAMES.length);
  decodeCounts[DecodeResult.OK] = base + 1;
  decodeCounts[DecodeResult.BAD_TCP_CHECKSUM] = base + 2;
  const outcomeCounts = new Float64Array(OUTCOME_NAMES.length);
  outcomeCounts[Outcome.SYN_ANSWERED] = base + 3;
  outcomeCounts[Outcome.DATA] = base + 4;
  outcomeCounts[Outcome.IGNORED] = base + 5;
  const events = new Float64Array(TCP_EVENT_NAMES.length);
  events[TcpEvent.FLOWS_CREATED] = base + 6;
  const relayCounts = new Float64Array(RELAY_COUNTER_NAMES.length);
  relayCounts[RelayCounter.QUERIES] = base + 7;
  relayCounts[RelayCounter.ANSWERS] = base + 8;
  return {
    decodeCounts,
    checksumOffloaded: () => base + 11,
    checksumValidated: () => base + 12,
    linkFrames: () => base + 13,
    linkSegments: () => base + 14,
    outcomeCounts,
    events,
    protocol: DNS_PROTOCOL,
    relayCounts,
    flows: () => flows,
    queuedBytes: () => base + 9,
    packetsSent: () => base + 10,
    sendFailures: () => base + 11,
  };
}

function frontEnd(): FrontEndCounters {
  return {
    capture: () => ({
      received: 5000,
      dropped: 30,
      establishedDropped: 3,
      synAnswered: 700,
      sendFailed: 2,
      ignored: 900,
      martianSource: 40,
      coalescedFrames: 50,
      coalescedPieces: 400,
    }),
    shards: () => [
      { shard: 0, ringIn: 1100, ringDropped: 4, restarts: 0 },
      { shard: 1, ringIn: 2200, ringDropped: 0, restarts: 1 },
    ],
  };
}

/** `name=value` pairs of a summary line, in order. */
function pairs(line: string): [string, number][] {
  return line.split(' ').map((pair) => {
    const m = /^([a-z0-9_.]+)=(-?\d+(?:\.\d+)?)$/.exec(pair);
    assert.ok(m !== null, `"${pair}" in "${line}"`);
    return [m[1]!, Number(m[2])];
  });
}

test('the stop summary: shard counters summed, the capture thread and rings added, per-shard pairs', async () => {
  const shards = [pipelineMetrics(0, shardCounters(100, 2)), pipelineMetrics(1, shardCounters(200, 5))];
  shards[0]!.observeUpstreamLatency(0.001);
  const snapshots = [...(await Promise.all(shards.map((s) => snapshot(s.registry)))), await snapshot(frontEndMetrics(frontEnd()))];
  const line = summaryLine(snapshots);
  const summary = pairs(line);
  assert.equal(new Set(summary.map(([name]) => name)).size, summary.length, `each name once: ${line}`);
  assert.deepEqual(Object.fromEntries(summary), {
    'decode.ok': 101 + 201,
    'decode.bad_tcp_checksum': 102 + 202,
    'decode.checksum_offloaded': 111 + 211,
    'decode.checksum_validated': 112 + 212,
    'link.frames': 113 + 213,
    'link.segments': 114 + 214,
    'tcp.ignored': 105 + 205 + 900,
    'tcp.syn_answered': 103 + 203 + 700,
    'tcp.data': 104 + 204,
    'tcp.flows_created': 106 + 206,
    'dns.queries': 107 + 207,
    'dns.answers': 108 + 208,
    'tcp.flows': 2 + 5,
    'shard0.flows': 2,
    'shard1.flows': 5,
    'tcp.queued_bytes': 109 + 209,
    sent: 110 + 210 + (700 - 2),
    send_failed: 111 + 211 + 2,
    'shard0.replies_out': 110,
    'shard1.replies_out': 210,
    'pcap.received': 5000,
    'pcap.dropped': 30,
    'pcap.established_dropped': 3,
    'capture.syn_answered': 700,
    'capture.ignored': 900,
    'tcp.martian_source': 40,
    'capture.martian_source': 40,
    'capture.coalesced_frames': 50,
    'capture.coalesced_pieces': 400,
    'shard0.packets_in': 1100,
    'shard0.ring_drops': 4,
    'shard1.packets_in': 2200,
    'shard1.ring_drops': 0,
    'shard0.restarts': 0,
    'shard1.restarts': 1,
  });
  // In the order first met: the shards' series before the main thread's.
  assert.equal(summary[0]![0], 'decode.ok');
  assert.ok(summary.findIndex(([name]) => name === 'dns.queries') < summary.findIndex(([name]) => name === 'pcap.received'));
  assert.doesNotMatch(line, /latency/, 'no histogram');
  assert.doesNotMatch(line, /truncated|cookie_failed|retransmit/, 'counters at zero are left out');
});

test('the stop summary of counters only: gauges dropped, counters kept', async () => {
  const shard = await snapshot(pipelineMetrics(0, shardCounters(100, 2)).registry);
  const kept = countersOnly(shard);
  assert.ok(kept.length < shard.length);
  for (const metric of kept) assert.notEqual(String(metric.type), 'gauge', metric.name);
  assert.deepEqual(
    kept.map((metric) => metric.name),
    shard.filter((metric) => !['stateless_tcp_flows', 'stateless_tcp_queued_bytes'].includes(metric.name)).map((metric) => metric.name),
  );
  const summary = Object.fromEntries(pairs(summaryLine([kept])));
  assert.equal(summary['decode.ok'], 101);
  assert.equal(summary['shard0.replies_out'], 110);
  assert.equal(summary['tcp.flows'], undefined);
  assert.equal(summary['shard0.flows'], undefined);
  assert.equal(summary['tcp.queued_bytes'], undefined);
  // A dead worker's counters (countersOnly) and its successor's snapshot add up.
  const successor = await snapshot(pipelineMetrics(0, shardCounters(1000, 1)).registry);
  const both = Object.fromEntries(pairs(summaryLine([kept, successor])));
  assert.equal(both['decode.ok'], 101 + 1001);
  assert.equal(both['shard0.flows'], 1, 'the gauge of the live worker only');
});

test('the stop summary of the kernel transport: its connections and the relay counters', async () => {
  const counts = new Float64Array(HTTP_COUNTER_NAMES.length);
  counts[HttpCounter.REQUESTS] = 12;
  counts[HttpCounter.BACKEND_TIMEOUTS] = 1;
  const metrics = kernelTransportMetrics(HTTP_PROTOCOL, counts, () => ({
    accepted: 9,
    open: 2,
    answersDropped: 1,
    pipelineFull: 3,
    deadlinesMissed: 4,
  }));
  metrics.observeUpstreamLatency(0.01);
  assert.deepEqual(Object.fromEntries(pairs(summaryLine([await snapshot(metrics.registry)]))), {
    'http.requests': 12,
    'http.backend_timeouts': 1,
    'tcp.pipeline_full': 3,
    'tcp.deadlines_missed': 4,
    'tcp.accepted': 9,
    'tcp.open': 2,
    'tcp.answers_dropped': 1,
  });
});

test('the stop summary of an idle front end: gauges, capture and per-shard pairs at 0, no counter family', async () => {
  const idle = (): PipelineCounters => ({
    decodeCounts: new Float64Array(DECODE_RESULT_NAMES.length),
    checksumOffloaded: () => 0,
    checksumValidated: () => 0,
    linkFrames: () => 0,
    linkSegments: () => 0,
    outcomeCounts: new Float64Array(OUTCOME_NAMES.length),
    events: new Float64Array(TCP_EVENT_NAMES.length),
    protocol: DNS_PROTOCOL,
    relayCounts: new Float64Array(RELAY_COUNTER_NAMES.length),
    flows: () => 0,
    queuedBytes: () => 0,
    packetsSent: () => 0,
    sendFailures: () => 0,
  });
  const main = frontEndMetrics({
    capture: () => ({
      received: 0,
      dropped: 0,
      establishedDropped: 0,
      synAnswered: 0,
      sendFailed: 0,
      ignored: 0,
      martianSource: 0,
      coalescedFrames: 0,
      coalescedPieces: 0,
    }),
    shards: () => [{ shard: 0, ringIn: 0, ringDropped: 0, restarts: 0 }],
  });
  const summary = pairs(summaryLine([await snapshot(pipelineMetrics(0, idle()).registry), await snapshot(main)]));
  assert.deepEqual(summary.map(([name]) => name).sort(), [
    'capture.coalesced_frames',
    'capture.coalesced_pieces',
    'capture.ignored',
    'capture.martian_source',
    'capture.syn_answered',
    'pcap.dropped',
    'pcap.established_dropped',
    'pcap.received',
    'send_failed',
    'sent',
    'shard0.flows',
    'shard0.packets_in',
    'shard0.replies_out',
    'shard0.restarts',
    'shard0.ring_drops',
    'tcp.flows',
    'tcp.ignored',
    'tcp.martian_source',
    'tcp.queued_bytes',
    'tcp.syn_answered',
  ]);
  for (const [name, value] of summary) assert.equal(value, 0, name);
});

test('the stop summary of nothing is empty', () => {
  assert.equal(summaryLine([]), '');
});

test("a pool's upstreams: each one's state as a gauge and its latency as a histogram, labelled with its index and address; upstreamN_up in the summary", async () => {
  const up = [true, false];
  /** Each shard worker has its own pool; here all three share one state. */
  const viewOf = (): UpstreamsView => ({ names: ['192.0.2.1:53', '[2001:db8::1]:53'], isUp: (index) => up[index]!, observeLatency: null });
  const views = [viewOf(), viewOf(), viewOf()];
  const shards = views.map((upstreams, shard) => pipelineMetrics(shard, { ...counters(1, 0), upstreams }));
  views[2]!.observeLatency!(0, 0.0004);
  views[2]!.observeLatency!(0, 0.002);
  views[2]!.observeLatency!(1, 0.3);
  up[1] = true; // read when scraped
  const text = await exposition(await Promise.all(shards.map((s) => snapshot(s.registry))));
  assert.match(text, /^stateless_tcp_dns_upstream_up\{shard="2",upstream="0",address="192\.0\.2\.1:53"\} 1$/m);
  assert.match(text, /^stateless_tcp_dns_upstream_up\{shard="0",upstream="1",address="\[2001:db8::1\]:53"\} 1$/m);
  assert.match(text, /^stateless_tcp_dns_upstream_latency_seconds_count\{shard="2",upstream="0",address="192\.0\.2\.1:53"\} 2$/m);
  assert.match(
    text,
    /^stateless_tcp_dns_upstream_latency_seconds_bucket\{le="0\.0005",shard="2",upstream="0",address="192\.0\.2\.1:53"\} 1$/m,
  );
  assert.match(text, /^stateless_tcp_dns_upstream_latency_seconds_count\{shard="2",upstream="1",address="\[2001:db8::1\]:53"\} 1$/m);
  up[0] = false;
  const summary = summaryLine(await Promise.all(shards.map((s) => snapshot(s.registry))));
  assert.match(summary, / dns\.upstream0_up=0 dns\.upstream1_up=3 /, 'how many shard workers see each up');
});
