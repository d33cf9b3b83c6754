/**
 * DNS over TCP as an application of the transports (tcp/transport.ts): its framing (RFC 1035
 * §4.2.2 length prefixes), its counters, and a relay to a UDP resolver with the sockets of
 * io/upstream.ts. This file is where the protocol meets its I/O; relay.ts does none.
 */
import { randomFillSync } from 'node:crypto';
import type { Endpoint } from '../endpoint.js';
import { UdpTcpUpstream, probeUpstream } from '../io/upstream.js';
import type { Application, Protocol, Relay } from '../tcp/transport.js';
import { dnsMessageLength, plausibleQueryStart } from './message.js';
import { DnsRelay, RELAY_COUNTER_NAMES } from './relay.js';

/** What each DNS front end relays to; plain data, so that it crosses to the shard threads. */
export interface DnsSettings {
  kind: 'dns';
  /** The UDP resolver. */
  upstream: Endpoint;
  /** How long the upstream may take before the client gets SERVFAIL. */
  timeoutMs: number;
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
  return {
    ...DNS_PROTOCOL,
    probe: () => probeUpstream(settings.upstream, PROBE_TIMEOUT_MS),
    open<C>(): Relay<C> {
      // Answers arrive from the event loop, once `relay` is set.
      let relay: DnsRelay<C> | undefined;
      const upstream = new UdpTcpUpstream(settings.upstream, (bytes, offset, length) => relay!.handleUpstreamAnswer(bytes, offset, length));
      relay = new DnsRelay<C>({ timeoutMs: settings.timeoutMs, upstream, fillRandom: (bytes) => randomFillSync(bytes), now: Date.now });
      return relay;
    },
  };
}
