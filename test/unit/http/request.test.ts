/**
 * HTTP request framing and parsing, from real requests (test/fixtures/http-requests.txt: curl and
 * wrk as captured, uploads among them) and from deliberately broken ones: heads framed where they
 * end, parsed to what the client sent; bodies (Content-Length, chunked) read as a transport hands
 * them over, in pieces cut anywhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  CHUNKED_MALFORMED,
  CHUNKED_TOO_BIG,
  ChunkedDecoder,
  MAX_HEAD_BYTES,
  parseRequest,
  plausibleRequestStart,
  wholeRequestLength,
  type HttpRequest,
} from '../../../src/http/request.js';

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
/** The body of the recorded uploads: byte i is 'a' + (7i mod 26). */
const UPLOAD = Buffer.from(Array.from({ length: 2000 }, (_, i) => 97 + ((i * 7) % 26)));

function parsed(bytes: Buffer, length = headLength(bytes)): HttpRequest {
  const result = parseRequest(bytes, 0, length);
  assert.ok(!('status' in result), `parsed: ${JSON.stringify(result)}`);
  return result;
}

const headLength = (bytes: Uint8Array): number => Buffer.from(bytes).indexOf('\r\n\r\n') + 4;

/** Decodes a whole chunked body `bytes` given in pieces of `piece` bytes: its data, and the bytes that belonged to it. */
function dechunk(bytes: Uint8Array, piece: number, maxBytes = 0): { data: Buffer; used: number } | number {
  const decoder = new ChunkedDecoder(maxBytes);
  const parts: Buffer[] = [];
  let used = 0;
  for (let p = 0; p < bytes.length && !decoder.done; p += piece) {
    const n = decoder.decode(bytes, p, Math.min(piece, bytes.length - p), (buf, offset, length) =>
      parts.push(Buffer.from(buf.subarray(offset, offset + length))),
    );
    if (n < 0) return n;
    used += n;
  }
  assert.ok(decoder.done, 'the body ended');
  assert.equal(decoder.total, Buffer.concat(parts).length);
  return { data: Buffer.concat(parts), used };
}

/**
 * Splits a client's byte stream into requests as a transport and the relay do: a head where
 * `wholeRequestLength` ends it, then the body its framing says. Each request's head and body data.
 */
function requestsIn(bytes: Buffer): { head: HttpRequest; body: Buffer }[] {
  const requests: { head: HttpRequest; body: Buffer }[] = [];
  let p = 0;
  while (p < bytes.length) {
    const n = wholeRequestLength(bytes, p, bytes.length - p);
    assert.ok(n > 0, `a head at ${p}`);
    const head = parsed(bytes.subarray(p, p + n), n);
    p += n;
    if (head.body === 'chunked') {
      const body = dechunk(bytes.subarray(p), bytes.length - p);
      assert.ok(typeof body !== 'number');
      requests.push({ head, body: body.data });
      p += body.used;
    } else {
      requests.push({ head, body: bytes.subarray(p, p + head.body) });
      p += head.body;
    }
  }
  return requests;
}

test('each real head is whole exactly at its last byte, not one byte before, whatever follows', () => {
  assert.equal(REAL.size, 8);
  for (const [name, bytes] of REAL) {
    const head = headLength(bytes);
    for (let cut = 0; cut < head; cut++) assert.equal(wholeRequestLength(bytes, 0, cut), 0, `${name} cut at ${cut}`);
    for (const end of [head, bytes.length]) assert.equal(wholeRequestLength(bytes, 0, end), head, name);
  }
});

test('pipelined requests, uploads among them, split where each head and body ends, at any offset', () => {
  const all = Buffer.concat([...REAL.values()]);
  const requests = requestsIn(all);
  assert.deepEqual(
    requests.map((r) => r.head.target),
    ['/file.bin', '/form', '/chunked', '/head10', '/wrk', '/put/upload.txt', '/upload', '/small.txt'],
  );
  const padded = Buffer.concat([text('xxxx'), all]);
  assert.equal(wholeRequestLength(padded, 4, padded.length - 4), headLength(real('curl-get')));
});

test('real requests parse to what curl and wrk sent', () => {
  const get = parsed(real('curl-get'));
  assert.deepEqual([get.method, get.target, get.minorVersion, get.keepAlive, get.body], ['GET', '/file.bin', 1, true, 0]);
  assert.deepEqual(get.headers[0], ['Host', '127.0.0.1:18080']);
  const [form] = requestsIn(real('curl-post-form'));
  assert.equal(form!.body.toString(), 'name=value&other=1');
  const [chunked] = requestsIn(real('curl-post-chunked'));
  assert.equal(chunked!.head.body, 'chunked');
  assert.equal(chunked!.body.toString(), 'hello chunked body', 'de-chunked');
  const head = parsed(real('curl-head-http10'));
  assert.deepEqual([head.method, head.minorVersion, head.keepAlive], ['HEAD', 0, false], 'HTTP/1.0 closes by default');
  const wrk = parsed(real('wrk-get'));
  assert.deepEqual([wrk.target, wrk.headers.length], ['/wrk', 1]);
});

