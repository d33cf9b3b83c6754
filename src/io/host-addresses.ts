/**
 * This host's own addresses, gathered once at start for the martian-source check
 * (wire/martian.ts): a segment "from" one of them was forged or looped back, and answering it
 * would send our packet to ourselves (or, for a subnet's broadcast address, to the subnet).
 * Addresses added to the host later are not known (a restart takes them in).
 */
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';
import { addressBytes, type Endpoint } from '../endpoint.js';

/** The addresses of every interface of this host, the listen addresses, and each IPv4 subnet's broadcast address. */
export function hostAddresses(listen: readonly Endpoint[]): Uint8Array[] {
  return ownAddresses(networkInterfaces(), listen);
}

/**
 * The addresses `hostAddresses` gathers, from `interfaces` as os.networkInterfaces() lists them:
 * each once, 4 or 16 bytes in network order.
 */
export function ownAddresses(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>, listen: readonly Endpoint[]): Uint8Array[] {
  const found = new Map<string, Uint8Array>();
  const add = (address: Uint8Array): void => void found.set(address.join(), address);
  for (const endpoint of listen) add(addressBytes(endpoint.address));
  for (const addresses of Object.values(interfaces)) {
    for (const info of addresses ?? []) {
      const address = addressBytes(info.address);
      add(address);
      if (info.family !== 'IPv4') continue;
      // The subnet's directed broadcast (RFC 1812 §4.2.2.11: never a source); /31 and /32 have
      // none (RFC 3021).
      const mask = addressBytes(info.netmask);
      if (mask[3]! < 0xfe) add(address.map((byte, i) => byte | (~mask[i]! & 0xff)));
    }
  }
  return [...found.values()];
}
