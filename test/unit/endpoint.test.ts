/**
 * `ADDR:PORT` endpoints as the command line and --config take them (RFC 3986 §3.2.2 brackets for
 * IPv6), and the one-line messages for what is not one; addresses as bytes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressBytes, formatEndpoint, parseEndpoint } from '../../src/endpoint.js';
import { formatAddress } from '../../src/wire/format.js';

describe('parseEndpoint', () => {
  it('reads IPv4 ADDR:PORT and bracketed IPv6 [ADDR]:PORT', () => {
    assert.deepEqual(parseEndpoint('198.18.0.2:53'), { address: '198.18.0.2', port: 53, family: 4 });
    assert.deepEqual(parseEndpoint('127.0.0.1:65535'), { address: '127.0.0.1', port: 65535, family: 4 });
    assert.deepEqual(parseEndpoint('[2001:2::2]:53'), { address: '2001:2::2', port: 53, family: 6 });
    assert.deepEqual(parseEndpoint('[::1]:1'), { address: '::1', port: 1, family: 6 });
    assert.deepEqual(parseEndpoint('[::ffff:198.18.0.2]:8080'), { address: '::ffff:198.18.0.2', port: 8080, family: 6 });
    assert.deepEqual(parseEndpoint('198.18.0.2:053'), { address: '198.18.0.2', port: 53, family: 4 }, 'leading zeros: decimal');
  });

  it('says to bracket an IPv6 address, and what ADDR:PORT looks like', () => {
    const hint = '(write IPv6 addresses in brackets: [2001:2::2]:53)';
    for (const text of [
      '2001:2::2:53',
      '198.18.0.2',
      '198.18.0.2:',
      ':53',
      '[]:53',
      '[2001:2::2]',
      '[2001:2::2]53',
      '198.18.0.2:0x35',
      '198.18.0.2:-1',
      '198.18.0.2:53 ',
      '',
    ]) {
      assert.throws(() => parseEndpoint(text), { message: `"${text}" is not ADDR:PORT ${hint}` }, text);
    }
  });

  it('names what is not an IP address', () => {
    assert.throws(() => parseEndpoint('localhost:53'), { message: '"localhost" in "localhost:53" is not an IP address' });
    assert.throws(() => parseEndpoint('198.18.0.256:53'), { message: '"198.18.0.256" in "198.18.0.256:53" is not an IP address' });
    assert.throws(() => parseEndpoint('[2001:2::g]:53'), { message: '"2001:2::g" in "[2001:2::g]:53" is not an IP address' });
    assert.throws(() => parseEndpoint(' 198.18.0.2:53'), { message: '" 198.18.0.2" in " 198.18.0.2:53" is not an IP address' });
  });

  it('names a port outside 1-65535', () => {
    assert.throws(() => parseEndpoint('198.18.0.2:0'), { message: 'port 0 in "198.18.0.2:0" is not 1-65535' });
    assert.throws(() => parseEndpoint('198.18.0.2:65536'), { message: 'port 65536 in "198.18.0.2:65536" is not 1-65535' });
    assert.throws(() => parseEndpoint('[::1]:99999999999999999999'), {
      message: 'port 99999999999999999999 in "[::1]:99999999999999999999" is not 1-65535',
    });
  });

  it('gives one-line messages', () => {
    for (const text of ['x', 'localhost:53', '198.18.0.2:0', '2001:2::2:53']) {
      assert.throws(
        () => parseEndpoint(text),
        (error: Error) => error instanceof Error && !error.message.includes('\n'),
      );
    }
  });
});

describe('formatEndpoint', () => {
  it('brackets IPv6 addresses only', () => {
    assert.equal(formatEndpoint({ address: '198.18.0.2', port: 53 }), '198.18.0.2:53');
    assert.equal(formatEndpoint({ address: '2001:2::2', port: 53 }), '[2001:2::2]:53');
    assert.equal(formatEndpoint({ address: '::ffff:198.18.0.2', port: 80 }), '[::ffff:198.18.0.2]:80');
  });

  it('writes what parseEndpoint reads back', () => {
    for (const text of ['198.18.0.2:53', '[2001:2::2]:53', '[::1]:65535', '0.0.0.0:1']) {
      assert.equal(formatEndpoint(parseEndpoint(text)), text);
    }
  });
});

describe('addressBytes', () => {
  it('gives the bytes in network order of IPv4 and IPv6 in each of RFC 4291 §2.2’s forms', () => {
    assert.deepEqual(addressBytes('198.18.0.2'), Uint8Array.of(198, 18, 0, 2));
    const v6 = (groups: number[]): Uint8Array => Uint8Array.from(groups.flatMap((g) => [g >>> 8, g & 0xff]));
    assert.deepEqual(addressBytes('2001:2::2'), v6([0x2001, 2, 0, 0, 0, 0, 0, 2]));
    assert.deepEqual(addressBytes('2001:0002:0:0:0:0:0:0002'), v6([0x2001, 2, 0, 0, 0, 0, 0, 2]));
    assert.deepEqual(addressBytes('::'), new Uint8Array(16));
    assert.deepEqual(addressBytes('::1'), v6([0, 0, 0, 0, 0, 0, 0, 1]));
    assert.deepEqual(addressBytes('fe80::'), v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]));
    assert.deepEqual(addressBytes('::ffff:198.18.0.1'), v6([0, 0, 0, 0, 0, 0xffff, 0xc612, 0x0001]));
    assert.deepEqual(addressBytes('64:ff9b::198.18.0.1'), v6([0x64, 0xff9b, 0, 0, 0, 0, 0xc612, 0x0001]));
    assert.deepEqual(addressBytes('fe80::1%eth0'), v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]), 'the zone is not part of the address');
  });

  it('reads back what formatAddress writes', () => {
    for (const text of ['198.18.0.2', '2001:2::2', '::1', 'fe80::fc:ff:fe00:1', '2001:db8:1:2:3:4:5:6']) {
      const bytes = addressBytes(text);
      assert.equal(formatAddress(bytes, 0, bytes.length === 4 ? 4 : 6), text);
    }
  });

  it('refuses what is not an address, in one line', () => {
    for (const text of ['', '198.18.0', '198.18.0.256', '2001:2::2::1', 'example.net']) {
      assert.throws(
        () => addressBytes(text),
        (error: Error) => error.message === `"${text}" is not an IP address`,
      );
    }
  });
});
