/**
 * The DNS front end end to end: real dig and kdig in the client namespace, the real
 * `stateless-tcp dns` binary capturing on the server's veth, real unbound behind it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { writeFileSync } from 'node:fs';
import { DNS_CLIENT } from '../../lab/client-scripts.js';
import { createLab, type Lab } from '../../lab/lab.js';
import { CLI, listenArgs, startCli, startFrontEnd, summaryCounter as counter, type RunningFrontEnd } from '../../lab/stateless-tcp.js';
import { requireTools } from '../../lab/tools.js';
import { readUdpDatagrams, startPcapCapture } from '../support/tcpdump.js';
import { LAB_ZONE } from '../../lab/zone.js';

async function dig(lab: Lab, server: string, ...args: string[]): Promise<string> {
  const result = await lab.exec('client', ['dig', '+tcp', '+tries=1', '+time=3', `@${server}`, ...args]);
  assert.equal(result.code, 0, `dig ${args.join(' ')} failed: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

/** Sends raw framed messages with the test client; returns the decoded answers. */
async function rawExchange(lab: Lab, server: string, writes: Buffer[], expected = 1): Promise<dnsPacket.DecodedPacket[]> {
  const result = await lab.exec('client', [
    process.execPath,
    DNS_CLIENT,
    server,
    '53',
    JSON.stringify(writes.map((w) => w.toString('hex'))),
    String(expected),
  ]);
  assert.equal(result.code, 0, `dns-client failed: ${result.stderr}`);
  return (JSON.parse(result.stdout) as string[]).map((hex) => dnsPacket.decode(Buffer.from(hex, 'hex')));
}

const framed = (message: Buffer): Buffer => Buffer.concat([Buffer.from([message.length >> 8, message.length & 0xff]), message]);
const rcode = (answer: dnsPacket.DecodedPacket): number => answer.flags! & 0xf;

