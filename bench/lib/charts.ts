// Hand-written SVG charts from a suite result: horizontal bars per target for the headline metric
// of each scenario, and latency against offered rate for the [S2] ramp. No dependencies.

import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { SuiteResult } from './report.js'

const COLORS: Record<string, string> = {
  colloquy: '#2b7a3d',
  'colloquy-nofsync': '#7fc08d',
  classic: '#b5532a',
  'classic-memory': '#e0a07f',
  hocuspocus: '#3a5fa8',
}

const escapeXml = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

interface Bar {
  readonly label: string
  readonly value: number
  readonly color: string
}

/** Horizontal bar chart: one bar per entry, value printed at the end. */
export function barChart(title: string, unit: string, bars: readonly Bar[]): string {
  const width = 640
  const rowHeight = 26
  const left = 190
  const top = 36
  const height = top + bars.length * rowHeight + 16
  const max = Math.max(1e-9, ...bars.map((bar) => (Number.isFinite(bar.value) ? bar.value : 0)))
  const scale = (width - left - 90) / max
  const rows = bars.map((bar, i) => {
    const y = top + i * rowHeight
    const w = Number.isFinite(bar.value) ? Math.max(1, bar.value * scale) : 0
    return [
      `<text x="${left - 8}" y="${y + 16}" text-anchor="end">${escapeXml(bar.label)}</text>`,
      `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowHeight - 8}" fill="${bar.color}"/>`,
      `<text x="${(left + w + 6).toFixed(1)}" y="${y + 16}">${Number.isFinite(bar.value) ? bar.value : 'n/a'} ${escapeXml(unit)}</text>`,
    ].join('')
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    ...rows,
    '</svg>',
  ].join('\n')
}

/** Line chart of p99 latency against offered rate, one line per target. */
export function rampChart(
  title: string,
  series: ReadonlyArray<{ id: string; points: ReadonlyArray<{ x: number; y: number }> }>,
): string {
  const width = 640
  const height = 360
  const left = 60
  const right = 150
  const top = 36
  const bottom = 40
  const xs = series.flatMap((line) => line.points.map((point) => point.x))
  const maxX = Math.max(1, ...xs)
  const maxY = 100 // ms: the 50 ms limit sits in the middle; higher values are clipped
  const px = (x: number): number => left + (x / maxX) * (width - left - right)
  const py = (y: number): number => height - bottom - (Math.min(y, maxY) / maxY) * (height - top - bottom)
  const lines = series.map((line, i) => {
    const color = COLORS[line.id] ?? '#444'
    const d = line.points.map(
      (point, j) => `${j === 0 ? 'M' : 'L'}${px(point.x).toFixed(1)},${py(point.y).toFixed(1)}`,
    )
    const dots = line.points.map(
      (point) =>
        `<circle cx="${px(point.x).toFixed(1)}" cy="${py(point.y).toFixed(1)}" r="3" fill="${color}"/>`,
    )
    return [
      `<path d="${d.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`,
      ...dots,
      `<text x="${width - right + 10}" y="${top + 16 * i + 10}" fill="${color}">${escapeXml(line.id)}</text>`,
    ].join('')
  })
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const x = Math.round(maxX * f)
    return `<text x="${px(x)}" y="${height - bottom + 16}" text-anchor="middle">${x}</text>`
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    `<line x1="${left}" y1="${py(0)}" x2="${width - right}" y2="${py(0)}" stroke="#999"/>`,
    `<line x1="${left}" y1="${py(0)}" x2="${left}" y2="${py(maxY)}" stroke="#999"/>`,
    `<line x1="${left}" y1="${py(50)}" x2="${width - right}" y2="${py(50)}" stroke="#c00" stroke-dasharray="4 3"/>`,
    `<text x="${left - 6}" y="${py(50) + 4}" text-anchor="end">50</text>`,
    `<text x="${left - 6}" y="${py(maxY) + 4}" text-anchor="end">≥${maxY}</text>`,
    `<text x="${left - 6}" y="${py(0) + 4}" text-anchor="end">0</text>`,
    ...ticks,
    `<text x="${(left + width - right) / 2}" y="${height - 6}" text-anchor="middle">offered updates/s</text>`,
    `<text x="14" y="${(top + height - bottom) / 2}" transform="rotate(-90 14 ${(top + height - bottom) / 2})" text-anchor="middle">p99 ms</text>`,
    ...lines,
    '</svg>',
  ].join('\n')
}

/** Which metric each scenario's bar chart shows. */
const HEADLINES: Record<string, { key: string; unit: string; title: string }> = {
  S1: { key: 'p99Ms', unit: 'ms', title: '[S1] writer→reader p99 latency (lower is better)' },
  S3: { key: 'kibPerSession', unit: 'KiB', title: '[S3] server memory per idle session (lower is better)' },
  S4: {
    key: 'syncMs',
    unit: 'ms',
    title: '[S4] cold load of 100k updates: time to synced (lower is better)',
  },
  S5: { key: 'catchupMs', unit: 'ms', title: '[S5] reconnect catch-up time (lower is better)' },
  S6: {
    key: 'allSyncedMs',
    unit: 'ms',
    title: '[S6] reconnect storm: time until all synced (lower is better)',
  },
  S7: { key: 'ackP99Ms', unit: 'ms', title: '[S7] ack p99 latency, fsync vs none (lower is better)' },
  S8: {
    key: 'serverCpuUsPerTokenLast',
    unit: 'µs',
    title: '[S8] server CPU per token near 1 MB (lower is better)',
  },
}

/** Writes one SVG per scenario into `dir`. */
export async function writeCharts(result: SuiteResult, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  for (const scenario of result.scenarios) {
    if (scenario.id === 'S2') {
      const ids = [...new Set(scenario.rows.map((row) => String(row.target)))]
      const series = ids.map((id) => ({
        id,
        // The last attempt at each rate (a failed step is retried once).
        points: [
          ...new Map(
            scenario.rows
              .filter((row) => row.target === id && typeof row.offered === 'number')
              .map((row) => [Number(row.offered), { x: Number(row.offered), y: Number(row.p99Ms) }] as const),
          ).values(),
        ],
      }))
      await writeFile(
        path.join(dir, 'S2.svg'),
        rampChart('[S2] p99 latency as the offered rate ramps', series),
      )
      const best = ids.map((id) => ({
        label: id,
        value: Math.max(
          0,
          ...scenario.rows
            .filter((row) => row.target === id && row.sustained === true)
            .map((row) => Number(row.offered)),
        ),
        color: COLORS[id] ?? '#444',
      }))
      await writeFile(
        path.join(dir, 'S2-max.svg'),
        barChart('[S2] highest sustained rate (higher is better)', 'updates/s', best),
      )
      continue
    }
    const headline = HEADLINES[scenario.id]
    if (!headline) continue
    const bars = scenario.rows
      .filter((row) => typeof row[headline.key] === 'number')
      .map((row) => ({
        label: String(row.target),
        value: Number(row[headline.key]),
        color: COLORS[String(row.target)] ?? '#444',
      }))
    await writeFile(path.join(dir, `${scenario.id}.svg`), barChart(headline.title, headline.unit, bars))
  }
}
