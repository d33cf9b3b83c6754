/**
 * The host's own addresses for the martian-source check (io/host-addresses.ts), from interface
 * tables as os.networkInterfaces() gives them (this machine's, and the lab's server namespace):
 * every address once, the listen addresses, each IPv4 subnet's broadcast address but none for
 * /31 and /32; and the live table of this host includes what it lists.
 */
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { describe, it } from 'node:test';
import { hostAddresses, ownAddresses } from '../../../src/io/host-addresses.js';
import { addressBytes, parseEndpoint } from '../../../src/endpoint.js';
import { formatAddress } from '../../../src/wire/format.js';

const texts = (addresses: Uint8Array[]): string[] => addresses.map((a) => formatAddress(a, 0, a.length === 4 ? 4 : 6)).sort();

/** os.networkInterfaces() in the lab's server namespace (lab/network.ts), as Node reports it. */
const LAB_SERVER = {
  lo: [
    { address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' },
    {
      address: '::1',
      netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      family: 'IPv6',
      mac: '00:00:00:00:00:00',
      internal: true,
      cidr: '::1/128',
      scopeid: 0,
    },
  ],
  'stcp-s0': [
    { address: '198.18.0.2', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:02', internal: false, cidr: '198.18.0.2/24' },
    {
      address: '2001:2::2',
      netmask: 'ffff:ffff:ffff:ffff::',
      family: 'IPv6',
      mac: '02:00:00:00:00:02',
      internal: false,
      cidr: '2001:2::2/64',
      scopeid: 0,
    },
    {
      address: 'fe80::2',
      netmask: 'ffff:ffff:ffff:ffff::',
      family: 'IPv6',
      mac: '02:00:00:00:00:02',
      internal: false,
      cidr: 'fe80::2/64',
      scopeid: 3,
    },
  ],
  anycast: [
    {
      address: '198.18.1.53',
      netmask: '255.255.255.255',
      family: 'IPv4',
      mac: '00:00:00:00:00:00',
      internal: false,
      cidr: '198.18.1.53/32',
    },
    { address: '198.18.2.0', netmask: '255.255.255.254', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: '198.18.2.0/31' },
  ],
} as const;

describe('ownAddresses', () => {
  it('lists every interface address once, with the IPv4 subnets’ broadcast addresses (none for /31, /32)', () => {
    const listen = [parseEndpoint('198.18.0.2:53'), parseEndpoint('[2001:2::2]:53')];
    assert.deepEqual(
      texts(ownAddresses(structuredClone(LAB_SERVER) as unknown as NodeJS.Dict<import('node:os').NetworkInterfaceInfo[]>, listen)),
      ['127.0.0.1', '127.255.255.255', '198.18.0.2', '198.18.0.255', '198.18.1.53', '198.18.2.0', '2001:2::2', '::1', 'fe80::2'].sort(),
    );
  });

  it('adds listen addresses the interfaces do not show', () => {
    assert.deepEqual(texts(ownAddresses({}, [parseEndpoint('198.18.9.9:53'), parseEndpoint('[2001:2::53]:53')])), [
      '198.18.9.9',
      '2001:2::53',
    ]);
  });
});

describe('hostAddresses', () => {
  it('holds every address this host’s interfaces have', () => {
    const own = new Set(texts(hostAddresses([])));
    for (const addresses of Object.values(networkInterfaces())) {
      for (const info of addresses ?? [])
        assert.ok(own.has(formatAddress(addressBytes(info.address), 0, info.family === 'IPv4' ? 4 : 6)), info.address);
    }
  });
});
