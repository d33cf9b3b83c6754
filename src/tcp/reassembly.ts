/**
 * Segments a flow received beyond a gap, held until the gap is filled (RFC 9293 §3.10.7.4:
 * segments with higher beginning sequence numbers "SHOULD be held for later processing").
 *
 * The responder holds them only while a request body streams in (an upload): a client that
 * sends a window's worth at a time and loses one segment would otherwise have the rest of that
 * window dropped and, without SACK, resend it one segment per round trip — through a lossy link
 * an upload crawls. Queries and request heads are small, and there a lost segment costs little.
 *
 * What is held lies inside the window the flow advertised, so it is bounded by it; a few dozen
 * pieces at most, so that a client sending tiny segments into every other position cannot make
 * it a list of thousands.
 */

import { seqLt } from './sequence.js';

/** Most pieces held per flow: a window of full segments has ~54; past this, new ones are dropped (the client resends). */
const MAX_PIECES = 64;

export class Reassembly {
  /** Pieces in sequence order, none overlapping: first sequence number, and a copy of the bytes. */
  private readonly starts: number[] = [];
  private readonly pieces: Uint8Array[] = [];
  /** Bytes held. */
  bytes = 0;

  /**
   * Holds `buf[offset, offset+length)`, the payload of a segment starting at `seq` beyond the
   * gap at RCV.NXT; where it overlaps a piece already held, that piece's bytes are kept and the
   * new segment is cut at it. Returns the bytes it now holds more.
   */
  add(seq: number, buf: Uint8Array, offset: number, length: number): number {
    let start = seq;
    let end = (seq + length) >>> 0;
    let i = 0;
    // Past the pieces that end before it; trim its front on one that covers its start.
    while (i < this.starts.length && !seqLt(start, this.end(i))) i++;
    if (i < this.starts.length && !seqLt(start, this.starts[i]!)) {
      start = this.end(i);
      i++;
    }
    // Cut it where the next piece begins.
    if (i < this.starts.length && seqLt(this.starts[i]!, end)) end = this.starts[i]!;
    const n = (end - start) | 0;
    if (n <= 0 || this.starts.length >= MAX_PIECES) return 0;
    const from = offset + ((start - seq) >>> 0);
    this.starts.splice(i, 0, start);
    this.pieces.splice(i, 0, Uint8Array.prototype.slice.call(buf, from, from + n));
    this.bytes += n;
    return n;
  }

  /**
   * Takes out the next piece held from `rcvNxt` on without a gap — the view of it from `rcvNxt`
   * on — or null if a gap (or nothing) comes first; pieces wholly behind `rcvNxt` are dropped on
   * the way. `bytes` falls by all it took out.
   */
  shift(rcvNxt: number): Uint8Array | null {
    while (this.starts.length > 0 && !seqLt(rcvNxt, this.starts[0]!)) {
      const start = this.starts.shift()!;
      const piece = this.pieces.shift()!;
      this.bytes -= piece.length;
      const skip = (rcvNxt - start) >>> 0;
      if (skip < piece.length) return piece.subarray(skip);
    }
    return null;
  }

  /** Drops everything held (the flow is released). */
  clear(): void {
    this.starts.length = 0;
    this.pieces.length = 0;
    this.bytes = 0;
  }

  private end(i: number): number {
    return (this.starts[i]! + this.pieces[i]!.length) >>> 0;
  }
}
