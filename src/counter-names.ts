/**
 * Counters on the hot path are plain numeric arrays indexed by an enum-like object
 * (`{ QUERIES: 0, ANSWERS: 1 }`); their names for metrics and the stop summary are derived from
 * it here, so that an index and its name cannot drift apart.
 */

/** The keys of `indices` in lower case, each at its index: `{ SYN_ANSWERED: 1 }` → `[, 'syn_answered']`. */
export function counterNames(indices: Readonly<Record<string, number>>): readonly string[] {
  const names: string[] = [];
  for (const [key, index] of Object.entries(indices)) {
    if (names[index] !== undefined) throw new Error(`counter index ${index} used twice (${names[index]}, ${key})`);
    names[index] = key.toLowerCase();
  }
  for (let i = 0; i < names.length; i++) if (names[i] === undefined) throw new Error(`counter index ${i} is unused`);
  return names;
}
