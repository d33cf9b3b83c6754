/**
 * A packet cache in front of the resolver, as dnsdist's: an answer is kept whole, keyed on what
 * can change it, and served again with the asker's ID, the asker's letter case in the question,
 * and TTLs counted down by the time it spent here. One per relay, so per shard worker: no locks,
 * and a bounded number of entries (the oldest goes first when full).
 *
 * The key: the question (name case-folded, RFC 4343; type; class), the bits that change an
 * answer — RD, CD, DO and whether the query has EDNS at all (RFC 6891) — and the EDNS options
 * except COOKIE (RFC 7873: every client has its own, and it changes no answer) and
 * edns-tcp-keepalive (RFC 7828: about the connection, not the answer). A query with
 * records other than one OPT, or of another opcode, is not cached.
 *
 * What is kept (RFC 2308 for negative answers): NOERROR with answers, for the smallest TTL of
 * its records; NXDOMAIN and NODATA for min(SOA TTL, SOA MINIMUM) of the SOA in the authority
 * section (without one, not at all); never SERVFAIL or any other RCODE, nor a truncated answer.
 * Lifetimes are capped at a day (dnsdist's maxTTL).
 *
 * Keys hash with SipHash-1-3 under a random key, so clients cannot choose names that share a
 * bucket; a bucket holds one entry, checked byte for byte.
 */
import { sipHash13, sipKeyOf, type SipKey } from '../tcp/siphash.js';
import { EdnsOption, HEADER_LENGTH, MessageLayout, questionEnd, readId, readQueryLayout, skipName, writeId } from './message.js';

/**
 * Bytes of answers one cache holds at most, whatever `--cache-size` says: an answer may be 64 KB,
 * and ten thousand of those would be 640 MB per shard worker.
 */
const MAX_CACHE_BYTES = 64 * 1024 * 1024;

/** The longest an answer is kept, in seconds (dnsdist's default maxTTL). */
const MAX_CACHE_TTL_SECONDS = 86_400;

const TYPE_SOA = 6;
const TYPE_OPT = 41;
/** A client cookie's length (RFC 7873 §4). */
const CLIENT_COOKIE_BYTES = 8;
/** Keys longer than this (a long name with many EDNS options) are not cached. */
const MAX_KEY_BYTES = 512;
/** Answers with more records than this are not cached. */
const MAX_RECORDS = 512;

enum KeyBit {
  RD = 1,
  CD = 2,
  DO = 4,
  EDNS = 8,
}

class Entry {
  constructor(
    readonly key: Uint8Array,
    readonly answer: Uint8Array,
    /** Where each record's TTL is in `answer`, and what it was. */
    readonly ttlOffsets: Int32Array,
    readonly ttls: Uint32Array,
    /** Where the COOKIE option's data is in `answer` (its client cookie first), or -1. */
    readonly cookieOffset: number,
    readonly storedMs: number,
    readonly expiresMs: number,
  ) {}
}

export class PacketCache {
  private readonly entries = new Map<number, Entry>();
  /** Bytes of answers held (MAX_CACHE_BYTES at most). */
  private bytes = 0;
  private readonly sipKey: SipKey;
  private readonly digest = new Uint32Array(2);
  private readonly keyScratch = new Uint8Array(MAX_KEY_BYTES);
  private keyLength = 0;
  /** Where the query's client cookie is (`key`), or -1. */
  private queryCookieOffset = -1;
  /** Where the question of the query last keyed ends. */
  private keyQuestionEnd = -1;
  private readonly ttlOffsetScratch = new Int32Array(MAX_RECORDS);
  /** The layout of a query the caller did not read (`store`, or `lookup` without one). */
  private readonly layoutScratch = new MessageLayout();
  /** The answer `lookup` last made; valid until the next call. */
  out = new Uint8Array(4096);

