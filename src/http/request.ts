/**
 * HTTP/1.x requests as they arrive in the client's byte stream (RFC 9112).
 *
 * Two steps share one reading of the message-length rules (RFC 9112 §6.3), so the bytes we
 * treat as one request are exactly the bytes we relay as one — a framer and a parser that
 * disagreed would let a client smuggle a request past us:
 *
 * - `wholeRequestLength` runs on every segment (the transports' `messageLength`): it only finds
 *   where a request ends, reading the buffer in place, allocating nothing.
 * - `parseRequest` runs once per whole request, for the relay: method, target, headers, body.
 *
 * Written here rather than taken from a parser library because the framer must work on the
 * responder's byte ranges without copies and must agree byte for byte with the parser.
 *
 * A request body must fit the receive window (64 KiB less the head): the server acknowledges no
 * more than that for a request that is not yet whole. Bigger bodies get 413.
 */

/** Largest request head (request line + headers) we accept; past it, 431 (RFC 6585 §5). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Largest request body: what fits in the receive window after a head. */
export const MAX_BODY_BYTES = 48 * 1024;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;

/**
 * The length of the whole request at the start of `buf[offset, offset+length)`, or 0 while it is
 * not whole (the transports' `messageLength`). Bytes that can never become a valid request (a head
 * past `MAX_HEAD_BYTES`, a malformed length) count as one whole request, all of them: the relay
 * then answers them with an error and closes the connection.
 */
export function wholeRequestLength(buf: Uint8Array, offset: number, length: number): number {
  const n = requestLength(buf, offset, offset + length);
  return n < 0 ? length : n;
}

/**
 * The length of the request starting at `buf[start]`, 0 if it is not whole yet, or -1 if the
 * bytes can never make a request we relay.
 */
export function requestLength(buf: Uint8Array, start: number, end: number): number {
  const headEnd = findHeadEnd(buf, start, Math.min(end, start + MAX_HEAD_BYTES));
  if (headEnd < 0) return end - start >= MAX_HEAD_BYTES ? -1 : 0;
  const framing = bodyFraming(buf, start, headEnd);
  if (framing === FRAMING_INVALID) return -1;
  if (framing === FRAMING_CHUNKED) {
    const bodyEnd = chunkedBodyEnd(buf, headEnd, end);
    if (bodyEnd === -1) return -1;
    return bodyEnd === 0 ? 0 : bodyEnd - start;
  }
  if (framing > MAX_BODY_BYTES) return -1;
  return headEnd + framing <= end ? headEnd + framing - start : 0;
}

/** Index just past the CRLF CRLF that ends a head starting at `start`, or -1. */
function findHeadEnd(buf: Uint8Array, start: number, limit: number): number {
  for (let i = start + 3; i < limit; i++) {
    if (buf[i] === LF && buf[i - 1] === CR && buf[i - 2] === LF && buf[i - 3] === CR) return i + 1;
  }
  return -1;
}

const FRAMING_CHUNKED = -2;
const FRAMING_INVALID = -1;

/**
 * RFC 9112 §6.3 for requests: Transfer-Encoding: chunked → chunked; with Content-Length too, or
 * any other coding → invalid (we answer 400 or 501 and close, §6.3 (3), (4)); otherwise
 * Content-Length (all copies equal) or 0 bytes.
 */
function bodyFraming(buf: Uint8Array, start: number, headEnd: number): number {
  let contentLength = -1;
  let chunked = false;
  let otherCoding = false;
  // Skip the request line; then one header field per line. Every line of the head, the last
  // included, ends in CRLF, so each search finds one.
  let line = lineEndWithin(buf, start, headEnd) + 2;
  while (line < headEnd - 2) {
    const eol = lineEndWithin(buf, line, headEnd);
    const colon = indexOf(buf, COLON, line, eol);
    if (colon <= line) return FRAMING_INVALID;
    if (nameIs(buf, line, colon, 'content-length')) {
      const value = parseDecimal(buf, colon + 1, eol);
      if (value < 0 || (contentLength >= 0 && value !== contentLength)) return FRAMING_INVALID;
      contentLength = value;
    } else if (nameIs(buf, line, colon, 'transfer-encoding')) {
      // Chunked alone: we de-chunk and relay with a length, and relay no other transfer coding
      // (gzip, chunked would reach the backend still gzipped, without saying so).
      if (fieldValueLower(buf, colon + 1, eol) === 'chunked' && !chunked) chunked = true;
      else otherCoding = true;
    }
    line = eol + 2;
  }
  if (otherCoding || (chunked && contentLength >= 0)) return FRAMING_INVALID;
  if (chunked) return FRAMING_CHUNKED;
  return Math.max(contentLength, 0);
}

