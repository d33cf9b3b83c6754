/**
 * DNS message checks and answers the front end makes itself.
 *
 * The hot path never decodes a message into objects: it reads the 12-byte header and walks the
 * question by index (hand-written, because dns-packet's decode allocates an object per record
 * and a string per name for every query). dns-packet builds the rare error answers.
 */
import dnsPacket from 'dns-packet';
import { readU16 } from '../wire/bytes.js';
import { wholeMessagesBy } from '../tcp/transport.js';

/** RFC 1035 §4.1.1 header layout. */
export const HEADER_LENGTH = 12;
const ID = 0;
const FLAGS = 2;
const QDCOUNT = 4;
const ANCOUNT = 6;
const NSCOUNT = 8;
const ARCOUNT = 10;

/**
 * Largest query length taken as plausible from a connection without soft state. Queries are
 * relayed over UDP, where anything larger would need IP fragments; real ones are far smaller.
 */
const MAX_PLAUSIBLE_QUERY = 4096;

/** QUERY, IQUERY, STATUS, NOTIFY, UPDATE, DSO (RFC 6895 §2.2, RFC 8490). */
const ASSIGNED_OPCODES = new Set([0, 1, 2, 4, 5, 6]);

/** Flag bits in the second 16-bit header word (RFC 1035 §4.1.1, RFC 2535 §6.1). */
const QR = 0x8000;
const TC = 0x0200;
const RD = 0x0100;
const OPCODE_SHIFT = 11;

/** EDNS option codes (IANA DNS EDNS0 option codes). */
export const EdnsOption = { COOKIE: 10, TCP_KEEPALIVE: 11 } as const;

/** RCODEs (RFC 1035 §4.1.1). */
export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** RFC 1035 §2.3.4: names are at most 255 octets, labels at most 63. */
const MAX_NAME = 255;
const MAX_LABEL = 63;

/**
 * The DNS framer for TCP (RFC 1035 §4.2.2, RFC 7766 §8): each message is preceded by its length
 * as 2 bytes. Returns how many bytes at `buf[offset, offset+length)` are whole framed messages.
 */
export function wholeMessages(buf: Uint8Array, offset: number, length: number): number {
  return wholeMessagesBy(dnsMessageLength, buf, offset, length);
}

/** The length of the whole framed message (2-byte length + message) at the start, or 0. */
export function dnsMessageLength(buf: Uint8Array, offset: number, length: number): number {
  if (length < 2) return 0;
  const n = 2 + ((buf[offset]! << 8) | buf[offset + 1]!);
  return n <= length ? n : 0;
}

export function readId(buf: Uint8Array, offset: number): number {
  return (buf[offset + ID]! << 8) | buf[offset + ID + 1]!;
}

export function writeId(buf: Uint8Array, offset: number, id: number): void {
  buf[offset + ID] = id >>> 8;
  buf[offset + ID + 1] = id;
}

export function isTruncated(buf: Uint8Array, offset: number): boolean {
  return (buf[offset + FLAGS]! & (TC >>> 8)) !== 0;
}

/**
 * End offset of the question section of the message at `buf[offset, offset+length)`, or -1 if
 * the message has no well-formed header and question. Messages with QDCOUNT 0 (allowed for DNS
 * COOKIE queries, RFC 7873 §5.4) end their question at the header.
 */
export function questionEnd(buf: Uint8Array, offset: number, length: number): number {
  if (length < HEADER_LENGTH) return -1;
  const qdcount = (buf[offset + QDCOUNT]! << 8) | buf[offset + QDCOUNT + 1]!;
  const end = offset + length;
  let p = offset + HEADER_LENGTH;
  for (let q = 0; q < qdcount; q++) {
    let nameLength = 0;
    for (;;) {
      if (p >= end) return -1;
      const label = buf[p]!;
      if (label === 0) {
        p += 1;
        break;
      }
      if ((label & 0xc0) === 0xc0) {
        // A compression pointer ends the name (RFC 1035 §4.1.4); it may only point backwards.
        if (p + 2 > end) return -1;
        const target = ((label & 0x3f) << 8) | buf[p + 1]!;
        if (target < HEADER_LENGTH || offset + target >= p) return -1;
        p += 2;
        break;
      }
      if (label > MAX_LABEL) return -1; // 0x40 and 0x80 prefixes are obsolete/reserved (RFC 6891 §5)
      nameLength += label + 1;
      if (nameLength + 1 > MAX_NAME) return -1;
      p += label + 1;
    }
    p += 4; // QTYPE, QCLASS
    if (p > end) return -1;
  }
  return p - offset;
}

/**
 * Whether a message from a client is a query we relay. A response (QR=1) or more than one
 * question (RFC 9619) or an unparseable header/question is a format error.
 */
