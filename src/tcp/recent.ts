/**
 * Where recently active connections left their sequence numbers.
 *
 * A connection without soft state is recognised by its timestamp token (cookie.ts), but the
 * token cannot say where the two byte streams stand, and the segment alone cannot either:
 *
 * - a request sent before the client received our last answer, delayed or duplicated in the
 *   network until after its flow was released, acknowledges less than we sent — a flow made from
 *   it would send the next answer over bytes the client already holds;
 * - a request lost just after the connection went idle, followed by the next one, makes the next
 *   one look like the start of the stream — a flow made from it would acknowledge the lost bytes,
 *   and the lost request would never be resent or answered.
 *
 * So when a flow is released we write down RCV.NXT and SND.MAX in this table, and a segment
 * arriving without a flow is checked against them (docs/tcp-behaviour.md, "Segments without a
 * flow"). The table is fixed-size, allocated once and never grown: it costs no memory per
 * connection, and a connection whose entry was overwritten (the oldest in its set goes first) is
 * simply back to what the segment alone proves. Entries live as long as a timestamp token is
 * accepted, the longest a connection can stay idle and still come back.
 *
 * Keys are 64 bits of a keyed hash of the 4-tuple (cookie.ts `connectionId`): an off-path sender
 * can neither pick a set to evict nor forge a colliding key. Four-way sets: a slot is looked up
 * by hashing, never by scanning.
 */

/** Slots per set: a new entry replaces the oldest of these four. */
const WAYS = 4;
/** Bytes per unit of a remembered congestion window, so that a Uint16 reaches 4 MiB. */
const WINDOW_UNIT = 64;

export class RecentConnections {
  readonly slots: number;
  private readonly sets: number;
  private readonly keyHigh: Uint32Array;
  private readonly keyLow: Uint32Array;
  private readonly rcvNxt: Uint32Array;
  private readonly sndMax: Uint32Array;
  private readonly ourFin: Uint8Array;
  /**
   * The congestion window and slow-start threshold, in units of WINDOW_UNIT bytes (rounded down:
   * a window remembered a little small is safe), up to 4 MiB, far above any send buffer.
   */
  private readonly cwnd: Uint16Array;
  private readonly ssthresh: Uint16Array;
  /** When each slot was written (ms); -Infinity for an empty slot. */
  private readonly writtenMs: Float64Array;

  /** `slots` is rounded up to four times a power of two; 29 bytes each. 0: remember nothing. */
  constructor(
    slots: number,
    private readonly lifetimeMs: number,
  ) {
    let sets = slots > 0 ? 1 : 0;
    while (sets * WAYS < slots) sets *= 2;
    this.sets = sets;
    this.slots = sets * WAYS;
    this.keyHigh = new Uint32Array(this.slots);
    this.keyLow = new Uint32Array(this.slots);
    this.rcvNxt = new Uint32Array(this.slots);
    this.sndMax = new Uint32Array(this.slots);
    this.ourFin = new Uint8Array(this.slots);
    this.cwnd = new Uint16Array(this.slots);
    this.ssthresh = new Uint16Array(this.slots);
    this.writtenMs = new Float64Array(this.slots).fill(-Infinity);
  }

  /** The slot holding connection `key`, or -1 if there is none (or it is too old). */
  find(keyHigh: number, keyLow: number, nowMs: number): number {
    if (this.sets === 0) return -1;
    const first = (keyLow & (this.sets - 1)) * WAYS;
    for (let slot = first; slot < first + WAYS; slot++) {
      if (this.keyLow[slot] === keyLow && this.keyHigh[slot] === keyHigh && nowMs - this.writtenMs[slot]! < this.lifetimeMs) return slot;
    }
    return -1;
  }

  /**
   * Records where a connection stands as its flow is released (sequence numbers, and the
   * congestion state for a connection that comes back at once); replaces its old entry or the
   * set's oldest.
   */
  remember(
    keyHigh: number,
    keyLow: number,
    rcvNxt: number,
    sndMax: number,
    ourFinSent: boolean,
    cwnd: number,
    ssthresh: number,
    nowMs: number,
  ): void {
    if (this.sets === 0) return;
    const first = (keyLow & (this.sets - 1)) * WAYS;
    let slot = first;
    for (let s = first; s < first + WAYS; s++) {
      if (this.keyLow[s] === keyLow && this.keyHigh[s] === keyHigh) {
        slot = s;
        break;
      }
      if (this.writtenMs[s]! < this.writtenMs[slot]!) slot = s;
    }
    this.keyHigh[slot] = keyHigh;
    this.keyLow[slot] = keyLow;
    this.rcvNxt[slot] = rcvNxt;
    this.sndMax[slot] = sndMax;
    this.ourFin[slot] = ourFinSent ? 1 : 0;
    this.cwnd[slot] = Math.min(Math.floor(cwnd / WINDOW_UNIT), 0xffff);
    this.ssthresh[slot] = Math.min(Math.floor(ssthresh / WINDOW_UNIT), 0xffff);
    this.writtenMs[slot] = nowMs;
  }

  forget(slot: number): void {
    this.writtenMs[slot] = -Infinity;
  }

  /** The next sequence number we expected from the client. */
  expectedSeq(slot: number): number {
    return this.rcvNxt[slot]!;
  }

  /** The highest sequence number we had sent (all of it acknowledged: the flow was released). */
  sentUpTo(slot: number): number {
    return this.sndMax[slot]!;
  }

  /** Whether our FIN was among what we sent. */
  ourFinSent(slot: number): boolean {
    return this.ourFin[slot] === 1;
  }

  /** The congestion window when the flow was released (bytes, at most 65,535). */
  congestionWindow(slot: number): number {
    return this.cwnd[slot]! * WINDOW_UNIT;
  }

  slowStartThreshold(slot: number): number {
    return this.ssthresh[slot]! * WINDOW_UNIT;
  }

  /** How long ago the entry was written. */
  ageMs(slot: number, nowMs: number): number {
    return nowMs - this.writtenMs[slot]!;
  }

  /** Entries younger than the lifetime (walks the table: for metrics, not per packet). */
  live(nowMs: number): number {
    let n = 0;
    for (let slot = 0; slot < this.slots; slot++) if (nowMs - this.writtenMs[slot]! < this.lifetimeMs) n++;
    return n;
  }
}
