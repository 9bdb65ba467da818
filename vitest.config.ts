import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // Integration and kill -9 tests start child processes and real sockets: give them room, but
    // every wait inside a test is bounded on its own.
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // The JSON report's path here, not in the reporter's options, so that `--outputFile.json=…`
    // can move it (test/run-projects.ts writes one per project).
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
    pool: 'forks',
    // Transpiles the sources once for the child processes the tests start (test/helpers/child-build.ts).
    globalSetup: ['test/helpers/child-build.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'main', include: ['test/**/*.test.ts'], exclude: ['test/cluster/**'] },
      },
      {
        // Each cluster test file starts its own 3-node nats-server cluster and up to 3 Colloquy
        // processes on fixed ports chosen at start: one file at a time, so two clusters never race
        // for the same ports or the same 2 cores' leader elections. In one `vitest run` this project
        // starts only once the main project has finished (vitest 4 runs a project without file
        // parallelism in a group of its own, after the others); `npm test` runs it beside the main
        // project in a second vitest process instead (test/run-projects.ts). A failed
        // test runs once more (retry: 1). It was kept for a read right after a partition heals that
        // took a stale leader's answer, now guarded (40 runs in a row without the retry,
        // docs/cluster.md); it stays because these files now share the 2 cores with the whole main
        // project, and an election that times out under that load is the machine, not the product.
        // A test that fails twice fails the run.
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
