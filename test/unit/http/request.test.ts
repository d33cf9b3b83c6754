/**
 * HTTP request framing and parsing, from real requests (test/fixtures/http-requests.txt: curl and
 * wrk as captured) and from deliberately broken ones.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  MAX_BODY_BYTES,
  MAX_HEAD_BYTES,
  parseRequest,
  plausibleRequestStart,
  wholeRequestLength,
  type HttpRequest,
} from '../../../src/http/request.js';
import { wholeMessagesBy } from '../../../src/tcp/transport.js';

/** The bytes of the whole requests at the start, as a transport hands them over one by one. */
const wholeRequests = (buf: Uint8Array, offset: number, length: number): number => wholeMessagesBy(wholeRequestLength, buf, offset, length);

const REAL = new Map(
  readFileSync(new URL('../../../../test/fixtures/http-requests.txt', import.meta.url), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0 && !line.startsWith('#'))
    .map((line) => {
      const [name, hex] = line.split('\t') as [string, string];
      return [name, Buffer.from(hex, 'hex')] as const;
    }),
);
const real = (name: string): Buffer => REAL.get(name)!;
const text = (s: string): Buffer => Buffer.from(s, 'latin1');

function parsed(bytes: Buffer): HttpRequest {
  const result = parseRequest(bytes, 0, bytes.length);
  assert.ok(!('status' in result), `parsed: ${JSON.stringify(result)}`);
  return result;
}

test('each real request is whole exactly at its last byte, not one byte before', () => {
  assert.equal(REAL.size, 5);
  for (const [name, bytes] of REAL) {
    assert.equal(wholeRequests(bytes, 0, bytes.length), bytes.length, name);
    for (let cut = 0; cut < bytes.length; cut++) assert.equal(wholeRequests(bytes, 0, cut), 0, `${name} cut at ${cut}`);
  }
});

test('pipelined requests in one buffer are counted up to the last whole one, at any offset', () => {
  const all = Buffer.concat([...REAL.values()]);
  const padded = Buffer.concat([text('xxxx'), all, real('curl-get').subarray(0, 10)]);
  assert.equal(wholeRequests(padded, 4, padded.length - 4), all.length);
});

test('real requests parse to what curl and wrk sent', () => {
  const get = parsed(real('curl-get'));
  assert.deepEqual([get.method, get.target, get.minorVersion, get.keepAlive, get.body.length], ['GET', '/file.bin', 1, true, 0]);
  assert.deepEqual(get.headers[0], ['Host', '127.0.0.1:18080']);
  const form = parsed(real('curl-post-form'));
  assert.equal(Buffer.from(form.body).toString(), 'name=value&other=1');
  const chunked = parsed(real('curl-post-chunked'));
  assert.equal(Buffer.from(chunked.body).toString(), 'hello chunked body', 'de-chunked');
  const head = parsed(real('curl-head-http10'));
  assert.deepEqual([head.method, head.minorVersion, head.keepAlive], ['HEAD', 0, false], 'HTTP/1.0 closes by default');
  const wrk = parsed(real('wrk-get'));
  assert.deepEqual([wrk.target, wrk.headers.length], ['/wrk', 1]);
});

test('Connection decides keep-alive (RFC 9112 §9.3)', () => {
  assert.equal(parsed(text('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')).keepAlive, false);
  assert.equal(parsed(text('GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n')).keepAlive, false);
  assert.equal(parsed(text('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')).keepAlive, true);
});

test('broken requests get the status that says why, and are framed so the connection can be closed', () => {
  const cases: [string, number][] = [
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 400],
    ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
    ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
    ['GET / HTTP/1.1\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost : a\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n', 400],
    ['GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
    ['GET /  HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n', 400],
  ];
  for (const [request, status] of cases) {
    const bytes = text(request);
    const framed = wholeRequests(bytes, 0, bytes.length);
    assert.ok(framed > 0, `framed: ${JSON.stringify(request)}`);
    const result = parseRequest(bytes, 0, framed);
    assert.deepEqual(result, { status }, JSON.stringify(request));
  }
});

test('a head past 16 KiB is whole (to be answered 431) and a body past the window is refused with 413', () => {
  const long = text(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'y'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`);
  assert.equal(wholeRequests(long, 0, MAX_HEAD_BYTES - 1), 0, 'still growing');
  assert.equal(wholeRequests(long, 0, MAX_HEAD_BYTES + 10), MAX_HEAD_BYTES + 10, 'can never be a request');
  assert.deepEqual(parseRequest(long, 0, MAX_HEAD_BYTES + 10), { status: 431 });
  const big = text(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${MAX_BODY_BYTES + 1}\r\n\r\n`);
  assert.equal(wholeRequests(big, 0, big.length), big.length);
  assert.deepEqual(parseRequest(big, 0, big.length), { status: 413 });
});

test('a chunked body with extensions and trailers is whole only after the trailer section', () => {
  const bytes = text(
    'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n',
  );
  for (let cut = 0; cut < bytes.length; cut++) assert.equal(wholeRequests(bytes, 0, cut), 0, `cut at ${cut}`);
  assert.equal(wholeRequests(bytes, 0, bytes.length), bytes.length);
  assert.equal(Buffer.from(parsed(bytes).body).toString(), 'hello world');
});

test('plausibleRequestStart: a method and a space, nothing else', () => {
  for (const bytes of REAL.values()) assert.ok(plausibleRequestStart(bytes, 0, bytes.length));
  for (const bytes of REAL.values()) {
    const target = bytes.indexOf(0x20) + 1;
    assert.ok(!plausibleRequestStart(bytes, target, bytes.length - target), 'from the target on');
    const body = bytes.indexOf('\r\n\r\n') + 4;
    if (body < bytes.length) assert.ok(!plausibleRequestStart(bytes, body, bytes.length - body), 'a body');
  }
  assert.ok(!plausibleRequestStart(text('\r\nGET /'), 0, 7));
  assert.ok(!plausibleRequestStart(text('get / HTTP/1.1'), 0, 14));
  assert.ok(!plausibleRequestStart(text('1GET / HTTP/1.1'), 0, 15));
  assert.ok(!plausibleRequestStart(text('GET'), 0, 3), 'not known yet to be a method');
});
