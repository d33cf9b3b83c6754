import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { RecordingConnections } from '../../support/recording-connections.js';
import {
  type ClientSubnetOptions,
  DnsRelay,
  RelayCounter,
  type TcpAnswerHandler,
  UNANSWERED,
  type UpstreamTransport,
} from '../../../src/dns/relay.js';
import { Rcode, readId } from '../../../src/dns/message.js';
import { PacketCache } from '../../../src/dns/cache.js';
import { ClientRateLimit } from '../../../src/dns/rate-limit.js';
import type { ConnectionEndpoints } from '../../../src/dns/proxy-protocol.js';
import { addressBytes } from '../../../src/endpoint.js';

/**
 * The upstream side as the relay sees it: datagrams out, each from one of three sockets in turn,
 * how many queries each socket was told are done, and what a TCP retry returns.
 */
class RecordingUpstream implements UpstreamTransport {
  readonly datagrams: Buffer[] = [];
  /** The socket each datagram left from. */
  readonly sockets: number[] = [];
  readonly done = [0, 0, 0];
  /** Each `queryDone`: the socket, and the milliseconds to its answer (UNANSWERED: none). */
  readonly outcomes: [number, number][] = [];
  private sentQueries = 0;
  tcpAnswer: (query: Uint8Array) => Uint8Array | null = () => null;
  sendDatagram(query: Uint8Array): number {
    const socket = this.sentQueries++ % 3;
    this.datagrams.push(Buffer.from(query));
    this.sockets.push(socket);
    return socket;
  }
  resendDatagram(query: Uint8Array, socket: number): void {
    this.datagrams.push(Buffer.from(query));
    this.sockets.push(socket);
  }
  queryDone(socket: number, answeredAfterMs: number): void {
    this.done[socket]!++;
    this.outcomes.push([socket, answeredAfterMs]);
  }
  /** The socket the query with upstream ID `id` left from (its answer comes back on it). */
  socketOf(id: number): number {
    const index = this.datagrams.findIndex((d) => readId(d, 0) === id);
    return index < 0 ? 0 : this.sockets[index]!;
  }
  queryOverTcp(query: Uint8Array, _timeoutMs: number, onAnswer: TcpAnswerHandler): void {
    const answer = this.tcpAnswer(query);
    queueMicrotask(() => onAnswer(answer, 0, answer === null ? 0 : answer.length));
  }
  close(): void {}
}

const query = (name: string, id: number, type: 'A' | 'TXT' = 'A'): Buffer =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
const framed = (...messages: Buffer[]): Buffer =>
  Buffer.concat(messages.flatMap((m) => [Buffer.from([m.length >> 8, m.length & 0xff]), m]));
/**
 * The upstream's answer to a relayed query: same ID and question, one A record; with `optOptions`,
 * an OPT record carrying them (RFC 6891 §7: a resolver answers EDNS with EDNS).
 */
const answerTo = (relayed: Buffer, address = '198.18.0.100', flags = 0, optOptions?: object[]): Buffer => {
  const q = dnsPacket.decode(relayed);
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: dnsPacket.RECURSION_DESIRED | flags,
    questions: q.questions,
    answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: address }],
    ...(optOptions === undefined
      ? {}
      : { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: optOptions } as unknown as dnsPacket.Answer] }),
  });
};
/** The upstream's truncated answer (TC=1, no records) to the relayed `big.lab.test TXT` query with this ID. */
const truncatedTo = (id: number): Buffer =>
  dnsPacket.encode({ type: 'response', id, flags: dnsPacket.TRUNCATED_RESPONSE, questions: [{ type: 'TXT', name: 'big.lab.test' }] });
const addressOf = (a: dnsPacket.Answer): unknown => (a as dnsPacket.StringAnswer).data;
/** The relay's clock (DnsRelayOptions.now), set by `fromUpstream`. */
let clockMs = 0;
/** The upstream of the latest `setup`. */
let currentUpstream: RecordingUpstream;
/**
 * Hands the relay an upstream datagram, as the upstream socket does: a whole buffer, on the
 * socket its query left from unless `socket` says otherwise.
 */
const fromUpstream = (relay: DnsRelay<string>, answer: Uint8Array, nowMs: number, socket?: number): void => {
  clockMs = nowMs;
  relay.handleUpstreamAnswer(answer, 0, answer.length, socket ?? (answer.length < 2 ? 0 : currentUpstream.socketOf(readId(answer, 0))));
};
function setup(cache: PacketCache | null = null, rateLimit: ClientRateLimit | null = null, rateLimitAction: 'refuse' | 'drop' = 'refuse') {
  const upstream = new RecordingUpstream();
  currentUpstream = upstream;
  const connections = new RecordingConnections();
  let counter = 0;
  const fillRandom = (b: Uint8Array): void => {
    for (let i = 0; i < b.length; i++) {
      counter = (counter * 1103515245 + 12345) >>> 0;
      b[i] = counter >>> 16;
    }
  };
  const relay = new DnsRelay<string>({ timeoutMs: 1000, upstream, fillRandom, now: () => clockMs, cache, rateLimit, rateLimitAction });
  relay.attach(connections);
  return { upstream, connections, relay };
}

