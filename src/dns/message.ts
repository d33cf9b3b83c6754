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
export const EdnsOption = { CLIENT_SUBNET: 8, COOKIE: 10, TCP_KEEPALIVE: 11 } as const;

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
/** Records that sign the whole message (RFC 8945 TSIG, RFC 2931 SIG(0)): changing it would break the signature. */
const TYPE_SIG = 24;
const TYPE_TSIG = 250;

/**
 * The start of the OPT record (its name) in the additional section of the message
 * `buf[offset, offset+length)` (RFC 6891 §6.1.1), or -1 if it has none or it does not parse.
 */
function optRecordAt(buf: Uint8Array, offset: number, length: number): number {
  return readLayout(buf, offset, length, answerLayout) && answerLayout.optAt >= 0 ? offset + answerLayout.optAt : -1;
}

/**
 * Where the OPT record's RDLENGTH field is in the message `buf[offset, offset+length)` (its
 * options follow it, RFC 6891 §6.1.2), or -1 if the message has none or does not parse.
 */
function optRdlengthAt(buf: Uint8Array, offset: number, length: number): number {
  const start = optRecordAt(buf, offset, length);
  return start < 0 ? -1 : skipName(buf, start, offset + length) + 8;
}

/** Where EDNS option `code` starts in the OPT record whose RDLENGTH is at `rdlengthAt`, or -1 (also if an option runs past the record). */
function optionIn(buf: Uint8Array, rdlengthAt: number, code: number): number {
  const rdEnd = rdlengthAt + 2 + readU16(buf, rdlengthAt);
  for (let p = rdlengthAt + 2; p + 4 <= rdEnd; p += 4 + readU16(buf, p + 2)) {
    if (p + 4 + readU16(buf, p + 2) > rdEnd) return -1;
    if (readU16(buf, p) === code) return p;
  }
  return -1;
}

/** Where EDNS option `code` starts (its code field) in the message, or -1. */
export function ednsOptionAt(buf: Uint8Array, offset: number, length: number, code: number): number {
  const at = optRdlengthAt(buf, offset, length);
  return at < 0 ? -1 : optionIn(buf, at, code);
}

/** Adds `delta` to the 16-bit field at `at`. */
function addU16(buf: Uint8Array, at: number, delta: number): void {
  const value = readU16(buf, at) + delta;
  buf[at] = value >>> 8;
  buf[at + 1] = value;
}

/** Removes EDNS option `code` from the message in place; returns its new length. */
export function removeEdnsOption(buf: Uint8Array, offset: number, length: number, code: number): number {
  const rdlengthAt = optRdlengthAt(buf, offset, length);
  const option = rdlengthAt < 0 ? -1 : optionIn(buf, rdlengthAt, code);
  if (option < 0) return length;
  const cut = 4 + readU16(buf, option + 2);
  buf.copyWithin(option, option + cut, offset + length);
  addU16(buf, rdlengthAt, -cut);
  return length - cut;
}

/** Removes the OPT record from the message in place (ARCOUNT one less); returns its new length. */
export function removeOptRecord(buf: Uint8Array, offset: number, length: number): number {
  const start = optRecordAt(buf, offset, length);
  if (start < 0) return length;
  const rdlengthAt = skipName(buf, start, offset + length) + 8;
  const cut = rdlengthAt + 2 + readU16(buf, rdlengthAt) - start;
  buf.copyWithin(start, start + cut, offset + length);
  addU16(buf, offset + ARCOUNT, -1);
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
  addU16(out, rdlengthAt - offset, 6);
  return length + 6;
}

/**
 * What the relay did to a query's client subnet option (RFC 7871) on its way to the resolver,
 * and so undoes in the answer: a client that sent none gets none back (RFC 7871 §7.2.2), nor an
 * OPT record it did not send (RFC 6891 §7); one whose option was replaced gets its own back.
 */
export const SubnetChange = { NONE: 0, OPTION_ADDED: 1, OPT_ADDED: 2, REPLACED: 3 } as const;
export type SubnetChange = (typeof SubnetChange)[keyof typeof SubnetChange];

