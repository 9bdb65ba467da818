import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // Integration and kill -9 tests start child processes and real sockets: give them room, but
    // every wait inside a test is bounded on its own.
    testTimeout: 60_000,
    hookTimeout: 30_000,
    reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: { name: 'main', include: ['test/**/*.test.ts'], exclude: ['test/cluster/**'] },
      },
      {
        // Each cluster test file starts its own 3-node nats-server cluster and up to 3 Colloquy
        // processes on fixed ports chosen at start: one file at a time, beside the main project, so
        // two clusters never race for the same ports or the same 2 cores' leader elections. A failed
        // test runs once more (retry: 1), kept while a read right after a partition heals can take
        // a stale leader's answer (docs/cluster.md, "Open failures"); a test that fails twice fails
        // the run.
        extends: true,
        test: {
          name: 'cluster',
          include: ['test/cluster/**/*.test.ts'],
          fileParallelism: false,
          retry: 1,
        },
      },
    ],
  },
})
