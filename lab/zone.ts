/**
 * The small static DNS zone `lab.test.` that the lab's unbound serves (unbound.ts writes it into
 * unbound's configuration), with every record and the exact size of every answer known in
 * advance, so that tests and benchmarks can check answers byte for byte.
 */

/** Length of every TXT string in the zone: one string per record, below the 255-byte limit. */
export const TXT_STRING_BYTES = 250;

export interface TxtRecordSet {
  /** Owner name, fully qualified. */
  name: string;
  /** The strings, one per TXT record, in the order unbound returns them (rrset-roundrobin: no). */
  strings: readonly string[];
  /** Sum of the string lengths. */
  textBytes: number;
  /**
   * Size of the whole response to a query for `name` TXT that carries an EDNS OPT record without
   * options (what dig sends; unbound 1.17 answers no cookie): header 12 + question (name + 4) +
   * per record (compressed owner 2 + type/class/ttl/rdlength 10 + string length byte 1 + string)
   * + OPT 11. Without EDNS in the query it is 11 bytes less.
   */
  responseBytes: number;
}

const FILLER = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * `count` TXT records of TXT_STRING_BYTES each: `<label>-<NN>-` then the filler alphabet starting
 * at offset NN, so every string differs and a misplaced or repeated byte range shows.
 */
function txtRecordSet(label: string, count: number): TxtRecordSet {
  const name = `${label}.lab.test.`;
  const strings: string[] = [];
  for (let i = 0; i < count; i++) {
    const prefix = `${label}-${String(i).padStart(2, '0')}-`;
    const filler = FILLER.slice(i % FILLER.length) + FILLER.repeat(Math.ceil(TXT_STRING_BYTES / FILLER.length));
    strings.push((prefix + filler).slice(0, TXT_STRING_BYTES));
  }
  const nameWireBytes = name.length + 1;
  return {
    name,
    strings,
    textBytes: count * TXT_STRING_BYTES,
    responseBytes: 12 + nameWireBytes + 4 + count * (2 + 10 + 1 + TXT_STRING_BYTES) + 11,
  };
}

/**
 * The zone unbound serves. `local-zone: "." static` makes every other name NXDOMAIN, so nothing
 * ever recurses; `lab.test.` itself is static too, so unknown names below it are NXDOMAIN as well.
 */
export const LAB_ZONE = {
  apex: 'lab.test.',
  ttl: 300,
  www: { name: 'www.lab.test.', a: '198.18.0.100', aaaa: '2001:2::100' },
  /** 1619-byte response: over UDP (limit 1232) TC=1; over TCP two segments at MSS 1220. */
  mid: txtRecordSet('mid', 6),
  /** 4249-byte response: over UDP TC=1; over TCP four segments at MSS 1220. */
  big: txtRecordSet('big', 16),
  /** A name in the zone that has no data: NXDOMAIN. */
  missing: 'missing.lab.test.',
} as const;

/** The zone's records in zone-file syntax, one per line (A, AAAA, then the TXT sets in order). */
export function zoneRecords(): string[] {
  const { www, mid, big, ttl } = LAB_ZONE;
  return [
    `${www.name} ${ttl} IN A ${www.a}`,
    `${www.name} ${ttl} IN AAAA ${www.aaaa}`,
    ...[mid, big].flatMap((set) => set.strings.map((text) => `${set.name} ${ttl} IN TXT "${text}"`)),
  ];
}
