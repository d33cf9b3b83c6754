/**
 * The flow hash as it was before it was keyed (issue 13): MurmurHash3_x86_32 of each endpoint
 * (address words, then the port), the two added. Anyone could compute it, so a sender could
 * choose tuples that all land in one shard or one live-flow bucket; tests use it to find such
 * tuples and show that the keyed hash (src/wire/flow-hash.ts) spreads them.
 */

// MurmurHash3 x86_32 (Austin Appleby, public domain, SMHasher MurmurHash3.cpp) constants.
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const BLOCK_ADD = 0xe6546b64;
const FMIX1 = 0x85ebca6b;
const FMIX2 = 0xc2b2ae35;

/** The unkeyed hash of the connection between `client`:`clientPort` and `server`:`serverPort` (4 or 16-byte addresses). */
export function unkeyedFlowHash(client: Uint8Array, clientPort: number, server: Uint8Array, serverPort: number): number {
  return (endpointHash(client, clientPort) + endpointHash(server, serverPort)) & 0x7fff_ffff;
}

function endpointHash(address: Uint8Array, port: number): number {
  let h = 0;
  for (let at = 0; at < address.length; at += 4) {
    h = mixBlock(h, (address[at]! << 24) | (address[at + 1]! << 16) | (address[at + 2]! << 8) | address[at + 3]!);
  }
  h = mixBlock(h, port);
  h ^= address.length + 4;
  h ^= h >>> 16;
  h = Math.imul(h, FMIX1);
  h ^= h >>> 13;
  h = Math.imul(h, FMIX2);
  return h ^ (h >>> 16);
}

function mixBlock(h: number, block: number): number {
  let k = Math.imul(block, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + BLOCK_ADD) | 0;
}
