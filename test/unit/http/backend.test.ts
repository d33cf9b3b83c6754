/** The pure parts of the backend contract: which requests may go to another backend, origins, healthy probe statuses. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { healthyStatus, parseOrigin, retryableElsewhere } from '../../../src/http/backend.js';

test('retried elsewhere: idempotent methods (RFC 9110 §9.2.2) without a body; never POST or PATCH, never a body', () => {
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
    assert.equal(retryableElsewhere({ method, body: null }), true, method);
  for (const method of ['POST', 'PATCH', 'get', 'FOO']) assert.equal(retryableElsewhere({ method, body: null }), false, method);
  const body = (async function* () {})();
  assert.equal(retryableElsewhere({ method: 'GET', body }), false, 'a body streams once');
  assert.equal(retryableElsewhere({ method: 'PUT', body }), false);
});

test('origins: http://HOST:PORT, port 80 when left out, IPv6 in brackets; anything else names the fix', () => {
  assert.equal(parseOrigin('http://127.0.0.1:8080'), 'http://127.0.0.1:8080');
  assert.equal(parseOrigin('http://127.0.0.1:8080/'), 'http://127.0.0.1:8080');
  assert.equal(parseOrigin('http://backend.example'), 'http://backend.example:80');
  assert.equal(parseOrigin('http://[2001:2::3]:81'), 'http://[2001:2::3]:81');
  assert.throws(() => parseOrigin('127.0.0.1:8080'), /give http:\/\/HOST:PORT/);
  assert.throws(() => parseOrigin('https://127.0.0.1'), /plain HTTP, no path/);
  assert.throws(() => parseOrigin('http://127.0.0.1/app'), /plain HTTP, no path/);
  assert.throws(() => parseOrigin('http://u:p@127.0.0.1'), /plain HTTP, no path/);
});

test('a probe passes on any status below 500', () => {
  for (const status of [200, 204, 301, 404, 401, 499]) assert.equal(healthyStatus(status), true, String(status));
  for (const status of [500, 502, 503, 504]) assert.equal(healthyStatus(status), false, String(status));
});
