/**
 * Counters reach the operator by one path: Prometheus registries (prom-client). Each pipeline —
 * one per shard worker — keeps its counters in plain typed arrays on the hot path; a registry
 * per pipeline reads them only when scraped (`collect`), labelled with the shard. Every shard
 * worker sends its registry's snapshot to the main thread about once a second and once more when
 * it stops; the main thread adds its own (capture thread, rings, restarts). From that one set of
 * snapshots come both the /metrics page (`exposition`, through prom-client's AggregatorRegistry,
 * which sums series with the same labels) and the stop summary line (`summaryLine`).
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DECODE_RESULT_NAMES } from './wire/segment.js';
import { OUTCOME_NAMES, TCP_EVENT_NAMES } from './tcp/counters.js';
import type { Protocol, UpstreamsView } from './tcp/transport.js';
import type { KernelTransportStats } from './io/kernel-transport.js';

/** What a pipeline's registry reads when scraped. */
export interface PipelineCounters {
  decodeCounts: Float64Array;
  /** Of the frames decoded OK, those whose TCP checksum was left to offload (pipeline.ts). */
  checksumOffloaded(): number;
  /** Of the frames decoded OK, those whose TCP checksum the kernel had validated (pipeline.ts). */
  checksumValidated(): number;
  outcomeCounts: Float64Array;
  events: Float64Array;
  /** The protocol (its kind and counter names) and its relay's counters. */
  protocol: Pick<Protocol, 'kind' | 'counterNames'>;
  relayCounts: Float64Array;
  /** The relay's upstreams, if it has several (a pool of resolvers or web servers). */
  upstreams?: UpstreamsView | null;
  flows(): number;
  queuedBytes(): number;
  packetsSent(): number;
  sendFailures(): number;
  /** Of those, frames sent on the capture interface (io/link-send.ts), and the segments they carried. */
  linkFrames(): number;
  linkSegments(): number;
}

/** Upstream latency buckets (seconds): a resolver on the same host answers in well under 1 ms from cache. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface PipelineMetrics {
  readonly registry: Registry;
  /** Time from relaying a request to the upstream's answer (DNS) or response head (HTTP). */
  observeUpstreamLatency(seconds: number): void;
}

/** A counter family whose values are copied from `counts` (indexed like `names`) at each scrape. */
function countersFrom(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  names: readonly string[],
  counts: () => Float64Array,
  shard: string,
): void {
  new Counter({
    name,
    help,
    labelNames: ['shard', label],
    registers: [registry],
    collect() {
      this.reset();
      const values = counts();
      for (let i = 0; i < names.length; i++) if (values[i]! > 0) this.inc({ shard, [label]: names[i]! }, values[i]!);
    },
  });
}

function gaugeFrom(registry: Registry, name: string, help: string, read: () => number, shard: string): void {
  new Gauge({
    name,
    help,
    labelNames: ['shard'],
    registers: [registry],
    collect() {
      this.set({ shard }, read());
    },
  });
}

/** A counter with one series, labelled with `shard`, that reads its total from `read`. */
function counterFrom(registry: Registry, name: string, help: string, read: () => number, shard: string): void {
  new Counter({
    name,
    help,
    labelNames: ['shard'],
    registers: [registry],
    collect() {
      this.reset();
      const total = read();
      if (total > 0) this.inc({ shard }, total);
    },
  });
}

/** Series that both a shard's registry and the main thread's (for the capture thread) report. */
const SEGMENTS_HELP = 'Decoded segments by what the responder did with them.';
const PACKETS_SENT_HELP = 'Packets written to the raw socket, and writes that failed.';
const EVENTS_HELP = 'Retransmissions, flows created and released, and other TCP events.';

/**
 * A pool's upstreams (`stateless_tcp_dns_upstream_*` for resolvers, `stateless_tcp_http_upstream_*`
 * for web servers), each labelled with its index (N of the counters `upstreamN_*`) and address:
 * whether it is up, and its answers' latency (the pool's observer is set here).
 */