/**
 * The end of a chunked body starting at `p` (RFC 9112 §7.1): after the last chunk, trailer
 * fields and the final CRLF. 0 if not all here yet, -1 if malformed or too big.
 */
function chunkedBodyEnd(buf: Uint8Array, p: number, end: number): number {
  let total = 0;
  for (;;) {
    const eol = lineEndWithin(buf, p, end);
    if (eol < 0) return end - p > 1024 ? -1 : 0;
    let size = 0;
    let digits = 0;
    let i = p;
    for (; i < eol; i++) {
      const d = hexDigit(buf[i]!);
      if (d < 0) break;
      size = size * 16 + d;
      if (++digits > 8) return -1;
    }
    if (digits === 0 || (i < eol && buf[i] !== 0x3b /* ; chunk extension */ && buf[i] !== SP && buf[i] !== HTAB)) return -1;
    total += size;
    if (total > MAX_BODY_BYTES) return -1;
    p = eol + 2;
    if (size === 0) {
      // Trailer fields, then an empty line.
      for (;;) {
        const t = lineEndWithin(buf, p, end);
        if (t < 0) return end - p > MAX_HEAD_BYTES ? -1 : 0;
        const empty = t === p;
        p = t + 2;
        if (empty) return p;
      }
    }
    if (p + size + 2 > end) return 0;
    if (buf[p + size] !== CR || buf[p + size + 1] !== LF) return -1;
    p += size + 2;
  }
}

/** Index of the CR of the first CRLF at or after `p` and before `limit`, or -1. */
function lineEndWithin(buf: Uint8Array, p: number, limit: number): number {
  for (let i = p; i + 1 < limit; i++) if (buf[i] === CR && buf[i + 1] === LF) return i;
  return -1;
}

function indexOf(buf: Uint8Array, byte: number, from: number, to: number): number {
  for (let i = from; i < to; i++) if (buf[i] === byte) return i;
  return -1;
}

/** Whether `buf[from, to)` is `lowerName`, ignoring ASCII case (field names are case-insensitive, RFC 9110 §5.1). */
function nameIs(buf: Uint8Array, from: number, to: number, lowerName: string): boolean {
  if (to - from !== lowerName.length) return false;
  for (let i = 0; i < lowerName.length; i++) if ((buf[from + i]! | 0x20) !== lowerName.charCodeAt(i)) return false;
  return true;
}

