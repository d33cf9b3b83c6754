import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SynCookies, MSS_CLASSES_V4, MSS_CLASSES_V6 } from '../../../src/tcp/cookie.js';
import { Segment } from '../../../src/wire/segment.js';

const SECRET = Uint8Array.from({ length: 16 }, (_, i) => 0x40 + i);
const NOW = 1_764_000_000; // seconds

/** A client→server segment description with the given addresses (the cookie reads only these fields). */
function flow(family: 4 | 6, clientPort: number, mss = 0): Segment {
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
  return seg;
}

test('a cookie checks for its own flow and carries the MSS class', () => {
  const cookies = new SynCookies(SECRET);
  for (const [family, mss, expectedIndex] of [
    [4, 1460, 3], [4, 1400, 1], [4, 536, 0], [4, 0, 0], [4, 100, 0], [4, 9000, 3],
    [6, 1440, 2], [6, 1220, 0], [6, 0, 0], [6, 9000, 3],
  ] as const) {
    const seg = flow(family, 40000, mss);
    const isn = cookies.issue(seg, NOW);
    assert.equal(cookies.check(seg, isn, NOW + 1), expectedIndex, `v${family} mss ${mss}`);
    const classes = family === 4 ? MSS_CLASSES_V4 : MSS_CLASSES_V6;
    assert.ok(mss === 0 || SynCookies.mssOfIndex(family, expectedIndex) <= Math.max(mss, classes[0]!));
  }
});

test('a cookie fails for another port, address, secret or a flipped bit', () => {
  const cookies = new SynCookies(SECRET);
  const seg = flow(4, 40000, 1460);
  const isn = cookies.issue(seg, NOW);
  assert.equal(cookies.check(flow(4, 40001), isn, NOW), -1);
  const otherAddress = flow(4, 40000);
  otherAddress.buf[3] = 9;
  assert.equal(cookies.check(otherAddress, isn, NOW), -1);
  assert.equal(new SynCookies(new Uint8Array(16)).check(seg, isn, NOW), -1);
  for (let bit = 0; bit < 32; bit++) {
    const flipped = (isn ^ (1 << bit)) >>> 0;
    // Flipping an MSS or period bit changes the hash input; flipping a MAC bit breaks the MAC.
    assert.equal(cookies.check(seg, flipped, NOW), -1, `bit ${bit}`);
  }
});

test('a cookie expires after maxAgePeriods', () => {
  const cookies = new SynCookies(SECRET, { periodSeconds: 64, maxAgePeriods: 2 });
  const seg = flow(6, 50000, 1440);
  const isn = cookies.issue(seg, NOW);
  assert.equal(cookies.check(seg, isn, NOW + 64 * 2), 2);
  assert.equal(cookies.check(seg, isn, NOW + 64 * 3), -1);
  // Before it was issued (clock stepped back by a period) it is not valid either.
  assert.equal(cookies.check(seg, isn, NOW - 64), -1);
});

test('random guesses almost never pass (24-bit MAC)', () => {
  const cookies = new SynCookies(SECRET);
  const seg = flow(4, 40000);
  let passed = 0;
  let x = 1;
  for (let i = 0; i < 200_000; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    if (cookies.check(seg, x, NOW) >= 0) passed++;
  }
  // Expected 200000 × (16/64 periods valid) × 2^-24 ≈ 0.003.
  assert.ok(passed <= 1, `${passed} random ISNs passed`);
});
