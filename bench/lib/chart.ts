/**
 * A grouped bar chart as a hand-written SVG: one panel per measure, a group of bars per scenario,
 * one colour per contender, the value written on each bar. No dependencies, readable in any browser
 * and on GitHub.
 */

export interface ChartPanel {
  title: string;
  /** Unit shown after each value label. */
  unit: string;
  groups: readonly string[];
  series: readonly string[];
  /** values[group][series]; null draws "n/a". */
  values: readonly (readonly (number | null)[])[];
}

const SERIES_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#d62728'];

const WIDTH = 900;
const PANEL_HEIGHT = 300;
const MARGIN = { left: 70, right: 20, top: 40, bottom: 50 };
const LEGEND_HEIGHT = 30;

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** 1, 2 or 5 times a power of ten: a tick step that gives about `ticks` gridlines up to `max`. */
function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

export function formatValue(value: number): string {
  if (value === 0) return '0';
  if (value >= 100_000) return `${Math.round(value / 1000)}k`;
  if (value >= 10_000) return `${(value / 1000).toFixed(1)}k`;
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function panel(p: ChartPanel, top: number): string[] {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const max = Math.max(1e-9, ...p.values.flat().filter((v): v is number => v !== null && Number.isFinite(v)));
  const step = niceStep(max, 5);
  const axisMax = Math.ceil(max / step) * step;
  const y = (v: number): number => top + MARGIN.top + plotHeight - (v / axisMax) * plotHeight;
  const out: string[] = [
    `<text x="${WIDTH / 2}" y="${top + 22}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(p.title)}</text>`,
  ];
  for (let tick = 0; tick <= axisMax + step / 2; tick += step) {
    out.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y(tick)}" y2="${y(tick)}" stroke="#ddd"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${y(tick) + 4}" text-anchor="end" font-size="11">${formatValue(tick)}</text>`);
  }
  const groupWidth = plotWidth / Math.max(1, p.groups.length);
  const barWidth = (groupWidth * 0.8) / Math.max(1, p.series.length);
  p.groups.forEach((group, g) => {
    const groupLeft = MARGIN.left + g * groupWidth + groupWidth * 0.1;
    p.series.forEach((_, s) => {
      const value = p.values[g]?.[s] ?? null;
      const x = groupLeft + s * barWidth;
      if (value === null || !Number.isFinite(value)) {
        out.push(`<text x="${x + barWidth / 2}" y="${y(0) - 4}" text-anchor="middle" font-size="10" fill="#888">n/a</text>`);
        return;
      }
      out.push(
        `<rect x="${x + 1}" y="${y(value)}" width="${barWidth - 2}" height="${y(0) - y(value)}" fill="${SERIES_COLOURS[s % SERIES_COLOURS.length]}"><title>${escapeXml(`${p.series[s]}, ${group}: ${value} ${p.unit}`)}</title></rect>`,
      );
      out.push(`<text x="${x + barWidth / 2}" y="${y(value) - 4}" text-anchor="middle" font-size="10">${formatValue(value)}</text>`);
    });
    out.push(
      `<text x="${groupLeft + groupWidth * 0.4}" y="${top + PANEL_HEIGHT - MARGIN.bottom + 18}" text-anchor="middle" font-size="12">${escapeXml(group)}</text>`,
    );
  });
  out.push(
    `<text x="16" y="${top + MARGIN.top + plotHeight / 2}" transform="rotate(-90 16 ${top + MARGIN.top + plotHeight / 2})" text-anchor="middle" font-size="12">${escapeXml(p.unit)}</text>`,
  );
  return out;
}

export function renderChart(panels: readonly ChartPanel[], caption: string): string {
  const series = [...new Set(panels.flatMap((p) => p.series))];
  const height = LEGEND_HEIGHT + panels.length * PANEL_HEIGHT + 24;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
  ];
  let legendX = MARGIN.left;
  for (const name of series) {
    const colour = SERIES_COLOURS[panels.find((p) => p.series.includes(name))!.series.indexOf(name) % SERIES_COLOURS.length];
    out.push(`<rect x="${legendX}" y="10" width="12" height="12" fill="${colour}"/>`);
    out.push(`<text x="${legendX + 16}" y="21" font-size="12">${escapeXml(name)}</text>`);
    legendX += 24 + name.length * 7;
  }
  for (const [i, p] of panels.entries()) out.push(...panel(p, LEGEND_HEIGHT + i * PANEL_HEIGHT));
  out.push(`<text x="${WIDTH / 2}" y="${height - 8}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(caption)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