export function isRelayableQuery(buf: Uint8Array, offset: number, length: number): boolean {
  if (length < HEADER_LENGTH) return false;
  if (buf[offset + FLAGS]! & (QR >>> 8)) return false;
  const qdcount = (buf[offset + QDCOUNT]! << 8) | buf[offset + QDCOUNT + 1]!;
  if (qdcount > 1) return false;
  return questionEnd(buf, offset, length) > 0;
}

/**
 * Whether two messages carry the same question section, comparing names case-insensitively
 * (RFC 4343): how we tell that an upstream answer belongs to the query it claims to.
 */
export function sameQuestion(a: Uint8Array, aOffset: number, aLength: number, b: Uint8Array, bOffset: number, bLength: number): boolean {
  const aEnd = questionEnd(a, aOffset, aLength);
  if (aEnd < 0 || aEnd !== questionEnd(b, bOffset, bLength)) return false;
  if (a[aOffset + QDCOUNT] !== b[bOffset + QDCOUNT] || a[aOffset + QDCOUNT + 1] !== b[bOffset + QDCOUNT + 1]) {
    return false;
  }
  // Names compare case-insensitively; QTYPE and QCLASS, the question's last 4 bytes, exactly
  // (folding them would take type 0x61 for HTTPS, 0x41). Queries we relay have one question.
  for (let i = HEADER_LENGTH; i < aEnd; i++) {
    let x = a[aOffset + i]!;
    let y = b[bOffset + i]!;
    if (i < aEnd - 4) {
      if (x >= 0x41 && x <= 0x5a) x |= 0x20;
      if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    }
    if (x !== y) return false;
  }
  return true;
}

/**
 * An answer with `rcode` to the query at `buf[offset, offset+length)`, made by the front end
 * itself (FORMERR for a malformed query, SERVFAIL when the upstream fails), as RFC 1035 §4.1.1
 * describes: same ID and opcode, RD copied, QR set, the question echoed when it can be parsed.
 */
export function errorAnswer(buf: Uint8Array, offset: number, length: number, rcode: number): Buffer {
  const id = length >= 2 ? readId(buf, offset) : 0;
  const flagsWord = length >= 4 ? (buf[offset + FLAGS]! << 8) | buf[offset + FLAGS + 1]! : 0;
  const flags = (flagsWord & ((0xf << OPCODE_SHIFT) | RD)) | rcode;
  let questions: dnsPacket.Question[] = [];
  const questionLength = length >= HEADER_LENGTH && readU16(buf, offset + QDCOUNT) === 1 ? questionEnd(buf, offset, length) : -1;
  if (questionLength > 0) {
    // Only the header and the one question are decoded (the other counts zeroed in a copy): a
    // malformed message of thousands of records costs no more than a short one.
    const head = Buffer.from(buf.subarray(offset, offset + questionLength));
    head.fill(0, QDCOUNT + 2, HEADER_LENGTH);
    try {
      questions = dnsPacket.decode(head).questions ?? [];
    } catch {
      // A question we can walk but dns-packet cannot decode: answer without echoing it.
    }
  }
  return dnsPacket.encode({ id, type: 'response', flags, questions: questions.length === 1 ? questions : [] });
}

/**
 * Whether `buf[offset, offset+length)` could be the start of a framed query: a length from a
 * header to 4096 bytes, then — as far as the bytes are present — QR = 0, an assigned opcode (RFC 6895 §2.2),
 * QDCOUNT = 1, and for a standard query (opcode 0) no answer or authority records
 * (RFC 1035 §4.1.1). Used to refuse data that
 * starts in the middle of a message because the segment before it was lost. A real query passes;
 * a malformed one may not, and is then dropped unanswered instead of getting FORMERR — only on a
 * connection without soft state, after its first request.
 */
export function plausibleQueryStart(buf: Uint8Array, offset: number, length: number): boolean {
  if (length < 2) return true; // the length prefix alone: nothing to judge yet
  const n = (buf[offset]! << 8) | buf[offset + 1]!;
  if (n < HEADER_LENGTH || n > MAX_PLAUSIBLE_QUERY) return false;
  const m = offset + 2;
  const available = length - 2;
  const u16 = (at: number): number => (buf[m + at]! << 8) | buf[m + at + 1]!;
  const opcode = (buf[m + FLAGS]! >>> 3) & 0xf;
  if (available > FLAGS && (buf[m + FLAGS]! & (QR >>> 8) || !ASSIGNED_OPCODES.has(opcode))) return false;
  if (available >= QDCOUNT + 2 && u16(QDCOUNT) !== 1) return false;
  const standardQuery = available > FLAGS && opcode === 0;
  if (standardQuery && available >= ANCOUNT + 2 && u16(ANCOUNT) !== 0) return false;
  if (standardQuery && available >= NSCOUNT + 2 && u16(NSCOUNT) !== 0) return false;
  return true;
}

