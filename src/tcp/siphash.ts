/**
 * SipHash-2-4 (Aumasson & Bernstein, 2012), the keyed hash Linux uses for SYN cookies.
 *
 * Written by hand rather than taken from a package because it runs for every SYN and every data
 * segment: the npm implementations use BigInt or allocate per call, while this one keeps the
 * 64-bit state as pairs of 32-bit halves in module-level integers and allocates nothing.
 * The 64-bit result is written as two 32-bit halves; cookies use 24 bits of the low half.
 */

/** A 128-bit SipHash key as four little-endian 32-bit words: k0 = (w1:w0), k1 = (w3:w2). */
export type SipKey = Uint32Array;

// State v0..v3, each as (high, low) unsigned 32-bit halves.
let v0h = 0,
  v0l = 0,
  v1h = 0,
  v1l = 0,
  v2h = 0,
  v2l = 0,
  v3h = 0,
  v3l = 0;

function sipRound(): void {
  // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
  let lo = (v0l + v1l) >>> 0;
  v0h = (v0h + v1h + (lo < v0l ? 1 : 0)) >>> 0;
  v0l = lo;
  let th = ((v1h << 13) | (v1l >>> 19)) >>> 0;
  let tl = ((v1l << 13) | (v1h >>> 19)) >>> 0;
  v1h = (th ^ v0h) >>> 0;
  v1l = (tl ^ v0l) >>> 0;
  th = v0h;
  v0h = v0l;
  v0l = th;
  // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
  lo = (v2l + v3l) >>> 0;
  v2h = (v2h + v3h + (lo < v2l ? 1 : 0)) >>> 0;
  v2l = lo;
  th = ((v3h << 16) | (v3l >>> 16)) >>> 0;
  tl = ((v3l << 16) | (v3h >>> 16)) >>> 0;
  v3h = (th ^ v2h) >>> 0;
  v3l = (tl ^ v2l) >>> 0;
  // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
  lo = (v0l + v3l) >>> 0;
  v0h = (v0h + v3h + (lo < v0l ? 1 : 0)) >>> 0;
  v0l = lo;
  th = ((v3h << 21) | (v3l >>> 11)) >>> 0;
  tl = ((v3l << 21) | (v3h >>> 11)) >>> 0;
  v3h = (th ^ v0h) >>> 0;
  v3l = (tl ^ v0l) >>> 0;
  // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
  lo = (v2l + v1l) >>> 0;
  v2h = (v2h + v1h + (lo < v2l ? 1 : 0)) >>> 0;
  v2l = lo;
  th = ((v1h << 17) | (v1l >>> 15)) >>> 0;
  tl = ((v1l << 17) | (v1h >>> 15)) >>> 0;
  v1h = (th ^ v2h) >>> 0;
  v1l = (tl ^ v2l) >>> 0;
  th = v2h;
  v2h = v2l;
  v2l = th;
}

function compress(mh: number, ml: number): void {
  v3h = (v3h ^ mh) >>> 0;
  v3l = (v3l ^ ml) >>> 0;
  sipRound();
  sipRound();
  v0h = (v0h ^ mh) >>> 0;
  v0l = (v0l ^ ml) >>> 0;
}

function readLe32(buf: Uint8Array, off: number): number {
  return (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
}

/**
 * SipHash-2-4 of `buf[off, off+len)` under `key`. Writes the 64-bit result into `out` as
 * [low 32 bits, high 32 bits] and returns the low half.
 */
export function sipHash24(key: SipKey, buf: Uint8Array, off: number, len: number, out: Uint32Array): number {
  const k0l = key[0]!,
    k0h = key[1]!,
    k1l = key[2]!,
    k1h = key[3]!;
  // The constants "somepseudorandomlygeneratedbytes", split in 32-bit halves.
  v0h = (k0h ^ 0x736f6d65) >>> 0;
  v0l = (k0l ^ 0x70736575) >>> 0;
  v1h = (k1h ^ 0x646f7261) >>> 0;
  v1l = (k1l ^ 0x6e646f6d) >>> 0;
  v2h = (k0h ^ 0x6c796765) >>> 0;
  v2l = (k0l ^ 0x6e657261) >>> 0;
  v3h = (k1h ^ 0x74656462) >>> 0;
  v3l = (k1l ^ 0x79746573) >>> 0;

  const end = off + len;
  const lastBlock = end - (len & 7);
  let p = off;
  for (; p < lastBlock; p += 8) compress(readLe32(buf, p + 4), readLe32(buf, p));

  // Final block: the 0..7 remaining bytes, little-endian, with len mod 256 in the top byte.
  let ml = 0;
  let mh = (len & 0xff) << 24;
  const rest = end - p;
  for (let i = 0; i < rest; i++) {
    const b = buf[p + i]!;
    if (i < 4) ml |= b << (8 * i);
    else mh |= b << (8 * (i - 4));
  }
  compress(mh >>> 0, ml >>> 0);

  v2l = (v2l ^ 0xff) >>> 0;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  out[0] = v0l ^ v1l ^ v2l ^ v3l;
  out[1] = v0h ^ v1h ^ v2h ^ v3h;
  return out[0]!;
}
