/**
 * HTTP/1.x requests as they arrive in the client's byte stream (RFC 9112).
 *
 * A request is a head (request line and header fields) and perhaps a body. The transports frame
 * heads as their messages; a body is streamed to the backend as it arrives (http/relay.ts), so
 * that an upload of any size holds no more than what is in flight. Three steps share one
 * reading of the message-length rules (RFC 9112 §6.3), so the bytes we treat as one request are
 * exactly the bytes we relay as one — a framer and a parser that disagreed would let a client
 * smuggle a request past us:
 *
 * - `wholeRequestLength` runs on every segment (the transports' `messageLength`): it only finds
 *   where a head ends, reading the buffer in place, allocating nothing.
 * - `parseRequest` runs once per head, for the relay: method, target, fields, and how the body
 *   that follows is framed.
 * - `ChunkedDecoder` follows a chunked body (RFC 9112 §7.1) across segments, byte by byte,
 *   finding its data and its end.
 *
 * Written here rather than taken from a parser library because the framer must work on the
 * responder's byte ranges without copies and must agree byte for byte with the parser.
 */

/** Largest request head (request line + headers) we accept; past it, 431 (RFC 6585 §5). */
export const MAX_HEAD_BYTES = 16 * 1024;
/**
 * Largest request body by default (`--max-body-size`): nginx's client_max_body_size. Bigger ones
 * get 413 (RFC 9110 §15.5.14).
 */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;
const SEMICOLON = 59;

/**
 * The length of the head of the request at the start of `buf[offset, offset+length)`, or 0 while
 * it is not whole (the transports' `messageLength`); its body, if any, follows as a stream
 * (transport.ts `beginBody`). Bytes that can never become a valid request (a head past
 * `MAX_HEAD_BYTES`, a malformed length) count as one whole request, all of them: the relay then
 * answers them with an error and closes the connection.
 */
export function wholeRequestLength(buf: Uint8Array, offset: number, length: number): number {
  const end = offset + length;
  const headEnd = findHeadEnd(buf, offset, Math.min(end, offset + MAX_HEAD_BYTES));
  if (headEnd < 0) return length >= MAX_HEAD_BYTES ? length : 0;
  return bodyFraming(buf, offset, headEnd) === FRAMING_INVALID ? length : headEnd - offset;
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
      // Chunked alone: we de-chunk and relay the data chunked anew, and relay no other transfer
      // coding (gzip, chunked would reach the backend still gzipped, without saying so).
      if (fieldValueLower(buf, colon + 1, eol) === 'chunked' && !chunked) chunked = true;
      else otherCoding = true;
    }
    line = eol + 2;
  }
  if (otherCoding || (chunked && contentLength >= 0)) return FRAMING_INVALID;
  if (chunked) return FRAMING_CHUNKED;
  return Math.max(contentLength, 0);
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
// Parsing a head
// ---------------------------------------------------------------------------------------------

export interface HttpRequest {
  method: string;
  /** The request target as sent (origin form `/path?query`, or absolute form). */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minorVersion: number;
  /** Field lines in order, names as sent. */
  headers: [string, string][];
  /** The body that follows the head: this many bytes (Content-Length; 0 for none), or chunked. */
  body: number | 'chunked';
  /** Whether the client wants the connection kept open after this response (RFC 9112 §9.3). */
  keepAlive: boolean;
  /**
   * The client waits for `100 Continue` before it sends the body (RFC 9110 §10.1.1: an HTTP/1.1
   * request with `Expect: 100-continue` and a body; an HTTP/1.0 one's expectation is ignored).
   */
  expectContinue: boolean;
  /** The request expects something else, which no server here meets: 417 (RFC 9110 §10.1.1, §15.5.18). */
  unmetExpectation: boolean;
}

/** Why a request cannot be relayed: the status we answer with (and then close). */
export interface RequestError {
  status: 400 | 413 | 431 | 501 | 505;
}

const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Parses one head as `wholeRequestLength` delimited it (or the unusable bytes it took for one). */
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
  let expect = '';
  let hasHost = false;
  let hasTransferEncoding = false;
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
    else if (lower === 'expect') expect += `,${value.toLowerCase()}`;
    else if (lower === 'transfer-encoding') hasTransferEncoding = true;
    else if (lower === 'host') {
      if (hasHost) return { status: 400 };
      hasHost = true;
    }
    headers.push([name, value]);
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400.
  if (minorVersion === 1 && !hasHost) return { status: 400 };

  const framing = bodyFraming(buf, offset, headEnd);
  if (framing === FRAMING_INVALID) {
    return { status: hasTransferEncoding && !headers.some(([n]) => n.toLowerCase() === 'content-length') ? 501 : 400 };
  }
  // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
  if (headEnd !== end || (hasTransferEncoding && minorVersion === 0)) return { status: 400 };
  const body = framing === FRAMING_CHUNKED ? 'chunked' : framing;
  const tokens = connection.split(',').map((t) => t.trim());
  const keepAlive = minorVersion === 1 ? !tokens.includes('close') : tokens.includes('keep-alive');
  // RFC 9110 §10.1.1: Expect is a list; 100-continue matches case-insensitively; an HTTP/1.0
  // server (as we are to an HTTP/1.0 client) ignores it.
  const expectations =
    minorVersion === 1
      ? expect
          .split(',')
          .map((t) => t.trim())
          .filter((t) => t.length > 0)
      : [];
  const unmetExpectation = expectations.some((t) => t !== '100-continue');
  const expectContinue = !unmetExpectation && expectations.length > 0 && body !== 0;
  return { method, target, minorVersion, headers, body, keepAlive, expectContinue, unmetExpectation };
}

// ---------------------------------------------------------------------------------------------
// A chunked body, as it streams
// ---------------------------------------------------------------------------------------------

