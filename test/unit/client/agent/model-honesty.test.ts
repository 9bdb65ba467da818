// The OpenAI-compatible adapter and callModel against the fake model server: endings are honest,
// stalls time out, 429/5xx are retried with Retry-After, and every way out closes the request.

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { GenerateContext } from '../../../../client/agent/model.js'
import { callModel, type ModelCallOutcome, type RetryNotice } from '../../../../client/agent/model-call.js'
import { ModelError, parseRetryAfter } from '../../../../client/agent/model-error.js'
import { createOpenAiModel } from '../../../../client/agent/models/openai-model.js'
import { type FakeModelServer, startFakeModelServer } from '../../../helpers/fake-model-server.js'
import { withTimeout } from '../../../helpers/wait.js'

let fake: FakeModelServer
beforeEach(async () => {
  fake = await startFakeModelServer()
})
afterEach(async () => {
  await fake.close()
})

const prompt = {
  id: 'q',
  index: 0,
  role: 'user' as const,
  author: { id: 'device:a', kind: 'device' as const },
  createdAt: 0,
  content: 'hello?',
  status: 'complete' as const,
  metadata: {},
}
const context: GenerateContext = { sessionId: 's', prompt, messages: [prompt] }

const fastTimeouts = { firstTokenMs: 2_000, betweenTokensMs: 2_000, replyMs: 10_000 }
const fastRetry = { retries: 3, baseDelayMs: 5, maxDelayMs: 20, maxRetryAfterMs: 5_000 }

async function run(
  overrides: Partial<Parameters<typeof callModel>[0]> = {},
): Promise<{ outcome: ModelCallOutcome; text: string; retries: RetryNotice[] }> {
  let text = ''
  const retries: RetryNotice[] = []
  const outcome = await callModel({
    model: createOpenAiModel({ baseUrl: fake.baseUrl, model: 'fake' }),
    context: () => context,
    signal: new AbortController().signal,
    timeouts: fastTimeouts,
    retry: fastRetry,
    onToken: (token) => {
      text += token
    },
    onRetry: (notice) => retries.push(notice),
    ...overrides,
  })
  return { outcome, text, retries }
}

describe('honest endings of the OpenAI-compatible adapter', () => {
  it('is complete on [DONE]', async () => {
    fake.enqueue({ kind: 'reply', tokens: ['Hel', 'lo'] })
    const { outcome, text } = await run()
    expect(outcome.kind).toBe('complete')
    expect(text).toBe('Hello')
  })

  it('is complete on a finish reason without [DONE]', async () => {
    fake.enqueue({ kind: 'reply', tokens: ['Hel', 'lo'], end: 'finish-reason' })
    const { outcome, text } = await run()
    expect(outcome.kind).toBe('complete')
    expect(text).toBe('Hello')
  })

  it('regression: a body that ends early is an error "the model\'s stream ended early", not complete', async () => {
    fake.enqueue({ kind: 'early-end', tokens: ['half ', 'an '] })
    const { outcome, text } = await run()
    expect(outcome).toMatchObject({ kind: 'error', reason: "the model's stream ended early", tokens: 2 })
    expect(text).toBe('half an ')
  })

  it('regression: a reset connection is "connection reset by the model server", not "terminated"', async () => {
    fake.enqueue({ kind: 'reset', tokens: ['some ', 'text '] })
    const { outcome, text } = await run()
    expect(outcome).toMatchObject({ kind: 'error', reason: 'connection reset by the model server' })
    expect(text).toBe('some text ')
  })
})