function upstreamMetrics(registry: Registry, kind: Protocol['kind'], upstreams: UpstreamsView, shard: string): void {
  const labels = upstreams.names.map((address, index) => ({ shard, upstream: String(index), address }));
  new Gauge({
    name: `stateless_tcp_${kind}_upstream_up`,
    help: "Whether each upstream of the pool is up (1) or down (0) by its health checks, as this shard worker's pool sees it.",
    labelNames: ['shard', 'upstream', 'address'],
    registers: [registry],
    collect() {
      for (let index = 0; index < labels.length; index++) this.set(labels[index]!, upstreams.isUp(index) ? 1 : 0);
    },
  });
  const latency = new CountingHistogram(
    registry,
    `stateless_tcp_${kind}_upstream_latency_seconds`,
    kind === 'dns'
      ? 'Time from sending a query to an upstream of the pool to its answer (after a failover, from sending it to the new one).'
      : 'Time from sending a request to a backend of the pool to its response head (after a retry, from sending it to the new one).',
    labels,
  );
  upstreams.observeLatency = (index, seconds) => latency.record(index, seconds);
}

/** The upstream latency histogram in `registry`; returns its observer for one shard. */
function latencyHistogram(registry: Registry, shard: string): (seconds: number) => void {
  const latency = new CountingHistogram(
    registry,
    'stateless_tcp_upstream_latency_seconds',
    'Time from relaying a request to the upstream to its answer (DNS) or response head (HTTP).',
    [{ shard }],
  );
  return (seconds) => latency.record(0, seconds);
}

/**
 * A histogram with fixed label sets whose observations go into a typed array, read only when
 * scraped, as the counters here are. prom-client's own `observe` validates and hashes the labels
 * and allocates on every call (0.36–0.45 µs each, measured with prom-client 15.1.3), and the
 * relays observe once or twice per answer, on the hot path. prom-client 15 reads a histogram's
 * series through `getForPromString` (for the exposition, and for `get`, which snapshots use), so
 * this overrides it; test/unit/metrics.test.ts checks the series that come out.
 */
class CountingHistogram<L extends string> extends Histogram<L> {
  /** Per label set: a count per bucket (the last is +Inf, not cumulative), then the sum. */
  private readonly counts: Float64Array[];

  constructor(
    registry: Registry,
    private readonly metricName: string,
    private readonly metricHelp: string,
    private readonly labelSets: readonly Record<L, string>[],
  ) {
    const labelNames = Object.keys(labelSets[0] ?? {}) as L[];
    super({ name: metricName, help: metricHelp, labelNames, buckets: LATENCY_BUCKETS, registers: [registry] });
    this.counts = labelSets.map(() => new Float64Array(LATENCY_BUCKETS.length + 2));
  }

  /** Counts `seconds` for label set `index`; allocates nothing. */
  record(index: number, seconds: number): void {
    const counts = this.counts[index]!;
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]!) bucket++;
    counts[bucket]!++;
    counts[LATENCY_BUCKETS.length + 1]! += seconds;
  }

  /** The series, as prom-client's Histogram gives them (`sharedLabels` empty: `get` merges them into `labels`). */
  async getForPromString(): Promise<object> {
    const values: object[] = [];
    const name = this.metricName;
    for (let set = 0; set < this.labelSets.length; set++) {
      const labels = this.labelSets[set]!;
      const counts = this.counts[set]!;
      let cumulative = 0;
      for (let bucket = 0; bucket <= LATENCY_BUCKETS.length; bucket++) {
        cumulative += counts[bucket]!;
        const le = bucket < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[bucket]! : '+Inf';
        values.push({ metricName: `${name}_bucket`, labels: { le, ...labels }, sharedLabels: {}, value: cumulative });
      }
      values.push({ metricName: `${name}_sum`, labels: { ...labels }, sharedLabels: {}, value: counts[LATENCY_BUCKETS.length + 1]! });
      values.push({ metricName: `${name}_count`, labels: { ...labels }, sharedLabels: {}, value: cumulative });
    }
    return { name, help: this.metricHelp, type: 'histogram', values, aggregator: 'sum' };
  }
}

