/**
 * The upstream pool with real loopback sockets: two "resolvers" (UDP sockets that echo each query
 * back as its answer, while `answering`), the relay in front, its clock the real one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import dnsPacket from 'dns-packet';
import { RecordingConnections } from '../../support/recording-connections.js';
import { DnsRelay, RELAY_COUNTER_NAMES, RelayCounter } from '../../../src/dns/relay.js';
import { Rcode } from '../../../src/dns/message.js';
import { UpstreamPool } from '../../../src/io/upstream-pool.js';
import { DEFAULT_HEALTH_CHECK, type HealthCheckSettings } from '../../../src/dns/upstream-pool.js';
import type { Endpoint } from '../../../src/endpoint.js';

class EchoResolver {
  readonly socket = dgram.createSocket('udp4');
  answering = true;
  queries = 0;
  /** Each query's question, "name TYPE". */
  readonly questions: string[] = [];
  constructor() {
    this.socket.on('message', (query, from) => {
      this.queries++;
      const question = dnsPacket.decode(query).questions![0]!;
      this.questions.push(`${question.name} ${question.type}`);
      if (!this.answering) return;
      const answer = Buffer.from(query);
      answer[2]! |= 0x80; // QR: a response, same ID and question
      this.socket.send(answer, from.port, from.address);
    });
  }
  async endpoint(): Promise<Endpoint> {
    this.socket.bind(0, '127.0.0.1');
    await once(this.socket, 'listening');
    return { address: '127.0.0.1', port: this.socket.address().port, family: 4 };
  }
}

