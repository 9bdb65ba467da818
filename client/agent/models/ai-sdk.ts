// An adapter for the Vercel AI SDK (`ai` 6): any of its LanguageModels answers through `streamText`,
// so every provider the SDK has can answer in a Colloquy session. Text deltas become tokens; tool
// calls and their results become ModelEvents, which the agent records as the conversation model says
// (the call in the answer's metadata.toolCalls, each result a `tool` message answering the answer).

import {
  APICallError,
  type LanguageModel,
  type ModelMessage,
  stepCountIs,
  streamText,
  type ToolSet,
} from 'ai'
import type { GenerateContext, Model, ModelEvent } from '../model.js'
import { ModelError, ModelErrorCode, parseRetryAfter } from '../model-error.js'
import { CONTINUE_INSTRUCTION } from './openai-model.js'

/** Options of {@link createAiSdkModel}. */
export interface AiSdkModelOptions {
  /** Any AI SDK language model (a provider's model object, or a gateway id string). */
  readonly model: LanguageModel
  /** The name written into answers' `metadata.model` (default `provider:modelId`). */
  readonly name?: string
  /** A system prompt placed before the conversation. */
  readonly system?: string
  /** Tools the model may call; those with `execute` run here and their results go back to the model. */
  readonly tools?: ToolSet
  /** Most model steps per answer (a step ends with tool calls or the answer); default 5. */
  readonly maxSteps?: number
  readonly temperature?: number
  readonly maxOutputTokens?: number
}

/**
 * Turns a context window into AI SDK messages: the summary as a system message, then the messages
 * in thread order. `tool` messages are left out (their results already shaped the answers that
 * follow them, and a tool message without its call is refused by most providers); empty assistant
 * placeholders too. A resumed answer's text goes last, as the assistant's, with the instruction to
 * continue it.
 */
export function toModelMessages(context: GenerateContext): ModelMessage[] {
  const messages: ModelMessage[] = []
  if (context.summary !== undefined) {
    messages.push({ role: 'system', content: `Summary of the earlier conversation: ${context.summary.text}` })
  }
  for (const message of context.messages) {
    switch (message.role) {
      case 'tool':
        break
      case 'assistant':
        if (message.content.length > 0) messages.push({ role: 'assistant', content: message.content })
        break
      case 'system':
        messages.push({ role: 'system', content: message.content })
        break
      case 'user':
        messages.push({ role: 'user', content: message.content })
        break
    }
  }
  if (context.continueFrom !== undefined && context.continueFrom.length > 0) {
    messages.push({ role: 'assistant', content: context.continueFrom })
    messages.push({ role: 'system', content: CONTINUE_INSTRUCTION })
  }
  return messages
}

/** Turns what `streamText` reports into a {@link ModelError} the agent can retry or show. */
export function toModelError(error: unknown): ModelError {
  if (APICallError.isInstance(error)) {
    const retryAfterMs = parseRetryAfter(error.responseHeaders?.['retry-after'])
    if (error.statusCode !== undefined) {
      return new ModelError(
        ModelErrorCode.Http,
        `the model answered HTTP ${error.statusCode}: ${error.message}`,
        {
          status: error.statusCode,
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
          cause: error,
        },
      )
    }
    return new ModelError(ModelErrorCode.Unreachable, `the model could not be reached: ${error.message}`, {
      cause: error,
    })
  }
  if (error instanceof ModelError) return error
  const detail = error instanceof Error ? error.message : String(error)
  return new ModelError(ModelErrorCode.ModelReported, `the model reported an error: ${detail}`, {
    cause: error,
  })
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * Creates a {@link Model} backed by an AI SDK LanguageModel.
 *
 * @remarks The SDK's own retries are off (`maxRetries: 0`): the agent retries before the first token
 * (model-call.ts) and never after. The agent's abort signal is passed on, so a cancel closes the
 * provider's request.
 */
export function createAiSdkModel(options: AiSdkModelOptions): Model {
  const { model } = options
  const name = options.name ?? (typeof model === 'string' ? model : `${model.provider}:${model.modelId}`)
  return {
    name,
    async *generate(context, signal): AsyncGenerator<string | ModelEvent> {
      let failure: unknown
      const result = streamText({
        model,
        messages: toModelMessages(context),
        ...(options.system === undefined ? {} : { system: options.system }),
        ...(options.tools === undefined ? {} : { tools: options.tools }),
        ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
        ...(options.maxOutputTokens === undefined ? {} : { maxOutputTokens: options.maxOutputTokens }),
        stopWhen: stepCountIs(options.maxSteps ?? 5),
        maxRetries: 0,
        abortSignal: signal,
        onError: ({ error }) => {
          failure ??= error
        },
      })
      for await (const part of result.fullStream) {
        switch (part.type) {
          case 'text-delta':
            if (part.text.length > 0) yield part.text
            break
          case 'tool-call':
            yield { kind: 'tool-call', id: part.toolCallId, name: part.toolName, input: part.input }
            break
          case 'tool-result':
            yield { kind: 'tool-result', id: part.toolCallId, name: part.toolName, output: part.output }
            break
          case 'tool-error':
            yield {
              kind: 'tool-result',
              id: part.toolCallId,
              name: part.toolName,
              output: errorText(part.error),
              isError: true,
            }
            break
          case 'error':
            throw toModelError(part.error)
          case 'abort':
            return
          default:
            break
        }
      }
      if (failure !== undefined && !signal.aborted) throw toModelError(failure)
    },
  }
}
