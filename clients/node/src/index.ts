/**
 * @whisper-batch/client: the Node.js backend's side of whisper-batch.
 *
 *     client.ts             TranscriptionClient: submit, uploadAndSubmit, status, wait, transcript, download, ...
 *     contract/validate.ts  validateJob: the worker's JSON Schema (src/data) plus the rules a schema cannot say
 *     legacy.ts             submitToCloudWorker, checkWorkerHealth, estimateCost: the old calls, on whisper-batch
 *     webhooks.ts           verifyWebhook: a signed callback in one line (also the light `/webhooks` entry)
 *     callbacks.ts          which callback URLs the worker calls: refused here when it would not
 *     pricing.ts            estimateCost: the Python client's derivation over the same prices.json
 *     health.ts             checkHealth: bucket, queue counts, DLQ depth
 *     deadletters.ts        the DLQ and the settled-letters queue: list and redrive, as the Python client
 *     https.ts              the stack's HTTPS API, SigV4-signed
 *     errors.ts             everything thrown derives from TranscriptionError
 */

export type { Logger, RetryOptions } from "./aws.js";
export { isPublicAddress } from "./callbacks.js";
export type { AllowInsecureCallbacks, CallbackPolicy } from "./callbacks.js";
export { DEFAULT_STACK_NAME, QUEUED_MARKER, TranscriptionClient } from "./client.js";
export type {
  CallOptions,
  ClientOptions,
  Transcript,
  UploadJob,
  UploadOptions,
  UploadProgress,
  WaitOptions,
} from "./client.js";
export { customModel, MODEL_NAMES, OUTPUT_FORMATS } from "./contract/types.js";
export type {
  CallbackShape,
  CustomModel,
  ErrorInfo,
  FormatName,
  JobInput,
  JobMessage,
  JobResult,
  LegacyCallback,
  LegacyJob,
  Model,
  ModelName,
  OutputFormat,
  ProgressCallback,
  SpeakerTime,
  SubtitleOptions,
  V1Callback,
} from "./contract/types.js";
export {
  isJobId,
  JOB_ID_PATTERN,
  MAX_MESSAGE_BYTES,
  MAX_METADATA_BYTES,
  newJobId,
  validateJob,
} from "./contract/validate.js";
export { JOB_MESSAGE_SCHEMA } from "./data.js";
export type { DeadLetter } from "./deadletters.js";
export {
  Aborted,
  ConfigurationError,
  EstimateError,
  InsecureCallbackUrl,
  JobFailed,
  JobNotFound,
  JobValidationError,
  ServiceError,
  TranscriptionError,
  WaitTimeout,
  WebhookVerificationError,
} from "./errors.js";
export type { FieldError } from "./errors.js";
export { OLDEST_AGE_NOT_OBTAINABLE } from "./health.js";
export type { HealthCheck, HealthReport } from "./health.js";
export type { ApiAccepted, ApiOptions, Credentials } from "./https.js";
export { checkWorkerHealth, submitToCloudWorker } from "./legacy.js";
export type { LegacyOutcome, LegacySubmitted, SubmitToCloudWorkerOptions } from "./legacy.js";
export { estimateCost, INSTANCES, MODEL_FAMILY, parseDuration, throughput } from "./pricing.js";
export type { CostEstimate, Instance, ManagedComparison, Throughput } from "./pricing.js";
export { mergeStatus, TERMINAL_STATES } from "./status.js";
export type { JobState, JobStatus } from "./status.js";
export { keepRawBody, verifyWebhook } from "./webhooks.js";
export type { HeadersLike, RawBody, WebhookPayload } from "./webhooks.js";
