/**
 * The upstream's UDP source ports (RFC 5452 §9.1, §9.2) against a real resolver socket on
 * loopback, with the pool forced on (a loopback upstream gets one socket in the front end, which
 * `upstreamPortsFor` checks): queries leave from several ports and each answer comes back with the
 * socket its query left from; a datagram from another address or port never arrives (the kernel
 * refuses it, as for a closed port); an answer from the resolver to another of our ports is
 * dropped and counted by the relay; sockets are replaced by fresh ones after a number of queries
 * or some time, and a replaced socket still takes the answers it owes, then closes.
 */
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { test } from 'node:test';
import dnsPacket from 'dns-packet';
import { RecordingConnections } from '../../support/recording-connections.js';
import { readId } from '../../../src/dns/message.js';
import { DnsRelay, RELAY_COUNTER_NAMES, RelayCounter } from '../../../src/dns/relay.js';
import { upstreamPortsFor, type DnsSettings } from '../../../src/dns/application.js';
import { DEFAULT_HEALTH_CHECK } from '../../../src/dns/upstream-pool.js';
import { UdpTcpUpstream, type UpstreamPorts } from '../../../src/io/upstream.js';

/** A query as the resolver saw it: its ID and the source port it came from. */
interface Received {
  id: number;
  port: number;
  query: Buffer;
}

/** The resolver: a UDP socket on 127.0.0.1 that records each query and answers it at once, or when told. */
async function resolver(answerAtOnce: boolean, delayMs = 0) {
  // Room for a burst of 400 queries (the 208 KiB default holds about 256 small datagrams).
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const received: Received[] = [];
  const answer = (query: Buffer, toPort: number, address = '198.18.0.100'): void => {
    const q = dnsPacket.decode(query);
    const response = dnsPacket.encode({
      type: 'response',
      id: q.id,
      questions: q.questions,
      answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: address }],
    });
    socket.send(response, toPort, '127.0.0.1');
  };
  socket.on('message', (query, from) => {
    received.push({ id: query.readUInt16BE(0), port: from.port, query });
    if (answerAtOnce) setTimeout(() => answer(query, from.port), delayMs);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { port: socket.address().port, received, answer, close: () => socket.close() };
}

/** A query for `name` with upstream ID `id`. */
const query = (id: number, name = 'www.lab.test'): Buffer =>
  dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });

