import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SynCookies, MSS_CLASSES_V4, MSS_CLASSES_V6 } from '../../../src/tcp/cookie.js';
import { ReplyHeader, Segment } from '../../../src/wire/segment.js';

const SECRET = Uint8Array.from({ length: 16 }, (_, i) => 0x40 + i);
const NOW = 1_764_000_000; // seconds

/**
 * A client→server segment description with the given addresses (the cookie reads only these
 * fields). `seq` is the client's ISN for a SYN; `withAck` turns it into the first data segment.
 */
function flow(family: 4 | 6, clientPort: number, mss = 0, seq = 0x11223344): Segment {
  const seg = new Segment();
  const n = family === 4 ? 4 : 16;
  seg.buf = new Uint8Array(2 * n);
  const client = family === 4 ? [198, 18, 0, 1] : [0x20, 0x01, 0, 2, ...new Array(11).fill(0), 1];
  const server = family === 4 ? [198, 18, 0, 2] : [0x20, 0x01, 0, 2, ...new Array(11).fill(0), 2];
  seg.buf.set(client, 0);
  seg.buf.set(server, n);
  seg.family = family;
  seg.srcAddrOffset = 0;
  seg.dstAddrOffset = n;
  seg.srcPort = clientPort;
  seg.dstPort = 53;
  seg.mss = mss;
  seg.seq = seq;
  return seg;
}

/** The first data segment after the handshake: seq = ISN + 1, ack = our cookie + 1. */
function firstData(syn: Segment, cookie: number): Segment {
  const seg = flow(syn.family, syn.srcPort, 0, (syn.seq + 1) >>> 0);
  seg.buf.set(syn.buf);
  seg.ack = (cookie + 1) >>> 0;
  return seg;
}

test('a cookie checks for its own flow and carries the MSS class', () => {
  const cookies = new SynCookies(SECRET);
  for (const [family, mss, expectedIndex] of [
    [4, 1460, 3],
    [4, 1400, 1],
    [4, 536, 0],
    [4, 0, 0],
    [4, 100, 0],
    [4, 9000, 3],
    [6, 1440, 2],
    [6, 1220, 0],
    [6, 0, 0],
    [6, 9000, 3],
  ] as const) {
    const seg = flow(family, 40000, mss);
    const isn = cookies.issue(seg, NOW);
    assert.equal(cookies.checkFirstSegment(firstData(seg, isn), NOW + 1), expectedIndex, `v${family} mss ${mss}`);
    const classes = family === 4 ? MSS_CLASSES_V4 : MSS_CLASSES_V6;
    assert.ok(mss === 0 || SynCookies.mssOfIndex(family, expectedIndex) <= Math.max(mss, classes[0]!));
  }
});

test('a cookie fails for another port, address, client ISN, secret or a flipped bit', () => {
  const cookies = new SynCookies(SECRET);
  const syn = flow(4, 40000, 1460);
  const isn = cookies.issue(syn, NOW);
  const data = firstData(syn, isn);
  assert.equal(cookies.checkFirstSegment(data, NOW), 3);
  const otherPort = firstData(syn, isn);
  otherPort.srcPort = 40001;
  assert.equal(cookies.checkFirstSegment(otherPort, NOW), -1);
  const otherAddress = firstData(syn, isn);
  otherAddress.buf[3] = 9;
  assert.equal(cookies.checkFirstSegment(otherAddress, NOW), -1);
  // A later segment (not right after the client's ISN) does not pass as the first one.
  const later = firstData(syn, isn);
  later.seq = (later.seq + 30) >>> 0;
  assert.equal(cookies.checkFirstSegment(later, NOW), -1);
  assert.equal(new SynCookies(new Uint8Array(16)).checkFirstSegment(data, NOW), -1);
  for (let bit = 0; bit < 32; bit++) {
    // Flipping an MSS or period bit changes the hash input; flipping a MAC bit breaks the MAC.
    const flipped = firstData(syn, (isn ^ (1 << bit)) >>> 0);
    assert.equal(cookies.checkFirstSegment(flipped, NOW), -1, `bit ${bit}`);
  }
});

test('a timestamp token checks for its flow, carries the MSS class and never decreases', () => {
  const cookies = new SynCookies(SECRET);
  const seg = flow(6, 50000, 1440);
  const token = cookies.tokenForSegment(seg, 2, NOW);
  assert.equal(cookies.checkToken(seg, token, NOW + 1), 2);
  assert.equal(cookies.checkToken(flow(6, 50001), token, NOW), -1);
  assert.equal(cookies.checkToken(seg, (token ^ 4) >>> 0, NOW), -1);
  // An ISN cookie is no token (domain separation), even for the same flow and period.
  assert.equal(cookies.checkToken(seg, cookies.issue(seg, NOW), NOW), -1);
  // The same token from the reply direction (what the responder puts in TSval).
  const reply = new ReplyHeader();
  reply.family = 6;
  reply.srcAddr.set(seg.buf.subarray(16, 32));
  reply.dstAddr.set(seg.buf.subarray(0, 16));
  reply.srcPort = 53;
  reply.dstPort = 50000;
  assert.equal(cookies.tokenForReply(reply, 2, cookies.period(NOW), 0), token);
  // Constant within a period, larger in the next (RFC 7323 §5 PAWS on the client).
  const periodStart = Math.floor(NOW / 128) * 128;
  assert.equal(cookies.tokenForSegment(seg, 2, periodStart + 127), cookies.tokenForSegment(seg, 2, periodStart));
});