const framedQuery = (name: string, id: number): Buffer => {
  const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
  return Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
};
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('a pool: failover at half the timeout, a silent upstream marked down and up again by its probes, SERVFAIL at once with none up', async () => {
  await withSilentFirst(DEFAULT_HEALTH_CHECK, 600, async (pool, relay, connections, counts, changes, a) => {
    const latencies: [number, number][] = [];
    pool.observeLatency = (index, seconds) => latencies.push([index, seconds]);
    // Both up, none outstanding: the first goes to a, which is silent; b answers it after half the timeout.
    const q1 = framedQuery('one.lab.test', 1);
    relay.onMessages('c1', q1, 0, q1.length, Date.now());
    await sleep(450);
    assert.equal(connections.answers.length, 1);
    assert.equal(connections.answers[0]!.message.flags! & 0xf, Rcode.NOERROR);
    assert.equal(counts[RelayCounter.FAILOVERS], 1);
    // upstream0_queries, _answers, _timeouts, _failed_over, _probe_failures, _marked_down, _marked_up, then upstream1's.
    assert.deepEqual(
      [...counts.subarray(RELAY_COUNTER_NAMES.length, RELAY_COUNTER_NAMES.length + 14)],
      [1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
    );
    assert.equal(latencies.length, 1);
    assert.equal(latencies[0]![0], 1, "the second upstream's answer");
    assert.ok(latencies[0]![1] < 0.3, `its latency counts from the failover: ${latencies[0]![1]} s`);
    assert.equal(pool.selection.outstanding[0], 0, 'the first upstream was told its query is done');

    // Three probes a second apart: a is down, and the next queries go to b at once.
    const waitFrom = Date.now();
    while (counts[RelayCounter.UPSTREAMS_MARKED_DOWN] === 0 && Date.now() - waitFrom < 5000) await sleep(20);
    assert.equal(counts[RelayCounter.UPSTREAMS_MARKED_DOWN], 1);
    assert.ok(Date.now() - waitFrom < 4000, 'down after three probes a second apart');
    assert.deepEqual([pool.isUp(0), pool.isUp(1)], [false, true]);
    assert.equal(changes.length, 1);
    const before = a.queries;
    const started = Date.now();
    for (let i = 0; i < 10; i++) {
      const q = framedQuery(`q${i}.lab.test`, 100 + i);
      relay.onMessages('c2', q, 0, q.length, Date.now());
    }
    while (connections.answers.length < 11 && Date.now() - started < 1000) await sleep(5);
    assert.equal(connections.answers.length, 11);
    assert.ok(Date.now() - started < 200, 'answered without waiting for a failover');
    assert.equal(a.queries - before <= 1, true, 'a gets no queries while down (a probe at most)');

    // a answers again: one probe brings it back.
    a.answering = true;
    await sleep(1200);
    assert.equal(counts[RelayCounter.UPSTREAMS_MARKED_UP], 1);
    assert.equal(counts[RELAY_COUNTER_NAMES.length + 5], 1, 'upstream0_marked_down');
    assert.equal(counts[RELAY_COUNTER_NAMES.length + 6], 1, 'upstream0_marked_up');
    assert.deepEqual(pool.selection.up, [true, true]);

    // None up: SERVFAIL at once.
    pool.selection.markDown(0);
    pool.selection.markDown(1);
    const q = framedQuery('none.lab.test', 200);
    relay.onMessages('c3', q, 0, q.length, Date.now());
    assert.equal(connections.answers.length, 12);
    assert.equal(connections.answers[11]!.message.flags! & 0xf, Rcode.SERVFAIL);
    assert.equal(connections.answers[11]!.message.id, 200);
    assert.equal(counts[RelayCounter.NO_UPSTREAM_UP], 1);
  });
});

/** A pool of a silent upstream and an echoing one, with `healthCheck`, its relay and a 10 ms ticker; `run` gets them and is cleaned up after. */
async function withSilentFirst(
  healthCheck: HealthCheckSettings,
  timeoutMs: number,
  run: (
    pool: UpstreamPool,
    relay: DnsRelay<string>,
    connections: RecordingConnections,
    counts: Float64Array,
    changes: string[],
    silent: EchoResolver,
  ) => Promise<void>,
): Promise<void> {
  const a = new EchoResolver();
  const b = new EchoResolver();
  const addresses = [await a.endpoint(), await b.endpoint()];
  a.answering = false;
  const counts = new Float64Array(RELAY_COUNTER_NAMES.length + 14);
  const changes: string[] = [];
  let relay: DnsRelay<string> | undefined;
  const pool = new UpstreamPool(addresses, {
    ports: () => ({ sockets: 1, queriesPerPort: Infinity, portLifetimeMs: Infinity }),
    onAnswer: (bytes, offset, length, socket) => relay!.handleUpstreamAnswer(bytes, offset, length, socket),
    counts,
    firstUpstreamCounter: RELAY_COUNTER_NAMES.length,
    nowMs: Date.now(),
    proxyProtocol: false,
    healthCheck,
    onStateChange: (line) => changes.push(line),
  });
  relay = new DnsRelay<string>({ timeoutMs, upstream: pool, fillRandom: (bytes) => randomFillSync(bytes), now: Date.now, counts });
  const connections = new RecordingConnections();
  relay.attach(connections);
  const ticker = setInterval(() => relay.tick(Date.now()), 10);
  try {
    await run(pool, relay, connections, counts, changes, a);
  } finally {
    clearInterval(ticker);
    relay.close();
    a.socket.close();
    b.socket.close();
  }
}

/** Waits until `done`, at most `limitMs`. */
async function until(done: () => boolean, limitMs: number): Promise<void> {
  const from = Date.now();
  while (!done() && Date.now() - from < limitMs) await sleep(10);
}

/** upstream0's counter `name` (upstreamCounterNames order). */
const upstream0 = (counts: Float64Array, name: string): number =>
  counts[
    RELAY_COUNTER_NAMES.length +
      ['queries', 'answers', 'timeouts', 'failed_over', 'probe_failures', 'marked_down', 'marked_up'].indexOf(name)
  ]!;

test('queries an upstream leaves unanswered mark it down before any probe (down after 2: --health-check-down-after)', async () => {
  const healthCheck = { ...DEFAULT_HEALTH_CHECK, intervalMs: 60_000, downAfter: 2 };
  await withSilentFirst(healthCheck, 300, async (pool, relay, connections, counts, changes) => {
    // One after the other, so that each goes to the first (none outstanding: ties to the first),
    // and is answered by the second after half the timeout.
    for (let i = 0; i < 2; i++) {
      const q = framedQuery(`q${i}.lab.test`, i);
      relay.onMessages('c1', q, 0, q.length, Date.now());
      await until(() => connections.answers.length === i + 1, 5000);
    }
    assert.equal(connections.answers.length, 2);
    assert.deepEqual([upstream0(counts, 'queries'), upstream0(counts, 'timeouts'), upstream0(counts, 'probe_failures')], [2, 2, 0]);
    assert.deepEqual([pool.isUp(0), pool.isUp(1)], [false, true]);
    assert.deepEqual(changes, [
      `upstream ${pool.names[0]} is down after 2 failures in a row; the last: it left a query unanswered within its time`,
    ]);
  });
});

test('health probes ask --health-check-name and --health-check-type, each --health-check-interval, failing after --health-check-timeout', async () => {
  const healthCheck = { name: 'probe.lab.test', type: 16, intervalMs: 150, timeoutMs: 100, downAfter: 2, upAfter: 1 };
  await withSilentFirst(healthCheck, 2000, async (pool, _relay, _connections, counts, changes, silent) => {
    await until(() => changes.length > 0, 5000);
    assert.match(
      changes[0]!,
      /is down after 2 failures in a row; the last: upstream 127\.0\.0\.1:\d+ did not answer a DNS query within 100 ms/,
    );
    assert.equal(upstream0(counts, 'probe_failures'), 2);
    assert.equal(pool.isUp(0), false);
    assert.ok(silent.questions.length >= 2);
    assert.ok(
      silent.questions.every((q) => q === 'probe.lab.test TXT'),
      silent.questions.join(', '),
    );
  });
});
