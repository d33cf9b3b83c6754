/**
 * Questions whose UDP answer from the upstream came back truncated lately. The relay sends their
 * next queries to the upstream over TCP at once: over UDP they would only bring TC=1 again,
 * costing the resolver a second lookup and the relay a round trip for every large answer
 * (DNSSEC-signed, many records). RFC 7766 §5 lets a client use TCP without trying UDP first; the
 * memory is short because an answer's size changes with its zone.
 *
 * A fixed direct-mapped table: a 32-bit hash of the question (the name case-folded, RFC 4343;
 * type and class) and when the entry expires. Nothing is allocated and nothing grows. Questions
 * that share a slot evict each other, and a false match only sends one small answer over TCP:
 * a slower answer, never a wrong one. The hash starts from a random seed, so that clients cannot
 * choose names that evict a popular question's entry.
 */
import { HEADER_LENGTH, questionEnd } from './message.js';

const SLOTS = 4096;
/** How long a truncated question goes straight to TCP. */
export const TRUNCATION_MEMORY_MS = 60_000;

export class TruncatedQuestions {
  private readonly hashes = new Int32Array(SLOTS);
  /** 0: an empty slot. */
  private readonly expiresAtMs = new Float64Array(SLOTS);

  /** `seed`: 32 random bits (the relay draws them from its random source). */
  constructor(private readonly seed = 0) {}

  /** The UDP answer to the query `query[offset, offset+length)` was truncated. */
  remember(query: Uint8Array, offset: number, length: number, nowMs: number): void {
    const hash = questionHash(query, offset, questionEnd(query, offset, length), this.seed);
    const slot = hash & (SLOTS - 1);
    this.hashes[slot] = hash;
    this.expiresAtMs[slot] = nowMs + TRUNCATION_MEMORY_MS;
  }

  /** Whether the question of the query at `offset`, which ends at `offset + questionEnd`, was truncated within the memory. */
  isRecent(query: Uint8Array, offset: number, questionEnd: number, nowMs: number): boolean {
    const hash = questionHash(query, offset, questionEnd, this.seed);
    const slot = hash & (SLOTS - 1);
    return this.hashes[slot] === hash && this.expiresAtMs[slot]! > nowMs;
  }
}

/** FNV-1a over the question section, `buf[offset + 12, offset + end)`, from the seed, ASCII letters folded to lower case. */
function questionHash(buf: Uint8Array, offset: number, end: number, seed: number): number {
  let hash = (0x811c9dc5 ^ seed) | 0;
  for (let i = offset + HEADER_LENGTH; i < offset + end; i++) {
    let byte = buf[i]!;
    if (byte >= 0x41 && byte <= 0x5a) byte |= 0x20;
    hash = Math.imul(hash ^ byte, 0x01000193);
  }
  return hash;
}
