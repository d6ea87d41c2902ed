/**
 * The AWS side, one of each: client options, the error code of a failed call, SQS's limits, the DLQ behind a
 * jobs queue, and turning the SDK's exceptions into `ServiceError` so backends handle one error tree.
 */

import { GetQueueAttributesCommand, GetQueueUrlCommand, type SQSClient } from "@aws-sdk/client-sqs";

import { Aborted, ServiceError } from "./errors.js";

export const SQS_MAX_BATCH = 10; // messages per ReceiveMessage, entries per *Batch call

/** The SDK's logger interface (`console` fits); the client also reports its own warnings through it. */
export interface Logger {
  debug(...content: unknown[]): void;
  info(...content: unknown[]): void;
  warn(...content: unknown[]): void;
  error(...content: unknown[]): void;
}

/** How the SDK retries a failed call: the SDK's own option names, passed through to every client. */
export interface RetryOptions {
  /** Attempts per call, the first included (default 6, as the Python client). */
  maxAttempts?: number | undefined;
  /** "standard" (default) or "adaptive" (client-side rate limiting on throttling). */
  retryMode?: "standard" | "adaptive" | undefined;
}

/** What every SDK client of this package is built with. */
export interface AwsOptions extends RetryOptions {
  region?: string | undefined;
  /** moto, LocalStack, MinIO: S3 then uses path-style addressing. */
  endpoint?: string | undefined;
  /** Anything the SDK takes as `credentials`; the SDK's default chain when absent. */
  credentials?: unknown;
  logger?: Logger | undefined;
}

// Standard retries, six attempts, as the Python client: a SendMessage retried this way may deliver a job twice,
// which the worker recognises by job id and request fingerprint.
export const MAX_ATTEMPTS = 6;

export function clientConfig(options: AwsOptions): Record<string, unknown> {
  const config: Record<string, unknown> = {
    maxAttempts: options.maxAttempts ?? MAX_ATTEMPTS,
    retryMode: options.retryMode ?? "standard",
  };
  if (options.region) config.region = options.region;
  if (options.endpoint) config.endpoint = options.endpoint;
  if (options.credentials !== undefined) config.credentials = options.credentials;
  if (options.logger !== undefined) config.logger = options.logger;
  return config;
}

/**
 * The AWS error code of a failed call (`NoSuchKey`, `QueueDoesNotExist`, `AccessDenied`, ...), or "" when AWS did
 * not answer: the SDK puts `$metadata` on network errors too (a refused connection is named "Error"), so only an
 * error with an HTTP status from the service names a code.
 */
export function errorCode(error: unknown): string {
  if (typeof error !== "object" || error === null) return "";
  const e = error as { Code?: unknown; name?: unknown };
  if (httpStatus(error) === undefined) return "";
  if (typeof e.Code === "string" && e.Code) return e.Code;
  if (typeof e.name === "string" && e.name !== "Error") return e.name;
  return "";
}

/** The HTTP status AWS answered with, when it answered. */
export function httpStatus(error: unknown): number | undefined {
  const metadata = (error as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata;
  return typeof metadata?.httpStatusCode === "number" ? metadata.httpStatusCode : undefined;
}

/** Whether `error` is the SDK's (or the platform's) report of an aborted call. */
export function isAbort(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  return error instanceof Error && error.name === "AbortError";
}

/** The client's error for a failed AWS call: Aborted when the caller's signal fired, else ServiceError. */
export function serviceError(action: string, error: unknown, signal?: AbortSignal): Aborted | ServiceError {
  if (error instanceof Aborted || error instanceof ServiceError) return error;
  if (isAbort(error, signal)) return new Aborted(`${action}: aborted`, signal?.reason ?? error);
  const code = errorCode(error) || undefined;
  const message = error instanceof Error ? error.message : String(error);
  return new ServiceError(`${action} failed: ${code && code !== message ? `${code}: ` : ""}${message}`, {
    awsCode: code,
    httpStatus: httpStatus(error),
    cause: error,
  });
}

/** `call`'s result, or a ServiceError saying what was being done, with AWS's code kept (Aborted on abort). */
export async function aws<T>(action: string, call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw serviceError(action, error, signal);
  }
}

/** Throws Aborted at once when `signal` has fired. */
export function checkAborted(signal: AbortSignal | undefined, action: string): void {
  if (signal?.aborted) throw new Aborted(`${action}: aborted`, signal.reason);
}

export interface RedrivePolicy {
  deadLetterTargetArn?: string;
  maxReceiveCount?: number | string;
}

/** The jobs queue's redrive policy (`deadLetterTargetArn`, `maxReceiveCount`), empty when it has none. */
export async function redrivePolicy(sqs: SQSClient, queueUrl: string): Promise<RedrivePolicy> {
  const response = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["RedrivePolicy"] }),
  );
  return JSON.parse(response.Attributes?.RedrivePolicy || "{}") as RedrivePolicy;
}

/** The URL of the DLQ a redrive policy names, or undefined. */
export async function deadLetterQueueUrl(sqs: SQSClient, policy: RedrivePolicy): Promise<string | undefined> {
  const arn = policy.deadLetterTargetArn;
  if (!arn) return undefined;
  const parts = arn.split(":");
  const name = parts.at(-1);
  const account = parts.at(-2);
  const response = await sqs.send(new GetQueueUrlCommand({ QueueName: name, QueueOwnerAWSAccountId: account }));
  return response.QueueUrl;
}

/** A FIFO queue needs a group and a de-duplication id on every message. */
export function fifoParams(
  queueUrl: string,
  group: string,
  dedupe: string,
): { MessageGroupId?: string; MessageDeduplicationId?: string } {
  return queueUrl.endsWith(".fifo") ? { MessageGroupId: group, MessageDeduplicationId: dedupe } : {};
}

const SQS_HOST_RE = /sqs[.-]([a-z0-9-]+)\.amazonaws\.com/;

/** The region an SQS queue URL names (`https://sqs.eu-west-1.amazonaws.com/...`), if it names one. */
export function regionFromQueueUrl(url: string): string | undefined {
  return SQS_HOST_RE.exec(url)?.[1];
}
