/** Sequence-number comparison modulo 2^32 (RFC 9293 §3.4): whether `a` comes before `b`, or is at most `b`. */
export const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
export const seqLeq = (a: number, b: number): boolean => ((a - b) | 0) <= 0;
