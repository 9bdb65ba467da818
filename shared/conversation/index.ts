// The conversation model's public surface: the schema of DESIGN §4 and its typed, tolerant helpers.
// Internal helpers (shared between writer and messages) are deliberately not re-exported.

export {
  claimKey,
  compareClaims,
  parseClaim,
  readClaims,
  releaseClaim,
  type WriteClaimInput,
  writeClaim,
} from './claims.js'
export {
  approximateTokens,
  type ContextWindow,
  type ContextWindowOptions,
  contextWindow,
  DEFAULT_CONTEXT_STATUSES,
  selectContextWindow,
  truncateContent,
  truncationMarker,
} from './context-window.js'
export {
  type AbsenceClock,
  createAbsenceClock,
  INTERRUPTED_REASON,
  type JudgeRepliesInput,
  judgeReplies,
  markInterrupted,
  presentWriters,
  type ReplyJudgement,
} from './liveness.js'
export {
  type AppendMessageInput,
  appendMessage,
  findMessageMap,
  observeMessages,
  readMessage,
  readMessageMap,
  readMessages,
  requestCancel,
  type SetMessageStatusOptions,
  setMessageStatus,
  updateMessageMetadata,
} from './messages.js'
export {
  type Author,
  type CancelRequest,
  CLAIMS,
  ClaimKey,
  type ClaimView,
  claimsMap,
  isMessageStatus,
  isPeerKind,
  isRole,
  MESSAGE_STATUSES,
  MESSAGES,
  MessageKey,
  type MessageMetadata,
  type MessageStatus,
  type MessageView,
  messagesArray,
  newId,
  PEER_KINDS,
  type PeerKind,
  ROLES,
  type Role,
  SCHEMA_VERSION,
  SESSION,
  type SessionInfo,
  SessionKey,
  SUMMARIES,
  SummaryKey,
  type SummaryView,
  sessionMap,
  summariesArray,
} from './schema.js'
export { ensureSessionCreated, readSessionInfo, setSessionTitle, touchParticipant } from './session-info.js'
export {
  DEFAULT_COALESCE_MS,
  MAX_ERROR_TEXT_LENGTH,
  openStreamingWriter,
  type StreamingWriter,
  type StreamingWriterOptions,
} from './streaming-writer.js'
export { type AddSummaryInput, addSummary, readSummaries, readSummaryMap } from './summaries.js'
export { parseAuthor, UNKNOWN_AUTHOR } from './tolerant-read.js'
