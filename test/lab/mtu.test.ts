/**
 * Segment size from the route back (issue 14): the server's interface has a smaller MTU than the
 * client's, so the client's MSS (1460) is larger than what the server can send. Real kdig in the
 * client namespace asks for the 4249-byte TXT answer over TCP; without the route's MTU in the
 * segment size every full-size reply was refused by the kernel (EMSGSIZE) and the flow ended in RST.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, type Lab } from '../../lab/lab.js';
import { startFrontEnd, summaryCounter as counter, type RunningFrontEnd } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_ZONE } from '../../lab/zone.js';

/** kdig +tcp for the big TXT set; returns the TXT records it printed. */
async function bigTxt(lab: Lab, server: string): Promise<string[]> {
  const result = await lab.exec('client', ['kdig', '+tcp', '+timeout=3', '+retry=0', `@${server}`, LAB_ZONE.big.name, 'TXT', '+short']);
  assert.equal(result.code, 0, `kdig @${server}: ${result.stdout}${result.stderr}`);
  return result.stdout
    .trim()
    .split('\n')
    .filter((line) => line.length > 0);
}

async function setServerMtu(lab: Lab, mtu: number): Promise<void> {
  const result = await lab.exec('server', ['ip', 'link', 'set', lab.serverInterface, 'mtu', String(mtu)]);
  assert.equal(result.code, 0, result.stderr);
}

describe('server interface MTU below the client MSS', () => {
  let lab: Lab;
  let frontEnd: RunningFrontEnd | undefined;

  before(async () => {
    requireTools('kdig');
    lab = await createLab();
  });
  after(async () => {
    if (frontEnd !== undefined) await frontEnd.stop().catch(() => undefined);
    await lab?.close();
  });

  test('server MTU 1400, client 1500: the 4 KB TXT answer arrives whole over IPv4 and IPv6, cut to the route, nothing refused or lost', async () => {
    await setServerMtu(lab, 1400);
    frontEnd = await startFrontEnd(lab);
    for (const server of [lab.serverV4, lab.serverV6]) {
      const records = await bigTxt(lab, server);
      assert.equal(records.length, LAB_ZONE.big.strings.length, `every TXT record via ${server}`);
    }
    const summary = await frontEnd.stop();
    frontEnd = undefined;
    assert.equal(counter(summary, 'tcp.segment_size_from_route'), 2, summary);
    // Cut right from the first segment: no send refused, no timeout (the RFC 4821 fallback
    // would also get the answer through, 600 ms later: it must not be what did).
    assert.equal(counter(summary, 'send_failed'), 0, summary);
    assert.equal(counter(summary, 'tcp.retransmit_timeouts'), 0, summary);
    assert.equal(counter(summary, 'tcp.segment_size_fallbacks'), 0, summary);
  });

  test('the MTU shrinks while the destination is cached: the refused sends (EMSGSIZE) are cut again at once, not resent as they were', async () => {
    await setServerMtu(lab, 1400);
    frontEnd = await startFrontEnd(lab);
    for (const server of [lab.serverV4, lab.serverV6]) await bigTxt(lab, server);
    // The route's 1400 is cached for both client addresses (for 60 s): the next answers are cut
    // for 1400 and refused by the kernel at 1300.
    await setServerMtu(lab, 1300);
    for (const server of [lab.serverV4, lab.serverV6]) {
      const records = await bigTxt(lab, server);
      assert.equal(records.length, LAB_ZONE.big.strings.length, `every TXT record via ${server}`);
    }
    const summary = await frontEnd.stop();
    frontEnd = undefined;
    assert.ok(counter(summary, 'send_failed') >= 2, summary);
    assert.ok(counter(summary, 'tcp.too_big_taken') >= 2, summary);
    assert.equal(counter(summary, 'tcp.too_big_refused'), 0, summary);
    assert.equal(counter(summary, 'tcp.retransmit_timeouts'), 0, summary);
    assert.equal(counter(summary, 'tcp.flows_aborted'), 0, summary);
  });
});