test('a query is relayed with a fresh ID and answered on its connection with the client ID', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('www.lab.test', 0x1111));
  relay.onMessages('c1', request, 0, request.length, 0);
  assert.equal(connections.owed.get('c1'), 1);
  assert.equal(upstream.datagrams.length, 1);
  const relayed = upstream.datagrams[0]!;
  assert.notEqual(readId(relayed, 0), 0x1111);
  assert.equal(relay.pendingQueries, 1);
  fromUpstream(relay, answerTo(relayed), 1);
  assert.equal(relay.pendingQueries, 0);
  assert.equal(connections.owed.get('c1'), 0);
  const { connection, message } = connections.answers[0]!;
  assert.equal(connection, 'c1');
  assert.equal(message.id, 0x1111);
  assert.deepEqual(message.answers!.map(addressOf), ['198.18.0.100']);
});

test('pipelined queries each get their answer as it arrives, on the right connection', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('a.lab.test', 1), query('b.lab.test', 2));
  relay.onMessages('c1', request, 0, request.length, 0);
  const other = framed(query('c.lab.test', 1));
  relay.onMessages('c2', other, 0, other.length, 0);
  assert.equal(upstream.datagrams.length, 3);
  assert.equal(new Set(upstream.datagrams.map((d) => readId(d, 0))).size, 3, 'distinct upstream IDs');
  fromUpstream(relay, answerTo(upstream.datagrams[2]!, '198.18.0.3'), 1);
  fromUpstream(relay, answerTo(upstream.datagrams[1]!, '198.18.0.2'), 1);
  fromUpstream(relay, answerTo(upstream.datagrams[0]!, '198.18.0.1'), 1);
  assert.deepEqual(
    connections.answers.map((a) => [a.connection, a.message.id, addressOf(a.message.answers![0]!)]),
    [
      ['c2', 1, '198.18.0.3'],
      ['c1', 2, '198.18.0.2'],
      ['c1', 1, '198.18.0.1'],
    ],
  );
});

test('the relayed query is a copy: reusing the request buffer (as capture does) changes nothing', () => {
  const { upstream, connections, relay } = setup();
  const buffer = Buffer.alloc(512);
  const first = framed(query('www.lab.test', 10));
  first.copy(buffer);
  relay.onMessages('c1', buffer, 0, first.length, 0);
  const second = framed(query('missing.lab.test', 11));
  second.copy(buffer);
  relay.onMessages('c2', buffer, 0, second.length, 0);
  fromUpstream(relay, answerTo(upstream.datagrams[0]!), 1);
  fromUpstream(relay, answerTo(upstream.datagrams[1]!), 1);
  assert.deepEqual(
    connections.answers.map((a) => [a.connection, a.message.id, a.message.questions![0]!.name]),
    [
      ['c1', 10, 'www.lab.test'],
      ['c2', 11, 'missing.lab.test'],
    ],
  );
  assert.equal(relay.counts[RelayCounter.UNEXPECTED_ANSWERS], 0);
});

test('an answer with a wrong ID or question is ignored and counted', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('www.lab.test', 7));
  relay.onMessages('c1', request, 0, request.length, 0);
  const relayed = upstream.datagrams[0]!;
  fromUpstream(relay, answerTo(query('evil.test', readId(relayed, 0))), 1);
  fromUpstream(relay, Buffer.from([1, 2, 3]), 1);
  assert.equal(connections.answers.length, 0);
  assert.equal(relay.counts[RelayCounter.UNEXPECTED_ANSWERS], 2);
  fromUpstream(relay, answerTo(relayed), 1);
  assert.equal(connections.answers[0]!.message.id, 7);
});

test('a malformed query gets FORMERR without reaching the upstream', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(Buffer.from([0xab, 0xcd, 0x80, 0x00, 0, 1]));
  relay.onMessages('c1', request, 0, request.length, 0);
  assert.equal(upstream.datagrams.length, 0);
  const { message } = connections.answers[0]!;
  assert.equal(message.id, 0xabcd);
  assert.equal(message.flags! & 0xf, Rcode.FORMERR);
  assert.equal(connections.owed.get('c1'), 0);
});

test('no upstream answer within the timeout gives SERVFAIL; a late answer is then ignored', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('www.lab.test', 42));
  relay.onMessages('c1', request, 0, request.length, 10_000);
  relay.tick(10_999);
  assert.equal(connections.answers.length, 0);
  relay.tick(11_000);
  const { message } = connections.answers[0]!;
  assert.equal(message.id, 42);
  assert.equal(message.flags! & 0xf, Rcode.SERVFAIL);
  assert.deepEqual(message.questions, [{ name: 'www.lab.test', type: 'A', class: 'IN' }]);
  fromUpstream(relay, answerTo(upstream.datagrams[0]!), 11_001);
  assert.equal(connections.answers.length, 1);
  assert.equal(relay.pendingQueries, 0);
});

