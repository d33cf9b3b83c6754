/**
 * SipHash (Aumasson & Bernstein, 2012) in its two strengths: SipHash-2-4, the keyed hash Linux
 * uses for SYN cookies, and SipHash-1-3, the reduced-round variant Rust's HashMap and Python's
 * str hash (PEP 456, since 3.11) use against hash flooding.
 *
 * Written by hand rather than taken from a package because it runs for every SYN and every data
 * segment (and SipHash-1-3 for every captured packet): the npm implementations use BigInt or
 * allocate per call, while this one keeps the 64-bit state as pairs of 32-bit halves in local
 * integers and allocates nothing. The 64-bit result is written as two 32-bit halves; cookies and
 * tokens use 28 bits of the low half.
 */

/** A 128-bit SipHash key as four little-endian 32-bit words: k0 = (w1:w0), k1 = (w3:w2). */
export type SipKey = Uint32Array;

/** The key of 16 bytes `bytes`, in SipHash's own (little-endian) reading. */
export function sipKeyOf(bytes: Uint8Array): SipKey {
  if (bytes.length !== 16) throw new RangeError('a SipHash key is 16 bytes');
  const words = new DataView(bytes.buffer, bytes.byteOffset, 16);
  return new Uint32Array([words.getUint32(0, true), words.getUint32(4, true), words.getUint32(8, true), words.getUint32(12, true)]);
}

/**
 * SipHash-2-4 of `buf[off, off+len)` under `key`. Writes the 64-bit result into `out` as
 * [low 32 bits, high 32 bits] and returns the low half.
 */
export function sipHash24(key: SipKey, buf: Uint8Array, off: number, len: number, out: Uint32Array): number {
  sipHash(key, buf, off, len, out, 2, 4);
  return out[0]!;
}

/**
 * SipHash-1-3 of `buf[off, off+len)` under `key`, into `out` as `sipHash24` (it returns nothing:
 * an unsigned low half ≥ 2^31 returned from a call V8 does not inline would be a heap number, and
 * this one runs per packet). Its margin is smaller than SipHash-2-4's, enough where the attacker
 * never sees the output, only its effect (which bucket or shard): a hash table's case, and ours
 * for routing (wire/flow-hash.ts); cookies, which the client receives, keep SipHash-2-4.
 */
export function sipHash13(key: SipKey, buf: Uint8Array, off: number, len: number, out: Uint32Array): void {
  sipHash(key, buf, off, len, out, 1, 3);
}

/**
 * SipHash-c-d: `compressionRounds` per 8-byte block, `finalizationRounds` at the end.
 *
 * The state is eight local int32 variables (v0..v3 as high and low halves) and the rounds are
 * written out in this one function: V8 keeps such locals in registers as small integers, where
 * module-level variables or unsigned values (`>>> 0`, up to 2^32) would each be a heap number,
 * allocated on every store — that made an IPv4 4-tuple's hash cost 1.4 µs instead of ~0.1 µs.
 * Halves are combined with `| 0`; only the carry of an addition compares them unsigned.
 */
function sipHash(
  key: SipKey,
  buf: Uint8Array,
  off: number,
  len: number,
  out: Uint32Array,
  compressionRounds: number,
  finalizationRounds: number,
): void {
  const k0l = key[0]! | 0;
  const k0h = key[1]! | 0;
  const k1l = key[2]! | 0;
  const k1h = key[3]! | 0;
  // The constants "somepseudorandomlygeneratedbytes", split in 32-bit halves.
  let v0h = k0h ^ 0x736f6d65;
  let v0l = k0l ^ 0x70736575;
  let v1h = k1h ^ 0x646f7261;
  let v1l = k1l ^ 0x6e646f6d;
  let v2h = k0h ^ 0x6c796765;
  let v2l = k0l ^ 0x6e657261;
  let v3h = k1h ^ 0x74656462;
  let v3l = k1l ^ 0x79746573;

  const end = off + len;
  const lastBlock = end - (len & 7);
  let p = off;
  // Each pass: one message block m (the last one carries len mod 256 in its top byte), or, after
  // it, the finalisation (v2 ^= 0xff and the finalization rounds).
  let finalizing = false;
  for (;;) {
    let mh = 0;
    let ml = 0;
    let rounds = compressionRounds;
    if (p < lastBlock) {
      ml = buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24);
      mh = buf[p + 4]! | (buf[p + 5]! << 8) | (buf[p + 6]! << 16) | (buf[p + 7]! << 24);
      p += 8;
    } else if (p <= end) {
      // Final block: the 0..7 remaining bytes, little-endian, with len mod 256 in the top byte.
      mh = (len & 0xff) << 24;
      for (let i = 0; i < end - p; i++) {
        const b = buf[p + i]!;
        if (i < 4) ml |= b << (8 * i);
        else mh |= b << (8 * (i - 4));
      }
      p = end + 1;
    } else {
      v2l ^= 0xff;
      rounds = finalizationRounds;
      finalizing = true;
    }
    v3h ^= mh;
    v3l ^= ml;
    for (let r = 0; r < rounds; r++) {
      let lo: number;
      let th: number;
      let tl: number;
      // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
      lo = (v0l + v1l) | 0;
      v0h = (v0h + v1h + (lo >>> 0 < v0l >>> 0 ? 1 : 0)) | 0;
      v0l = lo;
      th = (v1h << 13) | (v1l >>> 19);
      tl = (v1l << 13) | (v1h >>> 19);
      v1h = th ^ v0h;
      v1l = tl ^ v0l;
      th = v0h;
      v0h = v0l;
      v0l = th;
      // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
      lo = (v2l + v3l) | 0;
      v2h = (v2h + v3h + (lo >>> 0 < v2l >>> 0 ? 1 : 0)) | 0;
      v2l = lo;
      th = (v3h << 16) | (v3l >>> 16);
      tl = (v3l << 16) | (v3h >>> 16);
      v3h = th ^ v2h;
      v3l = tl ^ v2l;
      // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
      lo = (v0l + v3l) | 0;
      v0h = (v0h + v3h + (lo >>> 0 < v0l >>> 0 ? 1 : 0)) | 0;
      v0l = lo;
      th = (v3h << 21) | (v3l >>> 11);
      tl = (v3l << 21) | (v3h >>> 11);
      v3h = th ^ v0h;
      v3l = tl ^ v0l;
      // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
      lo = (v2l + v1l) | 0;
      v2h = (v2h + v1h + (lo >>> 0 < v2l >>> 0 ? 1 : 0)) | 0;
      v2l = lo;
      th = (v1h << 17) | (v1l >>> 15);
      tl = (v1l << 17) | (v1h >>> 15);
      v1h = th ^ v2h;
      v1l = tl ^ v2l;
      th = v2h;
      v2h = v2l;
      v2l = th;
    }
    if (finalizing) break;
    v0h ^= mh;
    v0l ^= ml;
  }
  out[0] = v0l ^ v1l ^ v2l ^ v3l;
  out[1] = v0h ^ v1h ^ v2h ^ v3h;
}
