/**
 * Can a backend reach the deployment? The results bucket, the jobs queue and the DLQ, each checked for real, as
 * `whisper-worker health` (worker/ops/health.py) does from the worker's side. Each check is reported, not thrown,
 * so one call shows every problem at once; the checks' JSON is the same as `whisper-worker health --json`'s.
 *
 * Not obtainable here: the age of the oldest waiting message. SQS's API has no such attribute (only CloudWatch's
 * `ApproximateAgeOfOldestMessage` metric, which the stack's alarm watches), and receiving a message to read its
 * `SentTimestamp` would take it from a worker and count against its `maxReceiveCount`. The report says so.
 */

import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";

import { deadLetterQueueUrl, errorCode, type RedrivePolicy } from "./aws.js";

const NOT_FOUND = new Set([
  "NoSuchBucket",
  "404",
  "NotFound",
  "AWS.SimpleQueueService.NonExistentQueue",
  "QueueDoesNotExist",
]);
const DENIED = new Set(["403", "AccessDenied", "AccessDeniedException", "AWS.SimpleQueueService.AccessDenied"]);

export const OLDEST_AGE_NOT_OBTAINABLE =
  "not obtainable: SQS reports no age of its oldest message (CloudWatch's ApproximateAgeOfOldestMessage does), " +
  "and receiving one to look would take it from a worker";

export interface HealthCheck {
  name: "bucket" | "queue" | "dlq";
  ok: boolean;
  detail: string;
  seconds: number;
  /** What the check found (`url`, `visible`, `in_flight`, `max_receive_count`, ...), as the worker's JSON. */
  [key: string]: unknown;
}

export interface HealthReport {
  healthy: boolean;
  checks: HealthCheck[];
  queue: {
    url: string;
    visible: number;
    inFlight: number;
    delayed: number;
    maxReceiveCount: number | null;
    /** Always null: see `oldestMessageAgeNote`. */
    oldestMessageAgeSeconds: null;
    oldestMessageAgeNote: string;
  } | null;
  /** `visible` is null when the DLQ answered but its depth is not readable (no sqs:GetQueueAttributes on it). */
  dlq: { url: string; visible: number | null } | null;
}

export interface HealthTarget {
  sqs: SQSClient;
  s3: S3Client;
  queueUrl: string;
  bucket: string;
  resultsPrefix: string;
  /** The DLQ when known; otherwise the jobs queue's redrive policy names it. */
  dlqUrl?: string | undefined;
}

type Probe = () => Promise<[ok: boolean, detail: string, data: Record<string, unknown>]>;

async function timed(name: HealthCheck["name"], probe: Probe): Promise<HealthCheck> {
  const started = performance.now();
  let ok: boolean;
  let detail: string;
  let data: Record<string, unknown>;
  try {
    [ok, detail, data] = await probe();
  } catch (error) {
    // A check that crashes is a failed check, with the reason.
    [ok, detail, data] = [false, `${(error as Error).name}: ${(error as Error).message}`, {}];
  }
  return { name, ok, detail, seconds: Math.round(performance.now() - started) / 1000, ...data };
}

function describe(error: unknown, what: string): string {
  const code = errorCode(error);
  if (code && NOT_FOUND.has(code)) return `${what} does not exist (${code})`;
  if (code && DENIED.has(code)) return `${what}: access denied (${code}); check the backend's IAM role`;
  if (code) return `${what}: ${code}`;
  return `${what} unreachable: ${(error as Error).message ?? String(error)}`;
}

function count(value: string | undefined): number {
  return Number.parseInt(value ?? "0", 10) || 0;
}

export async function checkHealth(target: HealthTarget): Promise<HealthReport> {
  const { sqs, s3, queueUrl, bucket, resultsPrefix } = target;

  // A one-key listing of the results prefix: what a backend's role allows (s3:ListBucket), unlike HeadBucket.
  const bucketCheck = timed("bucket", async () => {
    const data = { bucket, prefix: resultsPrefix };
    try {
      await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: resultsPrefix, MaxKeys: 1 }));
    } catch (error) {
      return [false, describe(error, `bucket s3://${bucket}`), data];
    }
    return [true, `s3://${bucket}/${resultsPrefix} reachable`, data];
  });

  let queue: HealthReport["queue"] = null;
  let policyDlq: string | undefined;
  let queueReached = false;
  const queueCheck = await timed("queue", async () => {
    let attributes: Record<string, string>;
    try {
      const names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "RedrivePolicy",
      ] as const;
      const response = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: [...names] }),
      );
      attributes = (response.Attributes ?? {}) as Record<string, string>;
    } catch (error) {
      return [false, describe(error, `queue ${queueUrl}`), { url: queueUrl }];
    }
    queueReached = true;
    const policy = JSON.parse(attributes.RedrivePolicy || "{}") as RedrivePolicy;
    if (target.dlqUrl === undefined) policyDlq = await deadLetterQueueUrl(sqs, policy);
    const maxReceiveCount = policy.maxReceiveCount === undefined ? null : Number(policy.maxReceiveCount);
    queue = {
      url: queueUrl,
      visible: count(attributes.ApproximateNumberOfMessages),
      inFlight: count(attributes.ApproximateNumberOfMessagesNotVisible),
      delayed: count(attributes.ApproximateNumberOfMessagesDelayed),
      maxReceiveCount,
      oldestMessageAgeSeconds: null,
      oldestMessageAgeNote: OLDEST_AGE_NOT_OBTAINABLE,
    };
    const data = {
      url: queueUrl,
      visible: queue.visible,
      in_flight: queue.inFlight,
      delayed: queue.delayed,
      max_receive_count: maxReceiveCount,
      oldest_age_seconds: null,
      oldest_age: OLDEST_AGE_NOT_OBTAINABLE,
    };
    return [true, `${queueUrl} reachable: ${queue.visible} waiting, ${queue.inFlight} in flight`, data];
  });

  let dlq: HealthReport["dlq"] = null;
  const dlqCheck = await timed("dlq", async () => {
    const url = target.dlqUrl ?? policyDlq;
    if (!url) {
      const why = queueReached ? "the jobs queue has no redrive policy" : "the jobs queue is not reachable";
      return [false, `not checked: ${why} and no DLQ URL was given`, {}];
    }
    try {
      const response = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["ApproximateNumberOfMessages"] }),
      );
      const visible = count(response.Attributes?.ApproximateNumberOfMessages);
      dlq = { url, visible };
      return [true, `${url} reachable: ${visible} dead letters`, { url, visible }];
    } catch (error) {
      if (DENIED.has(errorCode(error))) {
        // SQS answered for that queue; a role that may only send there cannot read its depth.
        dlq = { url, visible: null };
        return [
          true,
          `${url} answered, but its depth is not readable (no sqs:GetQueueAttributes on it)`,
          { url, visible: null },
        ];
      }
      return [false, describe(error, `DLQ ${url}`), { url }];
    }
  });

  const checks = [await bucketCheck, queueCheck, dlqCheck];
  return { healthy: checks.every((check) => check.ok), checks, queue, dlq };
}
