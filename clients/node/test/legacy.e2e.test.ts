// The legacy drop-in end to end: submitToCloudWorker sends a legacy job, the worker transcribes it and calls back
// the README's Express example (examples/express-webhook.ts, as is), which verifies the signature and reads the
// legacy fields.
import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { Upload } from "@aws-sdk/lib-storage";

import { customModel, JobValidationError, type LegacyCallback } from "@whisper-batch/client";
import { checkWorkerHealth, submitToCloudWorker } from "@whisper-batch/client/legacy";

import { webhookApp } from "../examples/express-webhook.js";
import { eventually } from "./support/eventually.js";
import { JFK } from "./support/paths.js";
import { client as makeClient, localStack, rawClients } from "./support/stack.js";

const stack = localStack();
const client = makeClient(stack);
const raw = rawClients(stack);
const completed: { transcriptionId: string; s3ResultUrl: string; durationSeconds: number }[] = [];
const failed: { transcriptionId: string; error: string }[] = [];
const received: { status: number; body: string }[] = [];
let server: Server;
let callbackUrl: string;

before(async () => {
  const app = webhookApp(stack.secret, {
    completed: (transcriptionId, s3ResultUrl, durationSeconds) =>
      void completed.push({ transcriptionId, s3ResultUrl, durationSeconds }),
    failed: (transcriptionId, error) => void failed.push({ transcriptionId, error }),
  });
  server = app.listen(0, "127.0.0.1");
  server.on("request", (req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    res.on("finish", () => received.push({ status: res.statusCode, body }));
  });
  await new Promise((resolve) => server.once("listening", resolve));
  callbackUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/stt`;
  await new Upload({
    client: raw.s3,
    params: { Bucket: stack.bucket, Key: "audio/legacy/jfk.flac", Body: createReadStream(JFK) },
  }).done();
});

after(() => {
  server.close();
  client.destroy();
  raw.s3.destroy();
  raw.sqs.destroy();
});

test(
  "a legacy job is transcribed, waited for, and its signed legacy callback reaches the Express route",
  { timeout: 180_000 },
  async () => {
    const outcome = await submitToCloudWorker(
      {
        transcriptionId: "node-legacy-1",
        userId: "u-9",
        s3AudioUrl: `s3://${stack.bucket}/audio/legacy/jfk.flac`,
        model: "TINY.EN",
        format: "SRT",
        callbackUrl,
      },
      { wait: { timeout: 150_000 }, client },
    );
    const srtUrl = `s3://${stack.bucket}/results/node-legacy-1/transcript.srt`;
    assert.equal(outcome.success, true);
    assert.equal(outcome.transcriptionId, "node-legacy-1");
    assert.equal(outcome.s3ResultUrl, srtUrl);
    assert.equal(outcome.language, "en");
    assert.ok(outcome.durationSeconds !== null && outcome.durationSeconds > 10 && outcome.durationSeconds < 12);
    assert.ok(outcome.processingTime !== null && outcome.processingTime > 0);

    const done = await eventually(() => completed.find((c) => c.transcriptionId === "node-legacy-1"));
    assert.equal(done.s3ResultUrl, srtUrl);
    assert.equal(done.durationSeconds, outcome.durationSeconds);
    const delivery = received.find((r) => r.status === 204 && r.body.includes("node-legacy-1"));
    assert.ok(delivery, "the route answered 204");
    const event = JSON.parse(delivery.body) as LegacyCallback & { job_id: string };
    assert.equal(event.status, "COMPLETED");
    assert.equal(event.userId, "u-9");
    assert.equal(event.job_id, "node-legacy-1");
    assert.deepEqual(event.metadata, { userId: "u-9" });
    assert.equal(failed.length, 0);

    // result.json records the delivery once the route has answered.
    assert.equal(
      await eventually(async () => (await client.result("node-legacy-1")).callback?.delivered || undefined),
      true,
    );
  },
);

test(
  "a legacy job that fails returns success: false, and its callback says FAILED with the message",
  { timeout: 90_000 },
  async () => {
    const outcome = await submitToCloudWorker(
      {
        transcriptionId: "node-legacy-fail",
        userId: "u-9",
        s3AudioUrl: `s3://${stack.bucket}/audio/legacy/jfk.flac`,
        model: customModel("NO-SUCH-MODEL"),
        format: "SRT",
        callbackUrl,
      },
      { wait: { timeout: 60_000 }, client },
    );
    assert.equal(outcome.success, false);
    assert.equal(outcome.errorCode, "unknown_model");
    assert.equal(outcome.s3ResultUrl, null);
    assert.ok(typeof outcome.error === "string" && outcome.error.length > 0);

    const failure = await eventually(() => failed.find((f) => f.transcriptionId === "node-legacy-fail"));
    assert.equal(failure.error, outcome.error);
    const delivery = received.find((r) => r.status === 204 && r.body.includes("node-legacy-fail"));
    assert.ok(delivery, "the route answered 204");
    const event = JSON.parse(delivery.body) as LegacyCallback;
    assert.deepEqual(
      [event.status, event.error, event.error_code, event.s3ResultUrl],
      ["FAILED", outcome.error, "unknown_model", null],
    );
  },
);

test("the Express route refuses a forged callback with 400", async () => {
  const body = JSON.stringify({ transcriptionId: "node-legacy-1", status: "FAILED", error: "forged" });
  const response = await fetch(callbackUrl, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": "x",
      "webhook-timestamp": String(Math.floor(Date.now() / 1000)),
      "webhook-signature": "v1,AAAA",
    },
    body,
  });
  assert.equal(response.status, 400);
  assert.ok(!failed.some((f) => f.error === "forged"), "the route did nothing with it");
});

test("a legacy job that breaks the contract names the legacy field and is not sent", async () => {
  await assert.rejects(
    submitToCloudWorker(
      { transcriptionId: "node legacy", s3AudioUrl: "s3://bucket", format: "DOC" as "SRT" },
      { client },
    ),
    (error: unknown) => {
      assert.ok(error instanceof JobValidationError);
      assert.deepEqual(error.errors.map((e) => e.field).sort(), ["format", "s3AudioUrl", "transcriptionId"]);
      return true;
    },
  );
  const queued = await submitToCloudWorker(
    {
      transcriptionId: "node-legacy-nowait",
      s3AudioUrl: `s3://${stack.bucket}/audio/legacy/jfk.flac`,
      model: "tiny.en",
      format: "txt",
    },
    { client },
  );
  assert.deepEqual(queued, { success: true, transcriptionId: "node-legacy-nowait", jobId: "node-legacy-nowait" });
});

test("checkWorkerHealth reports the deployment healthy", async () => {
  const health = await checkWorkerHealth({ client });
  assert.equal(health.healthy, true, JSON.stringify(health.checks));
  assert.deepEqual(
    health.checks.map((c) => c.name),
    ["bucket", "queue", "dlq"],
  );
});