export function pipelineMetrics(shard: number, source: PipelineCounters): PipelineMetrics {
  const registry = new Registry();
  const label = String(shard);
  countersFrom(
    registry,
    'stateless_tcp_frames_total',
    'Captured frames by decode result (ok, or why dropped).',
    'result',
    DECODE_RESULT_NAMES,
    () => source.decodeCounts,
    label,
  );
  counterFrom(
    registry,
    'stateless_tcp_frames_checksum_offloaded_total',
    'Of the frames decoded ok, those whose TCP checksum the sender left to offload (CHECKSUM_PARTIAL): said by the kernel, or its field held the pseudo-header sum.',
    source.checksumOffloaded,
    label,
  );
  counterFrom(
    registry,
    'stateless_tcp_frames_checksum_validated_total',
    'Of the frames decoded ok, those whose TCP checksum the kernel had validated (TP_STATUS_CSUM_VALID): not summed again.',
    source.checksumValidated,
    label,
  );
  countersFrom(registry, 'stateless_tcp_segments_total', SEGMENTS_HELP, 'outcome', OUTCOME_NAMES, () => source.outcomeCounts, label);
  countersFrom(registry, 'stateless_tcp_events_total', EVENTS_HELP, 'event', TCP_EVENT_NAMES, () => source.events, label);
  relayCounters(registry, source.protocol, () => source.relayCounts, label);
  if (source.upstreams) upstreamMetrics(registry, source.protocol.kind, source.upstreams, label);
  gaugeFrom(registry, 'stateless_tcp_flows', 'Connections holding soft state now.', source.flows, label);
  gaugeFrom(registry, 'stateless_tcp_queued_bytes', 'Bytes held in send and receive queues now.', source.queuedBytes, label);
  new Counter({
    name: 'stateless_tcp_packets_sent_total',
    help: PACKETS_SENT_HELP,
    labelNames: ['shard', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ shard: label, result: 'sent' }, source.packetsSent());
      this.inc({ shard: label, result: 'failed' }, source.sendFailures());
    },
  });
  counterFrom(
    registry,
    'stateless_tcp_link_frames_total',
    'Of the packets sent, frames sent on the capture interface (--gso on), each one or more segments that the kernel or NIC cuts apart.',
    source.linkFrames,
    label,
  );
  counterFrom(registry, 'stateless_tcp_link_segments_total', 'TCP segments those frames carried.', source.linkSegments, label);
  return { registry, observeUpstreamLatency: latencyHistogram(registry, label) };
}

/** `stateless_tcp_dns_total` or `stateless_tcp_http_total`: the relay's counters. */
function relayCounters(
  registry: Registry,
  protocol: Pick<Protocol, 'kind' | 'counterNames'>,
  counts: () => Float64Array,
  shard: string,
): void {
  const help = `${protocol.kind.toUpperCase()} relay counters.`;
  countersFrom(registry, `stateless_tcp_${protocol.kind}_total`, help, 'counter', protocol.counterNames, counts, shard);
}

/** The kernel transport's metrics: the relay's counters and latency, and its connections. */
export function kernelTransportMetrics(
  protocol: Pick<Protocol, 'kind' | 'counterNames'>,
  counts: Float64Array,
  connections: () => KernelTransportStats,
  upstreams?: UpstreamsView | null,
): PipelineMetrics {
  const registry = new Registry();
  relayCounters(registry, protocol, () => counts, 'kernel');
  if (upstreams) upstreamMetrics(registry, protocol.kind, upstreams, 'kernel');
  new Counter({
    name: 'stateless_tcp_connections_accepted_total',
    help: 'Connections the kernel accepted for us.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(connections().accepted);
    },
  });
  gaugeFrom(registry, 'stateless_tcp_connections_open', 'Kernel sockets open now.', () => connections().open, 'kernel');
  new Counter({
    name: 'stateless_tcp_events_total',
    help: EVENTS_HELP,
    labelNames: ['shard', 'event'],
    registers: [registry],
    collect() {
      this.reset();
      const { pipelineFull, deadlinesMissed } = connections();
      if (pipelineFull > 0) this.inc({ shard: 'kernel', event: 'pipeline_full' }, pipelineFull);
      if (deadlinesMissed > 0) this.inc({ shard: 'kernel', event: 'deadlines_missed' }, deadlinesMissed);
    },
  });
  new Counter({
    name: 'stateless_tcp_answers_dropped_total',
    help: 'Answers that came after their connection was closed.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(connections().answersDropped);
    },
  });
  return { registry, observeUpstreamLatency: latencyHistogram(registry, 'kernel') };
}

/** The capture thread's counters (workers/capture/protocol.ts CaptureStat). */
export interface CaptureCounters {
  /** libpcap's packets received and dropped, and of those dropped the segments of open connections (io/capture.ts captureLanes). */
  received: number;
  dropped: number;
  establishedDropped: number;
  /** SYNs the capture thread answered itself, and its SYN+ACKs the kernel refused. */
  synAnswered: number;
  sendFailed: number;
  /** Bare ACKs and RSTs of connections without a flow, which it dropped itself. */
  ignored: number;
  /** SYNs and short segments from martian sources (wire/martian.ts), which it dropped unanswered. */
  martianSource: number;
  /** Frames longer than a ring slot (GRO/LRO/TSO) cut into pieces that fit, and the pieces made of them (wire/coalesced.ts). */
  coalescedFrames: number;
  coalescedPieces: number;
}

