import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sipHash24 } from '../../../src/tcp/siphash.js';

// Reference key 00 01 … 0f and messages 00 01 … (n-1), from the SipHash paper's vectors.h
// (little-endian 64-bit outputs).
const KEY = new Uint32Array([0x03020100, 0x07060504, 0x0b0a0908, 0x0f0e0d0c]);
const VECTORS: Record<number, bigint> = {
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

/** SipHash-2-4 written the obvious way with BigInt, to cross-check lengths without a vector. */
function referenceSipHash(key: Uint8Array, msg: Uint8Array): bigint {
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
    round();
    round();
    v0 ^= m;
  }
  const m = le(msg, full, msg.length - full) | (BigInt(msg.length & 0xff) << 56n);
  v3 ^= m;
  round();
  round();
  v0 ^= m;
  v2 ^= 0xffn;
  round();
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

const out = new Uint32Array(2);
const asBigInt = (): bigint => (BigInt(out[1]!) << 32n) | BigInt(out[0]!);

test('SipHash-2-4 matches the reference vectors', () => {
  const msg = Uint8Array.from({ length: 16 }, (_, i) => i);
  for (const [length, expected] of Object.entries(VECTORS)) {
    const low = sipHash24(KEY, msg, 0, Number(length), out);
    assert.equal(asBigInt(), expected, `length ${length}`);
    assert.equal(low, out[0]);
  }
});

test('SipHash-2-4 agrees with a BigInt reference at every length 0-64, at an offset, for random keys', () => {
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
      assert.equal(asBigInt(), referenceSipHash(keyBytes, buf.subarray(7, 7 + length)), `trial ${trial} length ${length}`);
    }
  }
});