test('an unanswered query is sent again at each quarter of the timeout (UDP loses datagrams), and the answer to any copy is delivered once', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('www.lab.test', 42));
  relay.onMessages('c1', request, 0, request.length, 10_000);
  relay.tick(10_249);
  assert.equal(upstream.datagrams.length, 1);
  relay.tick(10_250);
  assert.equal(upstream.datagrams.length, 2);
  assert.deepEqual(upstream.datagrams[1], upstream.datagrams[0], 'the same query, same upstream ID');
  assert.equal(upstream.sockets[1], upstream.sockets[0], 'from the same socket, where its answer is expected');
  relay.tick(10_600);
  assert.equal(upstream.datagrams.length, 3);
  fromUpstream(relay, answerTo(upstream.datagrams[2]!), 10_601);
  fromUpstream(relay, answerTo(upstream.datagrams[0]!), 10_602);
  assert.equal(connections.answers.length, 1);
  relay.tick(11_000);
  assert.equal(upstream.datagrams.length, 3, 'no resend once answered');
  assert.equal(connections.answers.length, 1);
  assert.equal(relay.counts[RelayCounter.UDP_RETRIES], 2);
  assert.deepEqual(upstream.done, [1, 0, 0], 'its socket is told once that the query is done');
});

test('a truncated UDP answer is fetched again over TCP and the client gets the whole answer', async () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('big.lab.test', 9, 'TXT'));
  relay.onMessages('c1', request, 0, request.length, 0);
  const relayed = upstream.datagrams[0]!;
  const full = dnsPacket.encode({
    type: 'response',
    id: readId(relayed, 0),
    questions: [{ type: 'TXT', name: 'big.lab.test' }],
    answers: Array.from({ length: 16 }, (_, i) => ({ type: 'TXT' as const, name: 'big.lab.test', ttl: 60, data: `${i}`.padEnd(250, 'x') })),
  });
  upstream.tcpAnswer = (q) => (readId(q, 0) === readId(relayed, 0) ? full : null);
  fromUpstream(relay, truncatedTo(readId(relayed, 0)), 1);
  await new Promise((resolve) => setImmediate(resolve));
  const { message } = connections.answers[0]!;
  assert.equal(message.id, 9);
  assert.equal(message.flag_tc, false);
  assert.equal(message.answers!.length, 16);
  assert.equal(relay.counts[RelayCounter.TRUNCATED_RETRIED_TCP], 1);
});

test('a question truncated over UDP lately goes to the upstream over TCP at once, for a minute', async () => {
  const { upstream, connections, relay } = setup();
  const fullAnswerTo = (q: Uint8Array): Buffer => {
    const { id, questions } = dnsPacket.decode(Buffer.from(q));
    return dnsPacket.encode({
      type: 'response',
      id,
      questions,
      answers: Array.from({ length: 16 }, (_, i) => ({
        type: 'TXT' as const,
        name: questions![0]!.name,
        ttl: 60,
        data: `${i}`.padEnd(250, 'x'),
      })),
    });
  };
  const asked: string[] = [];
  upstream.tcpAnswer = (q) => {
    asked.push(dnsPacket.decode(Buffer.from(q)).questions![0]!.name);
    return fullAnswerTo(q);
  };
  const ask = (connection: string, name: string, id: number, type: 'A' | 'TXT', nowMs: number): void => {
    const request = framed(query(name, id, type));
    relay.onMessages(connection, request, 0, request.length, nowMs);
  };

  ask('c1', 'big.lab.test', 1, 'TXT', 0);
  const relayed = upstream.datagrams[0]!;
  fromUpstream(relay, truncatedTo(readId(relayed, 0)), 1);
  // The same question (names are case-insensitive, RFC 4343), on another connection: no datagram.
  ask('c2', 'BIG.lab.test', 2, 'TXT', 1000);
  // Another type, or the same question a minute later: UDP first again.
  ask('c3', 'big.lab.test', 3, 'A', 2000);
  ask('c4', 'big.lab.test', 4, 'TXT', 61_001);
  await new Promise((resolve) => setImmediate(resolve));

  assert.deepEqual(
    upstream.datagrams.map((d) => dnsPacket.decode(d).questions![0]!.type),
    ['TXT', 'A', 'TXT'],
  );
  assert.deepEqual(asked, ['big.lab.test', 'BIG.lab.test']);
  assert.equal(relay.counts[RelayCounter.SENT_OVER_TCP], 1);
  const c2 = connections.answers.find((a) => a.connection === 'c2')!.message;
  assert.equal(c2.id, 2, 'the client ID is kept');
  assert.equal(c2.answers!.length, 16);
  assert.equal(connections.owed.get('c2'), 0);
});

