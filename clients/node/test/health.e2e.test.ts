// checkHealth on queues whose contents the test controls: waiting and in-flight counts, the DLQ found through the
// redrive policy and its depth; and a deployment that is not there, reported check by check.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";

import { OLDEST_AGE_NOT_OBTAINABLE, TranscriptionClient } from "@whisper-batch/client";

import { localStack, rawClients } from "./support/stack.js";

const stack = localStack();
const raw = rawClients(stack);

after(() => {
  raw.s3.destroy();
  raw.sqs.destroy();
});

test("counts waiting and in-flight messages and the DLQ's depth", async () => {
  const dlq = await raw.sqs.send(new CreateQueueCommand({ QueueName: "node-health-dlq" }));
  const arn = await raw.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ["QueueArn"] }),
  );
  const policy = JSON.stringify({ deadLetterTargetArn: arn.Attributes?.QueueArn, maxReceiveCount: "5" });
  const jobs = await raw.sqs.send(
    new CreateQueueCommand({ QueueName: "node-health-jobs", Attributes: { RedrivePolicy: policy } }),
  );
  for (let i = 0; i < 3; i++)
    await raw.sqs.send(new SendMessageCommand({ QueueUrl: jobs.QueueUrl, MessageBody: `{"n": ${i}}` }));
  await raw.sqs.send(
    new ReceiveMessageCommand({ QueueUrl: jobs.QueueUrl, MaxNumberOfMessages: 1, VisibilityTimeout: 300 }),
  );
  await raw.sqs.send(new SendMessageCommand({ QueueUrl: dlq.QueueUrl, MessageBody: "{}" }));

  const client = new TranscriptionClient({
    queueUrl: jobs.QueueUrl,
    bucket: stack.bucket,
    endpointUrl: stack.endpointUrl,
    region: "us-east-1",
  });
  const report = await client.checkHealth();
  client.destroy();
  assert.equal(report.healthy, true, JSON.stringify(report.checks));
  assert.deepEqual(
    report.checks.map((c) => [c.name, c.ok]),
    [
      ["bucket", true],
      ["queue", true],
      ["dlq", true],
    ],
  );
  assert.deepEqual(report.queue, {
    url: jobs.QueueUrl,
    visible: 2,
    inFlight: 1,
    delayed: 0,
    maxReceiveCount: 5,
    oldestMessageAgeSeconds: null,
    oldestMessageAgeNote: OLDEST_AGE_NOT_OBTAINABLE,
  });
  assert.deepEqual(report.dlq, { url: dlq.QueueUrl, visible: 1 });
  const queueCheck = report.checks[1];
  assert.equal(queueCheck?.detail, `${jobs.QueueUrl} reachable: 2 waiting, 1 in flight`);
  assert.equal(queueCheck?.in_flight, 1);
  assert.equal(report.checks[2]?.detail, `${dlq.QueueUrl} reachable: 1 dead letters`);
});

test("a deployment that is not there is unhealthy, and each check says why", async () => {
  const client = new TranscriptionClient({
    queueUrl: `${stack.endpointUrl}/123456789012/no-such-queue`,
    bucket: "no-such-bucket",
    endpointUrl: stack.endpointUrl,
    region: "us-east-1",
  });
  const report = await client.checkHealth();
  client.destroy();
  assert.equal(report.healthy, false);
  const [bucket, queue, dlq] = report.checks;
  assert.match(bucket?.detail ?? "", /^bucket s3:\/\/no-such-bucket does not exist \(NoSuchBucket\)$/);
  assert.match(queue?.detail ?? "", /no-such-queue does not exist \(/);
  assert.equal(dlq?.detail, "not checked: the jobs queue is not reachable and no DLQ URL was given");
  assert.equal(report.queue, null);
});