describe('model timeouts', () => {
  it('regression: a model that sends nothing ends "the model sent nothing for …" and its request is aborted', async () => {
    fake.enqueue({ kind: 'stall' })
    const started = Date.now()
    const { outcome } = await run({ timeouts: { ...fastTimeouts, firstTokenMs: 100 } })
    expect(outcome).toMatchObject({ kind: 'error', reason: 'the model sent nothing for 0.1 s', tokens: 0 })
    expect(Date.now() - started).toBeLessThan(1_500)
    await withTimeout(fake.requests[0]!.closed, 2_000, 'request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
  })

  it('regression: a model that stalls between tokens ends with the text so far and the request aborted', async () => {
    fake.enqueue({ kind: 'stall', tokens: ['one ', 'two '] })
    const { outcome, text } = await run({ timeouts: { ...fastTimeouts, betweenTokensMs: 100 } })
    expect(outcome).toMatchObject({ kind: 'error', reason: 'the model sent nothing for 0.1 s', tokens: 2 })
    expect(text).toBe('one two ')
    await withTimeout(fake.requests[0]!.closed, 2_000, 'request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
  })

  it('regression: an endless stream ends at the reply timeout and its request is aborted', async () => {
    fake.enqueue({ kind: 'endless', intervalMs: 2 })
    const { outcome, text } = await run({ timeouts: { ...fastTimeouts, replyMs: 200 } })
    expect(outcome).toMatchObject({ kind: 'error', reason: 'the reply took longer than 0.2 s' })
    expect(text.length).toBeGreaterThan(0)
    await withTimeout(fake.requests[0]!.closed, 2_000, 'request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
  })

  it('aborts the request when the caller aborts (cancel, another peer, shutdown)', async () => {
    fake.enqueue({ kind: 'endless', intervalMs: 2 })
    const abort = new AbortController()
    let tokens = 0
    const outcome = await callModel({
      model: createOpenAiModel({ baseUrl: fake.baseUrl, model: 'fake' }),
      context: () => context,
      signal: abort.signal,
      timeouts: fastTimeouts,
      retry: fastRetry,
      onToken: () => {
        if (++tokens === 5) abort.abort()
      },
    })
    expect(outcome).toMatchObject({ kind: 'aborted', tokens: 5 })
    await withTimeout(fake.requests[0]!.closed, 2_000, 'request closed')
    expect(fake.requests[0]!.isAbortedByClient).toBe(true)
  })

  it('does not wait for a model that ignores its abort signal', async () => {
    const deaf = {
      name: 'deaf',
      async *generate() {
        yield 'x'
        await new Promise(() => {})
      },
    }
    const { outcome } = await run({ model: deaf, timeouts: { ...fastTimeouts, betweenTokensMs: 50 } })
    expect(outcome).toMatchObject({ kind: 'error', reason: 'the model sent nothing for 0.05 s', tokens: 1 })
  })
})

describe('retries before the first token', () => {
  it('regression: retries a 429, honouring Retry-After in seconds, and says so', async () => {
    fake.enqueue({ kind: 'status', status: 429, retryAfter: '1' })
    fake.enqueue({ kind: 'reply', tokens: ['ok'] })
    const { outcome, text, retries } = await run()
    expect(outcome.kind).toBe('complete')
    expect(text).toBe('ok')
    expect(retries).toEqual([
      { attempt: 1, of: 3, delayMs: 1_000, reason: expect.stringContaining('HTTP 429') as string },
    ])
    const gap = fake.requests[1]!.receivedAt - fake.requests[0]!.receivedAt
    expect(gap).toBeGreaterThanOrEqual(950)
  })

  it('retries 5xx with backoff and gives up after the bound with the last failure', async () => {
    fake.respond(() => ({ kind: 'status', status: 503 }))
    const { outcome, retries } = await run()
    expect(outcome).toMatchObject({
      kind: 'error',
      reason: expect.stringMatching(/HTTP 503.*after 3 retries/),
    })
    expect(retries.map((r) => `${r.attempt}/${r.of}:${r.delayMs}`)).toEqual(['1/3:5', '2/3:10', '3/3:20'])
    expect(fake.requests).toHaveLength(4)
  })

  it('does not retry a 400', async () => {
    fake.enqueue({ kind: 'status', status: 400 })
    const { outcome } = await run()
    expect(outcome).toMatchObject({ kind: 'error', reason: expect.stringContaining('HTTP 400') as string })
    expect(fake.requests).toHaveLength(1)
  })

  it('gives up at once when Retry-After asks for longer than the agent waits', async () => {
    fake.enqueue({ kind: 'status', status: 429, retryAfter: '3600' })
    const { outcome, retries } = await run()
    expect(outcome).toMatchObject({
      kind: 'error',
      reason: expect.stringContaining('asked to wait 3600 s') as string,
    })
    expect(retries).toEqual([])
  })

  it('does not retry once a token was shown', async () => {
    fake.enqueue({ kind: 'reset', tokens: ['shown '] })
    const { outcome, retries } = await run()
    expect(outcome.kind).toBe('error')
    expect(retries).toEqual([])
    expect(fake.requests).toHaveLength(1)
  })
})

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP-dates, and nothing else', () => {
    const now = Date.parse('Tue, 01 Dec 2026 12:00:00 GMT')
    expect(parseRetryAfter('7', now)).toBe(7_000)
    expect(parseRetryAfter('Tue, 01 Dec 2026 12:00:05 GMT', now)).toBe(5_000)
    expect(parseRetryAfter('Tue, 01 Dec 2026 11:00:00 GMT', now)).toBe(0)
    expect(parseRetryAfter('1.5', now)).toBeUndefined()
    expect(parseRetryAfter('soon', now)).toBeUndefined()
    expect(parseRetryAfter(null, now)).toBeUndefined()
  })

  it("is carried by the adapter's error for an HTTP-date", async () => {
    fake.enqueue({ kind: 'status', status: 429, retryAfter: new Date(Date.now() + 60_000).toUTCString() })
    const model = createOpenAiModel({ baseUrl: fake.baseUrl, model: 'fake' })
    const error = await (async () => {
      try {
        for await (const _ of model.generate(context, new AbortController().signal)) {
          /* nothing */
        }
      } catch (e) {
        return e
      }
      return undefined
    })()
    expect(error).toBeInstanceOf(ModelError)
    expect((error as ModelError).status).toBe(429)
    expect((error as ModelError).isRetryable).toBe(true)
    expect((error as ModelError).retryAfterMs).toBeGreaterThan(55_000)
  })
})