test('an answer with the ID and question of a pending query, on another upstream socket, is dropped and counted', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('www.lab.test', 5), query('www.lab.test', 6));
  relay.onMessages('c1', request, 0, request.length, 0);
  const [first, second] = upstream.datagrams;
  assert.deepEqual(upstream.sockets, [0, 1]);
  // A forger who guessed the first query's ID but sent to the second query's port.
  fromUpstream(relay, answerTo(first!, '203.0.113.66'), 1, 1);
  fromUpstream(relay, answerTo(first!, '203.0.113.66'), 1, 2);
  assert.equal(connections.answers.length, 0);
  assert.equal(relay.counts[RelayCounter.ANSWERS_WRONG_PORT], 2);
  assert.equal(relay.pendingQueries, 2, 'both still wait for their own answers');
  assert.deepEqual(upstream.done, [0, 0, 0]);
  fromUpstream(relay, answerTo(second!, '198.18.0.6'), 2);
  fromUpstream(relay, answerTo(first!, '198.18.0.5'), 2);
  assert.deepEqual(
    connections.answers.map((a) => [a.message.id, addressOf(a.message.answers![0]!)]),
    [
      [6, '198.18.0.6'],
      [5, '198.18.0.5'],
    ],
  );
  assert.deepEqual(upstream.done, [1, 1, 0]);
  assert.equal(relay.counts[RelayCounter.UNEXPECTED_ANSWERS], 0);
});

test('every query sent over UDP is reported done to its socket exactly once: answered, timed out, or moved to TCP', async () => {
  const { upstream, relay } = setup();
  const request = framed(query('www.lab.test', 1), query('missing.lab.test', 2), query('big.lab.test', 3, 'TXT'));
  relay.onMessages('c1', request, 0, request.length, 0);
  const [answered, , truncated] = upstream.datagrams;
  fromUpstream(relay, answerTo(answered!), 1);
  fromUpstream(relay, answerTo(answered!), 2); // a duplicate: not done twice
  fromUpstream(relay, truncatedTo(readId(truncated!, 0)), 3);
  assert.deepEqual(upstream.done, [1, 0, 1], 'answered on socket 0; truncated on socket 2, then asked over TCP');
  relay.tick(1000);
  assert.deepEqual(upstream.done, [1, 1, 1], 'the unanswered one on socket 1, at its timeout');
  await new Promise((resolve) => setImmediate(resolve));
  relay.tick(5000);
  assert.deepEqual(upstream.done, [1, 1, 1]);
});

test('with a packet cache, a question answered once is answered again from it, with the next ID, and never goes upstream', () => {
  const { upstream, connections, relay } = setup(new PacketCache(16, new Uint8Array(16).fill(7)));
  const first = framed(query('www.lab.test', 0x1111));
  relay.onMessages('c1', first, 0, first.length, 0);
  fromUpstream(relay, answerTo(upstream.datagrams[0]!), 10);
  const second = framed(query('WWW.lab.test', 0x2222));
  relay.onMessages('c2', second, 0, second.length, 2010);
  assert.equal(upstream.datagrams.length, 1, 'answered from the cache');
  const { connection, message } = connections.answers[1]!;
  assert.equal(connection, 'c2');
  assert.equal(message.id, 0x2222);
  assert.equal(message.questions![0]!.name, 'WWW.lab.test');
  assert.equal((message.answers![0] as dnsPacket.StringAnswer).ttl, 58);
  assert.equal(connections.owed.get('c2'), 0);
  assert.equal(relay.counts[RelayCounter.CACHE_HITS], 1);
  assert.equal(relay.counts[RelayCounter.CACHE_MISSES], 1);
  // A SERVFAIL (timeout) is not kept: the next asker goes upstream.
  const other = framed(query('slow.lab.test', 5));
  relay.onMessages('c1', other, 0, other.length, 3000);
  relay.tick(3000 + 1000);
  assert.equal((connections.answers.at(-1)!.message as { rcode?: string }).rcode, 'SERVFAIL');
  relay.onMessages('c1', other, 0, other.length, 5000);
  assert.equal(relay.counts[RelayCounter.CACHE_MISSES], 3);
});

