/**
 * The throughput scenarios: what dnsperf asks for, and how the servers treat connections.
 */
import { LAB_ZONE } from '../../lab/zone.js';
import type { DnsperfLoad } from './dnsperf.js';

export const SCENARIO_NAMES = ['transaction', 'persistent', 'big', 'cached'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export interface Scenario {
  readonly name: ScenarioName;
  readonly title: string;
  /** What it measures, one sentence for the report. */
  readonly description: string;
  /** The server closes each connection after its answer. */
  readonly closeAfterEachAnswer: boolean;
  /** Answers each relay keeps in its packet cache (0: no cache). */
  readonly packetCacheEntries: number;
  load(seconds: number): DnsperfLoad;
}

const name = (fqdn: string): string => fqdn.replace(/\.$/, '');

export const SCENARIOS: Readonly<Record<ScenarioName, Scenario>> = {
  transaction: {
    name: 'transaction',
    title: 'transaction (close after each answer)',
    description:
      'one query per connection: the server closes after its answer and dnsperf reconnects at once; ' +
      'as many connections as queries in flight, so no query is ever caught on a closing connection',
    closeAfterEachAnswer: true,
    packetCacheEntries: 0,
    load: (seconds) => ({ queries: [`${name(LAB_ZONE.www.name)} A`], connections: 64, inFlight: 64, seconds }),
  },
  persistent: {
    name: 'persistent',
    title: 'persistent, pipelined',
    description: '32 long-lived connections with 512 queries in flight in total, small A/AAAA answers',
    closeAfterEachAnswer: false,
    packetCacheEntries: 0,
    load: (seconds) => ({
      queries: [`${name(LAB_ZONE.www.name)} A`, `${name(LAB_ZONE.www.name)} AAAA`],
      connections: 32,
      inFlight: 512,
      seconds,
    }),
  },
  big: {
    name: 'big',
    title: '4 KB answers, persistent',
    description:
      `32 long-lived connections, 128 queries in flight, every answer the ${LAB_ZONE.big.responseBytes - 11}-byte TXT ` +
      '(truncated over UDP, so relays fetch it from unbound over TCP) in four segments',
    closeAfterEachAnswer: false,
    packetCacheEntries: 0,
    load: (seconds) => ({ queries: [`${name(LAB_ZONE.big.name)} TXT`], connections: 32, inFlight: 128, seconds }),
  },
  cached: {
    name: 'cached',
    title: '4 KB answers from a packet cache',
    description:
      'as "4 KB answers", with a packet cache of 10,000 answers in each relay (stateless-tcp --cache-size, ' +
      "dnsdist's newPacketCache): after the first, every answer comes from the cache, not from unbound",
    closeAfterEachAnswer: false,
    packetCacheEntries: 10_000,
    load: (seconds) => ({ queries: [`${name(LAB_ZONE.big.name)} TXT`], connections: 32, inFlight: 128, seconds }),
  },
};
