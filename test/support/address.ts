/** Text ⇄ bytes for IP addresses in tests (the wire layer itself only formats, see format.ts). */

/** The 4 or 16 bytes of a dotted-quad IPv4 or an IPv6 address ("::" shorthand allowed). */
export function addressBytes(text: string): Uint8Array {
  if (!text.includes(':')) {
    const parts = text.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
      throw new Error(`not an IPv4 address: ${text}`);
    }
    return Uint8Array.from(parts);
  }
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${text}`);
  const groupsOf = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  const zeros = 8 - head.length - tail.length;
  if ((halves.length === 2 ? zeros < 1 : zeros !== 0) || [...head, ...tail].some((g) => !(g >= 0 && g <= 0xffff))) {
    throw new Error(`not an IPv6 address: ${text}`);
  }
  const groups = [...head, ...new Array<number>(halves.length === 2 ? zeros : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** 4 or 6, from the notation. */
export function addressFamily(text: string): 4 | 6 {
  return text.includes(':') ? 6 : 4;
}