test('edns-tcp-keepalive: the query goes upstream without it (RFC 7828 §3.2.1: not over UDP), the answer gets it with the idle time the transport allows', () => {
  const { upstream, connections, relay } = setup(new PacketCache(16, new Uint8Array(16).fill(3)));
  (connections as { idleTimeoutMs?: number }).idleTimeoutMs = 128_000;
  const withKeepalive = (id: number): Buffer =>
    dnsPacket.encode({
      type: 'query',
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'A', name: 'www.lab.test' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [{ code: 11 }] } as dnsPacket.Answer],
    });
  const request = framed(withKeepalive(0x3333));
  relay.onMessages('c1', request, 0, request.length, 0);
  const relayed = dnsPacket.decode(upstream.datagrams[0]!);
  const relayedOpt = relayed.additionals!.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer;
  assert.deepEqual(relayedOpt.options, [], 'no keepalive over UDP');
  // The resolver's answer, with its OPT record (RFC 6891 §7) and no keepalive.
  fromUpstream(relay, answerTo(upstream.datagrams[0]!, undefined, 0, []), 5);
  // The client's answer carries the timeout: 1280 × 100 ms.
  const keepaliveOf = (m: dnsPacket.DecodedPacket): unknown =>
    ((m.additionals!.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer).options as { code: number; timeout?: number }[]).find(
      (o) => o.code === 11,
    )?.timeout;
  assert.equal(keepaliveOf(connections.answers[0]!.message), 1280);
  // From the cache too, and only for an asker who asked.
  const again = framed(withKeepalive(0x4444));
  relay.onMessages('c2', again, 0, again.length, 1000);
  assert.equal(upstream.datagrams.length, 1);
  assert.equal(keepaliveOf(connections.answers[1]!.message), 1280);
});

test('over --max-qps-per-client a query gets REFUSED at once (or nothing, with drop) and never goes upstream', () => {
  for (const action of ['refuse', 'drop'] as const) {
    const { upstream, connections, relay } = setup(null, new ClientRateLimit(2, 24, 56, new Uint8Array(16)), action);
    // Connections are named by their client's address here.
    (connections as { clientAddressBytes?: (c: string, out: Uint8Array) => number }).clientAddressBytes = (c, out) => {
      const bytes = addressBytes(c);
      out.set(bytes);
      return bytes.length;
    };
    const burst = framed(query('a.lab.test', 1), query('b.lab.test', 2), query('c.lab.test', 3));
    relay.onMessages('198.18.7.1', burst, 0, burst.length, 0);
    relay.onMessages('198.18.9.1', burst, 0, burst.length, 0);
    assert.equal(upstream.datagrams.length, 4, `${action}: two from each network`);
    assert.equal(relay.counts[RelayCounter.RATE_LIMITED], 2);
    const refused = connections.answers.filter((a) => (a.message as { rcode?: string }).rcode === 'REFUSED');
    if (action === 'refuse') {
      assert.deepEqual(
        refused.map((a) => [a.connection, a.message.id, a.message.questions![0]!.name]),
        [
          ['198.18.7.1', 3, 'c.lab.test'],
          ['198.18.9.1', 3, 'c.lab.test'],
        ],
      );
      assert.equal(connections.owed.get('198.18.7.1'), 2, 'the two relayed are owed');
    } else {
      assert.equal(refused.length, 0);
      assert.equal(connections.owed.get('198.18.7.1'), 2, 'the dropped one is not owed');
    }
  }
});

