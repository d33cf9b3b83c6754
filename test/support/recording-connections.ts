/**
 * The transport side as a DNS relay sees it, for the relay's unit tests: a connection is a name;
 * answers are checked for their framing, decoded and recorded, and what each connection is owed
 * is counted.
 */
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import type { Transport } from '../../src/tcp/transport.js';

export class RecordingConnections implements Transport<string> {
  readonly owed = new Map<string, number>();
  readonly answers: { connection: string; message: dnsPacket.DecodedPacket }[] = [];
  expectAnswer(connection: string): void {
    this.owed.set(connection, (this.owed.get(connection) ?? 0) + 1);
  }
  answer(connection: string, data: Uint8Array, offset: number, length: number): void {
    this.owed.set(connection, this.owed.get(connection)! - 1);
    const framed = Buffer.from(data.subarray(offset, offset + length));
    assert.equal(framed.readUInt16BE(0), length - 2, 'answers are framed with their length');
    this.answers.push({ connection, message: dnsPacket.decode(framed.subarray(2)) });
  }
  // The DNS relay answers each query whole and never closes or resets a connection itself.
  answerPart(): boolean {
    assert.fail('DNS answers are given whole');
  }
  closeWhenAnswered(): void {
    assert.fail('the DNS relay never closes a connection');
  }
  reset(): void {
    assert.fail('the DNS relay never resets a connection');
  }
  // DNS messages are whole: no body streams after one.
  beginBody(): void {
    assert.fail('DNS messages have no body');
  }
  endBody(): void {
    assert.fail('DNS messages have no body');
  }
  releaseBody(): void {
    assert.fail('DNS messages have no body');
  }
  isClosed(): boolean {
    return false;
  }
  clientAddress(connection: string): string {
    return connection;
  }
}
