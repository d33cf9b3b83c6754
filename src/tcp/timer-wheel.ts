/**
 * A hashed timing wheel (Varghese and Lauck, "Hashed and Hierarchical Timing Wheels", SOSP 1987,
 * scheme 6): an entry is linked into the slot of its due time, one slot per 4 ms, the slot
 * number taken modulo the wheel's size. Expiring the timers due by now walks only the slots that
 * time has passed since the last call and the entries linked in them, so its work grows with the
 * timers that come due, not with the entries held. Each entry carries its own links (intrusive),
 * so scheduling, moving and cancelling a timer allocate nothing.
 *
 * An entry whose due time lies more than one turn of the wheel ahead shares its slot with nearer
 * ones; it is looked at, found not due, and left there once per turn. The wheel is sized so that
 * the timers its owner sets fit in one turn.
 */

/** The links an entry carries (the responder's `Flow`). */
export interface TimerEntry<T> {
  /** When the timer is due (ms, the caller's clock); meaningful while the entry is linked. */
  timerDueMs: number;
  /** The list the entry is linked in (a slot, or the slot being expired); -1 when not scheduled. */
  timerList: number;
  timerPrev: T | null;
  timerNext: T | null;
}

/**
 * A slot's length: finer than the 10 ms tick of the wheel's users (the responder, the kernel
 * transport), so that few of the timers in the slot at hand are looked at before they are due
 * (and again at the next tick).
 */
const SLOT_MS = 4;

/** Most slots a wheel has: timers further ahead than this many slots are looked at once per turn. */
const MAX_SLOTS = 1 << 16;

export class TimerWheel<T extends TimerEntry<T>> {
  /** The lists: one per slot, and last the one being expired (`expiring`). */
  private readonly heads: (T | null)[];
  private readonly mask: number;
  private readonly expiring: number;
  /**
   * The slot number (time / SLOT_MS, not reduced modulo the size) that the next `expire` starts
   * from: no entry is due in an earlier slot. A timer set for an earlier time moves it back.
   */
  private cursor = Number.POSITIVE_INFINITY;

  /** `horizonMs`: the furthest ahead a timer is usually set; the wheel turns once in at least that long. */
  constructor(horizonMs: number) {
    let size = 1;
    while (size * SLOT_MS <= horizonMs && size < MAX_SLOTS) size *= 2;
    this.mask = size - 1;
    this.expiring = size;
    this.heads = new Array<T | null>(size + 1).fill(null);
  }

  /** Sets (or moves) the entry's timer to `dueMs`; a time already past is looked at by the next `expire`. */
  schedule(entry: T, dueMs: number): void {
    const slot = Math.floor(dueMs / SLOT_MS);
    if (slot < this.cursor) this.cursor = slot;
    // Slot numbers run past 2^31 (epoch milliseconds / SLOT_MS); `&` reduces them modulo 2^32 first, exactly.
    const list = slot & this.mask;
    entry.timerDueMs = dueMs;
    if (entry.timerList === list) return;
    if (entry.timerList >= 0) this.unlink(entry);
    this.link(entry, list);
  }

  cancel(entry: T): void {
    if (entry.timerList >= 0) this.unlink(entry);
  }

  /**
   * Calls `fire` for every entry due by `nowMs`, each taken out of the wheel first (`fire`
   * schedules it again if it has another timer); returns how many entries were looked at. An
   * entry that `fire` schedules for a time already past is looked at again in this call if its
   * slot is still ahead, else in the next.
   */
  expire(nowMs: number, fire: (entry: T, nowMs: number) => void): number {
    const last = Math.floor(nowMs / SLOT_MS);
    // Once time has moved a whole turn, every slot has been passed.
    const first = Math.max(this.cursor, last - this.mask);
    // The last slot is walked again next time: timers in it may not be due yet.
    this.cursor = last;
    let visited = 0;
    for (let slot = first; slot <= last; slot++) {
      const index = slot & this.mask;
      const taken = this.heads[index]!;
      if (taken === null) continue;
      // The slot's entries move to the expiring list, so that what `fire` schedules into this
      // slot meanwhile waits for the next call, and what it cancels is unlinked from where it is.
      this.heads[index] = null;
      this.heads[this.expiring] = taken;
      for (let entry: T | null = taken; entry !== null; entry = entry.timerNext) entry.timerList = this.expiring;
      for (let entry = this.heads[this.expiring]!; entry !== null; entry = this.heads[this.expiring]!) {
        this.unlink(entry);
        visited++;
        if (entry.timerDueMs <= nowMs) fire(entry, nowMs);
        else this.schedule(entry, entry.timerDueMs); // a later turn, or later in this slot
      }
    }
    return visited;
  }

  private link(entry: T, list: number): void {
    const head = this.heads[list]!;
    entry.timerPrev = null;
    entry.timerNext = head;
    if (head !== null) head.timerPrev = entry;
    this.heads[list] = entry;
    entry.timerList = list;
  }

  private unlink(entry: T): void {
    const prev = entry.timerPrev;
    const next = entry.timerNext;
    if (prev !== null) prev.timerNext = next;
    else this.heads[entry.timerList] = next;
    if (next !== null) next.timerPrev = prev;
    entry.timerPrev = null;
    entry.timerNext = null;
    entry.timerList = -1;
  }
}