test('with the PROXY protocol, each datagram starts with a v2 header naming the client; the answer comes back as usual', () => {
  const upstream = new RecordingUpstream();
  currentUpstream = upstream;
  const connections = new RecordingConnections();
  (connections as { connectionEndpoints?: (c: string, out: ConnectionEndpoints) => void }).connectionEndpoints = (_c, out) => {
    out.family = 4;
    out.clientAddress.set([198, 18, 0, 1]);
    out.serverAddress.set([198, 18, 0, 2]);
    out.clientPort = 40000;
    out.serverPort = 53;
  };
  const relay = new DnsRelay<string>({ timeoutMs: 1000, upstream, fillRandom: (b) => b.fill(1), now: () => clockMs, proxyProtocol: true });
  relay.attach(connections);
  const request = framed(query('www.lab.test', 0x5555));
  relay.onMessages('c1', request, 0, request.length, 0);
  const datagram = upstream.datagrams[0]!;
  assert.equal(datagram.subarray(0, 28).toString('hex'), '0d0a0d0a000d0a515549540a2112000cc6120001c61200029c400035');
  const relayed = datagram.subarray(28);
  assert.equal(dnsPacket.decode(relayed).questions![0]!.name, 'www.lab.test');
  fromUpstream(relay, answerTo(relayed), 1);
  assert.equal(connections.answers[0]!.message.id, 0x5555);
  // A resend carries the header too.
  relay.onMessages('c1', request, 0, request.length, 10);
  relay.tick(10 + 300);
  assert.equal(upstream.datagrams.at(-1)!.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a');
});

test('a REFUSED without its question (unbound access control) is taken by ID and port and given to the client with its question; a NOERROR without one is not', () => {
  const { upstream, connections, relay } = setup();
  const request = framed(query('www.lab.test', 0x6666), query('www.lab.test', 0x7777));
  relay.onMessages('c1', request, 0, request.length, 0);
  const headerOnly = (relayed: Buffer, rcode: number): Buffer => {
    const h = Buffer.alloc(12);
    relayed.copy(h, 0, 0, 2);
    h[2] = 0x81; // QR, RD
    h[3] = rcode;
    return h;
  };
  fromUpstream(relay, headerOnly(upstream.datagrams[0]!, 5), 1);
  fromUpstream(relay, headerOnly(upstream.datagrams[1]!, 0), 1);
  assert.equal(connections.answers.length, 1);
  const { message } = connections.answers[0]!;
  assert.equal(message.id, 0x6666);
  assert.equal((message as { rcode?: string }).rcode, 'REFUSED');
  assert.equal(message.questions![0]!.name, 'www.lab.test');
  assert.equal(relay.counts[RelayCounter.UNEXPECTED_ANSWERS], 1, 'the question-less NOERROR');
});

/** A pool of two upstreams as the relay sees it: sockets 0 and 1 belong to upstream 0 and 1; `up` says which may take queries. */
class TwoUpstreams extends RecordingUpstream {
  readonly up = [true, true];
  override sendDatagram(query: Uint8Array): number {
    const socket = this.up[0] ? 0 : this.up[1] ? 1 : -1;
    if (socket >= 0) {
      this.datagrams.push(Buffer.from(query));
      this.sockets.push(socket);
    }
    return socket;
  }
  failover(query: Uint8Array, socket: number): number {
    const other = 1 - socket;
    if (!this.up[other]) return -1;
    this.datagrams.push(Buffer.from(query));
    this.sockets.push(other);
    return other;
  }
}

test('with a pool, a query unanswered after half the timeout goes to another upstream, whose answer alone is then taken', () => {
  const upstream = new TwoUpstreams();
  currentUpstream = upstream;
  const connections = new RecordingConnections();
  const relay = new DnsRelay<string>({ timeoutMs: 1000, upstream, fillRandom: (b) => b.fill(3), now: () => clockMs });
  relay.attach(connections);
  const request = framed(query('www.lab.test', 42));
  relay.onMessages('c1', request, 0, request.length, 10_000);
  relay.tick(10_250);
  assert.deepEqual(upstream.sockets, [0, 0], 'a resend to the same upstream at a quarter');
  relay.tick(10_500);
  assert.deepEqual(upstream.sockets, [0, 0, 1], 'at half the timeout, to the other upstream');
  assert.equal(relay.counts[RelayCounter.FAILOVERS], 1);
  assert.deepEqual(upstream.done, [1, 0, 0], 'the first upstream is told the query is done there');
  fromUpstream(relay, answerTo(upstream.datagrams[0]!), 10_600, 0);
  assert.equal(connections.answers.length, 0, "the first upstream's late answer is no longer taken");
  fromUpstream(relay, answerTo(upstream.datagrams[2]!), 10_700, 1);
  assert.equal(connections.answers.length, 1);
  assert.equal(connections.answers[0]!.message.id, 42);
  assert.equal(connections.answers[0]!.message.flags! & 0xf, Rcode.NOERROR);
  assert.deepEqual(
    upstream.outcomes,
    [
      [0, UNANSWERED],
      [1, 200],
    ],
    'the first upstream left it unanswered; the second answered 200 ms after the failover sent it there',
  );
});

test('with a pool whose upstreams are all down, a query gets SERVFAIL at once', () => {
  const upstream = new TwoUpstreams();
  upstream.up[0] = false;
  upstream.up[1] = false;
  const connections = new RecordingConnections();
  const relay = new DnsRelay<string>({ timeoutMs: 1000, upstream, fillRandom: (b) => b.fill(3), now: () => clockMs });
  relay.attach(connections);
  const request = framed(query('www.lab.test', 43));
  relay.onMessages('c1', request, 0, request.length, 10_000);
  assert.equal(connections.answers.length, 1);
  assert.equal(connections.answers[0]!.message.id, 43);
  assert.equal(connections.answers[0]!.message.flags! & 0xf, Rcode.SERVFAIL);
  assert.equal(relay.counts[RelayCounter.NO_UPSTREAM_UP], 1);
  assert.equal(relay.pendingQueries, 0);
});

/** `--ecs`: a relay whose connections are named by their client's address, as the transports give it. */
function setupClientSubnet(options: Partial<ClientSubnetOptions> = {}, cache: PacketCache | null = null) {
  const upstream = new RecordingUpstream();
  currentUpstream = upstream;
  const connections = new RecordingConnections();
  (connections as { clientAddressBytes?: (c: string, out: Uint8Array) => number }).clientAddressBytes = (c, out) => {
    const bytes = addressBytes(c);
    out.set(bytes);
    return bytes.length;
  };
  const clientSubnet = { ipv4PrefixLength: 24, ipv6PrefixLength: 56, override: false, ...options };
  let counter = 0;
  const fillRandom = (b: Uint8Array): void => {
    for (let i = 0; i < b.length; i++) b[i] = ++counter;
  };
  const relay = new DnsRelay<string>({ timeoutMs: 1000, upstream, fillRandom, now: () => clockMs, clientSubnet, cache });
  relay.attach(connections);
  return { upstream, connections, relay };
}

type SubnetOption = { code: number; family?: number; sourcePrefixLength?: number; scopePrefixLength?: number; ip?: string };
const optOf = (m: dnsPacket.DecodedPacket): dnsPacket.OptAnswer | undefined =>
  m.additionals?.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer | undefined;
/** The message's client subnet option as dns-packet decodes it (its raw `data` and `type` name left out). */
const subnetOf = (m: dnsPacket.DecodedPacket): SubnetOption | undefined => {
  const option = (optOf(m)?.options as SubnetOption[] | undefined)?.find((o) => o.code === 8);
  if (option === undefined) return undefined;
  const { code, family, sourcePrefixLength, scopePrefixLength, ip } = option;
  return { code, family, sourcePrefixLength, scopePrefixLength, ip };
};
const ednsQuery = (id: number, options: object[], name = 'www.lab.test'): Buffer =>
  dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, options } as unknown as dnsPacket.Answer],
  });