describe('stateless-tcp dns with real clients and unbound', () => {
  let lab: Lab;
  let frontEnd: RunningFrontEnd;

  before(async () => {
    requireTools('dig', 'kdig', 'nft');
    lab = await createLab();
    frontEnd = await startFrontEnd(lab);
  });
  after(async () => {
    await lab?.close();
  });

  test('dig +tcp gets the A record over IPv4', async () => {
    const out = await dig(lab, lab.serverV4, LAB_ZONE.www.name, 'A');
    assert.match(out, /status: NOERROR/);
    assert.match(out, /;; SERVER: 198\.18\.0\.2#53\(198\.18\.0\.2\) \(TCP\)/);
    assert.match(out, /^www\.lab\.test\.\s+\d+\s+IN\s+A\s+198\.18\.0\.100$/m);
  });

  test('dig +tcp gets the AAAA record over IPv6', async () => {
    const out = await dig(lab, lab.serverV6, LAB_ZONE.www.name, 'AAAA', '+short');
    assert.equal(out.trim(), LAB_ZONE.www.aaaa);
  });

  test('kdig +tcp gets answers over IPv4 and IPv6', async () => {
    for (const server of [lab.serverV4, lab.serverV6]) {
      const result = await lab.exec('client', ['kdig', '+tcp', '+timeout=3', '+retry=0', `@${server}`, LAB_ZONE.www.name, 'A', '+short']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), LAB_ZONE.www.a, `kdig via ${server}`);
    }
  });

  test('NXDOMAIN passes through', async () => {
    const out = await dig(lab, lab.serverV4, LAB_ZONE.missing, 'A');
    assert.match(out, /status: NXDOMAIN/);
  });

  test('a 4 KB answer that unbound truncates over UDP reaches the client whole, over IPv4 and IPv6', async () => {
    for (const server of [lab.serverV4, lab.serverV6]) {
      const out = await dig(lab, server, LAB_ZONE.big.name, 'TXT');
      assert.match(out, /flags: qr aa rd ra;/, 'no TC flag');
      assert.match(out, new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.big.responseBytes}$`, 'm'));
      const strings = [...out.matchAll(/IN\s+TXT\s+"([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual(strings, LAB_ZONE.big.strings, `TXT strings in order via ${server}`);
    }
    const mid = await dig(lab, lab.serverV4, LAB_ZONE.mid.name, 'TXT');
    assert.match(mid, new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.mid.responseBytes}$`, 'm'));
  });

  test('twenty sequential dig +tcp queries all succeed', async () => {
    for (let i = 0; i < 20; i++) {
      const server = i % 2 === 0 ? lab.serverV4 : lab.serverV6;
      const out = await dig(lab, server, LAB_ZONE.www.name, 'A', '+short');
      assert.equal(out.trim(), LAB_ZONE.www.a, `query ${i}`);
    }
  });

  test('two queries in one segment get two answers, in order', async () => {
    const q1 = dnsPacket.encode({
      type: 'query',
      id: 101,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'A', name: 'www.lab.test' }],
    });
    const q2 = dnsPacket.encode({
      type: 'query',
      id: 102,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'AAAA', name: 'www.lab.test' }],
    });
    const answers = await rawExchange(lab, lab.serverV4, [Buffer.concat([framed(q1), framed(q2)])], 2);
    assert.deepEqual(
      answers.map((a) => [a.id, a.answers![0]!.type]),
      [
        [101, 'A'],
        [102, 'AAAA'],
      ],
    );
  });

  test('a query split over three segments, the length prefix alone first, is answered (IPv4 and IPv6)', async () => {
    for (const server of [lab.serverV4, lab.serverV6]) {
      const query = framed(
        dnsPacket.encode({
          type: 'query',
          id: 303,
          flags: dnsPacket.RECURSION_DESIRED,
          questions: [{ type: 'TXT', name: 'mid.lab.test' }],
        }),
      );
      const [answer] = await rawExchange(lab, server, [query.subarray(0, 2), query.subarray(2, 9), query.subarray(9)]);
      assert.equal(answer!.id, 303);
      assert.equal(answer!.answers!.length, LAB_ZONE.mid.strings.length, `via ${server}`);
    }
  });

  test('several sequential queries on one connection (dig +keepopen) are all answered', async () => {
    const out = await dig(
      lab,
      lab.serverV6,
      '+keepopen',
      '+short',
      LAB_ZONE.www.name,
      'A',
      LAB_ZONE.www.name,
      'AAAA',
      LAB_ZONE.missing,
      'A',
      LAB_ZONE.www.name,
      'A',
    );
    assert.deepEqual(out.trim().split('\n'), [LAB_ZONE.www.a, LAB_ZONE.www.aaaa, LAB_ZONE.www.a]);
  });

  test('dig +keepalive gets its answer and the edns-tcp-keepalive option back (RFC 7828), on both families', async () => {
    for (const server of [lab.serverV4, lab.serverV6]) {
      const result = await lab.exec('client', ['dig', '+tcp', '+keepalive', '+tries=1', '+time=3', `@${server}`, LAB_ZONE.www.name, 'A']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /status: NOERROR/);
      assert.match(result.stdout, /KEEPALIVE: 128(\.0)? ?s/i, result.stdout);
    }
  });

  test('a malformed query gets FORMERR with its ID', async () => {
    // A "query" with QR set and a question that runs past the end of the message.
    const bad = Buffer.from('beef8100000100000000000003777777', 'hex');
    const [answer] = await rawExchange(lab, lab.serverV6, [framed(bad)]);
    assert.equal(answer!.id, 0xbeef);
    assert.equal(rcode(answer!), 1);
  });

  test('on SIGTERM it stops cleanly, removes its nftables table, and dropped no packet as malformed', async () => {
    const summary = await frontEnd.stop();
    assert.match(summary, /stopped on SIGTERM/);
    assert.doesNotMatch(summary, /decode\.bad|decode\.truncated|send_failed=[1-9]/, summary);
    assert.match(summary, /dns\.truncated_retried_tcp=[1-9]/);
    const tables = await lab.exec('server', ['nft', 'list', 'tables']);
    assert.doesNotMatch(tables.stdout, /stateless_tcp/);
  });
});

