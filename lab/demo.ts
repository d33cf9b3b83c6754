/**
 * `npm start`: the talk's "It Worked!" slide, for real. Builds the lab, starts unbound and the
 * stateless front end in the server namespace, runs `dig +tcp` from the client namespace, and
 * prints dig's output and tcpdump's trace of the whole exchange: SYN, SYN+ACK, query, the relayed
 * UDP query and answer on the server's loopback, the answer segment(s) with FIN, and the close.
 * Then it cleans everything up.
 */
import { createLab, type Lab } from './lab.js';
import { startFrontEnd } from './stateless-tcp.js';
import { requireTools } from './tools.js';
import { LAB_ZONE } from './zone.js';

/**
 * `quiet` keeps tcpdump from decoding payloads: it reads every TCP segment to port 53 as the start
 * of a DNS message, so the continuation segments of a long answer would be labelled "(invalid)".
 */
async function traceDig(lab: Lab, server: string, query: string[], quiet: boolean): Promise<void> {
  // tcpdump on "any" in the server namespace sees the veth (client side) and lo (the UDP relay).
  const tcpdump = lab.spawn('server', [
    'tcpdump',
    '-i',
    'any',
    '-n',
    '-l',
    '-S',
    '--immediate-mode',
    ...(quiet ? ['-q'] : []),
    `(tcp port 53) or (udp port ${lab.upstream.v4.port}) or (tcp port ${lab.upstream.v4.port})`,
  ]);
  let trace = '';
  tcpdump.stdout?.on('data', (chunk: Buffer) => (trace += chunk.toString()));
  await lab.waitForLine(tcpdump, /listening on/, 5000);

  const command = ['dig', '+tcp', `@${server}`, ...query];
  console.log(`\n$ ${command.join(' ')}        # in the client namespace ${lab.clientNamespace}\n`);
  const dig = await lab.exec('client', command, { timeoutMs: 10_000 });
  process.stdout.write(dig.stdout + dig.stderr);

  // Let the client's FIN and our ACK of it pass before stopping the capture.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await lab.stop(tcpdump);
  console.log(`--- tcpdump -i any in the server namespace ${lab.serverNamespace} ---`);
  process.stdout.write(trace);
}

async function main(): Promise<void> {
  requireTools('dig', 'tcpdump', 'nft');
  console.log('Building the lab: client and server network namespaces joined by a veth pair, unbound on the server loopback…');
  const lab = await createLab();
  try {
    const frontEnd = await startFrontEnd(lab);
    console.log(frontEnd.output().trim());
    console.log(
      `\nThe server namespace has no socket listening on port 53: stateless-tcp answers from captured packets, ` +
        `relaying each query over UDP to unbound at ${lab.upstream.v4.address}:${lab.upstream.v4.port}.`,
    );
    await traceDig(lab, lab.serverV4, [LAB_ZONE.www.name, 'A'], false);
    console.log(
      `\nA ${LAB_ZONE.big.responseBytes}-byte answer over IPv6: unbound truncates it over UDP, so the front end asks again over TCP`,
    );
    console.log("and cuts the whole answer into segments of at most the client's MSS, with no IP fragments.");
    await traceDig(lab, lab.serverV6, [LAB_ZONE.big.name, 'TXT', '+noall', '+comments', '+stats'], true);
    console.log(`\n${await frontEnd.stop()}`);
    console.log('\nIt worked! Cleaning up the lab.');
  } finally {
    await lab.close();
  }
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