/** What the main thread knows that no shard does: the capture thread's and the rings' counters, restarts. */
export interface FrontEndCounters {
  capture(): CaptureCounters;
  shards(): { shard: number; ringIn: number; ringDropped: number; restarts: number }[];
}

export function frontEndMetrics(source: FrontEndCounters): Registry {
  const registry = new Registry();
  new Counter({
    name: 'stateless_tcp_capture_packets_total',
    help: 'Packets libpcap captured, and dropped because the capture thread fell behind.',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      const capture = source.capture();
      this.inc({ result: 'received' }, capture.received);
      this.inc({ result: 'dropped' }, capture.dropped);
    },
  });
  new Counter({
    name: 'stateless_tcp_capture_established_dropped_total',
    help: 'Of the packets libpcap dropped, the segments of open connections (no SYN, no RST without ACK): these have their own capture buffer, so a SYN flood alone leaves this at 0.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(source.capture().establishedDropped);
    },
  });
  new Counter({
    name: 'stateless_tcp_capture_coalesced_total',
    help: 'Frames longer than a ring slot (coalesced by GRO or LRO, or left whole by TSO/GSO) that the capture thread cut into pieces that fit, and the pieces it made.',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      const capture = source.capture();
      this.inc({ result: 'frames' }, capture.coalescedFrames);
      this.inc({ result: 'pieces' }, capture.coalescedPieces);
    },
  });
  // The segments the capture thread handles itself, in the shards' series under shard="capture".
  new Counter({
    name: 'stateless_tcp_segments_total',
    help: SEGMENTS_HELP,
    labelNames: ['shard', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      const capture = source.capture();
      this.inc({ shard: 'capture', outcome: 'syn_answered' }, capture.synAnswered);
      this.inc({ shard: 'capture', outcome: 'ignored' }, capture.ignored);
      this.inc({ shard: 'capture', outcome: 'martian_source' }, capture.martianSource);
    },
  });
  new Counter({
    name: 'stateless_tcp_packets_sent_total',
    help: PACKETS_SENT_HELP,
    labelNames: ['shard', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      const capture = source.capture();
      this.inc({ shard: 'capture', result: 'sent' }, capture.synAnswered - capture.sendFailed);
      this.inc({ shard: 'capture', result: 'failed' }, capture.sendFailed);
    },
  });
  new Counter({
    name: 'stateless_tcp_ring_frames_total',
    help: "Frames handed to a shard's ring by the capture thread, and dropped because the ring was full.",
    labelNames: ['shard', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of source.shards()) {
        this.inc({ shard: String(s.shard), result: 'in' }, s.ringIn);
        this.inc({ shard: String(s.shard), result: 'dropped' }, s.ringDropped);
      }
    },
  });
  new Counter({
    name: 'stateless_tcp_shard_restarts_total',
    help: 'Shard worker threads that died and were replaced.',
    labelNames: ['shard'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of source.shards()) this.inc({ shard: String(s.shard) }, s.restarts);
    },
  });
  return registry;
}

/** A registry's metrics as plain data, to cross threads by structured clone. */
export type RegistrySnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export function snapshot(registry: Registry): Promise<RegistrySnapshot> {
  return registry.getMetricsAsJSON();
}

/** Prometheus text from the snapshots of every shard and the main thread. */
export function exposition(snapshots: RegistrySnapshot[]): Promise<string> {
  return AggregatorRegistry.aggregate(snapshots).metrics();
}

/** The snapshot's counters without its gauges: what a dead worker leaves to be added to its successor's. */
export function countersOnly(snapshot: RegistrySnapshot): RegistrySnapshot {
  return snapshot.filter((metric) => kindOf(metric) !== 'gauge');
}

/**
 * 'counter', 'gauge', 'histogram' or 'summary': what getMetricsAsJSON puts in `type` (prom-client's
 * typings declare a numeric enum there, but the JSON holds the name).
 */
function kindOf(metric: RegistrySnapshot[number]): string {
  return String(metric.type);
}

type Labels = Partial<Record<string, string | number>>;

/**
 * The stop summary's name for a series, or null to leave it out: `decode.` frames by result,
 * `tcp.` segments by outcome and TCP events, `dns.`/`http.` relay counters, `pcap.` capture,
 * `capture.` what the capture thread answered itself, `sent`/`send_failed` all packets, and
 * `shardN.` per shard.
 */