/**
 * Where the parts of a message are, found in one walk. For a query (`readQueryLayout`) it is
 * reused by all the relay does with it afterwards — its copy for the resolver, the packet cache's
 * key, the memory of truncated questions — rather than each walking the message again; the edits
 * of answers use the same walk. Offsets count from the message's first byte, so that they hold
 * for a copy too; -1: absent.
 */
export class MessageLayout {
  /** End of the question section (`questionEnd`). */
  questionEnd = -1;
  /** End of the last record (ANCOUNT + NSCOUNT + ARCOUNT of them), or -1 if they do not parse: the query then goes upstream as it is. */
  recordsEnd = -1;
  /** The OPT record's start (its name) and its options' start and end (RFC 6891 §6.1.2). */
  optAt = -1;
  optionsAt = -1;
  optionsEnd = -1;
  /** Where the edns-tcp-keepalive (RFC 7828) and client subnet (RFC 7871) options start. */
  keepaliveAt = -1;
  clientSubnetAt = -1;
  /** A TSIG or SIG(0) record signs the message, which must then reach the resolver unchanged. */
  signed = false;
  /** What `writeRelayedQuery` did to the client subnet option (`SubnetChange`). */
  subnetChange: SubnetChange = SubnetChange.NONE;
}

/** The layout of an answer being changed (`optRecordAt`): one, reused, so that nothing is allocated. */
const answerLayout = new MessageLayout();

/**
 * Reads the layout of a query from a client into `out`; returns false for a message we do not
 * relay — a response (QR=1), more than one question (RFC 9619), or an unparseable header or
 * question: a format error. Records that do not parse (or an OPT record whose options do not)
 * leave `recordsEnd` at -1, and the query is relayed as it is.
 */
export function readQueryLayout(buf: Uint8Array, offset: number, length: number, out: MessageLayout): boolean {
  if (length < HEADER_LENGTH || buf[offset + FLAGS]! & (QR >>> 8) || readU16(buf, offset + QDCOUNT) > 1) {
    out.questionEnd = -1;
    return false;
  }
  return readLayout(buf, offset, length, out);
}

/** The layout of any message, a query or an answer, into `out`; false if its header or question does not parse. */
function readLayout(buf: Uint8Array, offset: number, length: number, out: MessageLayout): boolean {
  out.questionEnd = out.recordsEnd = out.optAt = out.optionsAt = out.optionsEnd = out.keepaliveAt = out.clientSubnetAt = -1;
  out.signed = false;
  out.subnetChange = SubnetChange.NONE;
  const qEnd = questionEnd(buf, offset, length);
  if (qEnd < 0) return false;
  out.questionEnd = qEnd;
  const end = offset + length;
  const additionalFrom = readU16(buf, offset + ANCOUNT) + readU16(buf, offset + NSCOUNT);
  const records = additionalFrom + readU16(buf, offset + ARCOUNT);
  let p = offset + qEnd;
  for (let r = 0; r < records; r++) {
    const start = p;
    p = skipName(buf, p, end);
    if (p < 0 || p + 10 > end) return true;
    const type = readU16(buf, p);
    const rdata = p + 10;
    const rdEnd = rdata + readU16(buf, p + 8);
    if (rdEnd > end) return true;
    if (type === TYPE_SIG || type === TYPE_TSIG) out.signed = true;
    if (type === TYPE_OPT && r >= additionalFrom && out.optAt < 0) {
      for (let o = rdata; o < rdEnd; ) {
        if (o + 4 > rdEnd || o + 4 + readU16(buf, o + 2) > rdEnd) return true; // an option running past its record
        const code = readU16(buf, o);
        if (code === EdnsOption.TCP_KEEPALIVE && out.keepaliveAt < 0) out.keepaliveAt = o - offset;
        if (code === EdnsOption.CLIENT_SUBNET && out.clientSubnetAt < 0) out.clientSubnetAt = o - offset;
        o += 4 + readU16(buf, o + 2);
      }
      out.optAt = start - offset;
      out.optionsAt = rdata - offset;
      out.optionsEnd = rdEnd - offset;
    }
    p = rdEnd;
  }
  out.recordsEnd = p - offset;
  return true;
}

