// A job that fails for good: uploaded in parts (multipart, with progress), refused by the worker (unknown_model),
// listed in the DLQ with the worker's attributes, redriven, and failed again; a message SQS moved itself is told
// apart. The same semantics as the Python client's dead_letters()/redrive().
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, test } from "node:test";

import { HeadObjectCommand } from "@aws-sdk/client-s3";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";

import type { DeadLetter, UploadProgress } from "@whisper-batch/client";

import { eventually } from "./support/eventually.js";
import { JFK } from "./support/paths.js";
import { client as makeClient, localStack, rawClients } from "./support/stack.js";

const stack = localStack();
const client = makeClient(stack);
const raw = rawClients(stack);
const MiB = 1024 * 1024;

after(() => {
  client.destroy();
  raw.s3.destroy();
  raw.sqs.destroy();
});

async function letterFor(jobId: string, notMessage?: string): Promise<DeadLetter> {
  return eventually(
    async () => (await client.deadLetters()).find((d) => d.jobId === jobId && d.messageId !== notMessage),
    60_000,
    `${jobId} in the DLQ`,
  );
}

test(
  "a large upload goes up in parts with progress; the job fails for good and lands in the DLQ with why",
  { timeout: 150_000 },
  async () => {
    const audio = Buffer.alloc(11 * MiB); // three 5 MiB parts
    (await readFile(JFK)).copy(audio);
    const progress: UploadProgress[] = [];
    const jobId = await client.uploadAndSubmit(
      audio,
      { job_id: "node-dlq", model: "no-such-model", formats: ["txt"] },
      { filename: "long interview.flac", onProgress: (p) => progress.push(p) },
    );

    const head = await raw.s3.send(
      new HeadObjectCommand({ Bucket: stack.bucket, Key: "audio/node-dlq/long-interview.flac" }),
    );
    assert.match(head.ETag ?? "", /-3"$/, "a multipart upload of three parts");
    assert.equal(head.ContentType, "audio/flac");
    assert.ok(progress.length >= 3, `progress reported per part: ${JSON.stringify(progress)}`);
    assert.deepEqual(progress.at(-1), { loaded: audio.length, total: audio.length });
    assert.ok(progress.every((p, i) => i === 0 || p.loaded >= (progress[i - 1] as UploadProgress).loaded));

    const failed = await client.wait(jobId, { timeout: 120_000, pollInterval: 250 });
    assert.deepEqual([failed.state, failed.succeeded, failed.errorCode], ["failed", false, "unknown_model"]);
    await assert.rejects(client.transcript(jobId), /job node-dlq failed: unknown_model/);

    const letter = await letterFor("node-dlq");
    assert.equal(letter.errorCode, "unknown_model");
    assert.ok(letter.errorMessage && letter.reason === `unknown_model: ${letter.errorMessage}`);
    assert.ok(letter.sourceMessageId);
    assert.equal(letter.receiveCount, 1);
    assert.equal(letter.movedBySqs, false);
    assert.match(letter.sentAt ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$/);
    assert.equal((JSON.parse(letter.body) as { job_id: string }).job_id, "node-dlq");
    assert.ok(
      (await client.deadLetters()).some((d) => d.messageId === letter.messageId),
      "listing leaves letters in the DLQ",
    );

    assert.deepEqual(await client.redrive(["no-such-job"]), []);
    const moved = await client.redrive(["node-dlq"]);
    assert.deepEqual(
      moved.map((d) => d.jobId),
      ["node-dlq"],
    );
    // Back on the jobs queue as a new message, the worker refuses it again: a new dead letter.
    const again = await letterFor("node-dlq", letter.messageId);
    assert.equal(again.errorCode, "unknown_model");
    assert.equal((await client.deadLetters()).filter((d) => d.jobId === "node-dlq").length, 1);
  },
);

test("a message SQS moved itself reads as moved by SQS after N receives", { timeout: 60_000 }, async () => {
  const arn = await raw.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: stack.dlqUrl, AttributeNames: ["QueueArn"] }),
  );
  const policy = { deadLetterTargetArn: arn.Attributes?.QueueArn, maxReceiveCount: "2" };
  const side = await raw.sqs.send(
    new CreateQueueCommand({ QueueName: "node-side-jobs", Attributes: { RedrivePolicy: JSON.stringify(policy) } }),
  );
  await raw.sqs.send(
    new SendMessageCommand({
      QueueUrl: side.QueueUrl,
      MessageBody: JSON.stringify({ transcriptionId: "node-moved", s3AudioUrl: "s3://b/k" }),
    }),
  );
  for (let i = 0; i < 3; i++)
    await raw.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: side.QueueUrl, VisibilityTimeout: 0, WaitTimeSeconds: 0 }),
    );

  const letter = await letterFor("node-moved");
  assert.equal(letter.movedBySqs, true);
  assert.equal(letter.errorCode, null);
  assert.equal(letter.receiveCount, 2);
  assert.equal(letter.reason, "(moved by SQS after 2 receives)");
});
