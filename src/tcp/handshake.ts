/**
 * Our SYN+ACK: the one reply that needs no state at all, so the capture thread sends it itself
 * (workers/capture/thread.ts) for every SYN that no shard holds a flow for, and a shard's responder for
 * the rest (a SYN on a live connection gets a challenge ACK there instead, RFC 5961 §4.2).
 */
import { type ReplyHeader, TcpFlag, type Segment } from '../wire/segment.js';
import { SynCookies } from './cookie.js';

/** What our SYN+ACK offers: the receive window and the MSS (responder.ts ResponderConfig). Window scaling follows the SYN (cookie.ts). */
export interface SynAckOffer {
  window: number;
  mssOffer: number;
}

/** Fills `reply` with the SYN+ACK to `syn` (the SYN's own fields are read, never kept). */
export function synAckFor(syn: Segment, cookies: SynCookies, offer: SynAckOffer, nowMs: number, reply: ReplyHeader): ReplyHeader {
  const now = nowMs / 1000;
  const c = reply.reverseOf(syn);
  c.seq = cookies.issue(syn, now);
  c.ack = (syn.seq + 1) >>> 0; // data on a SYN (TCP Fast Open) is not accepted: RFC 7413 §4.2.2 lets it be ignored
  c.flags = TcpFlag.SYN | TcpFlag.ACK;
  c.window = offer.window;
  c.mss = offer.mssOffer;
  // RFC 7323 §3.2: timestamps only if the SYN offered them.
  c.hasTimestamps = syn.hasTimestamps;
  const negotiated = SynCookies.negotiated(syn);
  c.tsVal = syn.hasTimestamps ? cookies.tokenForSegment(syn, negotiated, now) : 0;
  c.tsEcr = syn.tsVal;
  // RFC 7323 §2.2: window scaling only if the SYN offered it, and (cookie.ts) only with a shift
  // the token can carry. Ours is 0: our window stays below 64 KiB.
  c.windowScale = SynCookies.windowShift(negotiated) > 0 ? 0 : -1;
  return c;
}
