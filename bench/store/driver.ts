// The load loop of the store benchmark: keeps a bounded number of updates in flight, round-robin
// over sessions, for a bounded time, and measures acknowledged updates and their ack latency.

/** A store under benchmark: `submit` resolves when the update is durable/acknowledged. */
export interface BenchTarget {
  submit(session: number, update: Uint8Array): Promise<void>
}

/** What one timed run measured. */
export interface DriveResult {
  /** Updates acknowledged inside the timed window. */
  readonly acked: number
  /** Updates submitted in total (all acknowledged once the drain finished). */
  readonly submitted: number
  readonly seconds: number
  readonly updatesPerSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly drainMs: number
}

/** Options of {@link drive}. */
export interface DriveOptions {
  readonly target: BenchTarget
  readonly pools: readonly (readonly Uint8Array[])[]
  readonly seconds: number
  readonly inflight: number
  /** Longest wait for in-flight updates after the window closes. */
  readonly drainTimeoutMs: number
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/**
 * Runs the load: `inflight` updates outstanding at any time, each ack immediately replaced by the
 * next update (round-robin over sessions) until `seconds` have passed; then waits for the rest.
 */
export async function drive(options: DriveOptions): Promise<DriveResult> {
  const { target, pools, inflight } = options
  const cursors = new Array<number>(pools.length).fill(0)
  const latencies: number[] = []
  let nextSession = 0
  let submitted = 0
  let outstanding = 0
  let acked = 0
  let failure: unknown
  const start = performance.now()
  const end = start + options.seconds * 1000
  let windowClosedAt = end

  let resolveDrained: () => void = () => undefined
  const drained = new Promise<void>((resolve) => {
    resolveDrained = resolve
  })

  function issue(): void {
    const session = nextSession
    nextSession = (nextSession + 1) % pools.length
    const pool = pools[session]!
    const update = pool[cursors[session]! % pool.length]!
    cursors[session]!++
    submitted++
    outstanding++
    const sentAt = performance.now()
    target.submit(session, update).then(
      () => {
        outstanding--
        const now = performance.now()
        if (now <= end) {
          acked++
          latencies.push(now - sentAt)
          issue()
        } else if (outstanding === 0) resolveDrained()
      },
      (error: unknown) => {
        failure ??= error
        outstanding--
        if (outstanding === 0) resolveDrained()
      },
    )
  }

  for (let i = 0; i < inflight; i++) issue()
  let drainTimer: NodeJS.Timeout | undefined
  const timedOut = new Promise<'timeout'>((resolve) => {
    drainTimer = setTimeout(() => resolve('timeout'), options.seconds * 1000 + options.drainTimeoutMs)
  })
  const outcome = await Promise.race([drained, timedOut])
  clearTimeout(drainTimer)
  windowClosedAt = Math.min(end, performance.now())
  if (failure !== undefined) throw failure
  if (outcome === 'timeout')
    throw new Error(`${outstanding} updates still unacknowledged after the drain timeout`)
  const sorted = Float64Array.from(latencies).sort()
  const seconds = (windowClosedAt - start) / 1000
  return {
    acked,
    submitted,
    seconds,
    updatesPerSecond: acked / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    drainMs: performance.now() - end,
  }
}
