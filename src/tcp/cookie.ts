/**
 * Keyed SYN cookies and timestamp tokens: how a server without connection state recognises its
 * own connections.
 *
 * **The ISN cookie.** The ISN we put in a SYN+ACK is a keyed hash of the connection, so a segment
 * that acknowledges ISN + 1 proves its sender saw our SYN+ACK (RFC 4987 §3.6; the talk's "any old
 * sequence number" would let a forged source address get a full answer). As in Linux
 * (net/ipv4/syncookies.c) the hash covers the client's own ISN too: a first data segment
 * validates only if its sequence number is the client's ISN + 1, which also proves it is the
 * first byte of the client's stream.
 *
 *     31                                          4 3     2 1     0
 *    +---------------------------------------------+-------+-------+
 *    |  MAC: 28 bits of SipHash-2-4 over           | period|  MSS  |
 *    |  (period, MSS, client ISN, tuple)           | mod 4 | class |
 *    +---------------------------------------------+-------+-------+
 *
 * **The timestamp token.** A later request on an idle connection acknowledges ISN + 1 + however
 * many bytes we sent, which we no longer know. When the client negotiated TCP timestamps
 * (RFC 7323), every segment it sends echoes our last TSval in TSecr, so we make our TSval a token:
 *
 *     31 30 29                                  5 4       2 1     0
 *    +-----+--------------------------------------+---------+-------+
 *    | per.|  MAC: 25 bits of SipHash-2-4 over    |  scale  |  MSS  |
 *    | mod4|  (period, scale, MSS, tuple)         |  class  | class |
 *    +-----+--------------------------------------+---------+-------+
 *
 * The scale class is the client's window scale shift (RFC 7323 §2) less 4 when it is one we
 * take, 5 to 11: macOS's 6, Windows' 8, Linux's 7 (before 6.16) or 10 (since, with tcp_rmem up
 * to 32 MiB), and the 9 and 11 of hosts tuned either way. It is 0 when we did not agree to
 * scaling. Every window the client sends after its SYN is shifted by it (RFC 7323 §2.3), and a
 * server that keeps no state can only learn it from what each segment carries; Linux's own
 * syncookies keep it in the TSval's low bits for the same reason (net/ipv4/syncookies.c,
 * cookie_init_timestamp). We offer scaling (shift 0 for our own window, which stays below 64 KiB)
 * only with timestamps and only for those shifts: with any other, the SYN+ACK leaves the option
 * out and neither side scales (RFC 7323 §2.2). Reading windows with a smaller shift than the
 * client's would make them look smaller, safe but slow; a larger one would overrun the client.
 *
 * The token is constant within a period, and the client's PAWS check (RFC 7323 §5) drops any
 * segment of ours whose TSval is below the last one it kept (compared modulo 2^32, so "below"
 * means less than 2^31 behind). With the period in the top two bits, the token of the next
 * period is 2^30 ± 2^30 ahead of this one's: always ahead, never by 2^31 or more. Two periods
 * on it could seem behind, so a token is accepted for at most one period after the one it was
 * issued in (`maxAgePeriods` ≤ 1), and a flow that sent nothing for longer steps its tokens
 * forward one period at a time (`tokenForReply`). That is why the MAC is 25 bits and not the 32
 * the 32-bit TSval would hold: two bits keep our TSvals increasing, two carry the MSS class and
 * three the scale class (Linux's ISN cookies carry about 24). Guessing a token takes 2^24
 * forged segments on average within its at most two periods, and a flow proved by a token alone
 * starts with a window of two segments (responder.ts), so a correct guess draws at most three
 * segments toward the forged source.
 *
 * `period` counts `periodSeconds` (128 s); a cookie or token is accepted while at most
 * `maxAgePeriods` (1) old, so between 128 and 256 s. Tokens are refreshed by every segment we
 * send, so that bounds how long a connection may stay idle — longer than unbound's and BIND's
 * 30 s TCP idle timeouts and nginx's 75 s keep-alive; an ISN cookie is only ever checked on the
 * first request.
 *
 * **The secret.** 128 bits, the SipHash key. Instances that share it recognise each other's
 * connections (scale-out behind ECMP or anycast). Since the period is hashed too, every period
 * effectively has its own key; `rotate` replaces the secret itself, and the previous one stays
 * accepted for checking so that connections opened before the rotation live on.
 */
