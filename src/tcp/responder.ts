/**
 * The stateless responder: a pure function from one decoded client segment to what we send back.
 *
 * It keeps no memory between calls. What it needs to know about a connection travels in the
 * segment itself: our ISN, echoed in the acknowledgment number, is a SYN cookie (cookie.ts) that
 * proves the client completed the handshake and tells us its MSS class.
 *
 *   SYN                      → SYN+ACK, ISN = cookie, offering MSS `mssOffer` and no other option
 *   data, cookie valid       → ACK of the whole application messages it holds, and a request
 *                              for the application, with the header template of its response
 *   data, cookie invalid     → RST (RFC 9293 §3.10.7.1), never data: no reflection to forged sources
 *   FIN                      → ACK of the FIN
 *   everything else          → nothing (pure ACKs, RST, segments without ACK, SYN+ACK, …)
 *
 * The response itself is cut into segments by `cutResponse` once the application has it.
 */
import { ReplyHeader, TcpFlag, type Segment } from '../wire/segment.js';
import { SynCookies } from './cookie.js';

/**
 * How many bytes at the start of a request hold whole application messages (DNS: 2-byte length
 * prefix + message, RFC 1035 §4.2.2). Only whole messages are acknowledged, so the client keeps
 * the rest and sends it again together with what follows.
 */
export type MessageFramer = (buf: Uint8Array, offset: number, length: number) => number;

export interface ResponderConfig {
  /** MSS offered in our SYN+ACK (RFC 9293 §3.7.1). 1220 = 1280 − 40 − 20 fits any IPv6 path. */
  mssOffer: number;
  /** Receive window advertised in every segment (RFC 9293 §3.8.6; no window scaling). */
  window: number;
  /** Counts whole messages at the start of a request payload. */
  framer: MessageFramer;
}

export const DEFAULT_MSS_OFFER = 1220;
export const DEFAULT_WINDOW = 65535;

/** What the responder did with a segment; stable numbering, used as counter indices. */
export const Outcome = {
  /** Nothing to answer: pure ACK, RST, no ACK flag, SYN+ACK, … (RFC 9293 §3.10.7.4). */
  IGNORED: 0,
  SYN_ANSWERED: 1,
  REQUEST: 2,
  /** Data whose acknowledgment number is not one of our cookies: answered with RST. */
  COOKIE_FAILED: 3,
  /** Data holding no whole message yet: not acknowledged, the client will send it again with more. */
  INCOMPLETE_REQUEST: 4,
  FIN_ACKED: 5,
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];
export const OUTCOME_NAMES: readonly string[] = [
  'ignored',
  'syn_answered',
  'request',
  'cookie_failed',
  'incomplete_request',
  'fin_acked',
];

/** The responder's answer to one segment. Reused: `respond` overwrites every field it reports. */
export class Response {
  outcome: Outcome = Outcome.IGNORED;
  /** A segment to send now (SYN+ACK, ACK, RST), valid when `hasControl`. */
  hasControl = false;
  readonly control = new ReplyHeader();
  /** For `Outcome.REQUEST`: the whole messages, at `seg.buf[requestOffset, +requestLength)`. */
  requestOffset = 0;
  requestLength = 0;
  /** For `Outcome.REQUEST`: template for the response's segments (seq = its first byte). */
  readonly response = new ReplyHeader();
  /** For `Outcome.REQUEST`: the largest segment the client accepts. */
  peerMss = 0;
}

export class Responder {
  constructor(
    private readonly config: ResponderConfig,
    private readonly cookies: SynCookies,
  ) {}

