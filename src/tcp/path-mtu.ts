/**
 * The MTU toward each client: what a flow's segment size is cut to (responder.ts), besides the
 * client's MSS. Two sources fill it:
 *
 *  - the route: the MTU the kernel would use toward the address (the device's, a route's `mtu`,
 *    or a path MTU the kernel itself learned), asked through an injected `lookup` — in the
 *    shards io/raw-send.ts's pathMtu, a connected UDP socket and IP_MTU / IPV6_MTU. A few
 *    microseconds, so it is asked when a destination is first seen and again after `routeTtlMs`
 *    (routes change), never per packet;
 *  - what a flow learns: a send refused with EMSGSIZE, an ICMP "fragmentation needed" (RFC 1191)
 *    or "packet too big" (RFC 8201) quoting one of its segments, lower it (`lower`). A lowered
 *    value lasts `learnedTtlMs` (RFC 1191 §6.3, RFC 8201 §4: "at least 5 minutes", 10
 *    recommended), then the route's MTU is asked again — a path can grow back.
 *
 * Bounded and keyed: a 4-way set-associative table of `sets` × 4 entries, indexed by SipHash-1-3
 * of the address under a key drawn at start, so that no choice of client addresses can crowd
 * one set (a full set gives up its oldest entry). Nothing is allocated per lookup.
 */
import { type SipKey, sipHash13, sipKeyOf } from './siphash.js';

/** The MTU of the route toward `address` (4 or 16 bytes), or ≤ 0 if unknown (no route). */
export type RouteMtuLookup = (family: 4 | 6, address: Uint8Array) => number;

/** What the responder asks of a path MTU table (an interface, so tests can give fixed MTUs). */
export interface PathMtuSource {
  /** The MTU toward `address` (first 4 or 16 bytes). */
  mtuToward(family: 4 | 6, address: Uint8Array, nowMs: number): number;
  /** A smaller MTU toward `address` was learned; returns the MTU now in force (never below the floor). */
  lower(family: 4 | 6, address: Uint8Array, mtu: number, nowMs: number): number;
}

/** RFC 1191 §3 / RFC 791: 576-byte datagrams must get through; Linux's min_pmtu is 552. */
export const MIN_MTU_V4 = 552;
/** RFC 8200 §5: every IPv6 link carries 1280 bytes. */
export const MIN_MTU_V6 = 1280;

interface PathMtuOptions {
  /** Sets of 4 entries (a power of two). */
  sets: number;
  /** How long a route's MTU is trusted before it is asked again. */
  routeTtlMs: number;
  /** How long a learned (lowered) MTU lasts (RFC 1191 §6.3: 10 minutes). */
  learnedTtlMs: number;
  /** MTU assumed when the lookup knows none (the listen interface's, at start). */
  fallbackMtu: number;
}

const DEFAULT_PATH_MTU_OPTIONS: PathMtuOptions = {
  sets: 4096,
  routeTtlMs: 60_000,
  learnedTtlMs: 600_000,
  fallbackMtu: 1500,
};

const WAYS = 4;

export class PathMtuTable implements PathMtuSource {
  /** Route lookups made (a destination first seen, or its entry expired). */
  lookups = 0;
  /** Entries given up to make room in a full set. */
  evictions = 0;
  private readonly key: SipKey;
  private readonly mask: number;
  /** Per entry: family (0 = empty), address (16 bytes), MTU, expiry. */
  private readonly families: Uint8Array;
  private readonly addresses: Uint8Array;
  private readonly mtus: Int32Array;
  private readonly expiries: Float64Array;
  private readonly scratch = new Uint8Array(17);
  private readonly digest = new Uint32Array(2);

  constructor(
    private readonly lookup: RouteMtuLookup,
    secret: Uint8Array,
    private readonly options: PathMtuOptions = DEFAULT_PATH_MTU_OPTIONS,
  ) {
    if (!(options.sets > 0 && (options.sets & (options.sets - 1)) === 0)) throw new RangeError('sets must be a power of two');
    this.key = sipKeyOf(secret);
    this.mask = options.sets - 1;
    const entries = options.sets * WAYS;
    this.families = new Uint8Array(entries);
    this.addresses = new Uint8Array(entries * 16);
    this.mtus = new Int32Array(entries);
    this.expiries = new Float64Array(entries);
  }

  mtuToward(family: 4 | 6, address: Uint8Array, nowMs: number): number {
    const entry = this.find(family, address);
    if (entry >= 0 && this.expiries[entry]! > nowMs) return this.mtus[entry]!;
    this.lookups++;
    const found = this.lookup(family, address);
    const mtu = found > 0 ? Math.max(found, floorOf(family)) : this.options.fallbackMtu;
    this.store(entry >= 0 ? entry : this.victim(family, address, nowMs), family, address, mtu, nowMs + this.options.routeTtlMs);
    return mtu;
  }

  lower(family: 4 | 6, address: Uint8Array, mtu: number, nowMs: number): number {
    const current = this.mtuToward(family, address, nowMs);
    const lowered = Math.max(floorOf(family), Math.min(current, mtu));
    const entry = this.find(family, address); // mtuToward just filled it
    // Lowered: it lasts learnedTtlMs from now (a route's MTU no longer applies). A report of no
    // smaller MTU changes nothing, nor how long the entry lasts.
    if (lowered < current) {
      this.mtus[entry] = lowered;
      this.expiries[entry] = Math.max(this.expiries[entry]!, nowMs + this.options.learnedTtlMs);
    }
    return lowered;
  }

  /** The entry holding `address`, or −1. */
  private find(family: 4 | 6, address: Uint8Array): number {
    const n = family === 4 ? 4 : 16;
    const first = this.setOf(family, address) * WAYS;
    for (let e = first; e < first + WAYS; e++) {
      if (this.families[e] !== family) continue;
      let same = true;
      for (let i = 0; i < n && same; i++) same = this.addresses[e * 16 + i] === address[i];
      if (same) return e;
    }
    return -1;
  }

  /** The entry to fill with a new address: an empty or expired one of its set, else the one expiring first. */
  private victim(family: 4 | 6, address: Uint8Array, nowMs: number): number {
    const first = this.setOf(family, address) * WAYS;
    let oldest = first;
    for (let e = first; e < first + WAYS; e++) {
      if (this.families[e] === 0 || this.expiries[e]! <= nowMs) return e;
      if (this.expiries[e]! < this.expiries[oldest]!) oldest = e;
    }
    this.evictions++;
    return oldest;
  }

  private store(entry: number, family: 4 | 6, address: Uint8Array, mtu: number, expiry: number): void {
    this.families[entry] = family;
    const n = family === 4 ? 4 : 16;
    for (let i = 0; i < n; i++) this.addresses[entry * 16 + i] = address[i]!;
    this.mtus[entry] = mtu;
    this.expiries[entry] = expiry;
  }

  private setOf(family: 4 | 6, address: Uint8Array): number {
    const n = family === 4 ? 4 : 16;
    const s = this.scratch;
    s[0] = family;
    for (let i = 0; i < n; i++) s[1 + i] = address[i]!;
    sipHash13(this.key, s, 0, 1 + n, this.digest);
    return this.digest[0]! & this.mask;
  }
}

function floorOf(family: 4 | 6): number {
  return family === 4 ? MIN_MTU_V4 : MIN_MTU_V6;
}