import { sipHash24, type SipKey, sipKeyOf } from './siphash.js';
import type { ReplyHeader, Segment } from '../wire/segment.js';

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
  /** How many periods old a cookie or token may be: 0 or 1 (a token any older could fail the client's PAWS check). */
  maxAgePeriods: number;
}

export const DEFAULT_COOKIE_OPTIONS: CookieOptions = { periodSeconds: 128, maxAgePeriods: 1 };

const ISN_PERIOD_MASK = 3;
const ISN_MAC_MASK = 0xfffffff0;
const TOKEN_PERIOD_SHIFT = 30;
const TOKEN_MAC_MASK = 0x3fffffe0;
/** The low bits of a token: what the handshake negotiated (`SynCookies.negotiated`). */
const NEGOTIATED_MASK = 0x1f;

/** The client window scale shifts a token can carry: scale class k (1–7) is shift k + 4. */
const MIN_WINDOW_SCALE = 5;
const MAX_WINDOW_SCALE = 11;
const WINDOW_SCALE_CLASS_OFFSET = 4;
/** Tokens stay increasing across one period only (see above). */
const MAX_TOKEN_AGE_PERIODS = 1;

/** Hash input domains, so an ISN can never be replayed as a token or the reverse. */
const Domain = { ISN: 1, TOKEN: 2, CONNECTION: 3, SOURCE: 4 } as const;

export const SECRET_BYTES = 16;

export class SynCookies {
  /** The secret everything is issued with. */
  private key: SipKey;
  /** The secret before the last `rotate`, still accepted when checking (null: none). */
  private previousKey: SipKey | null = null;
  /** How many times the secret was rotated: `key` is this generation, `previousKey` the one before. */
  private generation = 0;
  /**
   * The key generation that proved the last successful `checkToken` or `checkFirstSegment`. A
   * connection keeps its tokens under that key (`tokenForReply`): a token under a new key could
   * be smaller than the client's TS.Recent, and its PAWS check (RFC 7323 §5) would drop us.
   */
  lastKeyGeneration = 0;
  /** The first secret, kept for `connectionId`: its ids key a table in this process only, so they need not rotate. */
  private readonly connectionKey: SipKey;
  private readonly periodSeconds: number;
  private readonly maxAgePeriods: number;
  /** The longest a connection can stay idle: its token is accepted this long after we last sent one. */
  readonly maxIdleSeconds: number;
  /** How long a connection may always stay idle: a token issued at the very end of its period lasts this long. */
  readonly minIdleSeconds: number;
  /** Hash input: domain, MSS (and scale) class, 2 zero, period (4), client ISN (4), ports (4), two addresses (≤ 32). */
  private readonly scratch = new Uint8Array(48);
  private readonly digest = new Uint32Array(2);

  /** `secret` is 16 bytes: the SipHash key. */
  constructor(secret: Uint8Array, options: CookieOptions = DEFAULT_COOKIE_OPTIONS) {
    if (!(options.maxAgePeriods >= 0 && options.maxAgePeriods <= MAX_TOKEN_AGE_PERIODS)) {
      throw new RangeError(`maxAgePeriods must be 0 … ${MAX_TOKEN_AGE_PERIODS}`);
    }
    this.key = this.connectionKey = sipKeyOf(secret);
    this.periodSeconds = options.periodSeconds;
    this.maxAgePeriods = options.maxAgePeriods;
    this.maxIdleSeconds = options.periodSeconds * (options.maxAgePeriods + 1);
    this.minIdleSeconds = options.periodSeconds * options.maxAgePeriods;
  }

  /** Cookies from a secret history, oldest first: they issue with the last, and accept the one before it too. */
  static fromHistory(secrets: readonly Uint8Array[]): SynCookies {
    const cookies = new SynCookies(secrets[0]!);
    for (const secret of secrets.slice(1)) cookies.rotate(secret);
    return cookies;
  }

