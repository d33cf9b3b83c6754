/**
 * Reader for classic libpcap files (draft-ietf-opsawg-pcap; tcpdump.org "pcap savefile format"),
 * for tests. pcapng is not supported.
 *
 * File header (24 bytes): magic, version major/minor, reserved(2×4), snaplen, link type.
 * Record header (16 bytes): seconds, micro- or nanoseconds, captured length, original length.
 * The magic number, written in the writer's byte order, tells both byte order and time unit.
 */
import { readFileSync } from 'node:fs';

export interface PcapRecord {
  /** The captured bytes (a view into the file's buffer), `capturedLength` long. */
  data: Uint8Array;
  capturedLength: number;
  /** Length of the packet on the wire; larger than `capturedLength` when cut by the snaplen. */
  originalLength: number;
  tsSec: number;
  /** Sub-second part in microseconds (nanosecond files are truncated to microseconds). */
  tsUsec: number;
}

export interface PcapFile {
  /** LINKTYPE_ number (see `LinkType`). */
  linkType: number;
  snapLength: number;
  records: PcapRecord[];
}

const MAGIC_MICROSECONDS = 0xa1b2c3d4;
const MAGIC_NANOSECONDS = 0xa1b23c4d;
const FILE_HEADER_LENGTH = 24;
const RECORD_HEADER_LENGTH = 16;

/** Parse a pcap file's bytes. Throws on a bad magic number or a record running past the end. */
export function parsePcap(bytes: Uint8Array): PcapFile {
  if (bytes.length < FILE_HEADER_LENGTH) throw new Error(`pcap: ${bytes.length} bytes, shorter than a file header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let littleEndian: boolean;
  let nanoseconds: boolean;
  const magicBig = view.getUint32(0, false);
  const magicLittle = view.getUint32(0, true);
  if (magicBig === MAGIC_MICROSECONDS || magicBig === MAGIC_NANOSECONDS) {
    littleEndian = false;
    nanoseconds = magicBig === MAGIC_NANOSECONDS;
  } else if (magicLittle === MAGIC_MICROSECONDS || magicLittle === MAGIC_NANOSECONDS) {
    littleEndian = true;
    nanoseconds = magicLittle === MAGIC_NANOSECONDS;
  } else {
    throw new Error(`pcap: unknown magic 0x${magicBig.toString(16)} (pcapng is not supported)`);
  }
  const snapLength = view.getUint32(16, littleEndian);
  // The upper bits of the link type field carry FCS information; the link type is the low 16.
  const linkType = view.getUint32(20, littleEndian) & 0xffff;

  const records: PcapRecord[] = [];
  let offset = FILE_HEADER_LENGTH;
  while (offset < bytes.length) {
    if (offset + RECORD_HEADER_LENGTH > bytes.length) throw new Error(`pcap: record header cut at ${offset}`);
    const tsSec = view.getUint32(offset, littleEndian);
    const fraction = view.getUint32(offset + 4, littleEndian);
    const capturedLength = view.getUint32(offset + 8, littleEndian);
    const originalLength = view.getUint32(offset + 12, littleEndian);
    const dataOffset = offset + RECORD_HEADER_LENGTH;
    if (dataOffset + capturedLength > bytes.length) throw new Error(`pcap: record data cut at ${offset}`);
    records.push({
      data: bytes.subarray(dataOffset, dataOffset + capturedLength),
      capturedLength,
      originalLength,
      tsSec,
      tsUsec: nanoseconds ? Math.floor(fraction / 1000) : fraction,
    });
    offset = dataOffset + capturedLength;
  }
  return { linkType, snapLength, records };
}

export function readPcap(path: string | URL): PcapFile {
  return parsePcap(readFileSync(path));
}
