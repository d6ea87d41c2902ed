/**
 * Reading and redriving the dead-letter queue from the backend's side: the Python client's
 * `worker/client/deadletters.py`, the same semantics and the same message attributes.
 *
 * A message reaches the DLQ one of two ways:
 * - the worker put it there after a permanent failure, with message attributes `error_code`, `error_message`,
 *   `source_message_id` and `receive_count`;
 * - SQS moved it after `maxReceiveCount` receives (transient failures that never passed, a worker killed again
 *   and again): no attributes, only SQS's own `ApproximateReceiveCount`.
 *
 * A settled letter (`worker/client/settle.py`: the settle Lambda or `whisper-worker dlq settle`) waits in the
 * settled-letters queue instead, with the same attributes plus `settled_at` (and `job_status`): its job has a final
 * `result.json` (`worker_lost` when its last worker died) and its failure callback went out. It is listed and
 * redriven like any other; its `settledAt` says it came from there.
 *
 * SQS has no "peek": listing receives the messages, keeping them invisible while we look, and hands them back
 * (visibility 0) afterwards. Each listing therefore adds one to `ApproximateReceiveCount`; the count shown for a
 * message SQS moved discounts our own receive, not earlier listings.
 */

import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
  type SQSClient,
} from "@aws-sdk/client-sqs";

import { SQS_MAX_BATCH, fifoParams } from "./aws.js";
import { isJobId } from "./contract/validate.js";

export const HOLD_SECONDS = 300; // how long listed messages stay invisible at most, should we die before handing back
export const SCAN_LIMIT = 10_000; // how many messages one redrive looks through at most

export interface DeadLetter {
  messageId: string;
  /** From the body, when it names a valid one (`job_id`, or `transcriptionId` in the legacy shape). */
  jobId: string | null;
  /** The worker's failure code; null when SQS moved it. */
  errorCode: string | null;
  errorMessage: string | null;
  /** The message's id on the jobs queue. */
  sourceMessageId: string | null;
  /** Receives on the jobs queue before it landed here. */
  receiveCount: number | null;
  movedBySqs: boolean;
  /** When it entered the DLQ (SQS moves keep the original send time), ISO 8601. */
  sentAt: string | null;
  /** `error_code: error_message`, or `(moved by SQS after N receives)`. */
  reason: string;
  body: string;
  receiptHandle: string;
  /** When it was settled and moved to the settled-letters queue, ISO 8601; null for a letter still in the DLQ. */
  settledAt: string | null;
}

/** A DeadLetter from one ReceiveMessage entry (asked with all message and system attributes). */
export function parseDeadLetter(raw: Message): DeadLetter {
  const attributes: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(raw.MessageAttributes ?? {})) attributes[name] = value.StringValue;
  const system = (raw.Attributes ?? {}) as Record<string, string | undefined>;
  const body = raw.Body ?? "";
  const movedBySqs = !("error_code" in attributes);
  let receiveCount: number | null;
  if (movedBySqs) {
    const received = toInt(system.ApproximateReceiveCount);
    receiveCount = received ? Math.max(received - 1, 1) : null; // minus this very receive
  } else {
    receiveCount = toInt(attributes.receive_count);
  }
  const sentMs = toInt(system.SentTimestamp);
  const errorCode = attributes.error_code ?? null;
  const errorMessage = attributes.error_message ?? null;
  const after = receiveCount ? ` after ${receiveCount} receives` : "";
  return {
    messageId: raw.MessageId ?? "",
    jobId: jobIdOf(body),
    errorCode,
    errorMessage,
    sourceMessageId: attributes.source_message_id ?? null,
    receiveCount,
    movedBySqs,
    sentAt: sentMs ? utcTimestamp(sentMs) : null,
    reason: movedBySqs ? `(moved by SQS${after})` : `${errorCode}: ${errorMessage}`,
    body,
    receiptHandle: raw.ReceiptHandle ?? "",
    settledAt: attributes.settled_at ?? null,
  };
}

/** The job id of a body that may be broken: the worker's `best_effort_ids`, job id part only. */
export function jobIdOf(body: string): string | null {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) return null;
  const fields = data as Record<string, unknown>;
  const legacy = "transcriptionId" in fields || "s3AudioUrl" in fields;
  for (const key of legacy ? ["transcriptionId", "job_id"] : ["job_id", "transcriptionId"]) {
    if (isJobId(fields[key])) return fields[key];
  }
  return null;
}

function toInt(value: unknown): number | null {
  if (typeof value !== "string" && typeof value !== "number") return null;
  const number = Number(value);
  return Number.isInteger(number) ? number : null;
}

/** Epoch milliseconds as the worker dates documents: ISO 8601, seconds, `+00:00`. */
function utcTimestamp(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}+00:00`;
}

/**
 * The DLQ (or the settled-letters queue), through one SQS client: hold its messages to look at them, move some back,
 * release the rest.
 */
export class DeadLetterQueue {
  private readonly moved = new Set<string>();

  constructor(
    private readonly sqs: SQSClient,
    readonly url: string,
  ) {}

  /** Receive up to `limit` messages and hand them to `use`; afterwards every one not moved is handed back. */
  async held<T>(limit: number | undefined, use: (letters: DeadLetter[]) => Promise<T>): Promise<T> {
    const letters: DeadLetter[] = [];
    this.moved.clear();
    try {
      await this.receiveInto(letters, limit ?? SCAN_LIMIT);
      return await use(letters);
    } finally {
      await this.release(letters.filter((letter) => !this.moved.has(letter.messageId)));
    }
  }

  /** Send the original body to `queueUrl` as a new message, then delete it here (at least once). */
  async move(letter: DeadLetter, queueUrl: string): Promise<void> {
    const group = letter.jobId ?? letter.messageId;
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        MessageBody: letter.body,
        ...fifoParams(queueUrl, group, letter.messageId),
      }),
    );
    await this.sqs.send(new DeleteMessageCommand({ QueueUrl: this.url, ReceiptHandle: letter.receiptHandle }));
    this.moved.add(letter.messageId);
  }

  private async receiveInto(letters: DeadLetter[], limit: number): Promise<void> {
    const seen = new Set<string>();
    while (letters.length < limit) {
      const response = await this.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: this.url,
          MaxNumberOfMessages: Math.min(SQS_MAX_BATCH, limit - letters.length),
          WaitTimeSeconds: 1, // a long poll asks every SQS server; a short one may miss messages
          VisibilityTimeout: HOLD_SECONDS,
          MessageAttributeNames: ["All"],
          MessageSystemAttributeNames: ["All"],
        }),
      );
      const fresh = (response.Messages ?? []).filter((raw) => !seen.has(raw.MessageId ?? ""));
      if (fresh.length === 0) return;
      for (const raw of fresh) {
        seen.add(raw.MessageId ?? "");
        letters.push(parseDeadLetter(raw));
      }
    }
  }

  private async release(letters: DeadLetter[]): Promise<void> {
    for (let start = 0; start < letters.length; start += SQS_MAX_BATCH) {
      const batch = letters.slice(start, start + SQS_MAX_BATCH);
      await this.sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.url,
          Entries: batch.map((letter, i) => ({
            Id: String(i),
            ReceiptHandle: letter.receiptHandle,
            VisibilityTimeout: 0,
          })),
        }),
      );
    }
  }
}
