/**
 * V8 .cpuprofile (from `node --cpu-prof`, one file per thread) to folded stacks, a flamegraph SVG
 * and a self-time summary. Written here rather than pulled in: the format is small, and the output
 * needs nothing but a browser.
 *
 * A .cpuprofile is a call tree (`nodes`, each with a call frame and child ids) and a list of
 * samples (`samples`: the id of the node on top of the stack at each tick, `timeDeltas`: µs since
 * the previous tick). A node's self time is the sum of the deltas of its samples.
 */
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** One frame of the merged tree: its label, time in it and below it, and its children by label. */
export interface FrameTree {
  label: string;
  selfUs: number;
  totalUs: number;
  children: Map<string, FrameTree>;
}

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** `name file:line`, with our files relative to the repository and Node's own as `node:…`. */
function frameLabel(frame: CallFrame): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  if (frame.url === '') return name; // (root), (program), (idle), (garbage collector), native code
  let where = frame.url;
  if (where.startsWith('file://')) where = relative(REPO_ROOT, fileURLToPath(where));
  return `${name} ${where}:${frame.lineNumber + 1}`;
}

/** Merges the profile into a tree keyed by label (so a function reached twice the same way is one frame). */
export function frameTree(profile: CpuProfile): FrameTree {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; the time a sample stands for is the gap after it.
  for (let i = 0; i < profile.samples.length; i++) {
    const gap = profile.timeDeltas[i + 1] ?? profile.endTime - profile.startTime - profile.timeDeltas.reduce((a, b) => a + b, 0);
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, gap));
  }
  const root = profile.nodes[0]!;
  const build = (node: ProfileNode, into: FrameTree): void => {
    into.selfUs += selfUs.get(node.id) ?? 0;
    for (const childId of node.children ?? []) {
      const child = byId.get(childId)!;
      const label = frameLabel(child.callFrame);
      let frame = into.children.get(label);
      if (frame === undefined) {
        frame = { label, selfUs: 0, totalUs: 0, children: new Map() };
        into.children.set(label, frame);
      }
      build(child, frame);
    }
  };
  const tree: FrameTree = { label: 'all', selfUs: 0, totalUs: 0, children: new Map() };
  build(root, tree);
  const total = (frame: FrameTree): number => {
    frame.totalUs = frame.selfUs + [...frame.children.values()].reduce((sum, child) => sum + total(child), 0);
    return frame.totalUs;
  };
  total(tree);
  return tree;
}

/** Brendan Gregg's folded format: `frame;frame;frame µs` per distinct stack, for other tools. */
export function foldedStacks(tree: FrameTree, prefix: string): string[] {
  const lines: string[] = [];
  const walk = (frame: FrameTree, path: string): void => {
    if (frame.selfUs > 0) lines.push(`${path} ${Math.round(frame.selfUs)}`);
    for (const child of frame.children.values()) walk(child, `${path};${child.label.replaceAll(';', ',')}`);
  };
  walk(tree, prefix);
  return lines;
}

/** Frames that are the thread waiting, not working: kept out of percentages of busy time. */
export const IDLE_LABELS = new Set(['(idle)', '(program)']);

export interface SelfTimeEntry {
  label: string;
  selfUs: number;
  /** Share of the thread's busy time (everything but idle and (program)). */
  busyShare: number;
}

export function selfTimes(tree: FrameTree): { busyUs: number; idleUs: number; entries: SelfTimeEntry[] } {
  const byLabel = new Map<string, number>();
  const walk = (frame: FrameTree): void => {
    if (frame.selfUs > 0) byLabel.set(frame.label, (byLabel.get(frame.label) ?? 0) + frame.selfUs);
    for (const child of frame.children.values()) walk(child);
  };
  walk(tree);
  const idleUs = [...byLabel].filter(([label]) => IDLE_LABELS.has(label)).reduce((sum, [, us]) => sum + us, 0);
  const busyUs = tree.totalUs - idleUs;
  const entries = [...byLabel]
    .filter(([label]) => !IDLE_LABELS.has(label))
    .map(([label, us]) => ({ label, selfUs: us, busyShare: busyUs === 0 ? 0 : us / busyUs }))
    .sort((a, b) => b.selfUs - a.selfUs);
  return { busyUs, idleUs, entries };
}

