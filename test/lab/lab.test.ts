/**
 * The lab fixture against the real thing: namespaces, veth, unbound. Needs root, iproute2, ethtool,
 * unbound, dig and ping (see .ci/install).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Lab, createLab } from '../../lab/lab.js';
import { type ExecResult, isProcessRunning } from '../../lab/processes.js';
import { requireTools } from '../../lab/tools.js';
import { LAB_UPSTREAM, UNBOUND_CONFIG_FILE } from '../../lab/unbound.js';
import { LAB_ZONE, TXT_STRING_BYTES } from '../../lab/zone.js';

requireTools('ip', 'ethtool', 'unbound', 'unbound-checkconf', 'dig', 'ping');

/** What the tests read from dig's default output. */
interface DigAnswer {
  status: string;
  flags: Set<string>;
  /** The answer section, each record split into its fields; rdata is the rest of the line. */
  records: Array<{ name: string; type: string; rdata: string }>;
  messageBytes: number;
}

function parseDig(result: ExecResult): DigAnswer {
  assert.equal(result.code, 0, `dig failed: ${result.stderr}${result.stdout}`);
  const out = result.stdout;
  const status = /status: (\w+)/.exec(out)?.[1];
  const flags = /;; flags: ([a-z ]*);/.exec(out)?.[1];
  const size = /MSG SIZE\s+rcvd: (\d+)/.exec(out)?.[1];
  assert.ok(status !== undefined && flags !== undefined && size !== undefined, `unexpected dig output:\n${out}`);
  const section = out.split(';; ANSWER SECTION:\n')[1]?.split('\n\n')[0] ?? '';
  const records = section
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [name = '', , , type = '', ...rdata] = line.split(/\s+/);
      return { name, type, rdata: rdata.join(' ') };
    });
  return { status, flags: new Set(flags.split(' ')), records, messageBytes: Number(size) };
}

/** Queries the lab's unbound from inside the server namespace. */
async function askUnbound(lab: Lab, server: string, name: string, type: string, ...options: string[]): Promise<DigAnswer> {
  return parseDig(
    await lab.exec('server', ['dig', `@${server}`, '-p', String(lab.upstream.v4.port), '+time=2', '+tries=1', ...options, name, type]),
  );
}

function namespaceList(): string {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 5_000 });
}

/** Anything of this process's labs still present: namespaces (named with our pid) and temp dirs. */
function leftoversOf(pid: number): string[] {
  const namespaces = namespaceList()
    .split('\n')
    .filter((line) => new RegExp(`^stcp-[cs]-${pid}-`).test(line));
  const tempDirs = readdirSync(tmpdir()).filter((entry) => entry.startsWith(`stcp-lab-${pid}-`));
  return [...namespaces, ...tempDirs];
}

