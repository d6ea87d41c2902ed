/**
 * The drop-in for backends written against the old cloud worker: the same three calls, now on whisper-batch.
 *
 *     import { submitToCloudWorker, checkWorkerHealth, estimateCost } from "@whisper-batch/client/legacy";
 *     const { submitToCloudWorker } = require("@whisper-batch/client/legacy");   // CommonJS backends
 *
 * `submitToCloudWorker` maps the legacy job (`transcriptionId`, `userId`, `s3AudioUrl`, `model: "BASE"`,
 * `format: "SRT"`, `callbackUrl`) onto a v1 job exactly as the worker's contract does, with
 * `callback_shape: "legacy"`, so the callback carries what the old handlers read (`transcriptionId`, `status:
 * "COMPLETED"`, `s3ResultUrl`, `durationSeconds`, ...). The connection comes from the environment (see
 * `TranscriptionClient.fromEnv`) unless a client is passed.
 */

import { checkCallbackUrl } from "./callbacks.js";
import { TranscriptionClient } from "./client.js";
import type { LegacyJob } from "./contract/types.js";
import { validateJob } from "./contract/validate.js";
import type { HealthReport } from "./health.js";
import { estimateCost as estimate } from "./pricing.js";

export interface SubmitToCloudWorkerOptions {
  /** Wait for the job to finish (timeout in milliseconds, default one hour) and return its outcome. */
  wait?: boolean | { timeout?: number | null; pollInterval?: number };
  /**
   * The deployment; by default `TranscriptionClient.fromEnv()`, made once (WHISPER_ALLOW_HTTP and
   * WHISPER_ALLOW_PRIVATE_URLS there let a local receiver's http:// callbackUrl through).
   */
  client?: TranscriptionClient;
  /** Cancels the submit (and the wait): rejects with `Aborted`. */
  signal?: AbortSignal;
}

export interface LegacySubmitted {
  success: true;
  transcriptionId: string;
  jobId: string;
}

export interface LegacyOutcome {
  success: boolean;
  transcriptionId: string;
  /** `s3://<bucket>/<key of the requested format>`; null when the job failed. */
  s3ResultUrl: string | null;
  durationSeconds: number | null;
  /** Seconds the worker spent, from fetching the audio to storing the transcripts. */
  processingTime: number | null;
  language: string | null;
  /** When it failed: the worker's message, and its code (README "Failure handling"). */
  error?: string;
  errorCode?: string;
}

let defaultClient: TranscriptionClient | undefined;

function clientFrom(options: { client?: TranscriptionClient }): TranscriptionClient {
  if (options.client) return options.client;
  defaultClient ??= TranscriptionClient.fromEnv();
  return defaultClient;
}

/**
 * Validate the legacy job (JobValidationError names the legacy field, nothing is sent) and send it. Without
 * `wait`: `{success: true, transcriptionId, jobId}` once it is queued. With `wait`: the outcome; a failed job
 * returns `success: false` with `error` and `errorCode`, a job still running at the timeout throws WaitTimeout.
 */
export async function submitToCloudWorker(
  jobData: LegacyJob,
  options?: SubmitToCloudWorkerOptions & { wait?: false },
): Promise<LegacySubmitted>;
export async function submitToCloudWorker(
  jobData: LegacyJob,
  options: SubmitToCloudWorkerOptions & { wait: true | { timeout?: number | null } },
): Promise<LegacyOutcome>;
export async function submitToCloudWorker(
  jobData: LegacyJob,
  options?: SubmitToCloudWorkerOptions,
): Promise<LegacySubmitted | LegacyOutcome>;
export async function submitToCloudWorker(
  jobData: LegacyJob,
  options: SubmitToCloudWorkerOptions = {},
): Promise<LegacySubmitted | LegacyOutcome> {
  // The legacy shape → v1 with callback_shape "legacy", or JobValidationError naming the legacy field.
  const message = validateJob(jobData, { shape: "legacy" });
  const client = clientFrom(options);
  // A callbackUrl the worker would skip is refused here, named as the legacy caller named it.
  if (message.callback_url) await checkCallbackUrl(message.callback_url, client.callbackPolicy, "callbackUrl");
  const jobId = await client.send(message, options.signal);
  if (!options.wait) return { success: true, transcriptionId: jobId, jobId };

  const waitFor = typeof options.wait === "object" ? options.wait : {};
  const status = await client.wait(jobId, {
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(waitFor.timeout !== undefined ? { timeout: waitFor.timeout } : {}),
    ...("pollInterval" in waitFor && waitFor.pollInterval !== undefined ? { pollInterval: waitFor.pollInterval } : {}),
  });
  const result = status.result;
  const format = message.formats?.[0] ?? "json";
  const key = result?.results[format];
  const bucket = result?.bucket ?? client.bucket;
  const outcome: LegacyOutcome = {
    success: status.succeeded,
    transcriptionId: jobId,
    s3ResultUrl: status.succeeded && key ? `s3://${bucket}/${key}` : null,
    durationSeconds: result?.duration_seconds ?? null,
    processingTime: result?.processing_seconds ?? null,
    language: result?.language ?? null,
  };
  if (!status.succeeded) {
    outcome.error = status.errorMessage ?? "";
    outcome.errorCode = status.errorCode ?? "unknown";
  }
  return outcome;
}

/** The deployment's health: `healthy`, and the bucket, queue and DLQ checks (see `TranscriptionClient.checkHealth`). */
export async function checkWorkerHealth(
  options: { client?: TranscriptionClient; signal?: AbortSignal } = {},
): Promise<HealthReport> {
  return clientFrom(options).checkHealth(options.signal !== undefined ? { signal: options.signal } : {});
}

/**
 * The cost in USD of transcribing `duration` seconds (or "1h30m") with `model` (any case: "BASE"), on an on-demand
 * g5.xlarge unless told otherwise. For the breakdown (throughput, instance seconds, managed APIs' prices) use
 * `TranscriptionClient.estimateCost`.
 */
export function estimateCost(
  duration: number | string,
  model = "base",
  options: { instance?: string; spot?: boolean } = {},
): number {
  return estimate(duration, model, options.instance ?? "g5.xlarge", options.spot ?? false).costUsd;
}