describe('stateless-tcp dns on the "any" pseudo-interface (Linux cooked capture)', () => {
  let lab: Lab;
  before(async () => {
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('answers the 4 KB TXT over IPv4 and IPv6', async () => {
    const frontEnd = await startFrontEnd(lab, ['--interface', 'any']);
    for (const server of [lab.serverV4, lab.serverV6]) {
      const out = await dig(lab, server, LAB_ZONE.big.name, 'TXT');
      assert.match(out, new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.big.responseBytes}$`, 'm'), `via ${server}`);
    }
    await frontEnd.stop();
  });
});

describe('stateless-tcp dns --transport kernel (ordinary TCP sockets)', () => {
  let lab: Lab;
  before(async () => {
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('the same relay answers dig over IPv4 and IPv6, 4 KB answers and several queries per connection', async () => {
    const frontEnd = await startFrontEnd(lab, ['--transport', 'kernel']);
    assert.match(frontEnd.output(), /over kernel TCP sockets/);
    assert.equal((await dig(lab, lab.serverV4, LAB_ZONE.www.name, '+short')).trim(), LAB_ZONE.www.a);
    const big = await dig(lab, lab.serverV6, LAB_ZONE.big.name, 'TXT');
    assert.match(big, new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.big.responseBytes}$`, 'm'));
    const several = await dig(lab, lab.serverV6, '+keepopen', '+short', LAB_ZONE.www.name, 'A', LAB_ZONE.www.name, 'AAAA');
    assert.deepEqual(several.trim().split('\n'), [LAB_ZONE.www.a, LAB_ZONE.www.aaaa]);
    const summary = await frontEnd.stop();
    assert.match(summary, /tcp\.accepted=3 /);
    assert.match(summary, /dns\.truncated_retried_tcp=1/);
  });

  test('--close-after-response closes each connection after its answer', async () => {
    const frontEnd = await startFrontEnd(lab, ['--transport', 'kernel', '--close-after-response']);
    assert.equal((await dig(lab, lab.serverV4, LAB_ZONE.www.name, '+short')).trim(), LAB_ZONE.www.a);
    assert.match(await frontEnd.stop(), /tcp\.open=0 /);
  });
});

describe('stateless-tcp dns --cache-size and --max-qps-per-client', () => {
  let lab: Lab;
  before(async () => {
    requireTools('dig', 'kdig');
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('a question asked again is answered from the cache with its TTL counted down, on both transports, over both families', async () => {
    for (const transport of ['raw', 'kernel']) {
      const frontEnd = await startFrontEnd(lab, ['--transport', transport, '--cache-size', '1000', '--workers', '1']);
      const first = await dig(lab, lab.serverV4, LAB_ZONE.www.name, 'A', '+nocookie');
      assert.match(first, new RegExp(`^www\\.lab\\.test\\.\\s+${LAB_ZONE.ttl}\\s+IN\\s+A\\s+${LAB_ZONE.www.a}$`, 'm'));
      await new Promise((resolve) => setTimeout(resolve, 2100));
      // Another client (IPv6), the name in other letter case, with a DNS cookie (dig's default).
      const again = await dig(lab, lab.serverV6, 'WWW.Lab.Test', 'A');
      const ttl = Number(/^WWW\.Lab\.Test\.\s+(\d+)\s+IN\s+A\s+/m.exec(again)?.[1]);
      assert.ok(ttl <= LAB_ZONE.ttl - 2 && ttl >= LAB_ZONE.ttl - 4, `served from the cache with TTL ${ttl}:\n${again}`);
      const summary = await frontEnd.stop();
      assert.equal(counter(summary, 'dns.cache_hits'), 1, `${transport}: ${summary}`);
      assert.equal(counter(summary, 'dns.cache_misses'), 1, `${transport}: ${summary}`);
    }
  });

  test('--max-qps-per-client: past the limit a client network gets REFUSED at once, another network still its answers', async () => {
    const frontEnd = await startFrontEnd(lab, ['--max-qps-per-client', '3', '--workers', '1']);
    const statuses: string[] = [];
    for (let i = 0; i < 6; i++) {
      const out = await dig(lab, lab.serverV4, LAB_ZONE.www.name, 'A');
      statuses.push(/status: (\w+)/.exec(out)?.[1] ?? out);
    }
    assert.ok(
      statuses.slice(0, 3).every((s) => s === 'NOERROR'),
      statuses.join(' '),
    );
    assert.ok(statuses.includes('REFUSED'), `the client's /24 went over 3 a second: ${statuses.join(' ')}`);
    // The client's IPv6 address is another network.
    assert.match(await dig(lab, lab.serverV6, LAB_ZONE.www.name, 'AAAA'), /status: NOERROR/);
    const summary = await frontEnd.stop();
    assert.ok(counter(summary, 'dns.rate_limited') >= 1, summary);
  });
});

describe('stateless-tcp dns --upstream-proxy-protocol (unbound proxy-protocol-port)', () => {
  let lab: Lab;
  const PROXY_PORT = 5301;
  before(async () => {
    requireTools('dig');
    // unbound applies its access control to the address the PROXY header names: the lab's
    // ranges may ask, except the client's IPv4 address.
    lab = await createLab({
      unboundServerConfig: [
        `interface: 127.0.0.1@${PROXY_PORT}`,
        `proxy-protocol-port: ${PROXY_PORT}`,
        'access-control: 198.18.0.0/15 allow',
        'access-control: 2001:2::/48 allow',
        'access-control: 198.18.0.1/32 refuse',
      ],
    });
  });
  after(async () => {
    await lab?.close();
  });

  test("the resolver sees each client's own address, over UDP and over TCP, on both transports", async () => {
    for (const transport of ['raw', 'kernel']) {
      const frontEnd = await startCli(lab, [
        'dns',
        '--upstream',
        `127.0.0.1:${PROXY_PORT}`,
        '--upstream-proxy-protocol',
        '--transport',
        transport,
        ...listenArgs(lab, 53),
      ]);
      // Without the header unbound would see 127.0.0.1, which it allows.
      assert.match(await dig(lab, lab.serverV4, LAB_ZONE.www.name, 'A'), /status: REFUSED/, transport);
      assert.match(await dig(lab, lab.serverV6, LAB_ZONE.www.name, 'AAAA'), /status: NOERROR/, transport);
      // A 4 KB answer comes back truncated over UDP and is fetched over TCP, on a connection
      // that starts with the client's header (unbound drops one without it).
      const big = await dig(lab, lab.serverV6, LAB_ZONE.big.name, 'TXT');
      assert.match(big, new RegExp(`MSG SIZE\\s+rcvd: ${LAB_ZONE.big.responseBytes}$`, 'm'), big);
      const summary = await frontEnd.stop();
      assert.equal(counter(summary, 'dns.truncated_retried_tcp'), 1, summary);
      assert.equal(counter(summary, 'dns.tcp_retry_failed'), 0, summary);
    }
  });
});

describe('stateless-tcp dns --ecs (EDNS Client Subnet, RFC 7871)', () => {
  let lab: Lab;
  before(async () => {
    requireTools('dig', 'kdig', 'tcpdump');
    // The resolver on another host: a capture on its end of the link sees each query once.
    lab = await createLab({ remoteResolver: true });
  });
  after(async () => {
    await lab?.close();
  });

  test("the resolver receives each client's network; clients get their answers without an option they did not send, on both transports", async () => {
    type Subnet = { family?: number; sourcePrefixLength?: number; scopePrefixLength?: number; ip?: string };
    for (const transport of ['raw', 'kernel']) {
      // What reaches unbound over UDP, captured where it receives it.
      const file = `${lab.tempDir}/ecs-${transport}.pcap`;
      const capture = await startPcapCapture(lab, 'resolver', lab.resolverInterface!, file, `udp and dst port ${lab.upstream.v4.port}`);
      const frontEnd = await startFrontEnd(lab, ['--transport', transport, '--ecs']);
      // Without EDNS: the answer must come without the OPT record the front end added.
      const plain = await dig(lab, lab.serverV4, '+noedns', LAB_ZONE.www.name, 'A');
      assert.match(plain, /status: NOERROR/, transport);
      assert.doesNotMatch(plain, /OPT PSEUDOSECTION/, `${transport}: no OPT record\n${plain}`);
      // With EDNS (and dig's cookie): an OPT record, but no client subnet.
      const edns = await dig(lab, lab.serverV4, LAB_ZONE.www.name, 'AAAA');
      assert.match(edns, /OPT PSEUDOSECTION/, transport);
      assert.doesNotMatch(edns, /CLIENT-SUBNET/, transport);
      assert.match(edns, new RegExp(`IN\\s+AAAA\\s+${LAB_ZONE.www.aaaa}`), transport);
      const overV6 = await lab.exec('client', ['kdig', '+tcp', '+timeout=3', '+retry=0', `@${lab.serverV6}`, LAB_ZONE.missing, 'A']);
      assert.equal(overV6.code, 0, overV6.stderr);
      assert.match(overV6.stdout, /status: NXDOMAIN/, transport);
      assert.doesNotMatch(overV6.stdout, /SUBNET/i, transport);
      // A client's own option is passed on as it is.
      const own = await dig(lab, lab.serverV4, '+subnet=192.0.2.0/24', LAB_ZONE.mid.name, 'TXT');
      assert.match(own, /status: NOERROR/, transport);
      await frontEnd.stop();
      await capture.stop();
      const received = new Map<string, Subnet | undefined>();
      for (const datagram of readUdpDatagrams(file)) {
        const query = dnsPacket.decode(Buffer.from(datagram.payload));
        const question = query.questions![0]!;
        const opt = query.additionals?.find((a) => a.type === 'OPT') as dnsPacket.OptAnswer | undefined;
        const subnet = (opt?.options as ({ code: number } & Subnet)[] | undefined)?.find((o) => o.code === 8);
        const fields = subnet && {
          family: subnet.family,
          sourcePrefixLength: subnet.sourcePrefixLength,
          scopePrefixLength: subnet.scopePrefixLength,
          ip: subnet.ip,
        };
        received.set(`${question.name} ${question.type}`, fields);
      }
      const network = (family: number, sourcePrefixLength: number, ip: string): Subnet => ({
        family,
        sourcePrefixLength,
        scopePrefixLength: 0,
        ip,
      });
      assert.deepEqual(received.get('www.lab.test A'), network(1, 24, '198.18.0.0'), `${transport}: the client /24`);
      assert.deepEqual(received.get('www.lab.test AAAA'), network(1, 24, '198.18.0.0'), transport);
      assert.deepEqual(received.get('missing.lab.test A'), network(2, 56, '2001:2::'), `${transport}: the client /56`);
      assert.deepEqual(received.get('mid.lab.test TXT'), network(1, 24, '192.0.2.0'), `${transport}: the client's own`);
    }
  });
});

describe('stateless-tcp dns with a shared cookie secret file', () => {
  let lab: Lab;
  before(async () => {
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('SIGHUP rotates the secret and answers keep coming; a file holding the secret in use rotates nothing', async () => {
    const file = `${lab.tempDir}/secret`;
    writeFileSync(file, `${'1f'.repeat(16)}\n`);
    const frontEnd = await startFrontEnd(lab, ['--cookie-secret-file', file]);
    assert.match(frontEnd.output(), /cookie secret file /);
    assert.equal((await dig(lab, lab.serverV4, LAB_ZONE.www.name, '+short')).trim(), LAB_ZONE.www.a);
    writeFileSync(file, `${'2e'.repeat(16)}\n`);
    frontEnd.process.kill('SIGHUP');
    await lab.waitForLine(frontEnd.process, /cookie secret rotated/, 5000);
    assert.equal((await dig(lab, lab.serverV6, LAB_ZONE.www.name, 'AAAA', '+short')).trim(), LAB_ZONE.www.aaaa);
    // The file unchanged: rotating to the secret in use would push the previous one out early.
    frontEnd.process.kill('SIGHUP');
    await lab.waitForLine(frontEnd.process, /cookie secret not rotated: .* holds the secret already in use/, 5000);
    assert.equal((await dig(lab, lab.serverV4, LAB_ZONE.www.name, '+short')).trim(), LAB_ZONE.www.a);
    await frontEnd.stop();
  });
});

describe('stateless-tcp dns when the upstream dies', () => {
  let lab: Lab;
  before(async () => {
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  test('queries get SERVFAIL after --timeout, and the front end keeps serving', async () => {
    const frontEnd = await startFrontEnd(lab, ['--timeout', '300']);
    assert.equal((await dig(lab, lab.serverV4, LAB_ZONE.www.name, '+short')).trim(), LAB_ZONE.www.a);
    await lab.stop(lab.unbound!);
    const started = Date.now();
    const out = await dig(lab, lab.serverV4, LAB_ZONE.www.name, 'A');
    assert.match(out, /status: SERVFAIL/);
    assert.match(out, /;www\.lab\.test\.\s+IN\s+A/, 'question echoed');
    assert.ok(Date.now() - started < 2500, 'answered after the timeout, not the client giving up');
    const summary = await frontEnd.stop();
    assert.match(summary, /dns\.servfail_timeout=1/);
  });
});

describe('stateless-tcp start-up errors are one line naming the fix', () => {
  let lab: Lab;
  before(async () => {
    lab = await createLab();
  });
  after(async () => {
    await lab?.close();
  });

  async function failingStart(args: string[], prefix: string[] = []): Promise<string> {
    const result = await lab.exec('server', [...prefix, process.execPath, CLI, 'dns', ...args], { timeoutMs: 8000 });
    assert.notEqual(result.code, 0, 'exits non-zero');
    const lines = result.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line, got:\n${result.stderr}`);
    assert.doesNotMatch(result.stderr, /\bat .*\.js:\d+/, 'no stack trace');
    return lines[0]!;
  }
  const upstream = (): string => `${lab.upstream.v4.address}:${lab.upstream.v4.port}`;

  test('unknown interface', async () => {
    const line = await failingStart(['--interface', 'nope0', '--listen', `${lab.serverV4}:53`, '--upstream', upstream()]);
    assert.match(line, /interface nope0 does not exist: pick one from `ip link show`/);
  });

  test('a listen address that is not ADDR:PORT', async () => {
    const line = await failingStart(['--interface', lab.serverInterface, '--listen', '2001:2::2:53', '--upstream', upstream()]);
    assert.match(line, /write the IPv6 address in brackets|is not ADDR:PORT|not an IP address/);
  });

  test('an upstream that does not answer', async () => {
    const line = await failingStart(['--interface', lab.serverInterface, '--listen', `${lab.serverV4}:53`, '--upstream', '127.0.0.1:5399']);
    assert.match(line, /upstream 127\.0\.0\.1:5399 .*: start the resolver or correct --upstream/);
  });

  test('a cookie secret file that is not 32 hex digits', async () => {
    const file = `${lab.tempDir}/bad-secret`;
    writeFileSync(file, 'secret\n');
    const line = await failingStart([
      '--interface',
      lab.serverInterface,
      '--listen',
      `${lab.serverV4}:53`,
      '--upstream',
      upstream(),
      '--cookie-secret-file',
      file,
    ]);
    assert.match(line, /must hold 32 hexadecimal digits/);
  });

  test('a listen address this host does not have', async () => {
    const line = await failingStart(['--interface', lab.serverInterface, '--listen', '198.18.0.99:53', '--upstream', upstream()]);
    assert.match(
      line,
      /listen address 198\.18\.0\.99 is not on this host: add it \(ip address add 198\.18\.0\.99\/32 dev <interface>\) or correct --listen/,
    );
  });

  test('a port a kernel socket already serves', async () => {
    const server = lab.spawn('server', [
      process.execPath,
      '-e',
      `require('net').createServer().listen(5353, '${lab.serverV4}', () => console.log('up'))`,
    ]);
    await lab.waitForLine(server, /^up$/, 5000);
    const line = await failingStart(['--interface', lab.serverInterface, '--listen', `${lab.serverV4}:5353`, '--upstream', upstream()]);
    assert.match(
      line,
      /a kernel socket already listens on 198\.18\.0\.2:5353, .*: stop that server \(ss -ltnp 'sport = :5353' shows it\) or pick another --listen/,
    );
    await lab.stop(server);
  });

  test('a config file with an unknown option, or a bad value', async () => {
    const file = `${lab.tempDir}/bad.yaml`;
    writeFileSync(file, `listen: ${lab.serverV4}:53\nupstreams: ${upstream()}\n`);
    assert.match(
      await failingStart(['--config', file]),
      /--config .*bad\.yaml: unknown option "upstreams" \(see dns --help for the names\)/,
    );
    writeFileSync(file, `listen: ${lab.serverV4}:53\nupstream: ${upstream()}\nworkers: none\n`);
    assert.match(await failingStart(['--config', file]), /--config .*bad\.yaml: workers: "none" is not a positive integer/);
  });

  test('nftables missing', async () => {
    // No nft on PATH (node itself is started by its full path).
    const line = await failingStart(
      ['--interface', lab.serverInterface, '--listen', `${lab.serverV4}:53`, '--upstream', upstream()],
      ['env', 'PATH=/nonexistent'],
    );
    assert.match(line, /nft not found: install nftables \(apt-get install nftables\)/);
  });

  // Still root, so the checkout stays readable wherever it is (another uid cannot read one inside
  // a mode-700 directory such as /root, and node would fail on `Cannot find module` instead), but
  // with no capabilities: an empty bounding set means no exec can give any back, and `noroot`
  // (locked) means uid 0 gets no full set on exec either.
  const WITHOUT_CAPABILITIES = [
    'setpriv',
    '--inh-caps=-all',
    '--ambient-caps=-all',
    '--bounding-set=-all',
    '--securebits=+noroot,+noroot_locked',
    '--',
  ];

  test('no privilege for raw sockets', async () => {
    requireTools('setpriv');
    const status = await lab.exec('server', [...WITHOUT_CAPABILITIES, 'cat', '/proc/self/status']);
    assert.equal(status.code, 0, status.stderr);
    // The fields, whitespace-separated values after the name (Uid: real, effective, saved, filesystem).
    const field = (name: string): string | undefined =>
      new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status.stdout)?.[1]?.split(/\s+/).join(' ');
    assert.deepEqual(
      ['Uid', 'CapPrm', 'CapEff', 'CapAmb', 'CapBnd'].map((name) => [name, field(name)]),
      [['Uid', '0 0 0 0'], ...['CapPrm', 'CapEff', 'CapAmb', 'CapBnd'].map((name) => [name, '0000000000000000'])],
      `the command runs as root without any capability:\n${status.stdout}`,
    );
    const line = await failingStart(
      ['--interface', lab.serverInterface, '--listen', `${lab.serverV4}:53`, '--upstream', upstream()],
      WITHOUT_CAPABILITIES,
    );
    assert.match(line, /cannot open a raw socket \(.*\): run as root, or give node CAP_NET_RAW/);
  });
});