/** The resolver's answer to a relayed query, its OPT record echoing the relayed client subnet option with `scope` (an ECS-aware resolver, RFC 7871 §7.2.1). */
const subnetAnswerTo = (relayed: Buffer, scope: number): Buffer =>
  answerTo(relayed, undefined, 0, [{ ...subnetOf(dnsPacket.decode(relayed)), scopePrefixLength: scope }]);

test('--ecs: a query without EDNS gets an OPT record with the client /24 (RFC 7871 §6), and its answer comes back without either', () => {
  const { upstream, connections, relay } = setupClientSubnet();
  const request = framed(query('www.lab.test', 0x0101));
  relay.onMessages('198.18.7.129', request, 0, request.length, 0);
  const relayed = upstream.datagrams[0]!;
  // OPT: root name, type 41, payload 1232, TTL 0, RDLENGTH 11; the option: code 8, length 7,
  // family 1, source 24, scope 0, three address octets.
  assert.equal(relayed.subarray(relayed.length - 22).toString('hex'), '00002904d000000000' + '000b' + '0008000700011800c61207');
  assert.equal(relayed.readUInt16BE(10), 1, 'ARCOUNT');
  assert.deepEqual(subnetOf(dnsPacket.decode(relayed)), {
    code: 8,
    family: 1,
    sourcePrefixLength: 24,
    scopePrefixLength: 0,
    ip: '198.18.7.0',
  });
  fromUpstream(relay, subnetAnswerTo(relayed, 24), 5);
  const { message } = connections.answers[0]!;
  assert.equal(message.id, 0x0101);
  assert.deepEqual(message.additionals, [], 'no OPT record: the client sent none (RFC 6891 §7)');
  assert.equal((message.answers![0] as dnsPacket.StringAnswer).data, '198.18.0.100');
});

test('--ecs: a query with EDNS keeps its options and gets the client /56 beside them; the answer keeps its own options, not the subnet', () => {
  const { upstream, connections, relay } = setupClientSubnet();
  const cookie = { code: 10, data: Buffer.from('0102030405060708', 'hex') };
  const request = framed(ednsQuery(0x0202, [cookie, { code: 11 }]));
  relay.onMessages('2001:2:0:ab12:34::1', request, 0, request.length, 0);
  const relayed = dnsPacket.decode(upstream.datagrams[0]!);
  const options = optOf(relayed)!.options as SubnetOption[];
  assert.deepEqual(
    options.map((o) => o.code),
    [10, 8],
    'the cookie kept, keepalive left out (not over UDP), the subnet added',
  );
  assert.deepEqual(subnetOf(relayed), { code: 8, family: 2, sourcePrefixLength: 56, scopePrefixLength: 0, ip: '2001:2:0:ab00::' });
  assert.equal(optOf(relayed)!.udpPayloadSize, 4096, "the client's own OPT record");
  const answer = answerTo(upstream.datagrams[0]!, undefined, 0, [
    { ...subnetOf(relayed), scopePrefixLength: 48 },
    { code: 10, data: Buffer.alloc(24, 1) },
  ]);
  fromUpstream(relay, answer, 5);
  const { message } = connections.answers[0]!;
  assert.deepEqual(
    (optOf(message)!.options as SubnetOption[]).map((o) => o.code),
    [10],
    'the client sent no subnet, so it gets none back (RFC 7871 §7.2.2)',
  );
});

test("--ecs: a client's own option is kept as it sent it (dnsdist's default); its answer comes back as the resolver gave it", () => {
  const { upstream, connections, relay } = setupClientSubnet();
  const own = { code: 8, family: 1, sourcePrefixLength: 20, ip: '192.0.2.0' };
  const request = framed(ednsQuery(0x0303, [own]));
  relay.onMessages('198.18.7.129', request, 0, request.length, 0);
  const relayed = upstream.datagrams[0]!;
  assert.deepEqual(subnetOf(dnsPacket.decode(relayed)), { ...own, scopePrefixLength: 0 });
  assert.equal(relayed.length, request.length - 2, 'nothing added');
  fromUpstream(relay, subnetAnswerTo(relayed, 20), 5);
  assert.deepEqual(subnetOf(connections.answers[0]!.message), { ...own, scopePrefixLength: 20 });
});

