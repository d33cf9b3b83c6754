/** PROXY protocol v2 headers (src/dns/proxy-protocol.ts), byte for byte as haproxy's proxy-protocol.txt §2.2 lays them out. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionEndpoints, proxyHeaderLength, writeProxyHeader } from '../../../src/dns/proxy-protocol.js';
import { addressBytes } from '../../../src/endpoint.js';

function endpoints(client: string, clientPort: number, server: string, serverPort: number): ConnectionEndpoints {
  const e = new ConnectionEndpoints();
  const c = addressBytes(client);
  e.family = c.length === 4 ? 4 : 6;
  e.clientAddress.set(c);
  e.serverAddress.set(addressBytes(server));
  e.clientPort = clientPort;
  e.serverPort = serverPort;
  return e;
}

test('IPv4 over UDP: signature, v2 PROXY, INET DGRAM, 12 address bytes, source first', () => {
  const out = new Uint8Array(64);
  const n = writeProxyHeader(endpoints('198.18.0.1', 40000, '198.18.0.2', 53), 'udp', out, 0);
  assert.equal(n, proxyHeaderLength(4));
  assert.equal(
    Buffer.from(out.subarray(0, n)).toString('hex'),
    '0d0a0d0a000d0a515549540a' + '21' + '12' + '000c' + 'c6120001' + 'c6120002' + '9c40' + '0035',
  );
});

test('IPv6 over TCP: INET6 STREAM, 36 address bytes', () => {
  const out = new Uint8Array(64);
  const n = writeProxyHeader(endpoints('2001:2::1', 1234, '2001:2::2', 53), 'tcp', out, 0);
  assert.equal(n, 52);
  assert.equal(
    Buffer.from(out.subarray(12, n)).toString('hex'),
    '21' + '21' + '0024' + '20010002000000000000000000000001' + '20010002000000000000000000000002' + '04d2' + '0035',
  );
});
