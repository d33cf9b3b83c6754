/**
 * The upstream's TCP path against a real server on 127.0.0.1: a query whose connection the
 * resolver closes before answering (as unbound does with idle or surplus connections) is asked
 * again on another connection, not answered SERVFAIL; queries share one connection until it has
 * 100 outstanding.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { type TestContext, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { UdpTcpUpstream } from '../../../src/io/upstream.js';
import { RELAY_COUNTER_NAMES } from '../../../src/dns/relay.js';

/** The upstream of a relay whose resolver is `server`, listening on 127.0.0.1; both closed after the test. */
async function upstreamTo(server: net.Server, t: TestContext): Promise<UdpTcpUpstream> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const upstream = new UdpTcpUpstream(
    { address: '127.0.0.1', port, family: 4 },
    {
      ports: { sockets: 1, queriesPerPort: Infinity, portLifetimeMs: Infinity },
      onAnswer: () => {},
      counts: new Float64Array(RELAY_COUNTER_NAMES.length),
      nowMs: 0,
    },
  );
  t.after(() => {
    upstream.close();
    server.close();
  });
  return upstream;
}

test('a query on a TCP connection the resolver closes is asked again on a new one', async (t) => {
  let connections = 0;
  const server = net.createServer((socket) => {
    const mine = ++connections;
    socket.once('data', (framed: Buffer) => {
      if (mine === 1) {
        socket.destroy(); // the first connection is closed with the query unanswered
        return;
      }
      const query = dnsPacket.decode(framed.subarray(2));
      const answer = dnsPacket.encode({ type: 'response', id: query.id, questions: query.questions, answers: [] });
      socket.write(Buffer.concat([Buffer.from([answer.length >> 8, answer.length & 0xff]), answer]));
    });
  });
  const upstream = await upstreamTo(server, t);
  const query = dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'TXT', name: 'big.lab.test' }] });
  // The answer is handed over in place, valid during the call: a copy is kept.
  const answer = await new Promise<Uint8Array | null>((resolve) =>
    upstream.queryOverTcp(query, 5000, (bytes, offset, length) => resolve(bytes === null ? null : bytes.slice(offset, offset + length))),
  );
  assert.ok(answer !== null, 'answered');
  assert.deepEqual(dnsPacket.decode(Buffer.from(answer)).questions, [{ type: 'TXT', name: 'big.lab.test', class: 'IN' }]);
  assert.equal(connections, 2);
});

test('queries share one TCP connection until it has 100 outstanding; only then is another opened', async (t) => {
  const queriesPerConnection: number[] = [];
  const held: { socket: net.Socket; answer: Buffer }[] = [];
  const server = net.createServer((socket) => {
    const index = queriesPerConnection.push(0) - 1;
    let received = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      received = Buffer.concat([received, data]);
      while (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) {
        const query = dnsPacket.decode(received.subarray(2, 2 + received.readUInt16BE(0)));
        received = received.subarray(2 + received.readUInt16BE(0));
        queriesPerConnection[index]!++;
        const answer = dnsPacket.encode({ type: 'response', id: query.id, questions: query.questions, answers: [] });
        // Held until all are asked, so that they are all outstanding at once.
        held.push({ socket, answer: Buffer.concat([Buffer.from([answer.length >> 8, answer.length & 0xff]), answer]) });
      }
    });
  });
  const upstream = await upstreamTo(server, t);
  const ask = (count: number): Promise<number> => {
    let answered = 0;
    return new Promise((resolve) => {
      for (let i = 0; i < count; i++) {
        const query = dnsPacket.encode({ type: 'query', id: i, questions: [{ type: 'A', name: `q${i}.lab.test` }] });
        upstream.queryOverTcp(query, 5000, (bytes) => {
          if (bytes !== null) answered++;
          if (answered === count) resolve(answered);
        });
      }
    });
  };
  const waitForQueries = async (count: number): Promise<void> => {
    const started = Date.now();
    while (held.length < count && Date.now() - started < 5000) await new Promise((resolve) => setTimeout(resolve, 5));
  };
  const release = (): void => {
    for (const { socket, answer } of held.splice(0)) socket.write(answer);
  };

  const first = ask(60);
  await waitForQueries(60);
  release();
  assert.equal(await first, 60);
  assert.deepEqual(queriesPerConnection, [60], '60 outstanding: one connection');

  const second = ask(150);
  await waitForQueries(150);
  release();
  assert.equal(await second, 150);
  assert.deepEqual(queriesPerConnection, [160, 50], 'the first took 100, then a second connection the rest');
});