/** Where a ChunkedDecoder stands in the body (RFC 9112 §7.1); the trailer states last. */
const ChunkState = {
  SIZE: 0,
  EXTENSION: 1,
  SIZE_LF: 2,
  DATA: 3,
  DATA_CR: 4,
  DATA_LF: 5,
  TRAILER_START: 6,
  TRAILER: 7,
  TRAILER_LF: 8,
  LAST_LF: 9,
  DONE: 10,
} as const;

/** `ChunkedDecoder.decode`: the body is malformed (400), or its data is over the limit (413). */
export const CHUNKED_MALFORMED = -1;
export const CHUNKED_TOO_BIG = -2;

/** Longest chunk-size line (with its extensions) we read: nginx takes no more either. */
const MAX_CHUNK_LINE = 1024;
/** Most hex digits of a chunk size: 8 (4 GiB − 1), so that the sum stays exact. */
const MAX_CHUNK_SIZE_DIGITS = 8;

/**
 * A chunked request body (RFC 9112 §7.1) read as it arrives, in pieces cut anywhere: a chunk
 * size line, its data, CRLF; the last chunk (size 0), trailer fields (dropped, as §7.1.2 allows)
 * and an empty line. Holds only its state between pieces, never bytes.
 */
export class ChunkedDecoder {
  /** Data bytes found so far. */
  total = 0;
  private state: number = ChunkState.SIZE;
  /** The size being read, or the data bytes left of the current chunk. */
  private size = 0;
  private digits = 0;
  /** Bytes of the current size line, or of the trailer section. */
  private lineBytes = 0;
  private trailerBytes = 0;

  /** `maxBytes`: the most data allowed (0: no limit); a chunk size that would pass it is CHUNKED_TOO_BIG. */
  constructor(private readonly maxBytes: number) {}

  /** Whether the body's end (the empty line after the trailers) has been read. */
  get done(): boolean {
    return this.state === ChunkState.DONE;
  }

  /**
   * Reads `buf[offset, offset+length)`, the next bytes of the body: each run of data goes to
   * `onData` (in place: a view valid during the call). Returns how many of the bytes belong to
   * the body — all of them, or fewer when its end is among them — or CHUNKED_MALFORMED or
   * CHUNKED_TOO_BIG.
   */
  decode(buf: Uint8Array, offset: number, length: number, onData: (buf: Uint8Array, offset: number, length: number) => void): number {
    const end = offset + length;
    let p = offset;
    while (p < end) {
      if (this.state === ChunkState.DATA) {
        const n = Math.min(this.size, end - p);
        onData(buf, p, n);
        p += n;
        this.size -= n;
        if (this.size === 0) this.state = ChunkState.DATA_CR;
        continue;
      }
      const c = buf[p++]!;
      switch (this.state) {
        case ChunkState.SIZE: {
          const d = hexDigit(c);
          if (d >= 0) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) return CHUNKED_MALFORMED;
            this.size = this.size * 16 + d;
            break;
          }
          if (this.digits === 0) return CHUNKED_MALFORMED;
          if (c === CR) this.state = ChunkState.SIZE_LF;
          else if (c === SEMICOLON || c === SP || c === HTAB) this.state = ChunkState.EXTENSION;
          else return CHUNKED_MALFORMED;
          if (this.maxBytes > 0 && this.total + this.size > this.maxBytes) return CHUNKED_TOO_BIG;
          break;
        }
        case ChunkState.EXTENSION:
          // chunk-ext (names, values, quoted strings) is skipped, not read: only its length is bounded.
          if (c === CR) this.state = ChunkState.SIZE_LF;
          else if (c === LF) return CHUNKED_MALFORMED;
          break;
        case ChunkState.SIZE_LF:
          if (c !== LF) return CHUNKED_MALFORMED;
          this.lineBytes = 0;
          this.digits = 0;
          if (this.size === 0) {
            this.state = ChunkState.TRAILER_START;
          } else {
            this.total += this.size;
            this.state = ChunkState.DATA;
          }
          continue;
        case ChunkState.DATA_CR:
          if (c !== CR) return CHUNKED_MALFORMED;
          this.state = ChunkState.DATA_LF;
          break;
        case ChunkState.DATA_LF:
          if (c !== LF) return CHUNKED_MALFORMED;
          this.state = ChunkState.SIZE;
          continue;
        case ChunkState.TRAILER_START:
          // An empty line ends the body; anything else starts a trailer field.
          this.state = c === CR ? ChunkState.LAST_LF : ChunkState.TRAILER;
          if (c === LF) return CHUNKED_MALFORMED;
          break;
        case ChunkState.TRAILER:
          if (c === CR) this.state = ChunkState.TRAILER_LF;
          else if (c === LF) return CHUNKED_MALFORMED;
          break;
        case ChunkState.TRAILER_LF:
          if (c !== LF) return CHUNKED_MALFORMED;
          this.state = ChunkState.TRAILER_START;
          break;
        case ChunkState.LAST_LF:
          if (c !== LF) return CHUNKED_MALFORMED;
          this.state = ChunkState.DONE;
          return p - offset;
        default:
          return p - 1 - offset; // DONE: nothing more belongs to the body
      }
      // Every byte of a size line or the trailers counts toward its bound.
      if (this.state === ChunkState.SIZE || this.state === ChunkState.EXTENSION || this.state === ChunkState.SIZE_LF) {
        if (++this.lineBytes > MAX_CHUNK_LINE) return CHUNKED_MALFORMED;
      } else if (this.state >= ChunkState.TRAILER_START && ++this.trailerBytes > MAX_HEAD_BYTES) {
        return CHUNKED_MALFORMED;
      }
    }
    return length;
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
