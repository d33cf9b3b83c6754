/**
 * Keyed SYN cookies used as our initial sequence number (ISN).
 *
 * The ISN we put in a SYN+ACK is the only thing we remember about a connection: every later
 * segment echoes it in its acknowledgment number, so a keyed hash of the 4-tuple in the ISN lets
 * us tell a client that completed the handshake from a forger who never saw our SYN+ACK
 * (RFC 4987 §3.6; the talk's "any old sequence number" would let a spoofed source get a full
 * answer). It also carries the one fact about the client we need later: its MSS class.
 *
 * Layout of the 32-bit ISN (Linux's syncookies use a similar split, net/ipv4/syncookies.c):
 *
 *     31                                8 7          2 1     0
 *    +-----------------------------------+------------+-------+
 *    |  MAC: 24 bits of SipHash-2-4 over |  period    |  MSS  |
 *    |  (period, MSS index, 4-tuple)      |  mod 64    | index |
 *    +-----------------------------------+------------+-------+
 *
 * `period` counts `periodSeconds` since the epoch. A cookie is accepted while it is at most
 * `maxAgePeriods` old; since nothing else remembers the connection, that is also the longest a
 * connection can live. A connection past it is answered with RST and the client reconnects.
 */
import { sipHash24, type SipKey } from './siphash.js';
import type { Segment } from '../wire/segment.js';

/**
 * MSS classes a cookie can carry (2 bits), as Linux's msstab (IPv4) and msstab6 (IPv6):
 * the common values, so a client's MSS usually maps to itself. We send segments of the largest
 * class not above the client's MSS.
 */
export const MSS_CLASSES_V4: readonly number[] = [536, 1300, 1440, 1460];
export const MSS_CLASSES_V6: readonly number[] = [1220, 1420, 1440, 8940];

/** RFC 9293 §3.7.1: without an MSS option, assume 536 (IPv4) or 1220 (IPv6, RFC 8200 §5: 1280 − 40 − 20). */
export const DEFAULT_MSS_V4 = 536;
export const DEFAULT_MSS_V6 = 1220;

export interface CookieOptions {
  /** Length of one period in seconds. */
  periodSeconds: number;
  /** How many periods old a cookie may be (0 … 62). */
  maxAgePeriods: number;
}

export const DEFAULT_COOKIE_OPTIONS: CookieOptions = { periodSeconds: 64, maxAgePeriods: 15 };

const PERIOD_BITS = 6;
const PERIOD_MASK = (1 << PERIOD_BITS) - 1;
const MAC_MASK = 0xffffff00;

export class SynCookies {
  private readonly key: SipKey;
  private readonly periodSeconds: number;
  private readonly maxAgePeriods: number;
  /** Hash input: period (4) + MSS index (1) + 3 zero + ports (4) + two addresses (≤ 32). */
  private readonly scratch = new Uint8Array(44);
  private readonly digest = new Uint32Array(2);

  /** `secret` is 16 bytes: the SipHash key. */
  constructor(secret: Uint8Array, options: CookieOptions = DEFAULT_COOKIE_OPTIONS) {
    if (secret.length !== 16) throw new RangeError('SYN cookie secret must be 16 bytes');
    if (!(options.maxAgePeriods >= 0 && options.maxAgePeriods < PERIOD_MASK)) {
      throw new RangeError(`maxAgePeriods must be 0 … ${PERIOD_MASK - 1}`);
    }
    const words = new DataView(secret.buffer, secret.byteOffset, 16);
    this.key = new Uint32Array([
      words.getUint32(0, true),
      words.getUint32(4, true),
      words.getUint32(8, true),
      words.getUint32(12, true),
    ]);
    this.periodSeconds = options.periodSeconds;
    this.maxAgePeriods = options.maxAgePeriods;
  }

  /** The MSS class index (0-3) for the MSS a client announced in its SYN (0 = no option). */
  static mssIndex(family: 4 | 6, clientMss: number): number {
    const classes = family === 4 ? MSS_CLASSES_V4 : MSS_CLASSES_V6;
    const mss = clientMss > 0 ? clientMss : family === 4 ? DEFAULT_MSS_V4 : DEFAULT_MSS_V6;
    let index = 0;
    for (let i = 1; i < classes.length; i++) if (classes[i]! <= mss) index = i;
    return index;
  }

  static mssOfIndex(family: 4 | 6, index: number): number {
    return (family === 4 ? MSS_CLASSES_V4 : MSS_CLASSES_V6)[index]!;
  }

  /** The ISN for our SYN+ACK answering the SYN `syn`, at time `nowSeconds`. */
  issue(syn: Segment, nowSeconds: number): number {
    const period = Math.floor(nowSeconds / this.periodSeconds);
    const mssIndex = SynCookies.mssIndex(syn.family, syn.mss);
    const mac = this.mac(syn, period, mssIndex);
    return ((mac & MAC_MASK) | ((period & PERIOD_MASK) << 2) | mssIndex) >>> 0;
  }

  /**
   * Checks that `isn` is a cookie we issued for the flow of `seg` (a segment from the client) and
   * is not older than the maximum age. Returns the MSS class index, or -1 if it is not ours.
   */
  check(seg: Segment, isn: number, nowSeconds: number): number {
    const nowPeriod = Math.floor(nowSeconds / this.periodSeconds);
    const age = (nowPeriod - ((isn >>> 2) & PERIOD_MASK)) & PERIOD_MASK;
    if (age > this.maxAgePeriods) return -1;
    const mssIndex = isn & 3;
    const mac = this.mac(seg, nowPeriod - age, mssIndex);
    return ((mac & MAC_MASK) >>> 0) === ((isn & MAC_MASK) >>> 0) ? mssIndex : -1;
  }

  /** SipHash over (period, MSS index, client port, server port, client address, server address). */
  private mac(seg: Segment, period: number, mssIndex: number): number {
    const s = this.scratch;
    s[0] = period;
    s[1] = period >>> 8;
    s[2] = period >>> 16;
    s[3] = period >>> 24;
    s[4] = mssIndex;
    s[5] = s[6] = s[7] = 0;
    s[8] = seg.srcPort >>> 8;
    s[9] = seg.srcPort;
    s[10] = seg.dstPort >>> 8;
    s[11] = seg.dstPort;
    const n = seg.addrLength;
    const buf = seg.buf;
    for (let i = 0; i < n; i++) {
      s[12 + i] = buf[seg.srcAddrOffset + i]!;
      s[12 + n + i] = buf[seg.dstAddrOffset + i]!;
    }
    return sipHash24(this.key, s, 0, 12 + 2 * n, this.digest);
  }
}