function summaryNames(metric: string, labels: Labels): string[] {
  const shard = labels.shard;
  const perShard = typeof shard === 'string' && /^\d+$/.test(shard) ? `shard${shard}.` : null;
  switch (metric) {
    case 'stateless_tcp_frames_total':
      return [`decode.${labels.result}`];
    case 'stateless_tcp_frames_checksum_offloaded_total':
      return ['decode.checksum_offloaded'];
    case 'stateless_tcp_frames_checksum_validated_total':
      return ['decode.checksum_validated'];
    case 'stateless_tcp_link_frames_total':
      return ['link.frames'];
    case 'stateless_tcp_link_segments_total':
      return ['link.segments'];
    case 'stateless_tcp_segments_total':
      return shard === 'capture' ? [`tcp.${labels.outcome}`, `capture.${labels.outcome}`] : [`tcp.${labels.outcome}`];
    case 'stateless_tcp_events_total':
      return [`tcp.${labels.event}`];
    case 'stateless_tcp_dns_total':
      return [`dns.${labels.counter}`];
    case 'stateless_tcp_http_total':
      return [`http.${labels.counter}`];
    case 'stateless_tcp_dns_upstream_up':
      return [`dns.upstream${labels.upstream}_up`];
    case 'stateless_tcp_http_upstream_up':
      return [`http.upstream${labels.upstream}_up`];
    case 'stateless_tcp_flows':
      return perShard === null ? ['tcp.flows'] : ['tcp.flows', `${perShard}flows`];
    case 'stateless_tcp_queued_bytes':
      return ['tcp.queued_bytes'];
    case 'stateless_tcp_capture_packets_total':
      return [`pcap.${labels.result}`];
    case 'stateless_tcp_capture_established_dropped_total':
      return ['pcap.established_dropped'];
    case 'stateless_tcp_capture_coalesced_total':
      return [`capture.coalesced_${labels.result}`];
    case 'stateless_tcp_packets_sent_total': {
      const name = labels.result === 'sent' ? 'sent' : 'send_failed';
      return perShard !== null && name === 'sent' ? [name, `${perShard}replies_out`] : [name];
    }
    case 'stateless_tcp_ring_frames_total':
      return perShard === null ? [] : [`${perShard}${labels.result === 'in' ? 'packets_in' : 'ring_drops'}`];
    case 'stateless_tcp_shard_restarts_total':
      return perShard === null ? [] : [`${perShard}restarts`];
    case 'stateless_tcp_connections_accepted_total':
      return ['tcp.accepted'];
    case 'stateless_tcp_connections_open':
      return ['tcp.open'];
    case 'stateless_tcp_answers_dropped_total':
      return ['tcp.answers_dropped'];
    default:
      return [];
  }
}

/**
 * The stop summary: `name=value` pairs summed over the snapshots, in the order first met. The
 * counter families leave zeros out (they report only what happened); gauges, the capture's
 * counters and the per-shard pairs are always there.
 */
export function summaryLine(snapshots: readonly RegistrySnapshot[]): string {
  const totals = new Map<string, number>();
  for (const snapshot of snapshots) {
    for (const metric of snapshot) {
      if (kindOf(metric) === 'histogram') continue;
      for (const { labels, value } of metric.values) {
        for (const name of summaryNames(metric.name, labels)) totals.set(name, (totals.get(name) ?? 0) + value);
      }
    }
  }
  return [...totals]
    .sort(([a], [b]) => summaryRank(a) - summaryRank(b))
    .map(([name, value]) => `${name}=${value}`)
    .join(' ');
}

/** Where `decode.`, `tcp.`, … and then each shard's pairs stand in the summary (a stable sort keeps the rest in order met). */
const SUMMARY_GROUPS = ['decode.', 'tcp.', 'dns.', 'http.', 'pcap.', 'capture.', 'sent', 'send_failed', 'link.'];
const SHARD_FIELDS = ['packets_in', 'replies_out', 'ring_drops', 'flows', 'restarts'];

function summaryRank(name: string): number {
  const shard = /^shard(\d+)\.(.*)$/.exec(name);
  if (shard !== null) return SUMMARY_GROUPS.length + Number(shard[1]) * SHARD_FIELDS.length + SHARD_FIELDS.indexOf(shard[2]!);
  return SUMMARY_GROUPS.findIndex((group) => name === group || (group.endsWith('.') && name.startsWith(group)));
}

export const EXPOSITION_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
