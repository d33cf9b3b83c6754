/**
 * The upstream's TCP path against a real server on 127.0.0.1: a query whose connection the
 * resolver closes before answering (as unbound does with idle or surplus connections) is asked
 * again on another connection, not answered SERVFAIL.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import dnsPacket from 'dns-packet';
import { UdpTcpUpstream } from '../../../src/io/upstream.js';
import { RELAY_COUNTER_NAMES } from '../../../src/dns/relay.js';

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
  const query = dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'TXT', name: 'big.lab.test' }] });
  // The answer is handed over in place, valid during the call: a copy is kept.
  const answer = await new Promise<Uint8Array | null>((resolve) =>
    upstream.queryOverTcp(query, 5000, (bytes, offset, length) => resolve(bytes === null ? null : bytes.slice(offset, offset + length))),
  );
  assert.ok(answer !== null, 'answered');
  assert.deepEqual(dnsPacket.decode(Buffer.from(answer)).questions, [{ type: 'TXT', name: 'big.lab.test', class: 'IN' }]);
  assert.equal(connections, 2);
});
