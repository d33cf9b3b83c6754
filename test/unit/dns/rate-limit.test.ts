/** Per-client rate limits (src/dns/rate-limit.ts): buckets per network, refilled at the limit. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientRateLimit } from '../../../src/dns/rate-limit.js';
import { addressBytes } from '../../../src/endpoint.js';

const SECRET = new Uint8Array(16).fill(9);

function allowedOf(limit: ClientRateLimit, address: string, count: number, nowMs: number): number {
  const bytes = addressBytes(address);
  let allowed = 0;
  for (let i = 0; i < count; i++) if (limit.allow(bytes, bytes.length, nowMs)) allowed++;
  return allowed;
}

test('a network gets a second of queries at once, then the limit per second; another network its own', () => {
  const limit = new ClientRateLimit(10, 24, 56, SECRET);
  assert.equal(allowedOf(limit, '198.18.7.1', 25, 1000), 10);
  assert.equal(allowedOf(limit, '198.18.7.200', 5, 1000), 0, 'the same /24');
  assert.equal(allowedOf(limit, '198.18.8.1', 5, 1000), 5, 'another /24');
  assert.equal(allowedOf(limit, '198.18.7.1', 25, 1500), 5, 'half a second refills half');
  assert.equal(allowedOf(limit, '198.18.7.1', 25, 60_000), 10, 'never more than a second’s worth');
});

test('IPv6 by /56; an IPv4-mapped address counts as its IPv4 network', () => {
  const limit = new ClientRateLimit(3, 24, 56, SECRET);
  assert.equal(allowedOf(limit, '2001:2:0:1:aaaa::1', 5, 0), 3);
  assert.equal(allowedOf(limit, '2001:2:0:ff:bbbb::2', 5, 0), 0, 'the same /56');
  assert.equal(allowedOf(limit, '2001:2:0:100::1', 5, 0), 3, 'another /56');
  assert.equal(allowedOf(limit, '198.18.9.1', 2, 0), 2);
  assert.equal(allowedOf(limit, '::ffff:198.18.9.77', 5, 0), 1);
});
