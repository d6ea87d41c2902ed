// A job that fails for good: uploaded in parts (multipart, with progress), refused by the worker (unknown_model),
// listed in the DLQ with the worker's attributes, redriven, and failed again; a message SQS moved itself is told
// apart; a letter settled by the real `whisper-worker dlq settle` is listed and redriven from the settled-letters
// queue. The same semantics as the Python client's dead_letters()/redrive().
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, test } from "node:test";

import { HeadObjectCommand } from "@aws-sdk/client-s3";
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";

import { customModel, TranscriptionClient, type DeadLetter, type UploadProgress } from "@whisper-batch/client";

import { eventually } from "./support/eventually.js";
import { JFK } from "./support/paths.js";
import { python } from "./support/python.js";
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
      { job_id: "node-dlq", model: customModel("no-such-model"), formats: ["txt"] },
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

/** A fresh queue on the suite's moto; its URL and ARN. */
async function createQueue(
  name: string,
  attributes: Record<string, string> = {},
): Promise<{ url: string; arn: string }> {
  const created = await raw.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  const url = created.QueueUrl ?? "";
  const got = await raw.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }));
  return { url, arn: got.Attributes?.QueueArn ?? "" };
}

/** Visible plus in-flight messages. */
async function depth(url: string): Promise<number> {
  const got = await raw.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["All"] }));
  const attributes = got.Attributes ?? {};
  return Number(attributes.ApproximateNumberOfMessages) + Number(attributes.ApproximateNumberOfMessagesNotVisible);
}

/** Send `body` to `jobs` and receive it until SQS itself moves it to the DLQ (a worker killed on every try). */
async function movedBySqs(jobs: string, dlq: string, body: string, receives: number): Promise<string> {
  const before = await depth(dlq);
  const sent = await raw.sqs.send(new SendMessageCommand({ QueueUrl: jobs, MessageBody: body }));
  for (let i = 0; i <= receives; i++)
    await raw.sqs.send(new ReceiveMessageCommand({ QueueUrl: jobs, VisibilityTimeout: 0, WaitTimeSeconds: 0 }));
  await eventually(async () => ((await depth(dlq)) > before ? true : undefined), 10_000, "SQS's move to the DLQ");
  return sent.MessageId ?? "";
}