// ---------------------------------------------------------------------------------------------
// SVG
// ---------------------------------------------------------------------------------------------

const WIDTH = 1400;
const ROW = 17;
const CHAR_WIDTH = 6.6;

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** Colour by where the code lives: ours warm, Node's green, dependencies blue, V8/native red, idle grey. */
function colour(label: string): string {
  const hash = [...label].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
  const vary = (base: number, spread: number): number => base + (hash % spread);
  if (IDLE_LABELS.has(label)) return '#d8d8d8';
  if (/ (dist\/)?(src|workers)\//.test(label)) return `rgb(${vary(230, 25)},${vary(130, 60)},40)`;
  if (/ node_modules\//.test(label)) return `rgb(70,${vary(120, 60)},${vary(200, 50)})`;
  if (/ node:/.test(label)) return `rgb(80,${vary(170, 60)},80)`;
  return `rgb(${vary(200, 50)},${vary(60, 50)},${vary(50, 40)})`;
}

/**
 * A classic flamegraph: the root at the bottom, each frame as wide as its total time, children
 * above in label order. Frames narrower than half a pixel are left out; hovering shows each
 * frame's time and share.
 */
export function flamegraphSvg(tree: FrameTree, title: string, subtitle: string): string {
  let depth = 0;
  const measure = (frame: FrameTree, d: number): void => {
    depth = Math.max(depth, d);
    for (const child of frame.children.values()) measure(child, d + 1);
  };
  measure(tree, 0);
  const top = 50;
  const height = top + (depth + 1) * ROW + 10;
  const scale = tree.totalUs === 0 ? 0 : (WIDTH - 20) / tree.totalUs;
  const rects: string[] = [];
  const draw = (frame: FrameTree, x: number, d: number): void => {
    const width = frame.totalUs * scale;
    if (width < 0.5) return;
    const y = height - 10 - (d + 1) * ROW;
    const share = tree.totalUs === 0 ? 0 : (100 * frame.totalUs) / tree.totalUs;
    const text =
      frame.label.length * CHAR_WIDTH < width - 6 ? frame.label : `${frame.label.slice(0, Math.floor((width - 6) / CHAR_WIDTH) - 2)}..`;
    rects.push(
      `<g><title>${escapeXml(`${frame.label}\n${(frame.totalUs / 1000).toFixed(1)} ms, ${share.toFixed(2)} % (self ${(frame.selfUs / 1000).toFixed(1)} ms)`)}</title>` +
        `<rect x="${(10 + x).toFixed(2)}" y="${y}" width="${width.toFixed(2)}" height="${ROW - 1}" fill="${colour(frame.label)}" rx="2"/>` +
        (width > 3 * CHAR_WIDTH ? `<text x="${(13 + x).toFixed(2)}" y="${y + ROW - 5}">${escapeXml(text)}</text>` : '') +
        '</g>',
    );
    let childX = x;
    for (const child of [...frame.children.values()].sort((a, b) => a.label.localeCompare(b.label))) {
      draw(child, childX, d + 1);
      childX += child.totalUs * scale;
    }
  };
  draw(tree, 0, 0);
  return `${[
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="monospace" font-size="11">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fdfdf6"/>`,
    `<text x="${WIDTH / 2}" y="20" text-anchor="middle" font-size="15" font-family="sans-serif" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${WIDTH / 2}" y="38" text-anchor="middle" font-size="12" font-family="sans-serif" fill="#555">${escapeXml(subtitle)}</text>`,
    ...rects,
    '</svg>',
  ].join('\n')}\n`;
}