/** The client subnet option the relay gives a query (RFC 7871 §6): the client's address, cut to a prefix. */
export class ClientSubnet {
  /** 1: IPv4, 2: IPv6 (IANA address family numbers, RFC 7871 §6). */
  family: 1 | 2 = 1;
  sourcePrefixLength = 0;
  /** The address, 4 or 16 bytes; bits past the prefix are cleared when written. */
  readonly address = new Uint8Array(16);
  /** A client's own option is replaced (dnsdist's ECSOverride), not kept. */
  override = false;
}

/** The most bytes `writeRelayedQuery` adds: an OPT record (11) with an IPv6 client subnet option (4 + 4 + 16). */
export const RELAYED_QUERY_GROWTH = 11 + 4 + 4 + 16;

/**
 * The UDP payload size of an OPT record the relay adds for a client that sent none: the DNS Flag
 * Day 2020 value (unbound's edns-buffer-size default). The client is on TCP, so any answer size
 * reaches it; a larger one comes back truncated and is fetched over TCP.
 */
const ADDED_OPT_UDP_PAYLOAD = 1232;

/**
 * Writes the query `buf[offset, offset+length)` as it goes to the resolver into `out` at 0 (which
 * must have `length + RELAYED_QUERY_GROWTH` bytes) and returns its length, with `layout` (read by
 * `readQueryLayout`) then describing the copy and its `subnetChange` what was done to the client
 * subnet; or returns -1, writing nothing, if the query goes to the resolver as it is.
 *
 * - edns-tcp-keepalive is left out: RFC 7828 §3.2.1 forbids it over UDP (a resolver answers FORMERR).
 * - With `subnet`, a client subnet option (RFC 7871 §6) is added, in a new OPT record if the query
 *   has none. A client's own option is kept as it is, or with `subnet.override` replaced by ours,
 *   with never more address bits than the client's SOURCE PREFIX-LENGTH allowed (RFC 7871 §7.1.1,
 *   §7.1.3): a client's /0 forbids any (§7.1.2). A signed query (TSIG, SIG(0)), or one whose
 *   records do not parse, goes without.
 */
export function writeRelayedQuery(
  buf: Uint8Array,
  offset: number,
  length: number,
  layout: MessageLayout,
  subnet: ClientSubnet | null,
  out: Uint8Array,
): number {
  layout.subnetChange = SubnetChange.NONE;
  const clientOption = layout.clientSubnetAt < 0 ? -1 : offset + layout.clientSubnetAt;
  const addSubnet =
    subnet !== null &&
    !layout.signed &&
    layout.recordsEnd >= 0 &&
    length + RELAYED_QUERY_GROWTH <= 0xffff &&
    (clientOption < 0 || subnet.override);
  // Nothing to change (most queries): the caller relays the client's bytes as they are.
  if (!addSubnet && layout.keepaliveAt < 0) return -1;
  if (layout.optAt < 0) {
    if (!addSubnet || readU16(buf, offset + ARCOUNT) === 0xffff) return -1;
    // A new OPT record after the last record (RFC 6891 §6.1.2): root name, its payload size as
    // CLASS, TTL 0 (extended RCODE 0, version 0, DO clear), then RDLENGTH and the option.
    const at = layout.recordsEnd;
    out.set(buf.subarray(offset, offset + at), 0);
    out[at] = 0;
    out[at + 1] = TYPE_OPT >>> 8;
    out[at + 2] = TYPE_OPT;
    out[at + 3] = ADDED_OPT_UDP_PAYLOAD >>> 8;
    out[at + 4] = ADDED_OPT_UDP_PAYLOAD;
    out.fill(0, at + 5, at + 9);
    const optionsEnd = writeClientSubnet(subnet, subnet.sourcePrefixLength, out, at + 11);
    out[at + 9] = (optionsEnd - at - 11) >>> 8;
    out[at + 10] = optionsEnd - at - 11;
    out.set(buf.subarray(offset + at, offset + length), optionsEnd);
    addU16(out, ARCOUNT, 1);
    layout.optAt = at;
    layout.optionsAt = at + 11;
    layout.clientSubnetAt = at + 11;
    layout.optionsEnd = optionsEnd;
    layout.recordsEnd = optionsEnd;
    layout.subnetChange = SubnetChange.OPT_ADDED;
    return length + optionsEnd - at;
  }
  const optionsAt = layout.optionsAt;
  out.set(buf.subarray(offset, offset + optionsAt), 0);
  let w = optionsAt;
  layout.keepaliveAt = -1;
  layout.clientSubnetAt = -1;
  for (let o = offset + optionsAt; o < offset + layout.optionsEnd; ) {
    const code = readU16(buf, o);
    const n = 4 + readU16(buf, o + 2);
    if (code !== EdnsOption.TCP_KEEPALIVE && !(code === EdnsOption.CLIENT_SUBNET && addSubnet)) {
      if (code === EdnsOption.CLIENT_SUBNET && layout.clientSubnetAt < 0) layout.clientSubnetAt = w;
      out.set(buf.subarray(o, o + n), w);
      w += n;
    }
    o += n;
  }
  if (addSubnet) {
    let prefix = subnet.sourcePrefixLength;
    if (clientOption >= 0 && readU16(buf, clientOption + 2) >= 4) prefix = Math.min(prefix, buf[clientOption + 6]!);
    layout.clientSubnetAt = w;
    w = writeClientSubnet(subnet, prefix, out, w);
    layout.subnetChange = clientOption < 0 ? SubnetChange.OPTION_ADDED : SubnetChange.REPLACED;
  }
  const grew = w - layout.optionsEnd;
  out.set(buf.subarray(offset + layout.optionsEnd, offset + length), w);
  addU16(out, optionsAt - 2, grew);
  layout.optionsEnd = w;
  layout.recordsEnd += grew;
  return length + grew;
}

