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
import type { Endpoint } from '../../../src/endpoint.js';

class EchoResolver {
  readonly socket = dgram.createSocket('udp4');
  answering = true;
  queries = 0;
  constructor() {
    this.socket.on('message', (query, from) => {
      this.queries++;
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
    onStateChange: (line) => changes.push(line),
  });
  relay = new DnsRelay<string>({ timeoutMs: 600, upstream: pool, fillRandom: (bytes) => randomFillSync(bytes), now: Date.now, counts });
  const latencies: [number, number][] = [];
  pool.observeLatency = (index, seconds) => latencies.push([index, seconds]);
  const connections = new RecordingConnections();
  relay.attach(connections);
  const ticker = setInterval(() => relay.tick(Date.now()), 10);
  try {
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
  } finally {
    clearInterval(ticker);
    relay.close();
    a.socket.close();
    b.socket.close();
  }
});
