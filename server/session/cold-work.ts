// Work that may wait behind the frames of loaded sessions: the end of a session's cold load (its
// document built, its queued frames replayed) and the server's own changes to documents (turn
// entries). Runs it in order, in `setImmediate` turns with a bounded slice of time each; knows
// nothing of sessions.

import { performance } from 'node:perf_hooks'

/** A queue of deferred work, run a bounded slice at a time between the event loop's socket reads. */
export interface ColdWork {
  /**
   * Runs `task` in a later turn of the event loop, after every task queued before it.
   *
   * @remarks Each turn runs tasks until `budgetMs` has passed (at least one), then yields with
   * `setImmediate`: the poll phase in between reads the sockets, so the frames of loaded sessions
   * wait for at most one slice of this work, however long the queue. A task that throws is
   * reported to `onError` and the others still run.
   */
  defer(task: () => void): void
  /** Tasks queued and not yet run. */
  readonly pending: number
  /** Turns that ran tasks, and tasks run, since creation. */
  readonly turns: number
  readonly tasks: number
}

/** Options of {@link createColdWork}. */
export interface ColdWorkOptions {
  /** The time one turn may spend on tasks (ms); 0 or less runs every task at once, inline. */
  readonly budgetMs: number
  /** Called with what a task threw. */
  readonly onError: (error: unknown) => void
  /** The clock the budget is measured with (ms; default `performance.now`). */
  readonly now?: () => number
  /** Schedules the next turn (default `setImmediate`). */
  readonly schedule?: (run: () => void) => void
}

/** Creates a cold-work queue. */
export function createColdWork(options: ColdWorkOptions): ColdWork {
  const { budgetMs, onError } = options
  const now = options.now ?? (() => performance.now())
  const schedule = options.schedule ?? ((run: () => void) => void setImmediate(run))
  let queue: (() => void)[] = []
  let head = 0
  let isScheduled = false
  let turns = 0
  let tasks = 0

  const runOne = (task: () => void): void => {
    tasks++
    try {
      task()
    } catch (error) {
      onError(error)
    }
  }

  const turn = (): void => {
    isScheduled = false
    // Scheduled by a task's defer whose task then ran in that same turn: nothing left.
    if (head >= queue.length) return
    turns++
    const start = now()
    while (head < queue.length) {
      const task = queue[head]!
      head++
      runOne(task)
      if (now() - start >= budgetMs) break
    }
    if (head >= queue.length) {
      queue = []
      head = 0
    } else {
      // Drop what ran once it is the larger part, so the array does not grow without bound.
      if (head > 1024 && head * 2 > queue.length) {
        queue = queue.slice(head)
        head = 0
      }
      // A task may have deferred another (and scheduled this turn's successor) already.
      if (!isScheduled) {
        isScheduled = true
        schedule(turn)
      }
    }
  }

  return {
    defer(task) {
      if (budgetMs <= 0) {
        runOne(task)
        return
      }
      queue.push(task)
      if (!isScheduled) {
        isScheduled = true
        schedule(turn)
      }
    },
    get pending() {
      return queue.length - head
    },
    get turns() {
      return turns
    },
    get tasks() {
      return tasks
    },
  }
}
