/**
 * A tiny seeded PRNG (mulberry32) so randomized tests are reproducible: the same seed gives the
 * same sequence on every run and machine. Not for anything security-related.
 */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, bound) for bound ≥ 1. */
  below(bound: number): number {
    return this.nextU32() % bound;
  }

  fill(buf: Uint8Array): Uint8Array {
    for (let i = 0; i < buf.length; i++) buf[i] = this.nextU32() & 0xff;
    return buf;
  }
}
