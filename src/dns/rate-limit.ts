/**
 * Per-client query rate limits, as dnsdist's MaxQPSIPRule: a token bucket per client network —
 * an IPv4 /24 or IPv6 /56 by default, where one customer's addresses usually lie — holding one
 * second's worth of queries and refilled at the limit. A fixed direct-mapped table (nothing
 * allocated, nothing grows), indexed by SipHash-1-3 of the prefix under a random key, so that a
 * client cannot choose addresses that land in another's bucket; two networks that share a slot
 * take turns at a fresh bucket, which can only let one of them through more, never less.
 */
import { sipHash13, sipKeyOf, type SipKey } from '../tcp/siphash.js';
import { isV4Mapped } from '../endpoint.js';

const SLOTS = 65536;

export class ClientRateLimit {
  private readonly keys = new Int32Array(SLOTS);
  private readonly tokens = new Float64Array(SLOTS);
  /** When each bucket was last refilled; -Infinity: an empty slot. */
  private readonly refilledMs = new Float64Array(SLOTS).fill(Number.NEGATIVE_INFINITY);
  private readonly sipKey: SipKey;
  private readonly scratch = new Uint8Array(17);
  private readonly digest = new Uint32Array(2);

  /** `qps` queries a second per network of `v4PrefixBits` / `v6PrefixBits`; `secret` 16 random bytes. */
  constructor(
    readonly qps: number,
    private readonly v4PrefixBits: number,
    private readonly v6PrefixBits: number,
    secret: Uint8Array,
  ) {
    this.sipKey = sipKeyOf(secret);
  }

  /** Whether a query from `address[0, length)` (4 or 16 bytes, network order) may be answered at `nowMs`; takes its token. */
  allow(address: Uint8Array, length: number, nowMs: number): boolean {
    const slotKey = this.networkKey(address, length);
    const slot = slotKey & (SLOTS - 1);
    if (this.keys[slot] !== slotKey || this.refilledMs[slot] === Number.NEGATIVE_INFINITY) {
      this.keys[slot] = slotKey;
      this.tokens[slot] = this.qps;
      this.refilledMs[slot] = nowMs;
    } else {
      // Never negative: a clock stepped back must not take tokens.
      const refill = (Math.max(0, nowMs - this.refilledMs[slot]!) / 1000) * this.qps;
      this.tokens[slot] = Math.min(this.qps, this.tokens[slot]! + refill);
      this.refilledMs[slot] = nowMs;
    }
    if (this.tokens[slot]! < 1) return false;
    this.tokens[slot]!--;
    return true;
  }

  /** A keyed hash of the address's network: family, then the prefix with the host bits cleared. */
  private networkKey(address: Uint8Array, length: number): number {
    const s = this.scratch;
    let v4 = length === 4;
    let from = 0;
    if (!v4 && isV4Mapped(address)) {
      v4 = true;
      from = 12;
    }
    const bits = v4 ? this.v4PrefixBits : this.v6PrefixBits;
    const bytes = v4 ? 4 : 16;
    s[0] = v4 ? 4 : 6;
    for (let i = 0; i < bytes; i++) {
      const keep = Math.max(0, Math.min(8, bits - 8 * i));
      s[1 + i] = address[from + i]! & ((0xff00 >>> keep) & 0xff);
    }
    sipHash13(this.sipKey, s, 0, 1 + bytes, this.digest);
    return this.digest[0]! | 0;
  }
}
