/**
 * Offloads at the kernel's defaults (issue 14): the client's veth keeps tx checksum offload, TSO
 * and GSO, and the server's has GRO on, as on a host whose clients are local VMs or containers
 * and whose NIC coalesces. The server then captures segments whose TCP checksum holds only the
 * pseudo-header sum, and frames of several segments; before, every one was dropped
 * (`decode.bad_tcp_checksum`, `decode.truncated`) and nothing was answered.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { DNS_CLIENT } from '../../lab/client-scripts.js';
import { createLab, type Lab } from '../../lab/lab.js';
import { CLI, startFrontEnd, summaryCounter, type RunningFrontEnd } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_ZONE } from '../../lab/zone.js';
import { KernelChecksum } from '../../src/wire/segment.js';

/** Pipelined queries in one write: 90 of 32 bytes, 2,880 bytes, which TSO sends as one frame longer than a ring slot (2,048). */
const PIPELINED = 90;

describe('offloads at the kernel defaults: checksums left to offload, coalesced frames', () => {
  let lab: Lab;
  let frontEnd: RunningFrontEnd;

  before(async () => {
    requireTools('dig', 'kdig', 'nft', 'ethtool');
    lab = await createLab({ offloads: 'kernel-defaults' });
    frontEnd = await startFrontEnd(lab);
  });
  after(async () => {
    await lab?.close();
  });

  test('the lab has the offloads it says: tx checksumming and TSO on at the client, GRO on at the server', async () => {
    const client = await lab.exec('client', ['ethtool', '-k', lab.clientInterface]);
    assert.match(client.stdout, /^tx-checksumming: on/m);
    assert.match(client.stdout, /^tcp-segmentation-offload: on/m);
    const server = await lab.exec('server', ['ethtool', '-k', lab.serverInterface]);
    assert.match(server.stdout, /^generic-receive-offload: on/m);
  });

  test("the capture reads the kernel's checksum state: the client's SYNs, sent with checksum offload, are marked left to offload", async (t) => {
    // Our capture module, in the server namespace, on a port nothing listens on; the client's
    // kernel sends its SYNs with the checksum left to offload (CHECKSUM_PARTIAL: tp_status
    // TP_STATUS_CSUMNOTREADY), and the server's kernel answers them with RST.
    const captureModule = new URL('../../src/io/capture.js', import.meta.url).href;
    const script = `
      import { Capture } from '${captureModule}';
      const capture = new Capture({ interface: process.argv[1], lanes: [{ filter: 'tcp dst port 5555', bufferBytes: 1 << 20, snapLength: 2048 }] });
      console.log('ready');
      const states = [];
      const end = Date.now() + 10_000;
      while (Date.now() < end && states.length < 3) if (capture.next(100) === 1) states.push(capture.kernelChecksum);
      console.log(JSON.stringify(states));
      capture.close();`;
    const child = lab.spawn('server', [process.execPath, '--input-type=module', '-e', script, lab.serverInterface]);
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    await lab.waitForLine(child, /ready/, 20_000);
    for (let i = 0; i < 3; i++) {
      await lab.exec('client', ['bash', '-c', `exec 3<>/dev/tcp/${lab.serverV4}/5555`]);
    }
    await exited;
    t.diagnostic(output);
    assert.equal(output.trim().split('\n').at(-1), JSON.stringify(Array(3).fill(KernelChecksum.LEFT_TO_OFFLOAD)), output);
  });

  test('dig and kdig over IPv4 and IPv6 get their answers', async () => {
    for (const server of [lab.serverV4, lab.serverV6]) {
      const dig = await lab.exec('client', ['dig', '+tcp', '+tries=1', '+time=3', `@${server}`, LAB_ZONE.www.name, 'A', '+short']);
      assert.equal(dig.code, 0, dig.stdout + dig.stderr);
      assert.equal(dig.stdout.trim(), LAB_ZONE.www.a, `dig via ${server}`);
      const kdig = await lab.exec('client', ['kdig', '+tcp', '+timeout=3', '+retry=0', `@${server}`, LAB_ZONE.big.name, 'TXT']);
      assert.equal(kdig.code, 0, kdig.stderr);
      assert.match(kdig.stdout, /status: NOERROR/, `kdig via ${server}`);
    }
  });

  test(`${PIPELINED} pipelined queries in one write, sent as one TSO frame, are all answered, over IPv4 and IPv6`, async () => {
    const queries = Array.from({ length: PIPELINED }, (_, id) => {
      const message = dnsPacket.encode({
        type: 'query',
        id,
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type: 'A', name: LAB_ZONE.www.name }],
      });
      return Buffer.concat([Buffer.from([message.length >> 8, message.length & 0xff]), message]);
    });
    const write = Buffer.concat(queries);
    assert.ok(write.length > 2048, `${write.length} bytes`);
    for (const server of [lab.serverV4, lab.serverV6]) {
      const result = await lab.exec('client', [
        process.execPath,
        DNS_CLIENT,
        server,
        '53',
        JSON.stringify([write.toString('hex')]),
        String(PIPELINED),
      ]);
      assert.equal(result.code, 0, `dns-client via ${server}: ${result.stderr}`);
      const ids = (JSON.parse(result.stdout) as string[])
        .map((hex) => dnsPacket.decode(Buffer.from(hex, 'hex')).id)
        .sort((a, b) => a! - b!);
      assert.deepEqual(
        ids,
        Array.from({ length: PIPELINED }, (_, id) => id),
        `answers via ${server}`,
      );
    }
  });

  test('the counters say what happened: checksums left to offload accepted, coalesced frames cut, nothing dropped as bad', async (t) => {
    const summary = await frontEnd.stop();
    t.diagnostic(summary);
    assert.ok(summaryCounter(summary, 'decode.checksum_offloaded') > 0, summary);
    assert.ok(summaryCounter(summary, 'capture.coalesced_frames') >= 2, summary);
    assert.ok(summaryCounter(summary, 'capture.coalesced_pieces') > summaryCounter(summary, 'capture.coalesced_frames'), summary);
    assert.equal(summaryCounter(summary, 'decode.bad_tcp_checksum'), 0, summary);
    assert.equal(summaryCounter(summary, 'decode.truncated'), 0, summary);
  });

  test('BIG TCP GRO, which would deliver frames beyond what the capture keeps, stops the start with one line naming the fix', async () => {
    const device = lab.serverInterface;
    await lab.exec('server', ['ip', 'link', 'set', 'dev', device, 'gro_max_size', '131072']);
    try {
      const result = await lab.exec('server', [
        process.execPath,
        CLI,
        'dns',
        '--interface',
        device,
        '--listen',
        `${lab.serverV4}:53`,
        '--upstream',
        `${lab.upstream.v4.address}:${lab.upstream.v4.port}`,
      ]);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0]!, new RegExp(`coalesces received frames up to 131072 bytes .*: ip link set dev ${device} gro_max_size 65536$`));
    } finally {
      await lab.exec('server', ['ip', 'link', 'set', 'dev', device, 'gro_max_size', '65536']);
    }
  });
});
