/** Text ⇄ bytes for IP addresses in tests (the wire layer itself only formats, see format.ts). */
export { addressBytes } from '../../src/endpoint.js';

/** 4 or 6, from the notation. */
export function addressFamily(text: string): 4 | 6 {
  return text.includes(':') ? 6 : 4;
}
