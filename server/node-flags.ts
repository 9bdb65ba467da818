// The flags of node itself that the server is meant to run with: V8 settings chosen by measurement
// (docs/benchmarks.md, "Session 10"). package.json's start scripts repeat them; the benches import them.

/**
 * A young generation of up to 32 MiB per semi-space (V8's default is 16 on 64-bit): a burst of
 * new sessions (issue 17) allocates short-lived objects fast, and half as many scavenges paused
 * the event loop for about half as long in all.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32']
