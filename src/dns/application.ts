/**
 * DNS over TCP as an application of the transports (tcp/transport.ts): its framing (RFC 1035
 * §4.2.2 length prefixes), its counters, and a relay to a UDP resolver with the sockets of
 * io/upstream.ts. This file is where the protocol meets its I/O; relay.ts does none.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { isLoopback, type Endpoint } from '../endpoint.js';
import { UdpTcpUpstream, probeUpstream, type UpstreamPorts } from '../io/upstream.js';
import { UpstreamPool, upstreamCounterNames } from '../io/upstream-pool.js';
import type { Application, Protocol, Relay } from '../tcp/transport.js';
import { dnsMessageLength, plausibleQueryStart } from './message.js';
import { type ClientSubnetOptions, DnsRelay, RELAY_COUNTER_NAMES } from './relay.js';
import type { HealthCheckSettings } from './upstream-pool.js';
import { downAtStart, type UpstreamPolicy } from '../upstream-selection.js';
import { PacketCache } from './cache.js';
import { ClientRateLimit } from './rate-limit.js';

/** What each DNS front end relays to; plain data, so that it crosses to the shard threads. */
export interface DnsSettings {
  kind: 'dns';
  /** The UDP resolver (the first of `upstreams`). */
  upstream: Endpoint;
  /**
   * Every resolver (`--upstream` repeated), the first one included. With more than one, a pool with
   * health checks and failover (io/upstream-pool.ts); with one, the resolver alone, unchecked.
   */
  upstreams: readonly Endpoint[];
  /** One per upstream (`--upstream ADDR:PORT,weight=N`, 1 if not given), for the weighted policy. */
  weights: readonly number[];
  /** How a pool picks the upstream for a query (`--upstream-policy`). */
  policy: UpstreamPolicy;
  /** A pool's health check (`--health-check-*`); its question is also the start-up probe's. */
  healthCheck: HealthCheckSettings;
  /**
   * Of a pool, the upstreams (indices into `upstreams`) that did not answer the start-up probe:
   * filled in by it, before the relays open, so that they start down and get no queries until a
   * health probe brings them up.
   */
  downAtStart?: number[];
  /** How long the upstream may take before the client gets SERVFAIL. */
  timeoutMs: number;
  /** UDP sockets (source ports) per relay for a resolver off this host (`--upstream-ports`). */
  upstreamPorts: number;
  /** Queries a socket sends before it is replaced by one on a new port (`--upstream-port-queries`). */
  queriesPerPort: number;
  /** How long a socket keeps its port at most, in ms (`--upstream-port-seconds`). */
  portLifetimeMs: number;
  /** Answers kept per shard worker's packet cache (`--cache-size`); 0: no cache. */
  cacheSize: number;
  /** Queries per second per client network, per shard worker (`--max-qps-per-client`); 0: no limit. */
  maxQpsPerClient: number;
  /** The client network's prefix lengths (`--rate-limit-ipv4-prefix`, `--rate-limit-ipv6-prefix`). */
  rateLimitIpv4Prefix: number;
  rateLimitIpv6Prefix: number;
  /** What a query over the limit gets (`--rate-limit-action`). */
  rateLimitAction: 'refuse' | 'drop';
  /** Queries to the upstream start with a PROXY protocol v2 header naming the client (`--upstream-proxy-protocol`). */
  upstreamProxyProtocol: boolean;
  /** Queries to the upstream carry the client's network in a client subnet option (`--ecs`, RFC 7871); null: none. */
  clientSubnet: ClientSubnetOptions | null;
}

/** The defaults of the options above (cli.ts). */
export const DEFAULT_UPSTREAM_PORTS = 8;
export const DEFAULT_QUERIES_PER_PORT = 1000;
export const DEFAULT_PORT_LIFETIME_SECONDS = 10;

/**
 * The UDP sockets for `settings.upstream`. A resolver on loopback gets one socket that keeps its
 * port: no off-path sender can put a datagram on lo — loopback addresses never appear outside a
 * host, and the kernel drops packets from another interface that carry them (RFC 1122
 * §3.2.1.3(g), RFC 4291 §2.5.3) — and a sender on this host can read every socket's port in
 * /proc/net/udp anyway; so ports guard nothing there, while each socket of a pool costs its own
 * receive system calls once answers are spread over several. Elsewhere, a pool of sockets on
 * random ports, each replaced now and then (RFC 5452 §9.2; udp-port-pool.ts).
 */
