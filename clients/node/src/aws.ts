/**
 * The AWS side, one of each: client options, the error code of a failed call, SQS's limits, the DLQ behind a
 * jobs queue, and turning the SDK's exceptions into `ServiceError` so backends handle one error tree.
 */

import { GetQueueAttributesCommand, GetQueueUrlCommand, type SQSClient } from "@aws-sdk/client-sqs";

import { ServiceError } from "./errors.js";

export const SQS_MAX_BATCH = 10; // messages per ReceiveMessage, entries per *Batch call

/** What every SDK client of this package is built with. */
export interface AwsOptions {
  region?: string | undefined;
  /** moto, LocalStack, MinIO: S3 then uses path-style addressing. */
  endpointUrl?: string | undefined;
  /** Anything the SDK takes as `credentials`; the SDK's default chain when absent. */
  credentials?: unknown;
}

// Standard retries, six attempts, as the Python client: a SendMessage retried this way may deliver a job twice,
// which the worker recognises by job id and request fingerprint.
export const MAX_ATTEMPTS = 6;

export function clientConfig(options: AwsOptions): Record<string, unknown> {
  const config: Record<string, unknown> = { maxAttempts: MAX_ATTEMPTS, retryMode: "standard" };
  if (options.region) config.region = options.region;
  if (options.endpointUrl) config.endpoint = options.endpointUrl;
  if (options.credentials !== undefined) config.credentials = options.credentials;
  return config;
}

/** The AWS error code of a failed call (`NoSuchKey`, `QueueDoesNotExist`, `AccessDenied`, ...), or "". */
export function errorCode(error: unknown): string {
  if (typeof error !== "object" || error === null) return "";
  const e = error as { Code?: unknown; name?: unknown; $metadata?: unknown; $fault?: unknown };
  if (typeof e.Code === "string" && e.Code) return e.Code;
  // Only the SDK's service exceptions (they carry $metadata) name an AWS code; a TypeError's name is not one.
  if (e.$metadata !== undefined && typeof e.name === "string") return e.name;
  return "";
}

export function httpStatus(error: unknown): number | undefined {
  const metadata = (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return metadata?.httpStatusCode;
}

/** `call`'s result, or a ServiceError saying what was being done, with AWS's code kept. */
export async function aws<T>(action: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const code = errorCode(error) || undefined;
    const message = error instanceof Error ? error.message : String(error);
    throw new ServiceError(`${action} failed: ${code && code !== message ? `${code}: ` : ""}${message}`, {
      awsCode: code,
      httpStatus: httpStatus(error),
      cause: error,
    });
  }
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