test(
  "settled letters: `whisper-worker dlq settle` moves one to the settled-letters queue; it is listed and redriven " +
    "with the DLQ's, and without settledUrl only the DLQ is read",
  { timeout: 120_000 },
  async () => {
    // Queues of this test's own, so settling touches no other test's letters and redriven jobs reach no worker.
    const dlq = await createQueue("node-settle-dlq");
    const settled = await createQueue("node-settle-settled");
    const policy = { deadLetterTargetArn: dlq.arn, maxReceiveCount: "2" };
    const jobs = await createQueue("node-settle-jobs", { RedrivePolicy: JSON.stringify(policy) });
    const connection = {
      queueUrl: jobs.url,
      bucket: stack.bucket,
      endpointUrl: stack.endpointUrl,
      region: "us-east-1",
    };
    const both = new TranscriptionClient({ ...connection, dlqUrl: dlq.url, settledUrl: settled.url });
    const dlqOnly = new TranscriptionClient({ ...connection, dlqUrl: dlq.url });
    try {
      const lostBody = JSON.stringify({
        job_id: "node-settled",
        audio: `s3://${stack.bucket}/audio/node-settled/a.flac`,
      });
      const lostId = await movedBySqs(jobs.url, dlq.url, lostBody, 2);

      // The real settle, as the settle Lambda or an operator runs it: a final result.json, then the settled queue.
      const out = await python([
        "-m",
        "worker.cli",
        "dlq",
        "settle",
        "--json",
        "--allow-http",
        "--allow-private-urls",
        ...["--queue-url", jobs.url, "--bucket", stack.bucket, "--dlq-url", dlq.url, "--settled-url", settled.url],
        ...["--endpoint-url", stack.endpointUrl, "--region", "us-east-1"],
      ]);
      const outcomes = out
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.deepEqual(
        outcomes.map((o) => [o.job_id, o.action, o.status, o.error_code, o.forwarded]),
        [["node-settled", "settled", "failed", "worker_lost", true]],
      );
      assert.deepEqual([await depth(dlq.url), await depth(settled.url)], [0, 1]);
      const status = await both.status("node-settled");
      assert.deepEqual([status.state, status.errorCode], ["failed", "worker_lost"]);

      // A second one SQS moves later stays unsettled in the DLQ.
      const pendingBody = JSON.stringify({ job_id: "node-unsettled", audio: "s3://b/k.flac" });
      await movedBySqs(jobs.url, dlq.url, pendingBody, 2);

      // Backwards compatible: no settledUrl, the DLQ only.
      assert.equal(dlqOnly.settledUrl, undefined);
      assert.deepEqual(
        (await dlqOnly.deadLetters()).map((d) => [d.jobId, d.settledAt]),
        [["node-unsettled", null]],
      );

      // Both queues, the DLQ first; the settled letter carries the settle's attributes.
      const letters = await both.deadLetters();
      assert.deepEqual(
        letters.map((d) => d.jobId),
        ["node-unsettled", "node-settled"],
      );
      const [pending, lost] = letters as [DeadLetter, DeadLetter];
      assert.deepEqual([pending.movedBySqs, pending.errorCode, pending.settledAt], [true, null, null]);
      assert.equal(lost.errorCode, "worker_lost");
      assert.equal(lost.movedBySqs, false);
      assert.match(lost.errorMessage ?? "", /^the last worker holding this message stopped before finishing it/);
      assert.equal(lost.reason, `worker_lost: ${lost.errorMessage}`);
      assert.equal(lost.sourceMessageId, lostId, "its id on the jobs queue, which its result.json names");
      assert.equal(lost.receiveCount, 2);
      assert.match(lost.settledAt ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/);
      assert.equal(lost.body, lostBody);
      assert.deepEqual(
        (await both.deadLetters(1)).map((d) => d.jobId),
        ["node-unsettled"],
        "the limit counts across both queues",
      );

      // The Python client reads the settled letter the same way.
      const listed = (
        await python([
          "-m",
          "worker.cli",
          "dlq",
          "list",
          "--json",
          ...["--queue-url", jobs.url, "--bucket", stack.bucket, "--dlq-url", dlq.url, "--settled-url", settled.url],
          ...["--endpoint-url", stack.endpointUrl, "--region", "us-east-1"],
        ])
      )
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const pythonLost = listed.find((d) => d.job_id === "node-settled");
      assert.deepEqual(
        [
          pythonLost?.message_id,
          pythonLost?.error_code,
          pythonLost?.error_message,
          pythonLost?.source_message_id,
          pythonLost?.receive_count,
          pythonLost?.moved_by_sqs,
          pythonLost?.settled_at,
          pythonLost?.reason,
        ],
        [
          lost.messageId,
          lost.errorCode,
          lost.errorMessage,
          lost.sourceMessageId,
          lost.receiveCount,
          lost.movedBySqs,
          lost.settledAt,
          lost.reason,
        ],
      );

      // Redriving a settled letter: back on the jobs queue with its original body, gone from the settled queue.
      assert.deepEqual(
        (await both.redrive(["node-settled"])).map((d) => [d.jobId, d.settledAt !== null]),
        [["node-settled", true]],
      );
      assert.deepEqual([await depth(dlq.url), await depth(settled.url)], [1, 0]);
      const back = await raw.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: jobs.url, WaitTimeSeconds: 1, MaxNumberOfMessages: 10 }),
      );
      assert.deepEqual(
        (back.Messages ?? []).map((m) => m.Body),
        [lostBody],
      );
      for (const message of back.Messages ?? [])
        await raw.sqs.send(new DeleteMessageCommand({ QueueUrl: jobs.url, ReceiptHandle: message.ReceiptHandle }));

      // Redriving all: what is left in either queue.
      assert.deepEqual(
        (await both.redrive()).map((d) => d.jobId),
        ["node-unsettled"],
      );
      assert.deepEqual([await depth(dlq.url), await depth(settled.url), await depth(jobs.url)], [0, 0, 1]);
      assert.deepEqual(await both.deadLetters(), []);
    } finally {
      both.destroy();
      dlqOnly.destroy();
    }
  },
);