test("--ecs-override: a client's option is replaced by its real network, never longer than the client's prefix; the client gets its own back", () => {
  const { upstream, connections, relay } = setupClientSubnet({ override: true });
  const own = { code: 8, family: 1, sourcePrefixLength: 20, ip: '192.0.2.0' };
  const request = framed(ednsQuery(0x0404, [own, { code: 10, data: Buffer.alloc(8, 2) }]));
  relay.onMessages('198.18.7.129', request, 0, request.length, 0);
  const relayed = dnsPacket.decode(upstream.datagrams[0]!);
  // /20, the shorter of the client's 20 and our 24 (RFC 7871 §7.1.1): 198.18.0.0.
  assert.deepEqual(subnetOf(relayed), { code: 8, family: 1, sourcePrefixLength: 20, scopePrefixLength: 0, ip: '198.18.0.0' });
  assert.deepEqual(
    (optOf(relayed)!.options as SubnetOption[]).map((o) => o.code),
    [10, 8],
  );
  // The resolver's scope 24 for our network: the client's answer names its own network, scoped to its own prefix.
  fromUpstream(relay, subnetAnswerTo(upstream.datagrams[0]!, 24), 5);
  assert.deepEqual(subnetOf(connections.answers[0]!.message), { ...own, scopePrefixLength: 20 });
  // Scope 0 (the answer suits every address) stays 0.
  const again = framed(ednsQuery(0x0505, [own]));
  relay.onMessages('198.18.7.129', again, 0, again.length, 10);
  fromUpstream(relay, subnetAnswerTo(upstream.datagrams[1]!, 0), 15);
  assert.deepEqual(subnetOf(connections.answers[1]!.message), { ...own, scopePrefixLength: 0 });
  // A client's /0 forbids any address (RFC 7871 §7.1.2): the resolver gets none.
  const anonymous = framed(ednsQuery(0x0606, [{ code: 8, family: 1, sourcePrefixLength: 0, ip: '0.0.0.0' }]));
  relay.onMessages('198.18.7.129', anonymous, 0, anonymous.length, 20);
  const relayedAnonymous = upstream.datagrams[2]!;
  assert.equal(relayedAnonymous.subarray(relayedAnonymous.length - 8).toString('hex'), '0008000400010000');
});

test('--ecs with a packet cache: keyed with the subnet, so a network gets only its own answers, each client as it asked', () => {
  const { upstream, connections, relay } = setupClientSubnet({}, new PacketCache(16, new Uint8Array(16).fill(5)));
  const plain = framed(query('www.lab.test', 1));
  relay.onMessages('198.18.7.129', plain, 0, plain.length, 0);
  fromUpstream(relay, subnetAnswerTo(upstream.datagrams[0]!, 24), 5);
  // Same /24, with EDNS: from the cache, with its OPT record but no subnet; and without EDNS, without OPT.
  const edns = framed(ednsQuery(2, []));
  relay.onMessages('198.18.7.5', edns, 0, edns.length, 10);
  relay.onMessages('198.18.7.6', plain, 0, plain.length, 20);
  assert.equal(upstream.datagrams.length, 1, 'both from the cache');
  assert.deepEqual(optOf(connections.answers[1]!.message)!.options, []);
  assert.deepEqual(connections.answers[2]!.message.additionals, []);
  // Another /24 asks the resolver.
  relay.onMessages('198.18.8.1', plain, 0, plain.length, 30);
  assert.equal(upstream.datagrams.length, 2);
  assert.equal(subnetOf(dnsPacket.decode(upstream.datagrams[1]!))!.ip, '198.18.8.0');
  assert.equal(relay.counts[RelayCounter.CACHE_HITS], 2);
});

test('--ecs: an IPv4-mapped client address (dual-stack kernel sockets) is IPv4; a signed query (TSIG) goes unchanged', () => {
  const { upstream, relay } = setupClientSubnet();
  const request = framed(query('www.lab.test', 7));
  relay.onMessages('::ffff:198.18.7.129', request, 0, request.length, 0);
  assert.deepEqual(subnetOf(dnsPacket.decode(upstream.datagrams[0]!)), {
    code: 8,
    family: 1,
    sourcePrefixLength: 24,
    scopePrefixLength: 0,
    ip: '198.18.7.0',
  });
  // A TSIG record (RFC 8945 §4.2; its RDATA need not be valid here): changing the message would break it.
  const tsig = Buffer.from('0000fa00ff00000000000400000000', 'hex');
  const signed = query('www.lab.test', 8);
  signed.writeUInt16BE(1, 10);
  const message = Buffer.concat([signed, tsig]);
  const framedSigned = framed(message);
  relay.onMessages('198.18.7.129', framedSigned, 0, framedSigned.length, 10);
  const relayed = upstream.datagrams[1]!;
  assert.equal(relayed.subarray(2).toString('hex'), message.subarray(2).toString('hex'), 'unchanged but for the ID');
});