  /** `capacity` entries at most; `secret` 16 random bytes (the hash key). */
  constructor(
    readonly capacity: number,
    secret: Uint8Array,
  ) {
    this.sipKey = sipKeyOf(secret);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The cached answer to the query `buf[offset, offset+length)`, made for it in `out`: returns
   * its length, or -1 if there is none (or it expired). `layout`: the query's, if the caller has
   * read it already (message.ts readQueryLayout).
   */
  lookup(buf: Uint8Array, offset: number, length: number, nowMs: number, layout?: MessageLayout): number {
    const hash = this.key(buf, offset, length, layout);
    if (hash < 0) return -1;
    const entry = this.entries.get(hash);
    if (entry === undefined || !this.keyMatches(entry.key)) return -1;
    if (nowMs >= entry.expiresMs) {
      this.remove(hash);
      return -1;
    }
    const answer = entry.answer;
    if (this.out.length < answer.length) this.out = new Uint8Array(65535);
    const out = this.out;
    out.set(answer);
    writeId(out, 0, readId(buf, offset));
    // The same question but for letter case (the keys matched): the asker's own bytes.
    out.set(buf.subarray(offset + HEADER_LENGTH, offset + this.keyQuestionEnd), HEADER_LENGTH);
    // Never negative: a clock stepped back must not lengthen TTLs.
    const elapsed = Math.max(0, Math.floor((nowMs - entry.storedMs) / 1000));
    for (let i = 0; i < entry.ttlOffsets.length; i++) {
      const ttl = Math.max(0, entry.ttls[i]! - elapsed);
      const p = entry.ttlOffsets[i]!;
      out[p] = ttl >>> 24;
      out[p + 1] = ttl >>> 16;
      out[p + 2] = ttl >>> 8;
      out[p + 3] = ttl;
    }
    // The answer echoes a client cookie: the asker's, or it would discard the answer (RFC 7873 §5.3).
    if (entry.cookieOffset >= 0 && this.queryCookieOffset >= 0) {
      out.set(buf.subarray(this.queryCookieOffset, this.queryCookieOffset + CLIENT_COOKIE_BYTES), entry.cookieOffset);
    }
    return answer.length;
  }

  /**
   * Keeps `answer[offset, offset+length)`, the resolver's answer to the client's `query`, if it
   * may be kept. Returns whether it was.
   */
  store(
    query: Uint8Array,
    queryOffset: number,
    queryLength: number,
    answer: Uint8Array,
    offset: number,
    length: number,
    nowMs: number,
  ): boolean {
    if (this.capacity === 0) return false;
    const hash = this.key(query, queryOffset, queryLength);
    if (hash < 0) return false;
    const flags = answer[offset + 2]!;
    const rcode = answer[offset + 3]! & 0x0f;
    if ((flags & 0x02) !== 0 || (rcode !== 0 && rcode !== 3)) return false; // TC, or not NOERROR/NXDOMAIN
    const scan = scanAnswer(answer, offset, length, this.ttlOffsetScratch);
    if (scan === null) return false;
    const negative = rcode === 3 || scan.answerRecords === 0;
    const lifetime = Math.min(negative ? scan.negativeTtl : scan.minTtl, MAX_CACHE_TTL_SECONDS);
    if (!(lifetime > 0)) return false;
    // A copy (`slice` would be a view of a Node Buffer): the relay changes the answer it was handed
    // after this (its ID; what it added to the query, RFC 7871 §7.2.2), and the buffer is reused.
    const copy = new Uint8Array(answer.subarray(offset, offset + length));
    const ttlOffsets = this.ttlOffsetScratch.slice(0, scan.records);
    const ttls = new Uint32Array(scan.records);
    for (let i = 0; i < scan.records; i++) {
      const p = ttlOffsets[i]!;
      ttls[i] = ((copy[p]! << 24) | (copy[p + 1]! << 16) | (copy[p + 2]! << 8) | copy[p + 3]!) >>> 0;
    }
    this.remove(hash); // re-inserted last, as the newest
    // Full, in entries or bytes: the oldest go (a Map iterates in insertion order).
    while (this.entries.size > 0 && (this.entries.size >= this.capacity || this.bytes + length > MAX_CACHE_BYTES)) {
      this.remove(this.entries.keys().next().value!);
    }
    const entry = new Entry(
      this.keyScratch.slice(0, this.keyLength),
      copy,
      ttlOffsets,
      ttls,
      scan.cookieOffset,
      nowMs,
      nowMs + lifetime * 1000,
    );
    this.entries.set(hash, entry);
    this.bytes += length;
    return true;
  }

  private remove(hash: number): void {
    const entry = this.entries.get(hash);
    if (entry === undefined) return;
    this.bytes -= entry.answer.length;
    this.entries.delete(hash);
  }

  /**
   * Writes the cache key of the query into `keyScratch` (and where its client cookie is) and
   * returns its 31-bit hash, or -1 if the query is not one we cache. `layout`: the query's, read
   * once by the relay; else read here.
   */
  private key(buf: Uint8Array, offset: number, length: number, layout?: MessageLayout): number {
    this.queryCookieOffset = -1;
    if (layout === undefined) {
      layout = this.layoutScratch;
      if (!readQueryLayout(buf, offset, length, layout)) return -1;
    }
    const qEnd = layout.questionEnd;
    this.keyQuestionEnd = qEnd;
    const opcode = (buf[offset + 2]! >>> 3) & 0x0f;
    const qdcount = (buf[offset + 4]! << 8) | buf[offset + 5]!;
    const ancount = (buf[offset + 6]! << 8) | buf[offset + 7]!;
    const nscount = (buf[offset + 8]! << 8) | buf[offset + 9]!;
    const arcount = (buf[offset + 10]! << 8) | buf[offset + 11]!;
    if (opcode !== 0 || qdcount !== 1 || ancount !== 0 || nscount !== 0 || arcount > 1 || layout.recordsEnd < 0) return -1;
    const key = this.keyScratch;
    let bits = 0;
    if (buf[offset + 2]! & 0x01) bits |= KeyBit.RD;
    if (buf[offset + 3]! & 0x10) bits |= KeyBit.CD;
    let k = 1;
    if (qEnd - HEADER_LENGTH + 1 > MAX_KEY_BYTES) return -1;
    // The name case-folded; QTYPE and QCLASS (the last 4 bytes) as they are.
    for (let i = offset + HEADER_LENGTH; i < offset + qEnd; i++) {
      const byte = buf[i]!;
      key[k++] = i < offset + qEnd - 4 && byte >= 0x41 && byte <= 0x5a ? byte | 0x20 : byte;
    }
    if (arcount === 1) {
      // The one additional record must be an OPT with the root name (RFC 6891 §6.1.2); its
      // options were checked to lie within it when the layout was read.
      const opt = offset + layout.optAt;
      if (layout.optAt < 0 || buf[opt] !== 0) return -1;
      bits |= KeyBit.EDNS;
      if (buf[opt + 7]! & 0x80) bits |= KeyBit.DO;
      for (let p = offset + layout.optionsAt; p < offset + layout.optionsEnd; ) {
        const code = (buf[p]! << 8) | buf[p + 1]!;
        const optionLength = (buf[p + 2]! << 8) | buf[p + 3]!;
        if (code === EdnsOption.COOKIE) {
          if (optionLength >= CLIENT_COOKIE_BYTES) this.queryCookieOffset = p + 4;
        } else if (code !== EdnsOption.TCP_KEEPALIVE) {
          if (k + 4 + optionLength > MAX_KEY_BYTES) return -1;
          for (let i = p; i < p + 4 + optionLength; i++) key[k++] = buf[i]!;
        }
        p += 4 + optionLength;
      }
    }
    key[0] = bits;
    this.keyLength = k;
    sipHash13(this.sipKey, key, 0, k, this.digest);
    return this.digest[0]! & 0x7fff_ffff;
  }

  private keyMatches(stored: Uint8Array): boolean {
    if (stored.length !== this.keyLength) return false;
    const key = this.keyScratch;
    for (let i = 0; i < stored.length; i++) if (stored[i] !== key[i]) return false;
    return true;
  }
}

interface AnswerScan {
  /** Records whose TTL offsets were written (every record but OPT). */
  records: number;
  answerRecords: number;
  /** The smallest TTL of those records. */
  minTtl: number;
  /** min(SOA TTL, SOA MINIMUM) of the authority section's SOA (RFC 2308 §5), 0 without one. */
  negativeTtl: number;
  cookieOffset: number;
}

/** Walks an answer's records, noting where each TTL is; null if it does not parse. */
function scanAnswer(buf: Uint8Array, offset: number, length: number, ttlOffsets: Int32Array): AnswerScan | null {
  const qEnd = questionEnd(buf, offset, length);
  if (qEnd < 0) return null;
  const end = offset + length;
  const ancount = (buf[offset + 6]! << 8) | buf[offset + 7]!;
  const nscount = (buf[offset + 8]! << 8) | buf[offset + 9]!;
  const arcount = (buf[offset + 10]! << 8) | buf[offset + 11]!;
  const total = ancount + nscount + arcount;
  if (total > MAX_RECORDS) return null;
  const scan: AnswerScan = { records: 0, answerRecords: ancount, minTtl: Number.POSITIVE_INFINITY, negativeTtl: 0, cookieOffset: -1 };
  let p = offset + qEnd;
  for (let r = 0; r < total; r++) {
    p = skipName(buf, p, end);
    if (p < 0 || p + 10 > end) return null;
    const type = (buf[p]! << 8) | buf[p + 1]!;
    const ttl = ((buf[p + 4]! << 24) | (buf[p + 5]! << 16) | (buf[p + 6]! << 8) | buf[p + 7]!) >>> 0;
    const rdlength = (buf[p + 8]! << 8) | buf[p + 9]!;
    const rdata = p + 10;
    if (rdata + rdlength > end) return null;
    if (type === TYPE_OPT) {
      // Its "TTL" holds EDNS flags. A COOKIE option: where its client cookie is, to give the asker's.
      for (let o = rdata; o + 4 <= rdata + rdlength; ) {
        const code = (buf[o]! << 8) | buf[o + 1]!;
        const optionLength = (buf[o + 2]! << 8) | buf[o + 3]!;
        if (o + 4 + optionLength > rdata + rdlength) return null; // an option running past its record
        if (code === EdnsOption.COOKIE && optionLength >= CLIENT_COOKIE_BYTES) scan.cookieOffset = o + 4 - offset;
        o += 4 + optionLength;
      }
    } else {
      ttlOffsets[scan.records++] = p + 4 - offset;
      scan.minTtl = Math.min(scan.minTtl, ttl);
      const inAuthority = r >= ancount && r < ancount + nscount;
      if (inAuthority && type === TYPE_SOA && rdlength >= 20) {
        const m = rdata + rdlength - 4; // MINIMUM, the SOA's last field (RFC 1035 §3.3.13)
        const minimum = ((buf[m]! << 24) | (buf[m + 1]! << 16) | (buf[m + 2]! << 8) | buf[m + 3]!) >>> 0;
        scan.negativeTtl = Math.min(ttl, minimum);
      }
    }
    p = rdata + rdlength;
  }
  return scan;
}