/** The offset after the (possibly compressed) name at `p`, or -1 if it runs past `end` or is malformed. */
export function skipName(buf: Uint8Array, p: number, end: number): number {
  for (let labels = 0; labels < 128; labels++) {
    if (p >= end) return -1;
    const label = buf[p]!;
    if (label === 0) return p + 1;
    if ((label & 0xc0) === 0xc0) return p + 2 <= end ? p + 2 : -1;
    if (label > MAX_LABEL) return -1;
    p += label + 1;
  }
  return -1;
}

const TYPE_OPT = 41;

/**
 * Where the OPT record's RDLENGTH field is in the message `buf[offset, offset+length)` (its
 * options follow it, RFC 6891 §6.1.2), or -1 if the message has none or does not parse.
 */
function optRdlengthAt(buf: Uint8Array, offset: number, length: number): number {
  const qEnd = questionEnd(buf, offset, length);
  if (qEnd < 0) return -1;
  const end = offset + length;
  const records = readU16(buf, offset + ANCOUNT) + readU16(buf, offset + NSCOUNT) + readU16(buf, offset + ARCOUNT);
  let p = offset + qEnd;
  for (let r = 0; r < records; r++) {
    p = skipName(buf, p, end);
    if (p < 0 || p + 10 > end) return -1;
    const rdlength = readU16(buf, p + 8);
    if (p + 10 + rdlength > end) return -1;
    if (readU16(buf, p) === TYPE_OPT) return p + 8;
    p += 10 + rdlength;
  }
  return -1;
}

/** Where EDNS option `code` starts (its code field) in the message, or -1. */
export function ednsOptionAt(buf: Uint8Array, offset: number, length: number, code: number): number {
  const at = optRdlengthAt(buf, offset, length);
  if (at < 0) return -1;
  const rdEnd = at + 2 + readU16(buf, at);
  for (let p = at + 2; p + 4 <= rdEnd; p += 4 + readU16(buf, p + 2)) {
    if (p + 4 + readU16(buf, p + 2) > rdEnd) return -1; // an option running past its record
    if (readU16(buf, p) === code) return p;
  }
  return -1;
}

/** Removes EDNS option `code` from the message in place; returns its new length. */
export function removeEdnsOption(buf: Uint8Array, offset: number, length: number, code: number): number {
  const option = ednsOptionAt(buf, offset, length, code);
  if (option < 0) return length;
  const rdlengthAt = optRdlengthAt(buf, offset, length);
  const cut = 4 + readU16(buf, option + 2);
  buf.copyWithin(option, option + cut, offset + length);
  const rdlength = readU16(buf, rdlengthAt) - cut;
  buf[rdlengthAt] = rdlength >>> 8;
  buf[rdlengthAt + 1] = rdlength;
  return length - cut;
}

/**
 * The message `buf[offset, offset+length)` with EDNS option `code` added to its OPT record,
 * carrying the 16-bit `value`, written to `out` at 0; returns its length, or -1 if the message
 * has no OPT record (or `out` is too small).
 */
export function withEdnsOption(buf: Uint8Array, offset: number, length: number, code: number, value: number, out: Uint8Array): number {
  const rdlengthAt = optRdlengthAt(buf, offset, length);
  // A DNS message over TCP is at most 65,535 bytes (RFC 1035 §4.2.2's 2-byte length).
  if (rdlengthAt < 0 || length + 6 > 0xffff || out.length < length + 6) return -1;
  const insertAt = rdlengthAt + 2 + readU16(buf, rdlengthAt);
  const head = insertAt - offset;
  out.set(buf.subarray(offset, insertAt), 0);
  out[head] = code >>> 8;
  out[head + 1] = code;
  out[head + 2] = 0;
  out[head + 3] = 2;
  out[head + 4] = value >>> 8;
  out[head + 5] = value;
  out.set(buf.subarray(insertAt, offset + length), head + 6);
  const rdlength = readU16(buf, rdlengthAt) + 6;
  out[rdlengthAt - offset] = rdlength >>> 8;
  out[rdlengthAt - offset + 1] = rdlength;
  return length + 6;
}

/**
 * REFUSED (RFC 1035 §4.1.1 RCODE 5) to the query `buf[offset, offset+length)`, written to `out`
 * at 0 without allocating: its header and question, QR set, RD kept, every other count 0.
 * Returns the length, or -1 if the query's question does not parse (or `out` is too small).
 */
export function refusedAnswer(buf: Uint8Array, offset: number, length: number, out: Uint8Array): number {
  const end = questionEnd(buf, offset, length);
  if (end < 0 || out.length < end) return -1;
  out.set(buf.subarray(offset, offset + end), 0);
  out[FLAGS] = (buf[offset + FLAGS]! & ((0xf << (OPCODE_SHIFT - 8)) | (RD >>> 8))) | (QR >>> 8);
  out[FLAGS + 1] = Rcode.REFUSED;
  out.fill(0, ANCOUNT, HEADER_LENGTH);
  return end;
}
