/**
 * Frames whose every property derives from a sequence number, so a consumer can verify what it
 * receives without being told what was sent: length, bytes, wire length and timestamp. A frame
 * delivered twice, out of order, torn, or from the wrong slot fails the check.
 */

/** A capture time, seconds since the Unix epoch (late 2025). */
const BASE_TIMESTAMP_SECONDS = 1_764_000_000;
const MICROS_PER_SECOND = 1_000_000;

/** A well-mixed 32-bit value from `sequence` (the MurmurHash3 finalizer). */
function mix(sequence: number): number {
  let h = sequence >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Captured length of frame `sequence`: 1 … `maxLength`. */
export function sequenceFrameLength(sequence: number, maxLength: number): number {
  return 1 + (mix(sequence) % maxLength);
}

/** Length on the wire of frame `sequence` captured with `capturedLength` bytes (≥ captured). */
export function sequenceWireLength(sequence: number, capturedLength: number): number {
  return capturedLength + (sequence % 3);
}

/** Capture time of frame `sequence`: seconds (libpcap `tv_sec`) … */
export function sequenceTimestampSeconds(sequence: number): number {
  return BASE_TIMESTAMP_SECONDS + Math.floor(sequence / 1000);
}

/** … and microseconds within that second (`tv_usec`). */
export function sequenceTimestampMicros(sequence: number): number {
  return (sequence * 997) % MICROS_PER_SECOND;
}

/** Byte `i` of frame `sequence`. */
function sequenceByte(sequence: number, i: number): number {
  return (mix(sequence) + Math.imul(i, 0x9d)) & 0xff;
}

/** Write the first `length` bytes of frame `sequence` to `buf` at `offset`. */
export function writeSequenceFrame(buf: Uint8Array, offset: number, sequence: number, length: number): void {
  for (let i = 0; i < length; i++) buf[offset + i] = sequenceByte(sequence, i);
}

/** Index of the first byte of `bytes[offset, offset + length)` that is not frame `sequence`'s, or -1. */
export function sequenceFrameMismatch(bytes: Uint8Array, offset: number, sequence: number, length: number): number {
  for (let i = 0; i < length; i++) if (bytes[offset + i] !== sequenceByte(sequence, i)) return i;
  return -1;
}
