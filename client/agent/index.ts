// The agent SDK's public surface.

export {
  type Agent,
  type AgentPresence,
  type AgentState,
  INTERRUPTED_REASON,
  type JoinSessionOptions,
  joinSession,
} from './agent.js'
export {
  type AgentDefaults,
  type AgentHost,
  type AgentHostOptions,
  createAgentHost,
  type JoinOverrides,
} from './agent-host.js'
export {
  type ClientSessionsOptions,
  createClientSessions,
  createSharedSessions,
  type SessionHandle,
  type SessionLease,
  type SessionOpener,
  type TurnSession,
} from './fleet/sessions.js'
export {
  createTurnsClient,
  httpBase,
  TurnsApiError,
  type TurnsClient,
  type TurnsClientOptions,
} from './fleet/turns-client.js'
export {
  answerIdOf,
  createWorker,
  type ResumeRecord,
  type Worker,
  type WorkerEvent,
  type WorkerOptions,
} from './fleet/worker.js'
export {
  type GenerateContext,
  isModelEvent,
  type Model,
  type ModelEvent,
  type TextModel,
  type ToolCallEvent,
  type ToolResultEvent,
} from './model.js'
export {
  type CallModelOptions,
  callModel,
  DEFAULT_MODEL_RETRY,
  DEFAULT_MODEL_TIMEOUTS,
  type ModelCallOutcome,
  type ModelRetryPolicy,
  type ModelTimeouts,
  type RetryNotice,
} from './model-call.js'
export { ModelError, ModelErrorCode, type ModelErrorCodeValue, parseRetryAfter } from './model-error.js'
export { createDemoModel, DEMO_ANSWER_TOKENS, type DemoModelOptions } from './models/demo-model.js'
export { createOpenAiModel, type OpenAiModelOptions, toChatMessages } from './models/openai-model.js'
export { MAX_TOOL_RESULT_CHARS, type RecordedToolCall, recordModelEvent } from './tool-messages.js'
