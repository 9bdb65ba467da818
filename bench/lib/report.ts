// Renders a suite result as markdown: the machine, the command, then one table per scenario.

export interface SuiteResult {
  readonly meta: {
    mode: string
    seed: number
    date: string
    node: string
    cpu: string
    cores: number
    memoryGiB: number
    commit: string
    dirty: boolean
    command: string
    targets: Record<string, string>
    durationSeconds: number
  }
  readonly scenarios: Array<{
    id: string
    title: string
    rows: Array<Record<string, string | number | boolean>>
  }>
}

function cell(column: string, value: string | number | boolean | undefined): string {
  if (value === undefined) return ''
  if (typeof value === 'boolean') return value ? 'yes' : column === 'correct' ? '**NO**' : 'no'
  return String(value).replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

/** One markdown table with a column per key seen in any row (in first-seen order). */
export function renderTable(rows: ReadonlyArray<Record<string, string | number | boolean>>): string {
  const columns: string[] = []
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key)
  const lines = [`| ${columns.join(' | ')} |`, `| ${columns.map(() => '---').join(' | ')} |`]
  for (const row of rows) lines.push(`| ${columns.map((column) => cell(column, row[column])).join(' | ')} |`)
  return lines.join('\n')
}

export function renderMarkdown(result: SuiteResult): string {
  const { meta } = result
  const parts = [
    `# Benchmark run (${meta.mode})`,
    '',
    `- date: ${meta.date}, duration ${meta.durationSeconds} s`,
    `- command: \`${meta.command}\`, seed ${meta.seed}`,
    `- commit: ${meta.commit}${meta.dirty ? ' (with uncommitted changes)' : ''}`,
    `- machine: ${meta.cpu}, ${meta.cores} cores, ${meta.memoryGiB} GiB, Node ${meta.node}`,
    `- targets: ${Object.entries(meta.targets)
      .map(([id, label]) => `\`${id}\` = ${label}`)
      .join('; ')}`,
    '',
  ]
  for (const scenario of result.scenarios) {
    parts.push(`## [${scenario.id}] ${scenario.title}`, '', renderTable(scenario.rows), '')
  }
  return `${parts.join('\n')}\n`
}