export function upstreamPortsFor(settings: DnsSettings, address: Endpoint = settings.upstream): UpstreamPorts {
  if (isLoopback(address)) return { sockets: 1, queriesPerPort: Infinity, portLifetimeMs: Infinity };
  return { sockets: settings.upstreamPorts, queriesPerPort: settings.queriesPerPort, portLifetimeMs: settings.portLifetimeMs };
}

/** How long the start-up probe waits for the resolver's answer. */
const PROBE_TIMEOUT_MS = 2000;

export const DNS_PROTOCOL: Protocol = {
  kind: 'dns',
  messageLength: dnsMessageLength,
  // dnsperf -q 100 over one connection pipelines 100; each outstanding query holds an upstream ID
  // of the shard's 65,536 (dnsdist's maxInFlight plays the same part).
  maxPipelined: 100,
  plausibleStart: plausibleQueryStart,
  counterNames: RELAY_COUNTER_NAMES,
};

export function dnsApplication(settings: DnsSettings): Application {
  const pooled = settings.upstreams.length > 1;
  // A pool's counters go on with each upstream's own, named by its place in --upstream.
  const counterNames = pooled ? [...RELAY_COUNTER_NAMES, ...upstreamCounterNames(settings.upstreams.length)] : RELAY_COUNTER_NAMES;
  return {
    ...DNS_PROTOCOL,
    counterNames,
    probe: (log) => probeUpstreams(settings, log),
    open<C>(): Relay<C> {
      // Answers arrive from the event loop, once `relay` is set.
      let relay: DnsRelay<C> | undefined;
      const counts = new Float64Array(counterNames.length);
      const onAnswer = (bytes: Uint8Array, offset: number, length: number, socket: number): void =>
        relay!.handleUpstreamAnswer(bytes, offset, length, socket);
      const pool = pooled
        ? new UpstreamPool(settings.upstreams, {
            ports: (address) => upstreamPortsFor(settings, address),
            onAnswer,
            counts,
            firstUpstreamCounter: RELAY_COUNTER_NAMES.length,
            downAtStart: settings.downAtStart ?? [],
            nowMs: Date.now(),
            proxyProtocol: settings.upstreamProxyProtocol,
            healthCheck: settings.healthCheck,
            policy: settings.policy,
            weights: settings.weights,
            // Once per change and relay (each shard worker has its own pool and health checks).
            onStateChange: (line) => console.error(`stateless-tcp dns: ${line}`),
          })
        : null;
      const upstream =
        pool ?? new UdpTcpUpstream(settings.upstream, { ports: upstreamPortsFor(settings), onAnswer, counts, nowMs: Date.now() });
      relay = new DnsRelay<C>({
        timeoutMs: settings.timeoutMs,
        upstream,
        fillRandom: (bytes) => randomFillSync(bytes),
        now: Date.now,
        counts,
        cache: settings.cacheSize > 0 ? new PacketCache(settings.cacheSize, randomBytes(16)) : null,
        rateLimit:
          settings.maxQpsPerClient > 0
            ? new ClientRateLimit(settings.maxQpsPerClient, settings.rateLimitIpv4Prefix, settings.rateLimitIpv6Prefix, randomBytes(16))
            : null,
        rateLimitAction: settings.rateLimitAction,
        proxyProtocol: settings.upstreamProxyProtocol,
        clientSubnet: settings.clientSubnet,
        upstreams: pool,
      });
      return relay;
    },
  };
}

/**
 * The start-up check: a single resolver must answer. Of a pool, at least one must: each that does
 * not gets one line and starts down (`downAtStart`), up once a health probe answers; none
 * answering is one line, the failure.
 */
async function probeUpstreams(settings: DnsSettings, log?: (line: string) => void): Promise<string | null> {
  const { name, type } = settings.healthCheck;
  const problems = await Promise.all(
    settings.upstreams.map((a) => probeUpstream(a, PROBE_TIMEOUT_MS, settings.upstreamProxyProtocol, { name, type })),
  );
  if (problems.length === 1) return problems[0]!;
  if (problems.every((p) => p !== null)) return `no upstream answered: ${problems.join('; ')}`;
  settings.downAtStart = downAtStart(problems, log);
  return null;
}
