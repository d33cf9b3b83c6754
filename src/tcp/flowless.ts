/**
 * The rule for a segment of a connection that holds no soft state — the most security-sensitive
 * decision in the project, because it is taken for every packet an off-path sender can forge.
 * Two places take it: a shard's responder (responder.ts) for the segments that reach it, and the
 * capture thread (workers/capture/thread.ts), which answers SYNs and drops ignorable segments
 * itself when no shard holds a flow for the connection. Both call `flowlessAction`, so they cannot
 * disagree.
 */
import type { MartianSources } from '../wire/martian.js';
import { type Segment, TcpFlag } from '../wire/segment.js';

export const FlowlessAction = {
  /** Dropped without an answer. */
  IGNORE: 0,
  /** A SYN: answered with a SYN+ACK that carries the cookie (handshake.ts), no state kept. */
  ANSWER_SYN: 1,
  /** Data or a FIN: it must prove itself by timestamp token or first-segment cookie (responder.ts). */
  VERIFY: 2,
  /**
   * A SYN, data or a FIN from a martian source (wire/martian.ts): dropped without an answer, which
   * would go to this host itself, its loopback or a broadcast, and counted.
   */
  REFUSE_MARTIAN: 3,
} as const;
export type FlowlessAction = (typeof FlowlessAction)[keyof typeof FlowlessAction];

/** What to do with `seg` when its connection has no flow; `martians` says which sources get no answer. */
export function flowlessAction(seg: Segment, martians: MartianSources): FlowlessAction {
  const action = actionByFlags(seg.flags, seg.payloadLength);
  // Only what would be answered is looked at: what is ignored gets no answer anyway.
  return action !== FlowlessAction.IGNORE && martians.refuses(seg) ? FlowlessAction.REFUSE_MARTIAN : action;
}

function actionByFlags(flags: number, payloadLength: number): FlowlessAction {
  // RFC 9293 §3.10.7.1 (CLOSED): "An incoming segment containing a RST is discarded."
  if (flags & TcpFlag.RST) return FlowlessAction.IGNORE;
  if (flags & TcpFlag.SYN) {
    // A SYN+ACK or SYN+FIN is not the start of a connection to us. ECE and CWR may be set on a
    // SYN (RFC 3168 §6.1.1); data on a SYN is not accepted (RFC 7413 §4.2.2 lets it be ignored).
    return flags & (TcpFlag.ACK | TcpFlag.FIN) ? FlowlessAction.IGNORE : FlowlessAction.ANSWER_SYN;
  }
  // RFC 9293 §3.10.7.4: "if the ACK bit is off, drop the segment and return".
  if (!(flags & TcpFlag.ACK)) return FlowlessAction.IGNORE;
  // A bare ACK (the last of a handshake, or of a connection that went idle) asks for nothing.
  if (payloadLength === 0 && !(flags & TcpFlag.FIN)) return FlowlessAction.IGNORE;
  return FlowlessAction.VERIFY;
}