test('real uploads: curl -T expects 100-continue with its length; a chunked upload de-chunks to the file', () => {
  const [put] = requestsIn(real('curl-put-upload'));
  assert.deepEqual([put!.head.method, put!.head.body, put!.head.expectContinue, put!.head.unmetExpectation], ['PUT', 2000, true, false]);
  assert.deepEqual(put!.body, UPLOAD);
  const [post] = requestsIn(real('curl-post-chunked-upload'));
  assert.deepEqual([post!.head.body, post!.head.expectContinue], ['chunked', false]);
  assert.deepEqual(post!.body, UPLOAD);
  const keepAlive = parsed(real('curl-get-http10-keep-alive'));
  assert.deepEqual([keepAlive.minorVersion, keepAlive.keepAlive], [0, true], 'HTTP/1.0 asking for keep-alive');
});

test('Connection decides keep-alive (RFC 9112 §9.3)', () => {
  assert.equal(parsed(text('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n')).keepAlive, false);
  assert.equal(parsed(text('GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n')).keepAlive, false);
  assert.equal(parsed(text('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')).keepAlive, true);
});

test('Expect (RFC 9110 §10.1.1): 100-continue in any case with a body; anything else unmet; ignored in HTTP/1.0', () => {
  const expect = (request: string): [boolean, boolean] => {
    const head = parsed(text(request));
    return [head.expectContinue, head.unmetExpectation];
  };
  assert.deepEqual(expect('PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\nExpect: 100-Continue\r\n\r\n'), [true, false]);
  assert.deepEqual(expect('PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n'), [true, false]);
  assert.deepEqual(expect('GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n'), [false, false], 'no body to wait for');
  assert.deepEqual(expect('PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\nExpect: 100-continue, x-y\r\n\r\n'), [false, true]);
  assert.deepEqual(expect('GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n'), [false, true]);
  assert.deepEqual(expect('PUT / HTTP/1.0\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n'), [false, false]);
});

test('broken requests get the status that says why, and are framed so the connection can be closed', () => {
  const cases: [string, number][] = [
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 400],
    ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
    ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
    ['POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400], // RFC 9112 §6.1
    ['GET / HTTP/1.1\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost : a\r\n\r\n', 400],
    ['GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n', 400],
    ['GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
    ['GET /  HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ];
  for (const [request, status] of cases) {
    const bytes = text(request);
    const framed = wholeRequestLength(bytes, 0, bytes.length);
    assert.ok(framed > 0, `framed: ${JSON.stringify(request)}`);
    const result = parseRequest(bytes, 0, framed);
    assert.deepEqual(result, { status }, JSON.stringify(request));
  }
});

test('a head past 16 KiB is whole (to be answered 431); a body of any length is a head like another', () => {
  const long = text(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'y'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`);
  assert.equal(wholeRequestLength(long, 0, MAX_HEAD_BYTES - 1), 0, 'still growing');
  assert.equal(wholeRequestLength(long, 0, MAX_HEAD_BYTES + 10), MAX_HEAD_BYTES + 10, 'can never be a request');
  assert.deepEqual(parseRequest(long, 0, MAX_HEAD_BYTES + 10), { status: 431 });
  const big = text('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10737418240\r\n\r\n');
  assert.equal(wholeRequestLength(big, 0, big.length), big.length);
  assert.equal(parsed(big).body, 10 * 1024 ** 3, 'the limit is the relay’s to apply');
});

test('a chunked body with extensions and trailers ends only after the trailer section, cut anywhere', () => {
  const body = text('5;ext=1\r\nhello\r\n6 ; a="b;c"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET /next');
  const end = body.length - 'GET /next'.length;
  for (let piece = 1; piece <= body.length; piece++) {
    const result = dechunk(body, piece);
    assert.ok(typeof result !== 'number', `pieces of ${piece}`);
    assert.equal(result.data.toString(), 'hello world', `pieces of ${piece}`);
    assert.equal(result.used, end, `pieces of ${piece}: the next request is not the body's`);
  }
});

test('a real chunked upload decodes the same in pieces of every size', () => {
  const bytes = real('curl-post-chunked-upload');
  const body = bytes.subarray(headLength(bytes));
  for (const piece of [1, 2, 3, 7, 100, 1208, 1448, body.length]) {
    const result = dechunk(body, piece);
    assert.ok(typeof result !== 'number');
    assert.deepEqual([result.data, result.used], [UPLOAD, body.length], `pieces of ${piece}`);
  }
});

test('chunked bodies that are malformed, or over the limit by their declared sizes', () => {
  const malformed = [
    'zz\r\n\r\n',
    '\r\nhello\r\n0\r\n\r\n',
    '5\r\nhelloXX0\r\n\r\n',
    '5\nhello\r\n0\r\n\r\n',
    '123456789\r\n',
    `5;${'x'.repeat(1100)}\r\nhello\r\n0\r\n\r\n`,
    `0\r\nX: ${'y'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`,
    '0\r\n\n',
  ];
  for (const body of malformed) assert.equal(dechunk(text(body), 3), CHUNKED_MALFORMED, JSON.stringify(body.slice(0, 40)));
  const twoChunks = text(`400\r\n${'a'.repeat(1024)}\r\n1\r\nb\r\n0\r\n\r\n`);
  assert.equal(dechunk(twoChunks, 100, 1024), CHUNKED_TOO_BIG, 'the second chunk passes the limit');
  const fits = dechunk(twoChunks, 100, 1025);
  assert.ok(typeof fits !== 'number' && fits.data.length === 1025, 'exactly at the limit');
  assert.equal(dechunk(text('ffffffff\r\n'), 5, 1024 * 1024), CHUNKED_TOO_BIG, 'refused at its size line, before any data');
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