/** A decimal field value with optional surrounding whitespace; -1 if not one. */
function parseDecimal(buf: Uint8Array, from: number, to: number): number {
  while (from < to && (buf[from] === SP || buf[from] === HTAB)) from++;
  while (to > from && (buf[to - 1] === SP || buf[to - 1] === HTAB)) to--;
  if (from === to || to - from > 15) return -1;
  let value = 0;
  for (let i = from; i < to; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

/** A field value, trimmed and lower-cased (allocates: only for Transfer-Encoding). */
function fieldValueLower(buf: Uint8Array, from: number, to: number): string {
  let text = '';
  for (let i = from; i < to; i++) text += String.fromCharCode(buf[i]!);
  return text.trim().toLowerCase();
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Parsing a whole request
// ---------------------------------------------------------------------------------------------

export interface HttpRequest {
  method: string;
  /** The request target as sent (origin form `/path?query`, or absolute form). */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minorVersion: number;
  /** Field lines in order, names as sent. */
  headers: [string, string][];
  /** The body, de-chunked. */
  body: Uint8Array;
  /** Whether the client wants the connection kept open after this response (RFC 9112 §9.3). */
  keepAlive: boolean;
}

/** Why a request cannot be relayed: the status we answer with (and then close). */
export interface RequestError {
  status: 400 | 413 | 431 | 501 | 505;
}

const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parses one whole request as `wholeRequestLength` delimited it. */
export function parseRequest(buf: Uint8Array, offset: number, length: number): HttpRequest | RequestError {
  const end = offset + length;
  const headEnd = findHeadEnd(buf, offset, Math.min(end, offset + MAX_HEAD_BYTES));
  if (headEnd < 0) return { status: length >= MAX_HEAD_BYTES ? 431 : 400 };
  const text = Buffer.from(buf.buffer, buf.byteOffset + offset, headEnd - offset).toString('latin1');
  const lines = text.slice(0, -4).split('\r\n');
  const requestLine = lines[0]!.split(' ');
  if (requestLine.length !== 3) return { status: 400 };
  const [method, target, version] = requestLine as [string, string, string];
  // biome-ignore lint/suspicious/noControlCharactersInRegex: RFC 9112 §3.2: a request target has no controls, spaces or DEL.
  if (!TOKEN_CHARS.test(method) || target.length === 0 || /[\x00-\x20\x7f]/.test(target)) return { status: 400 };
  const versionMatch = /^HTTP\/1\.([01])$/.exec(version);
  if (versionMatch === null) return { status: /^HTTP\/\d\.\d$/.test(version) ? 505 : 400 };
  const minorVersion = Number(versionMatch[1]);

  const headers: [string, string][] = [];
  let connection = '';
  let hasHost = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    // RFC 9112 §5.1: no whitespace between name and colon; §5.2: obsolete line folding refused.
    if (colon <= 0 || !TOKEN_CHARS.test(line.slice(0, colon))) return { status: 400 };
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: RFC 9110 §5.5: NUL, CR and LF in a field value are invalid.
    if (/[\x00\r\n]/.test(value)) return { status: 400 };
    const lower = name.toLowerCase();
    if (lower === 'connection') connection += `,${value.toLowerCase()}`;
    if (lower === 'host') {
      if (hasHost) return { status: 400 };
      hasHost = true;
    }
    headers.push([name, value]);
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400.
  if (minorVersion === 1 && !hasHost) return { status: 400 };

  const framing = bodyFraming(buf, offset, headEnd);
  let body: Uint8Array;
  if (framing === FRAMING_INVALID) {
    const codings = headers.filter(([n]) => n.toLowerCase() === 'transfer-encoding');
    return { status: codings.length > 0 && !headers.some(([n]) => n.toLowerCase() === 'content-length') ? 501 : 400 };
  } else if (framing === FRAMING_CHUNKED) {
    if (chunkedBodyEnd(buf, headEnd, end) !== end) return { status: 400 };
    body = dechunk(buf, headEnd, end);
  } else {
    if (framing > MAX_BODY_BYTES) return { status: 413 };
    if (headEnd + framing !== end) return { status: 400 };
    body = Uint8Array.prototype.slice.call(buf, headEnd, end); // a copy even if `buf` is a Buffer
  }
  const tokens = connection.split(',').map((t) => t.trim());
  const keepAlive = minorVersion === 1 ? !tokens.includes('close') : tokens.includes('keep-alive');
  return { method, target, minorVersion, headers, body, keepAlive };
}

/** The data of a chunked body `buf[p, end)` that `chunkedBodyEnd` found to end exactly at `end`. */
function dechunk(buf: Uint8Array, p: number, end: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (;;) {
    const eol = lineEndWithin(buf, p, end);
    let size = 0;
    for (let i = p; i < eol && hexDigit(buf[i]!) >= 0; i++) size = size * 16 + hexDigit(buf[i]!);
    p = eol + 2;
    // Trailer fields after the last chunk are dropped (RFC 9112 §7.1.2 allows it).
    if (size === 0) return Buffer.concat(parts);
    parts.push(buf.subarray(p, p + size));
    p += size + 2;
  }
}

/** Whether bytes could start a request: a method token and a space (for segments of idle connections). */
export function plausibleRequestStart(buf: Uint8Array, offset: number, length: number): boolean {
  const end = offset + Math.min(length, 24);
  for (let i = offset; i < end; i++) {
    const c = buf[i]!;
    if (c === SP) return i > offset;
    if (!(c >= 65 && c <= 90)) return false; // registered methods are upper-case tokens (RFC 9110 §9)
  }
  return false;
}
