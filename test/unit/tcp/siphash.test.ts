import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sipHash13, sipHash24, sipKeyOf } from '../../../src/tcp/siphash.js';

// Reference key 00 01 … 0f and messages 00 01 … (n-1), from the SipHash paper's vectors.h
// (little-endian 64-bit outputs).
const KEY = new Uint32Array([0x03020100, 0x07060504, 0x0b0a0908, 0x0f0e0d0c]);
const VECTORS_2_4: Record<number, bigint> = {
  0: 0x726fdb47dd0e0e31n,
  1: 0x74f839c593dc67fdn,
  2: 0x0d6c8009d9a94f5an,
  3: 0x85676696d7fb7e2dn,
  4: 0xcf2794e0277187b7n,
  5: 0x18765564cd99a68dn,
  6: 0xcbc9466e58fee3cen,
  7: 0xab0200f58b01d137n,
  8: 0x93f5f5799a932462n,
  9: 0x9e0082df0ba9e4b0n,
  15: 0xa129ca6149be45e5n,
};
// SipHash-1-3 under the same key and messages: the vectors of Rust's core library tests
// (library/core/tests/hash/sip.rs, test_siphash_1_3), which Firedancer's fd_siphash13 shares.
const VECTORS_1_3: Record<number, bigint> = {
  0: 0xabac0158050fc4dcn,
  1: 0xc9f49bf37d57ca93n,
  4: 0xcf75576088d38328n,
  7: 0xd3927d989bb11140n,
  8: 0x369095118d299a8en,
  12: 0x78a384b157b4d9a2n,
  15: 0xd320d86d2a519956n,
  16: 0xcc4fdd1a7d908b66n,
};

/** SipHash-c-d written the obvious way with BigInt, to cross-check lengths without a vector. */
function referenceSipHash(key: Uint8Array, msg: Uint8Array, compressionRounds: number, finalizationRounds: number): bigint {
  const M = (1n << 64n) - 1n;
  const rotl = (x: bigint, b: bigint): bigint => ((x << b) | (x >> (64n - b))) & M;
  const le = (b: Uint8Array, o: number, n: number): bigint => {
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[o + i]!);
    return v;
  };
  const k0 = le(key, 0, 8);
  const k1 = le(key, 8, 8);
  let v0 = k0 ^ 0x736f6d6570736575n;
  let v1 = k1 ^ 0x646f72616e646f6dn;
  let v2 = k0 ^ 0x6c7967656e657261n;
  let v3 = k1 ^ 0x7465646279746573n;
  const round = (): void => {
    v0 = (v0 + v1) & M;
    v1 = rotl(v1, 13n);
    v1 ^= v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & M;
    v3 = rotl(v3, 16n);
    v3 ^= v2;
    v0 = (v0 + v3) & M;
    v3 = rotl(v3, 21n);
    v3 ^= v0;
    v2 = (v2 + v1) & M;
    v1 = rotl(v1, 17n);
    v1 ^= v2;
    v2 = rotl(v2, 32n);
  };
  const full = msg.length - (msg.length % 8);
  for (let i = 0; i < full; i += 8) {
    const m = le(msg, i, 8);
    v3 ^= m;
    for (let r = 0; r < compressionRounds; r++) round();
    v0 ^= m;
  }
  const m = le(msg, full, msg.length - full) | (BigInt(msg.length & 0xff) << 56n);
  v3 ^= m;
  for (let r = 0; r < compressionRounds; r++) round();
  v0 ^= m;
  v2 ^= 0xffn;
  for (let r = 0; r < finalizationRounds; r++) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

const out = new Uint32Array(2);
const asBigInt = (): bigint => (BigInt(out[1]!) << 32n) | BigInt(out[0]!);

test('SipHash-2-4 matches the reference vectors', () => {
  const msg = Uint8Array.from({ length: 16 }, (_, i) => i);
  for (const [length, expected] of Object.entries(VECTORS_2_4)) {
    const low = sipHash24(KEY, msg, 0, Number(length), out);
    assert.equal(asBigInt(), expected, `length ${length}`);
    assert.equal(low, out[0]);
  }
});

test('SipHash-1-3 matches the reference vectors', () => {
  const msg = Uint8Array.from({ length: 16 }, (_, i) => i);
  for (const [length, expected] of Object.entries(VECTORS_1_3)) {
    sipHash13(KEY, msg, 0, Number(length), out);
    assert.equal(asBigInt(), expected, `length ${length}`);
  }
});

test('sipKeyOf reads the 16 key bytes as SipHash does (little-endian words)', () => {
  assert.deepEqual(sipKeyOf(Uint8Array.from({ length: 16 }, (_, i) => i)), KEY);
  assert.throws(() => sipKeyOf(new Uint8Array(15)), RangeError);
});

test('SipHash-2-4 and SipHash-1-3 agree with a BigInt reference at every length 0-64, at an offset, for random keys', () => {
  let seed = 12345;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 24;
  };
  for (let trial = 0; trial < 20; trial++) {
    const keyBytes = Uint8Array.from({ length: 16 }, next);
    const key = new Uint32Array(keyBytes.buffer.slice(0));
    const buf = Uint8Array.from({ length: 80 }, next);
    for (let length = 0; length <= 64; length++) {
      sipHash24(key, buf, 7, length, out);
      assert.equal(asBigInt(), referenceSipHash(keyBytes, buf.subarray(7, 7 + length), 2, 4), `2-4 trial ${trial} length ${length}`);
      sipHash13(key, buf, 7, length, out);
      assert.equal(asBigInt(), referenceSipHash(keyBytes, buf.subarray(7, 7 + length), 1, 3), `1-3 trial ${trial} length ${length}`);
    }
  }
});