/** Polls `condition` every 10 ms, for at most 3 s. */
async function until(condition: () => boolean, what: () => string): Promise<void> {
  for (let i = 0; i < 300 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(condition(), what());
}

/** An answer as the upstream handed it over: its ID and the socket it came on. */
interface Arrived {
  id: number;
  socket: number;
}

function upstreamTo(port: number, ports: UpstreamPorts, counts = new Float64Array(RELAY_COUNTER_NAMES.length)) {
  const arrived: Arrived[] = [];
  const upstream = new UdpTcpUpstream(
    { address: '127.0.0.1', port, family: 4 },
    { ports, onAnswer: (bytes, offset, _length, socket) => arrived.push({ id: readId(bytes, offset), socket }), counts, nowMs: 0 },
  );
  return { upstream, arrived, counts };
}

/** Sends `datagram` from `from` (address, port 0 for any) to 127.0.0.1:`toPort`; resolves to the error the socket then reports, if any within 500 ms. */
async function inject(datagram: Buffer, fromAddress: string, fromPort: number, toPort: number): Promise<string | null> {
  const socket = dgram.createSocket('udp4');
  try {
    socket.bind(fromPort, fromAddress);
    await once(socket, 'listening');
    socket.connect(toPort, '127.0.0.1');
    await once(socket, 'connect');
    const refused = new Promise<string | null>((resolve) => {
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      setTimeout(() => resolve(null), 500);
    });
    socket.send(datagram);
    return await refused;
  } finally {
    socket.close();
  }
}

test('a loopback upstream gets one socket that keeps its port; any other address the configured pool', () => {
  const settings = (address: string, family: 4 | 6): DnsSettings => ({
    kind: 'dns',
    upstreams: [],
    upstream: { address, port: 53, family },
    timeoutMs: 2000,
    upstreamPorts: 8,
    cacheSize: 0,
    maxQpsPerClient: 0,
    rateLimitIpv4Prefix: 24,
    rateLimitIpv6Prefix: 56,
    rateLimitAction: 'refuse',
    upstreamProxyProtocol: false,
    weights: [],
    policy: 'least-outstanding',
    healthCheck: DEFAULT_HEALTH_CHECK,
    clientSubnet: null,
    queriesPerPort: 1000,
    portLifetimeMs: 10_000,
  });
  const one = { sockets: 1, queriesPerPort: Infinity, portLifetimeMs: Infinity };
  const pool = { sockets: 8, queriesPerPort: 1000, portLifetimeMs: 10_000 };
  assert.deepEqual(upstreamPortsFor(settings('127.0.0.1', 4)), one);
  assert.deepEqual(upstreamPortsFor(settings('127.53.0.9', 4)), one);
  assert.deepEqual(upstreamPortsFor(settings('::1', 6)), one);
  assert.deepEqual(upstreamPortsFor(settings('::ffff:127.0.0.1', 6)), one);
  assert.deepEqual(upstreamPortsFor(settings('198.18.1.1', 4)), pool);
  assert.deepEqual(upstreamPortsFor(settings('2001:2:0:1::1', 6)), pool);
  assert.deepEqual(upstreamPortsFor(settings('::ffff:198.18.1.1', 6)), pool);
});

/** A turn of the event loop: queries sent before and after it are in different batches. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('each batch of queries leaves from a socket chosen at random, and each answer comes back on the socket its query left from', async (t) => {
  const server = await resolver(true);
  const { upstream, arrived } = upstreamTo(server.port, { sockets: 8, queriesPerPort: Infinity, portLifetimeMs: Infinity });
  t.after(() => {
    upstream.close();
    server.close();
  });
  const sentFrom = new Map<number, number>();
  // One batch: the queries of one piece of JavaScript leave together, from one socket.
  for (let id = 0; id < 50; id++) sentFrom.set(id, upstream.sendDatagram(query(id), 0));
  assert.equal(new Set(sentFrom.values()).size, 1, 'one socket for the batch');
  // Then 400 batches of one.
  for (let id = 50; id < 450; id++) {
    await nextTurn();
    sentFrom.set(id, upstream.sendDatagram(query(id), 0));
  }
  await until(
    () => arrived.length === 450,
    () => `450 answers (got ${arrived.length})`,
  );
  for (const { id, socket } of arrived) {
    assert.equal(socket, sentFrom.get(id), `answer ${id} on the socket its query left from`);
    upstream.queryDone(socket);
  }
  const portOfSocket = new Map<number, number>();
  for (const { id, port } of server.received) {
    const socket = sentFrom.get(id)!;
    assert.equal(portOfSocket.get(socket) ?? port, port, 'one port per socket');
    portOfSocket.set(socket, port);
  }
  assert.equal(new Set(server.received.map((r) => r.port)).size, 8, 'eight source ports');
  const perSocket = [...sentFrom.entries()]
    .filter(([id]) => id >= 50)
    .reduce((n, [, socket]) => n.set(socket, (n.get(socket) ?? 0) + 1), new Map<number, number>());
  // 50 each on average; 400 uniform choices put fewer than 20 on one of 8 sockets with probability below 1e-8.
  assert.ok(
    [...perSocket.values()].every((n) => n >= 20),
    `spread over all eight: ${[...perSocket.values()]}`,
  );
  assert.equal(upstream.openUdpSockets, 8);
});

test('a datagram from another port or address never arrives: the kernel answers it as for a closed port', async (t) => {
  const server = await resolver(false);
  const { upstream, arrived } = upstreamTo(server.port, { sockets: 2, queriesPerPort: Infinity, portLifetimeMs: Infinity });
  t.after(() => {
    upstream.close();
    server.close();
  });
  const socket = upstream.sendDatagram(query(0x1234), 0);
  await until(
    () => server.received.length === 1,
    () => 'the query arrived',
  );
  const { port, query: asked } = server.received[0]!;
  const forged = dnsPacket.encode({
    type: 'response',
    id: 0x1234,
    questions: dnsPacket.decode(asked).questions,
    answers: [{ type: 'A', name: 'www.lab.test', ttl: 60, data: '203.0.113.66' }],
  });
  // The right ID and question, to the port the query left from: from another port of the
  // resolver's address, and from the resolver's port on another address.
  assert.equal(await inject(forged, '127.0.0.1', 0, port), 'ECONNREFUSED');
  assert.equal(await inject(forged, '127.0.0.2', server.port, port), 'ECONNREFUSED');
  assert.deepEqual(arrived, []);
  server.answer(asked, port);
  await until(
    () => arrived.length === 1,
    () => 'the real answer arrived',
  );
  assert.deepEqual(arrived, [{ id: 0x1234, socket }]);
});

test('an answer from the resolver to another of our ports is dropped and counted; the query still gets its own', async (t) => {
  const server = await resolver(false);
  const counts = new Float64Array(RELAY_COUNTER_NAMES.length);
  let relay: DnsRelay<string> | undefined;
  const upstream = new UdpTcpUpstream(
    { address: '127.0.0.1', port: server.port, family: 4 },
    {
      ports: { sockets: 2, queriesPerPort: Infinity, portLifetimeMs: Infinity },
      onAnswer: (bytes, offset, length, socket) => relay!.handleUpstreamAnswer(bytes, offset, length, socket),
      counts,
      nowMs: 0,
    },
  );
  relay = new DnsRelay<string>({ timeoutMs: 10_000, upstream, fillRandom: (b) => randomFillSync(b), now: Date.now, counts });
  const client = new RecordingConnections();
  relay.attach(client);
  t.after(() => {
    relay.close();
    server.close();
  });
  // 64 queries, each in a batch of its own, so that both sockets send some (all on one: 2^-63).
  const requests = Array.from({ length: 64 }, (_, i) => query(i, `q${i}.lab.test`));
  for (const request of requests) {
    const framed = Buffer.concat([Buffer.from([request.length >> 8, request.length & 0xff]), request]);
    relay.onMessages('c1', framed, 0, framed.length, Date.now());
    await nextTurn();
  }
  await until(
    () => server.received.length === 64,
    () => `64 queries (got ${server.received.length})`,
  );
  const ports = [...new Set(server.received.map((r) => r.port))];
  assert.equal(ports.length, 2);
  const victim = server.received[0]!;
  const otherPort = ports.find((p) => p !== victim.port)!;
  server.answer(victim.query, otherPort, '203.0.113.66');
  await until(
    () => counts[RelayCounter.ANSWERS_WRONG_PORT] === 1,
    () => `counted (answers_wrong_port ${counts[RelayCounter.ANSWERS_WRONG_PORT]})`,
  );
  assert.equal(client.answers.length, 0);
  for (const { query: asked, port } of server.received) server.answer(asked, port);
  await until(
    () => client.answers.length === 64,
    () => `64 answers (got ${client.answers.length})`,
  );
  assert.ok(
    client.answers.every((a) => (a.message.answers?.[0] as dnsPacket.StringAnswer | undefined)?.data === '198.18.0.100'),
    'no client got the forged address',
  );
  assert.deepEqual(
    client.answers.map((a) => a.message.id!).sort((a, b) => a - b),
    requests.map((_, i) => i),
  );
  assert.equal(counts[RelayCounter.UNEXPECTED_ANSWERS], 0);
  assert.equal(relay.pendingQueries, 0);
});

test('sockets are replaced after their number of queries; a replaced socket takes the answers it owes, then closes', async (t) => {
  // Every answer comes 30 ms after its query, and a query leaves every 5 ms: each socket is
  // replaced (after 5 queries) while answers to it are on their way.
  const server = await resolver(true, 30);
  const { upstream, arrived, counts } = upstreamTo(server.port, { sockets: 2, queriesPerPort: 5, portLifetimeMs: Infinity });
  t.after(() => {
    upstream.close();
    server.close();
  });
  const sentFrom = new Map<number, number>();
  const answered = new Set<number>();
  const take = (): void => {
    for (const { id, socket } of arrived) {
      if (answered.has(id)) continue;
      answered.add(id);
      assert.equal(socket, sentFrom.get(id), `answer ${id} on the socket its query left from`);
      upstream.queryDone(socket);
    }
  };
  for (let id = 0; id < 40; id++) {
    sentFrom.set(id, upstream.sendDatagram(query(id), 0));
    await new Promise((resolve) => setTimeout(resolve, 5));
    take();
  }
  await until(
    () => {
      take();
      return answered.size === 40;
    },
    () => `40 answers (got ${answered.size})`,
  );
  assert.equal(arrived.length, 40, 'each answer once');
  const ports = new Set(server.received.map((r) => r.port));
  // 40 queries, 5 per socket: 8 sockets, fewer if replacements were put off while both places'
  // old sockets drained. Each replacement has a new port (the kernel may, rarely, hand out again a
  // port that an earlier socket gave up).
  const rebinds = counts[RelayCounter.PORT_REBINDS]!;
  assert.ok(rebinds >= 3, `replaced (${rebinds} re-binds)`);
  assert.ok(ports.size > 2 && ports.size <= rebinds + 2, `${ports.size} ports for ${rebinds} re-binds`);
  assert.equal(upstream.openUdpSockets, 2, 'the replaced sockets closed once they owed nothing');
  // A port given up is closed: a datagram to it is refused.
  const first = server.received[0]!.port;
  const last = server.received.at(-1)!.port;
  if (first !== last) assert.equal(await inject(query(1), '127.0.0.1', 0, first), 'ECONNREFUSED');
});

test('a socket is replaced once it is older than its lifetime, at its next query', async (t) => {
  const server = await resolver(true);
  const { upstream, arrived, counts } = upstreamTo(server.port, { sockets: 1, queriesPerPort: Infinity, portLifetimeMs: 50 });
  t.after(() => {
    upstream.close();
    server.close();
  });
  for (const [id, nowMs] of [
    [1, 0],
    [2, 49],
    [3, 50],
    [4, 99],
    [5, 100],
  ] as const) {
    const socket = upstream.sendDatagram(query(id), nowMs);
    await until(
      () => arrived.length === id,
      () => `answer ${id}`,
    );
    assert.equal(arrived.at(-1)!.socket, socket);
    upstream.queryDone(socket);
  }
  const portOf = (id: number): number => server.received.find((r) => r.id === id)!.port;
  assert.equal(portOf(2), portOf(1));
  assert.notEqual(portOf(3), portOf(2), 'a new port at 50 ms');
  assert.equal(portOf(4), portOf(3));
  assert.notEqual(portOf(5), portOf(4));
  assert.equal(counts[RelayCounter.PORT_REBINDS], 2);
  assert.equal(upstream.openUdpSockets, 1);
});

test('while as many sockets drain as the pool has, a replacement is put off (counted once) until one has drained', async (t) => {
  const server = await resolver(false);
  const { upstream, counts } = upstreamTo(server.port, { sockets: 1, queriesPerPort: 1, portLifetimeMs: Infinity });
  t.after(() => {
    upstream.close();
    server.close();
  });
  const first = upstream.sendDatagram(query(1), 0);
  const second = upstream.sendDatagram(query(2), 0); // the first socket is due: replaced, and drains
  assert.notEqual(second, first);
  assert.equal(counts[RelayCounter.PORT_REBINDS], 1);
  assert.equal(upstream.sendDatagram(query(3), 0), second, 'due, but one socket drains already: put off');
  assert.equal(upstream.sendDatagram(query(4), 0), second);
  assert.equal(counts[RelayCounter.PORT_REBINDS_POSTPONED], 1, 'counted once');
  assert.equal(upstream.openUdpSockets, 2);
  await until(
    () => server.received.length === 4,
    () => `4 queries (got ${server.received.length})`,
  );
  upstream.queryDone(first); // the first socket has drained: the replacement goes ahead
  assert.equal(counts[RelayCounter.PORT_REBINDS], 2);
  assert.equal(upstream.openUdpSockets, 2, 'the second socket drains now');
  const third = upstream.sendDatagram(query(5), 0);
  assert.notEqual(third, second);
  await until(
    () => server.received.length === 5,
    () => `5 queries (got ${server.received.length})`,
  );
  const portOf = (id: number): number => server.received.find((r) => r.id === id)!.port;
  assert.deepEqual([portOf(3), portOf(4)], [portOf(2), portOf(2)]);
  assert.notEqual(portOf(2), portOf(1));
  assert.notEqual(portOf(5), portOf(2));
});
