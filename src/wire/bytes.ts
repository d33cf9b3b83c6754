/**
 * Big-endian ("network byte order", RFC 791 Appendix B) integer access by index.
 *
 * Hot-path code reads fields byte by byte instead of through a DataView: a DataView per packet
 * would allocate, and one shared DataView cannot follow the caller's buffer. These helpers never
 * check bounds; every caller proves `offset + width <= end` first (the smoltcp `check_len`
 * contract), because an out-of-range typed-array read yields `undefined` without throwing and
 * would silently turn into 0 or NaN arithmetic.
 */

export function readU16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

/** Unsigned: `>>> 0` keeps values with the top bit set positive (0 … 2^32-1). */
export function readU32(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

/** Signed (−2^31 … 2^31−1), which V8 keeps as a small integer: for comparing and hashing words. */
export function readI32(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!;
}

export function writeU16(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 8;
  buf[offset + 1] = value;
}

export function writeU32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 24;
  buf[offset + 1] = value >>> 16;
  buf[offset + 2] = value >>> 8;
  buf[offset + 3] = value;
}