test("the next period's token always compares greater modulo 2^32 (the client's PAWS check)", () => {
  const cookies = new SynCookies(SECRET);
  const seg = flow(4, 40000, 1460);
  const first = cookies.period(NOW);
  for (let port = 1024; port < 1024 + 2000; port++) {
    seg.srcPort = port;
    for (let period = first; period < first + 8; period++) {
      const token = cookies.tokenForSegment(seg, 3, period * 128);
      const next = cookies.tokenForSegment(seg, 3, (period + 1) * 128);
      const ahead = (next - token) | 0;
      assert.ok(ahead > 0, `port ${port} period ${period}: ${ahead}`);
    }
  }
});

test('a cookie or token is accepted for the period it was issued in and the next, not after', () => {
  const cookies = new SynCookies(SECRET);
  const seg = flow(6, 50000, 1440);
  const periodStart = cookies.period(NOW) * 128;
  const isn = cookies.issue(seg, periodStart + 127);
  assert.equal(cookies.checkFirstSegment(firstData(seg, isn), periodStart + 255), 2);
  assert.equal(cookies.checkFirstSegment(firstData(seg, isn), periodStart + 256), -1);
  // Four periods on, the period bits (mod 4) read "this period" again, but the MAC covers the whole period.
  assert.equal(cookies.checkFirstSegment(firstData(seg, isn), periodStart + 4 * 128), -1);
  // Before it was issued (clock stepped back by a period) it is not valid either.
  assert.equal(cookies.checkFirstSegment(firstData(seg, isn), periodStart - 1), -1);
  const token = cookies.tokenForSegment(seg, 2, periodStart);
  assert.equal(cookies.checkToken(seg, token, periodStart + 255), 2);
  assert.equal(cookies.checkToken(seg, token, periodStart + 256), -1);
  assert.equal(cookies.checkToken(seg, token, periodStart + 4 * 128), -1);
  assert.throws(() => new SynCookies(SECRET, { periodSeconds: 64, maxAgePeriods: 2 }), RangeError);
});

test('random guesses almost never pass (28-bit MACs)', () => {
  const cookies = new SynCookies(SECRET);
  const seg = flow(4, 40000);
  let passed = 0;
  let x = 1;
  for (let i = 0; i < 200_000; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    seg.ack = x;
    if (cookies.checkFirstSegment(seg, NOW) >= 0) passed++;
    if (cookies.checkToken(seg, x, NOW) >= 0) passed++;
  }
  // Expected 200000 × 2 × (2/4 × 2^-28) ≈ 0.0007.
  assert.ok(passed <= 1, `${passed} random ISNs passed`);
});

test('rotating the secret: new cookies use the new one, the previous one is still accepted, the one before is not', () => {
  const cookies = new SynCookies(SECRET);
  const seg = flow(4, 40000, 1460);
  const oldIsn = cookies.issue(seg, NOW);
  const oldToken = cookies.tokenForSegment(seg, 3, NOW);
  cookies.rotate(Uint8Array.from({ length: 16 }, (_, i) => 0x90 + i));
  assert.notEqual(cookies.issue(seg, NOW), oldIsn);
  assert.equal(cookies.checkFirstSegment(firstData(seg, oldIsn), NOW), 3);
  assert.equal(cookies.checkToken(seg, oldToken, NOW), 3);
  assert.equal(cookies.lastKeyGeneration, 0, 'proved by the key before the rotation');
  // That connection keeps its token (a new key's token could be smaller: the client's PAWS).
  const reply = new ReplyHeader();
  reply.family = 4;
  reply.srcAddr.set(seg.buf.subarray(seg.dstAddrOffset, seg.dstAddrOffset + 4));
  reply.dstAddr.set(seg.buf.subarray(seg.srcAddrOffset, seg.srcAddrOffset + 4));
  reply.srcPort = seg.dstPort;
  reply.dstPort = seg.srcPort;
  assert.equal(cookies.tokenForReply(reply, 3, cookies.period(NOW), 0), oldToken);
  assert.equal(
    cookies.tokenForReply(reply, 3, cookies.period(NOW), 1),
    cookies.tokenForSegment(seg, 3, NOW),
    'new connections: the new key',
  );
  assert.equal(cookies.checkToken(seg, cookies.tokenForSegment(seg, 3, NOW), NOW), 3);
  assert.equal(cookies.lastKeyGeneration, 1);
  // Another instance given the same new secret recognises connections issued after the rotation.
  const other = new SynCookies(Uint8Array.from({ length: 16 }, (_, i) => 0x90 + i));
  assert.equal(other.checkToken(seg, cookies.tokenForSegment(seg, 3, NOW), NOW), 3);
  cookies.rotate(Uint8Array.from({ length: 16 }, (_, i) => 0xc0 + i));
  assert.equal(cookies.checkFirstSegment(firstData(seg, oldIsn), NOW), -1);
  assert.equal(cookies.checkToken(seg, oldToken, NOW), -1);
});
