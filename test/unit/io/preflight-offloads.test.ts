import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lroEnabled } from '../../../src/io/capture.js';
import { groMaxSizes, offloadProblem } from '../../../src/io/preflight.js';

describe('offloadProblem: what the capture interface delivers that the front end cannot take', () => {
  it('says nothing of GRO up to 64 KiB, LRO off, or a driver that does not say', () => {
    assert.equal(offloadProblem('eth0', true, false, [{ name: 'gro_max_size', bytes: 65536 }]), null);
    assert.equal(offloadProblem('eth0', true, null, []), null);
  });

  it('names the fix for LRO, unless checksums are ignored', () => {
    const problem = offloadProblem('eth0', true, true, []);
    assert.match(
      problem ?? '',
      /^large receive offload \(LRO\) is on at eth0; .*: turn it off \(ethtool -K eth0 lro off; .*\) or run with --checksums ignore$/,
    );
    assert.equal(offloadProblem('eth0', false, true, []), null);
  });

  it('names the fix for BIG TCP GRO, setting only the limits that are over', () => {
    assert.equal(
      offloadProblem('eth0', true, false, [
        { name: 'gro_max_size', bytes: 65536 },
        { name: 'gro_ipv4_max_size', bytes: 185000 },
      ]),
      'eth0 coalesces received frames up to 185000 bytes (BIG TCP GRO), more than the capture keeps (65536): ip link set dev eth0 gro_ipv4_max_size 65536',
    );
  });

  it("reads this host's loopback: LRO off, GRO limits as `ip` reports them", () => {
    assert.equal(lroEnabled('lo'), false);
    const sizes = groMaxSizes('lo');
    for (const size of sizes) assert.ok(size.bytes > 0 && ['gro_max_size', 'gro_ipv4_max_size'].includes(size.name), JSON.stringify(size));
    assert.deepEqual(groMaxSizes('no-such-device-14'), []);
  });
});