  /** Issues with `secret` from now on; the current secret is still accepted when checking. */
  rotate(secret: Uint8Array): void {
    const next = sipKeyOf(secret);
    this.previousKey = this.key;
    this.key = next;
    this.generation++;
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

  /**
   * What our SYN+ACK to `syn` agrees to, as the 5 bits a token carries: the MSS class (bits 0–1)
   * and the scale class (bits 2–4: the client's window scale shift less 4 if it offered
   * timestamps and a shift of 5 to 11, else 0 and no scaling).
   */
  static negotiated(syn: Segment): number {
    const shift = syn.windowScale;
    const scales = syn.hasTimestamps && shift >= MIN_WINDOW_SCALE && shift <= MAX_WINDOW_SCALE;
    return SynCookies.mssIndex(syn.family, syn.mss) | (scales ? (shift - WINDOW_SCALE_CLASS_OFFSET) << 2 : 0);
  }

  /** The MSS we send with, from a `negotiated` value. */
  static mssOf(family: 4 | 6, negotiated: number): number {
    return SynCookies.mssOfIndex(family, negotiated & 3);
  }

  /** The shift of the client's windows (RFC 7323 §2.3), from a `negotiated` value; 0 without scaling. */
  static windowShift(negotiated: number): number {
    const scaleClass = negotiated >>> 2;
    return scaleClass === 0 ? 0 : scaleClass + WINDOW_SCALE_CLASS_OFFSET;
  }

  period(nowSeconds: number): number {
    return Math.floor(nowSeconds / this.periodSeconds);
  }

  /** The ISN for our SYN+ACK answering the SYN `syn`. */
  issue(syn: Segment, nowSeconds: number): number {
    const period = this.period(nowSeconds);
    const mssIndex = SynCookies.mssIndex(syn.family, syn.mss);
    this.fromSegment(syn, Domain.ISN, period, mssIndex, syn.seq);
    const mac = this.hash(syn.addrLength, this.key);
    return ((mac & ISN_MAC_MASK) | ((period & ISN_PERIOD_MASK) << 2) | mssIndex) >>> 0;
  }

  /**
   * Checks that `seg` is the client's first data (or FIN) segment of a connection we accepted:
   * it acknowledges our cookie + 1 and starts right after the client's ISN. Returns what was
   * negotiated as far as the ISN tells (the MSS class; no scale class, which only tokens carry:
   * a client that scales its windows is read without the shift, so they look smaller), or -1.
   */
  checkFirstSegment(seg: Segment, nowSeconds: number): number {
    const isn = (seg.ack - 1) >>> 0;
    const nowPeriod = this.period(nowSeconds);
    const age = (nowPeriod - ((isn >>> 2) & ISN_PERIOD_MASK)) & ISN_PERIOD_MASK;
    if (age > this.maxAgePeriods) return -1;
    const mssIndex = isn & 3;
    this.fromSegment(seg, Domain.ISN, nowPeriod - age, mssIndex, (seg.seq - 1) >>> 0);
    const wanted = (isn & ISN_MAC_MASK) >>> 0;
    if ((this.hash(seg.addrLength, this.key) & ISN_MAC_MASK) >>> 0 === wanted) return this.provedBy(this.generation, mssIndex);
    if (this.previousKey === null) return -1;
    return (this.hash(seg.addrLength, this.previousKey) & ISN_MAC_MASK) >>> 0 === wanted
      ? this.provedBy(this.generation - 1, mssIndex)
      : -1;
  }

  /** Our TSval for segments of the connection of `seg` (a client segment), carrying `negotiated`. */
  tokenForSegment(seg: Segment, negotiated: number, nowSeconds: number): number {
    const period = this.period(nowSeconds);
    this.fromSegment(seg, Domain.TOKEN, period, negotiated, 0);
    return this.token(period, negotiated, seg.addrLength);
  }

  /**
   * Our TSval for segments sent with `reply` (addresses and ports in the reply direction) in
   * `period`, under the key of `keyGeneration` while that key is still held (else the current
   * one). A flow that last sent a token of period p sends p + 1's next, however much later: the
   * client's PAWS check accepts a token one period on, not always one two periods on.
   */
  tokenForReply(reply: ReplyHeader, negotiated: number, period: number, keyGeneration: number): number {
    this.fromReply(reply, period, negotiated);
    const key = keyGeneration === this.generation - 1 && this.previousKey !== null ? this.previousKey : this.key;
    return this.token(period, negotiated, reply.family === 4 ? 4 : 16, key);
  }

  /**
   * Checks the token a client echoes in TSecr. Returns what the handshake negotiated (MSS and
   * scale class, `negotiated`), or -1 if it is not a token of ours for this connection or is
   * older than the maximum age.
   */
  checkToken(seg: Segment, token: number, nowSeconds: number): number {
    const nowPeriod = this.period(nowSeconds);
    const age = (nowPeriod - (token >>> TOKEN_PERIOD_SHIFT)) & 3;
    if (age > this.maxAgePeriods) return -1;
    const negotiated = token & NEGOTIATED_MASK;
    const period = nowPeriod - age;
    this.fromSegment(seg, Domain.TOKEN, period, negotiated, 0);
    if (this.token(period, negotiated, seg.addrLength, this.key) === token >>> 0) return this.provedBy(this.generation, negotiated);
    if (this.previousKey === null) return -1;
    return this.token(period, negotiated, seg.addrLength, this.previousKey) === token >>> 0
      ? this.provedBy(this.generation - 1, negotiated)
      : -1;
  }

  private provedBy(keyGeneration: number, negotiated: number): number {
    this.lastKeyGeneration = keyGeneration;
    return negotiated;
  }

  /**
   * A 64-bit keyed id of the connection of client segment `seg` (its 4-tuple), written to
   * `out[0]` (low) and `out[1]` (high): the key of recent.ts's table.
   */
  connectionId(seg: Segment, out: Uint32Array): void {
    this.fromSegment(seg, Domain.CONNECTION, 0, 0, 0);
    sipHash24(this.connectionKey, this.scratch, 0, 16 + 2 * seg.addrLength, out);
  }

  /**
   * The flow table's bucket key from a connection id (`connectionId`'s `out`): 31 bits of it, a
   * small integer for V8. Keyed, so that a client choosing its addresses and ports cannot aim its
   * connections at one bucket and turn lookups into a walk along one chain.
   */
  static tableKey(id: Uint32Array): number {
    return id[0]! & 0x7fff_ffff;
  }

  /**
   * 31 keyed bits of the client's network — its IPv4 address, or its IPv6 /64, which one host
   * may fill with addresses of its own: the key of the responder's flow count per source.
   */
  sourceKey(seg: Segment): number {
    this.header(Domain.SOURCE, 0, 0, 0);
    const prefix = seg.family === 4 ? 4 : 8;
    for (let i = 0; i < prefix; i++) this.scratch[12 + i] = seg.buf[seg.srcAddrOffset + i]!;
    return sipHash24(this.connectionKey, this.scratch, 0, 12 + prefix, this.digest) & 0x7fff_ffff;
  }

  private token(period: number, negotiated: number, addrLength: number, key: SipKey = this.key): number {
    const mac = this.hash(addrLength, key);
    return (((period & 3) << TOKEN_PERIOD_SHIFT) | (mac & TOKEN_MAC_MASK) | negotiated) >>> 0;
  }

  /** `negotiated`: the MSS class for an ISN; MSS and scale class for a token. */
  private header(domain: number, period: number, negotiated: number, clientIsn: number): void {
    const s = this.scratch;
    s[0] = domain;
    s[1] = negotiated;
    s[2] = s[3] = 0;
    s[4] = period;
    s[5] = period >>> 8;
    s[6] = period >>> 16;
    s[7] = period >>> 24;
    s[8] = clientIsn >>> 24;
    s[9] = clientIsn >>> 16;
    s[10] = clientIsn >>> 8;
    s[11] = clientIsn;
  }

  /** Hash input from a client segment: client port, server port, client address, server address. */
  private fromSegment(seg: Segment, domain: number, period: number, negotiated: number, clientIsn: number): void {
    this.header(domain, period, negotiated, clientIsn);
    const s = this.scratch;
    s[12] = seg.srcPort >>> 8;
    s[13] = seg.srcPort;
    s[14] = seg.dstPort >>> 8;
    s[15] = seg.dstPort;
    const n = seg.addrLength;
    const buf = seg.buf;
    for (let i = 0; i < n; i++) {
      s[16 + i] = buf[seg.srcAddrOffset + i]!;
      s[16 + n + i] = buf[seg.dstAddrOffset + i]!;
    }
  }

  /** The same input from a reply header, whose source is the server and destination the client. */
  private fromReply(reply: ReplyHeader, period: number, negotiated: number): void {
    this.header(Domain.TOKEN, period, negotiated, 0);
    const s = this.scratch;
    s[12] = reply.dstPort >>> 8;
    s[13] = reply.dstPort;
    s[14] = reply.srcPort >>> 8;
    s[15] = reply.srcPort;
    const n = reply.family === 4 ? 4 : 16;
    for (let i = 0; i < n; i++) {
      s[16 + i] = reply.dstAddr[i]!;
      s[16 + n + i] = reply.srcAddr[i]!;
    }
  }

  private hash(addrLength: number, key: SipKey): number {
    return sipHash24(key, this.scratch, 0, 16 + 2 * addrLength, this.digest);
  }
}
