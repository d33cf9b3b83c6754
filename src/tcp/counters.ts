/**
 * What the responder counts: the outcome of every segment it handles, and the events of its own
 * making (retransmissions, flows created and released, …). Stable numbering: the values index
 * the counter arrays that metrics and the stop summary read, so append, never reorder.
 */
import { counterNames } from '../counter-names.js';

/** What the responder did with a segment; stable numbering, used as counter indices. */
export const Outcome = {
  IGNORED: 0,
  SYN_ANSWERED: 1,
  DATA: 2,
  ACK: 3,
  FIN: 4,
  /** Data or FIN proved by neither token nor cookie: answered with RST, never data. */
  COOKIE_FAILED: 5,
  /** A flow-less segment that starts mid-message (an earlier segment was lost): dropped unacknowledged. */
  MISALIGNED: 6,
  OUT_OF_ORDER: 7,
  DUPLICATE: 8,
  CHALLENGE_ACK: 9,
  /** The client's RST at exactly RCV.NXT: the flow is dropped (RFC 5961 §3.2). */
  RESET: 10,
  /** New data refused because the soft-state bounds are reached: dropped unacknowledged. */
  SOFT_STATE_FULL: 11,
  /** Data after our FIN (it can never be answered): we send RST, as a kernel does for data after close(2). */
  DATA_AFTER_FIN: 12,
  /** A SYN, data or a FIN without a flow from a martian source (wire/martian.ts): dropped unanswered. */
  MARTIAN_SOURCE: 13,
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];
export const OUTCOME_NAMES = counterNames(Outcome);

/** Events of the responder's own making, indices into `Responder.events`. */
export const TcpEvent = {
  RETRANSMIT_TIMEOUTS: 0,
  FAST_RETRANSMITS: 1,
  WINDOW_PROBES: 2,
  FLOWS_CREATED: 3,
  FLOWS_RELEASED: 4,
  FLOWS_ABORTED: 5,
  ANSWERS_DROPPED: 6,
  /** Flows found to be made from a delayed duplicate of an old request (see onSegment). */
  STALE_FLOWS: 7,
  /** Flow-less segments checked against the remembered sequence numbers of their connection (recent.ts). */
  RECALLED: 8,
  /** … of which the ACK was older than what the client had already acknowledged (a delayed request). */
  OLD_ACKS_RAISED: 9,
  /** Remembered numbers that did not fit the segment (an earlier connection on the same 4-tuple): forgotten. */
  RECALLED_MISMATCHED: 10,
  /**
   * A flow's messages held back (unread, out of its window) because it owed `maxPipelined`
   * answers or its send buffer was full; counted once each time it starts.
   */
  PIPELINE_FULL: 11,
  /** Challenge ACKs not sent: the flow had sent its burst within the interval (RFC 5961 §7). */
  CHALLENGE_ACKS_LIMITED: 12,
  /**
   * Flows dropped with RST for a deadline: a message not whole within messageDeadlineMs of its
   * first byte, or a window kept closed for zeroWindowLimitMs (also in flows_aborted).
   */
  DEADLINES_MISSED: 13,
  /**
   * New data refused (unacknowledged) because its source (IPv4 address, IPv6 /64) holds
   * maxFlowsPerSource flows or maxQueuedBytesPerSource bytes.
   */
  SOURCE_FULL: 14,
  /**
   * Flows dropped with RST to make room when the shard was full of flows or queued bytes: flows
   * of a heavier source than the newcomer's (responder.ts shedFor; also in flows_aborted).
   */
  FLOWS_SHED: 15,
  /**
   * Flows the timers looked at (timer-wheel.ts): those whose earliest timer came due, and the
   * few sharing a wheel slot with them whose timers are not due yet. Grows with the timers that
   * come due, not with the flows held.
   */
  TIMER_VISITS: 16,
  /** Flows whose segment size the MTU toward the client cut below the client's MSS (path-mtu.ts). */
  SEGMENT_SIZE_FROM_ROUTE: 17,
  /**
   * Reports that one of our segments was too big (ICMP fragmentation needed / packet too big,
   * or our kernel's EMSGSIZE) quoting an unacknowledged segment of a live flow: taken.
   */
  TOO_BIG_TAKEN: 18,
  /** ICMP too-big messages quoting no live flow's unacknowledged segment: refused (perhaps forged). */
  TOO_BIG_REFUSED: 19,
  /** Our own sends refused with EMSGSIZE whose flow was gone or had moved on by then. */
  TOO_BIG_STALE: 20,
  /** Flows that cut their segments to the IPv6 minimum after two timeouts in a row (RFC 4821 §7.5). */
  SEGMENT_SIZE_FALLBACKS: 21,
} as const;
export const TCP_EVENT_NAMES = counterNames(TcpEvent);