/**
 * Writes the client subnet option (RFC 7871 §6) for `subnet` with `prefix` bits of its address
 * into `out` at `at`: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH 0, and only the octets the
 * prefix covers, its trailing bits cleared. Returns the offset after it.
 */
function writeClientSubnet(subnet: ClientSubnet, prefix: number, out: Uint8Array, at: number): number {
  const octets = (prefix + 7) >>> 3;
  out[at] = EdnsOption.CLIENT_SUBNET >>> 8;
  out[at + 1] = EdnsOption.CLIENT_SUBNET;
  out[at + 2] = 0;
  out[at + 3] = 4 + octets;
  out[at + 4] = 0;
  out[at + 5] = subnet.family;
  out[at + 6] = prefix;
  out[at + 7] = 0;
  for (let i = 0; i < octets; i++) out[at + 8 + i] = subnet.address[i]!;
  if (prefix % 8 !== 0) out[at + 7 + octets] = out[at + 7 + octets]! & (0xff00 >>> (prefix % 8));
  return at + 8 + octets;
}

/**
 * The answer `buf[offset, offset+length)` with its client subnet option replaced by the client's
 * own, `option[optionAt, …)`, written to `out` at 0: a client whose option was replaced must get
 * back the FAMILY, SOURCE PREFIX-LENGTH and ADDRESS it sent, or it drops the answer (RFC 7871
 * §7.3). Its SCOPE PREFIX-LENGTH: 0 where the resolver's is 0 (the answer suits every address),
 * else the client's SOURCE PREFIX-LENGTH — the answer was made for another address, so it is
 * claimed for no wider a network than the client asked about. Returns the length, or -1 if the
 * answer carries no such option (it then goes as it is, §7.3 reads that as scope 0) or `out` is
 * too small.
 */
export function withClientSubnet(
  buf: Uint8Array,
  offset: number,
  length: number,
  option: Uint8Array,
  optionAt: number,
  out: Uint8Array,
): number {
  const rdlengthAt = optRdlengthAt(buf, offset, length);
  const found = rdlengthAt < 0 ? -1 : optionIn(buf, rdlengthAt, EdnsOption.CLIENT_SUBNET);
  if (found < 0) return -1;
  const oldLength = 4 + readU16(buf, found + 2);
  const newLength = 4 + readU16(option, optionAt + 2);
  const total = length - oldLength + newLength;
  if (total > 0xffff || out.length < total) return -1;
  const head = found - offset;
  out.set(buf.subarray(offset, found), 0);
  out.set(option.subarray(optionAt, optionAt + newLength), head);
  if (newLength >= 8) out[head + 7] = oldLength >= 8 && buf[found + 7] === 0 ? 0 : out[head + 6]!;
  out.set(buf.subarray(found + oldLength, offset + length), head + newLength);
  addU16(out, rdlengthAt - offset, newLength - oldLength);
  return total;
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