  respond(seg: Segment, nowSeconds: number, out: Response): Outcome {
    out.hasControl = false;
    const flags = seg.flags;

    if (flags & TcpFlag.RST) return (out.outcome = Outcome.IGNORED);

    if (flags & TcpFlag.SYN) {
      // RFC 9293 §3.10.7.2: a SYN (without ACK) to a listening endpoint gets SYN+ACK. A SYN+ACK
      // or SYN+FIN is not the start of a connection to us.
      if (flags & (TcpFlag.ACK | TcpFlag.FIN)) return (out.outcome = Outcome.IGNORED);
      const c = out.control.reverseOf(seg);
      c.seq = this.cookies.issue(seg, nowSeconds);
      c.ack = (seg.seq + 1) >>> 0; // data on a SYN (TCP Fast Open) is not accepted: RFC 7413 §4.2.2 lets it be ignored
      c.flags = TcpFlag.SYN | TcpFlag.ACK;
      c.window = this.config.window;
      c.mss = this.config.mssOffer;
      out.hasControl = true;
      return (out.outcome = Outcome.SYN_ANSWERED);
    }

    // RFC 9293 §3.10.7.4: "if the ACK bit is off, drop the segment and return".
    if (!(flags & TcpFlag.ACK)) return (out.outcome = Outcome.IGNORED);

    const hasFin = (flags & TcpFlag.FIN) !== 0;
    if (seg.payloadLength === 0) {
      if (!hasFin) return (out.outcome = Outcome.IGNORED);
      // A FIN costs us nothing to acknowledge and reflects nothing: answer it without a cookie check.
      this.setControl(seg, out, (seg.seq + 1) >>> 0, TcpFlag.ACK);
      return (out.outcome = Outcome.FIN_ACKED);
    }

    // Data. Its acknowledgment number must be our cookie + 1: the client has sent nothing but this
    // request since the handshake, and has received nothing from us yet.
    const isn = (seg.ack - 1) >>> 0;
    const mssIndex = this.cookies.check(seg, isn, nowSeconds);
    if (mssIndex < 0) {
      // RFC 9293 §3.10.7.1: a segment for no connection gets <SEQ=SEG.ACK><CTL=RST>.
      this.setControl(seg, out, 0, TcpFlag.RST);
      return (out.outcome = Outcome.COOKIE_FAILED);
    }

    const consumed = this.config.framer(seg.buf, seg.payloadOffset, seg.payloadLength);
    if (consumed === 0) return (out.outcome = Outcome.INCOMPLETE_REQUEST);

    // Acknowledge the whole messages, and the FIN too if it came right after them.
    const finToo = hasFin && consumed === seg.payloadLength;
    const ack = (seg.seq + consumed + (finToo ? 1 : 0)) >>> 0;
    this.setControl(seg, out, ack, TcpFlag.ACK);

    const r = out.response.reverseOf(seg);
    r.seq = seg.ack;
    r.ack = ack;
    r.flags = TcpFlag.ACK;
    r.window = this.config.window;
    r.mss = 0;
    out.requestOffset = seg.payloadOffset;
    out.requestLength = consumed;
    out.peerMss = SynCookies.mssOfIndex(seg.family, mssIndex);
    return (out.outcome = Outcome.REQUEST);
  }

  private setControl(seg: Segment, out: Response, ack: number, flags: number): void {
    const c = out.control.reverseOf(seg);
    c.seq = seg.ack;
    c.ack = ack;
    c.flags = flags;
    c.window = flags & TcpFlag.RST ? 0 : this.config.window;
    c.mss = 0;
    out.hasControl = true;
  }
}

/** Receives the segments of a response, one header and payload slice at a time. */
export interface SegmentSink {
  send(header: ReplyHeader, payload: Uint8Array, offset: number, length: number): void;
}

/**
 * Sends `data[offset, offset+length)` as a train of segments of at most `mss` bytes starting at
 * `template.seq`, the last one with PSH (RFC 9293 §3.9.1) and, if `fin`, FIN: the talk's
 * transaction mode closes our side right after the answer, piggybacked to save a packet.
 * `template` is modified (seq, flags) and left describing the last segment.
 */
export function cutResponse(
  template: ReplyHeader,
  data: Uint8Array,
  offset: number,
  length: number,
  mss: number,
  fin: boolean,
  sink: SegmentSink,
): number {
  const firstSeq = template.seq;
  let sent = 0;
  let segments = 0;
  do {
    const n = Math.min(mss, length - sent);
    const last = sent + n === length;
    template.seq = (firstSeq + sent) >>> 0;
    template.flags = TcpFlag.ACK | (last ? TcpFlag.PSH | (fin ? TcpFlag.FIN : 0) : 0);
    sink.send(template, data, offset + sent, n);
    sent += n;
    segments++;
  } while (sent < length);
  return segments;
}