async function eventually(what: string, condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('lab', () => {
  let lab: Lab;
  before(async () => {
    lab = await createLab();
  });
  after(async () => {
    await lab.close();
  });

  test('names fit the interface limit and addresses are the documented ones', () => {
    assert.ok(lab.clientInterface.length <= 15 && lab.serverInterface.length <= 15);
    assert.notEqual(lab.clientNamespace, lab.serverNamespace);
    assert.deepEqual([lab.clientV4, lab.serverV4, lab.clientV6, lab.serverV6], ['198.18.0.1', '198.18.0.2', '2001:2::1', '2001:2::2']);
    assert.deepEqual(lab.upstream, LAB_UPSTREAM);
  });

  test('ping works both ways over IPv4 and IPv6', async () => {
    const pings: Array<['client' | 'server', string]> = [
      ['client', lab.serverV4],
      ['client', lab.serverV6],
      ['server', lab.clientV4],
      ['server', lab.clientV6],
    ];
    for (const [from, to] of pings) {
      const result = await lab.exec(from, ['ping', '-c1', '-W2', to]);
      assert.equal(result.code, 0, `ping ${from} → ${to}: ${result.stdout}${result.stderr}`);
    }
  });

  test('veth ends have checksum offload as the lab asks (off, or the kernel defaults) and the MTU set', async () => {
    const ends: Array<['client' | 'server', string]> = [
      ['client', lab.clientInterface],
      ['server', lab.serverInterface],
    ];
    for (const [where, device] of ends) {
      const features = (await lab.exec(where, ['ethtool', '-k', device])).stdout;
      const state = lab.offloads === 'off' ? 'off' : 'on';
      assert.match(features, new RegExp(`^tx-checksumming: ${state}`, 'm'));
      assert.match(features, new RegExp(`^rx-checksumming: ${state}`, 'm'));
      assert.match((await lab.exec(where, ['ip', 'link', 'show', 'dev', device])).stdout, / mtu 1500 /);
    }
  });

  test('the generated unbound.conf passes unbound-checkconf', async () => {
    const result = await lab.exec('server', ['unbound-checkconf', join(lab.tempDir, UNBOUND_CONFIG_FILE)]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  test('unbound answers www.lab.test A and AAAA over UDP on 127.0.0.1 and ::1', async () => {
    for (const server of [LAB_UPSTREAM.v4.address, LAB_UPSTREAM.v6.address]) {
      const a = await askUnbound(lab, server, LAB_ZONE.www.name, 'A', '+notcp');
      assert.equal(a.status, 'NOERROR');
      assert.ok(a.flags.has('aa'));
      assert.deepEqual(a.records, [{ name: LAB_ZONE.www.name, type: 'A', rdata: LAB_ZONE.www.a }]);
      const aaaa = await askUnbound(lab, server, LAB_ZONE.www.name, 'AAAA', '+notcp');
      assert.deepEqual(aaaa.records, [{ name: LAB_ZONE.www.name, type: 'AAAA', rdata: LAB_ZONE.www.aaaa }]);
    }
  });

  for (const set of [LAB_ZONE.mid, LAB_ZONE.big]) {
    test(`${set.name} TXT is truncated over UDP and whole over TCP (${set.responseBytes} bytes)`, async () => {
      // +ignore: show the truncated UDP answer instead of retrying over TCP.
      const udp = await askUnbound(lab, LAB_UPSTREAM.v4.address, set.name, 'TXT', '+notcp', '+ignore');
      assert.ok(udp.flags.has('tc'), `flags: ${[...udp.flags].join(' ')}`);
      assert.equal(udp.records.length, 0);
      for (const server of [LAB_UPSTREAM.v4.address, LAB_UPSTREAM.v6.address]) {
        const tcp = await askUnbound(lab, server, set.name, 'TXT', '+tcp');
        assert.equal(tcp.status, 'NOERROR');
        assert.ok(!tcp.flags.has('tc'));
        assert.equal(tcp.messageBytes, set.responseBytes);
        assert.deepEqual(
          tcp.records.map((r) => r.rdata),
          set.strings.map((s) => `"${s}"`),
        );
        assert.equal(set.strings.join('').length, set.textBytes);
        assert.ok(set.strings.every((s) => s.length === TXT_STRING_BYTES));
      }
    });
  }

  test('names outside the data are NXDOMAIN, inside and outside lab.test', async () => {
    for (const name of [LAB_ZONE.missing, 'example.com.']) {
      assert.equal((await askUnbound(lab, LAB_UPSTREAM.v4.address, name, 'A')).status, 'NXDOMAIN', name);
    }
  });

  test('exec is bounded: a command past its timeout is killed', async () => {
    const started = Date.now();
    const result = await lab.exec('client', ['sleep', '30'], { timeoutMs: 200 });
    assert.equal(result.timedOut, true);
    assert.equal(result.signal, 'SIGKILL');
    assert.ok(Date.now() - started < 2_000);
  });

  test('exec feeds input', async () => {
    const result = await lab.exec('server', ['cat'], { input: 'hello lab\n' });
    assert.deepEqual([result.code, result.stdout], [0, 'hello lab\n']);
  });

  test('spawn: waitForLine sees earlier and later lines, and times out', async () => {
    const child = lab.spawn('client', ['sh', '-c', 'echo first; echo "port 4242" >&2; sleep 0.2; echo later; exec sleep 30']);
    assert.equal((await lab.waitForLine(child, /later/))[0], 'later');
    assert.equal((await lab.waitForLine(child, /port (\d+)/))[1], '4242');
    await assert.rejects(lab.waitForLine(child, /never/, 100), /within 100 ms/);
    await lab.stop(child);
    assert.equal(child.signalCode, 'SIGTERM');
  });

  test('close() removes the namespaces, stops unbound and spawned processes, and is idempotent', async () => {
    const unboundPid = lab.unbound?.pid;
    assert.ok(unboundPid !== undefined && isProcessRunning(unboundPid));
    const sleeper = lab.spawn('server', ['sleep', '30']);
    const started = Date.now();
    await lab.close();
    const teardownMs = Date.now() - started;
    await lab.close();
    const listed = namespaceList();
    assert.ok(!listed.includes(lab.clientNamespace) && !listed.includes(lab.serverNamespace), listed);
    assert.ok(!isProcessRunning(unboundPid), 'unbound still running');
    assert.ok(!isProcessRunning(sleeper.pid!), 'spawned process still running');
    assert.ok(!existsSync(lab.tempDir));
    assert.ok(teardownMs < 3_000, `teardown took ${teardownMs} ms`);
  });
});

describe('lab setup and cleanup paths', () => {
  test('several labs in one process, with another MTU and without unbound', async () => {
    const first = await createLab({ mtu: 1280, unbound: false });
    const second = await createLab({ unbound: false });
    try {
      assert.notEqual(first.clientNamespace, second.clientNamespace);
      assert.equal(first.unbound, null);
      assert.match((await first.exec('server', ['ip', 'link', 'show', 'dev', first.serverInterface])).stdout, / mtu 1280 /);
      assert.equal((await first.exec('client', ['ping', '-c1', '-W2', '-s', '1232', first.serverV6])).code, 0);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
    assert.deepEqual(leftoversOf(process.pid), []);
  });

  test('a failure late in setup (unbound refusing its config) removes everything created', async () => {
    await assert.rejects(createLab({ unboundServerConfig: ['no-such-option: yes'] }), /unbound exited during lab setup .*no-such-option/);
    assert.deepEqual(leftoversOf(process.pid), []);
  });

  test('a missing tool is reported in one line naming the package', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      assert.throws(() => requireTools('unbound'), { message: 'unbound not found: apt-get install unbound' });
    } finally {
      process.env.PATH = path;
    }
  });

  test('invalid options are refused before anything is created', async () => {
    await assert.rejects(createLab({ mtu: 1000 }), /mtu must be an integer 1280-65535/);
  });

  // A child process builds a lab, then dies by SIGTERM or by an uncaught exception; its exit hooks
  // must remove the namespaces, unbound and the temp dir.
  const labModule = new URL('../../lab/lab.js', import.meta.url).href;
  for (const ending of ['SIGTERM', 'uncaught exception'] as const) {
    test(`a process that dies by ${ending} cleans up its lab`, async () => {
      const script = [
        `import { createLab } from ${JSON.stringify(labModule)};`,
        'const lab = await createLab();',
        'console.log(JSON.stringify({ pid: process.pid, unbound: lab.unbound.pid }));',
        ending === 'SIGTERM' ? 'setInterval(() => {}, 1000);' : 'setTimeout(() => { throw new Error("boom"); }, 50);',
      ].join('\n');
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        await eventually('child lab ready', () => stdout.includes('\n') || child.exitCode !== null, 10_000);
        assert.ok(stdout.includes('\n'), `child exited before its lab was ready: ${stderr}`);
        const { pid, unbound } = JSON.parse(stdout) as { pid: number; unbound: number };
        if (ending === 'SIGTERM') child.kill('SIGTERM');
        assert.equal(await exit, ending === 'SIGTERM' ? 143 : 1, stderr);
        assert.deepEqual(leftoversOf(pid), []);
        await eventually('unbound gone', () => !isProcessRunning(unbound));
      } finally {
        child.kill('SIGKILL');
      }
    });
  }
});
