// TranscriptionClient against moto's server and a real worker process: upload, submit, follow, fetch, refuse an
// invalid job before anything is uploaded, merge worker progress with the result, connect from a stack or the env.
import assert from "node:assert/strict";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { CloudFormationClient, CreateStackCommand } from "@aws-sdk/client-cloudformation";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { CreateQueueCommand } from "@aws-sdk/client-sqs";

import {
  ConfigurationError,
  JobNotFound,
  JobValidationError,
  TranscriptionClient,
  WaitTimeout,
  type JobStatus,
} from "@whisper-batch/client";

import { JFK, SPOKEN } from "./support/paths.js";
import { assertWorkerAlive, client as makeClient, localStack, rawClients } from "./support/stack.js";

const JOB_TIMEOUT = 150_000;
const stack = localStack();
const client = makeClient(stack);
const raw = rawClients(stack);

after(() => {
  client.destroy();
  raw.s3.destroy();
  raw.sqs.destroy();
});

describe("a job through the Node.js client", { timeout: JOB_TIMEOUT + 30_000 }, () => {
  let jobId: string;
  const seen: JobStatus[] = [];
  const uploaded: number[] = [];

  before(async () => {
    jobId = await client.uploadAndSubmit(
      JFK,
      { job_id: "node-jfk", model: "TINY.EN", formats: ["json", "srt", "txt"], metadata: { interview_id: 42 } },
      { onProgress: (p) => uploaded.push(p.loaded) },
    );
    await client.wait(jobId, {
      timeout: JOB_TIMEOUT,
      pollInterval: 250,
      onProgress: (s) => (assertWorkerAlive(stack), seen.push(s)),
    });
  });

  test("uploads under audio/<job_id>/, is transcribed, and wait() ends completed", async () => {
    assert.equal(jobId, "node-jfk");
    assert.equal(uploaded.at(-1), (await readFile(JFK)).length);
    const last = seen.at(-1) as JobStatus;
    assert.equal(last.state, "completed");
    assert.ok(last.succeeded && last.done && last.percent === 100);
    assert.deepEqual(last.result?.metadata, { interview_id: 42 });
    assert.equal(last.result?.model, "tiny.en");
    const listing = await raw.s3.send(new ListObjectsV2Command({ Bucket: stack.bucket, Prefix: "audio/node-jfk/" }));
    assert.deepEqual(
      listing.Contents?.map((o) => o.Key),
      ["audio/node-jfk/jfk.flac"],
    );
  });

  test("transcript(), text() and download() return what the worker wrote", async () => {
    const transcript = await client.transcript(jobId);
    assert.ok(transcript.text.toLowerCase().includes(SPOKEN), transcript.text);
    assert.ok(transcript.segments.length > 0);
    assert.ok((await client.text(jobId)).toLowerCase().includes(SPOKEN));
    const dir = await mkdtemp(join(tmpdir(), "whisper-node-"));
    const path = await client.download(jobId, "srt", dir);
    assert.equal(path, join(dir, "node-jfk.srt"));
    assert.match(await readFile(path, "utf8"), /00:00:00,000 --> /);
    const named = await client.download(jobId, "txt", join(dir, "sub", "words.txt"));
    assert.ok((await readFile(named, "utf8")).toLowerCase().includes(SPOKEN));
    await assert.rejects(
      client.download(jobId, "vtt", dir),
      (e: unknown) => e instanceof JobNotFound && /no vtt transcript; it produced json, srt, txt/.test(e.message),
    );
  });
});

test("an invalid job names its fields and nothing is uploaded or sent", async () => {
  await assert.rejects(
    client.uploadAndSubmit(JFK, { job_id: "node-invalid", formats: ["srt", "doc" as "srt"], beam_size: 11 }),
    (error: unknown) => {
      assert.ok(error instanceof JobValidationError);
      assert.deepEqual(error.errors.map((e) => e.field).sort(), ["beam_size", "formats.1"]);
      return true;
    },
  );
  await assert.rejects(
    client.submit({ audio: "ftp://host/a.mp3" }),
    (e: unknown) => e instanceof JobValidationError && e.errors[0]?.field === "audio",
  );
  await assert.rejects(client.uploadAndSubmit(JFK, { job_id: "not a valid id" }), /job_id/);
  await assert.rejects(client.uploadAndSubmit("no-such-file.flac", {}), /no-such-file.flac is not a file/);
  await assert.rejects(client.status("../secrets"), /invalid job id '\.\.\/secrets'/);
  const listing = await raw.s3.send(new ListObjectsV2Command({ Bucket: stack.bucket, Prefix: "audio/node-invalid/" }));
  assert.equal(listing.KeyCount ?? 0, 0);
  const anything = await raw.s3.send(new ListObjectsV2Command({ Bucket: stack.bucket, Prefix: "audio/not" }));
  assert.equal(anything.KeyCount ?? 0, 0);
});

test("an unknown id is not found at once; a submitted one is queued; wait() times out with the last state", async () => {
  await assert.rejects(client.status("never-submitted"), (error: unknown) => {
    assert.ok(error instanceof JobNotFound);
    assert.match(error.message, /never-submitted was never submitted/);
    return true;
  });
  // wait() does not poll an unknown id for its timeout: it fails on the first look.
  await assert.rejects(client.wait("never-submitted", { timeout: 3_600_000, pollInterval: 100 }), JobNotFound);
  await assert.rejects(client.transcript("never-submitted"), /has no result yet \(state: never submitted\)/);

  // Sent to a queue no worker reads: its marker makes it queued, and it stays so.
  const idleQueue = (await raw.sqs.send(new CreateQueueCommand({ QueueName: "node-nobody-works-this" }))).QueueUrl;
  const idle = new TranscriptionClient({ queueUrl: idleQueue, bucket: stack.bucket, endpoint: stack.endpointUrl });
  const jobId = await idle.submit({ audio: `s3://${stack.bucket}/audio/none.flac` });
  const marker = await raw.s3.send(new GetObjectCommand({ Bucket: stack.bucket, Key: `results/${jobId}/queued.json` }));
  assert.equal(JSON.parse(await marker.Body!.transformToString()).job_id, jobId);
  assert.equal((await idle.status(jobId)).state, "queued");
  await assert.rejects(idle.wait(jobId, { timeout: 300, pollInterval: 100 }), (error: unknown) => {
    assert.ok(error instanceof WaitTimeout);
    assert.equal(error.status.state, "queued");
    assert.match(error.message, new RegExp(`${jobId} still queued after 0.3 s`));
    return true;
  });
  idle.destroy();
});

test("status() merges the worker's progress with the result as the Python client does", async () => {
  const put = (name: string, body: unknown): Promise<unknown> =>
    raw.s3.send(
      new PutObjectCommand({
        Bucket: stack.bucket,
        Key: `results/node-synthetic/${name}`,
        Body: typeof body === "string" ? body : JSON.stringify(body),
      }),
    );
  const progress = (state: string, percent: number | null, at: string): Record<string, unknown> => ({
    job_id: "node-synthetic",
    state,
    percent,
    updated_at: at,
  });
  const status = (): Promise<JobStatus> => client.status("node-synthetic");

  await put("status.json", progress("transcribing", 42.5, "2026-01-01T00:00:10.123456+00:00"));
  assert.deepEqual([(await status()).state, (await status()).percent], ["transcribing", 42.5]);
  await put("status.json", progress("completed", 100, "2026-01-01T00:00:20+00:00"));
  assert.equal((await status()).state, "storing"); // result.json is not readable yet
  await put("result.json", {
    status: "failed",
    finished_at: "2026-01-01T00:00:20+00:00",
    error: { code: "empty_audio", message: "zero bytes" },
  });
  const failed = await status();
  assert.deepEqual(
    [failed.state, failed.done, failed.errorCode, failed.errorMessage],
    ["failed", true, "empty_audio", "zero bytes"],
  );
  await put("status.json", progress("fetching", null, "2026-01-02T09:00:00+00:00")); // the same id sent again
  assert.deepEqual([(await status()).state, (await status()).done], ["fetching", false]);
  await put("status.json", "{half written");
  assert.equal((await status()).state, "failed");
});

test("fromStack reads the stack's outputs; fromEnv reads the environment", async () => {
  const cloudformation = new CloudFormationClient({ region: "us-east-1", endpoint: stack.endpointUrl });
  const template = {
    Resources: { Marker: { Type: "AWS::SQS::Queue", Properties: { QueueName: "whisper-node-stack-marker" } } },
    Outputs: {
      QueueUrl: { Value: stack.queueUrl },
      DlqUrl: { Value: stack.dlqUrl },
      SettledLettersUrl: { Value: `${stack.endpointUrl}/123456789012/whisper-node-settled` },
      BucketName: { Value: stack.bucket },
      ApiUrl: { Value: "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/" },
    },
  };
  await cloudformation.send(
    new CreateStackCommand({ StackName: "WhisperBatchNode", TemplateBody: JSON.stringify(template) }),
  );
  cloudformation.destroy();

  const fromStack = await TranscriptionClient.fromStack("WhisperBatchNode", { endpointUrl: stack.endpointUrl });
  assert.deepEqual(
    [fromStack.queueUrl, fromStack.bucket, await fromStack.dlqUrl()],
    [stack.queueUrl, stack.bucket, stack.dlqUrl],
  );
  assert.equal(fromStack.settledUrl, `${stack.endpointUrl}/123456789012/whisper-node-settled`);
  assert.equal(fromStack.stackOutputs.ApiUrl, "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/");
  assert.equal(fromStack.api, undefined);
  assert.equal((await fromStack.status("node-synthetic")).state, "failed");
  const viaApi = await TranscriptionClient.fromStack("WhisperBatchNode", { endpointUrl: stack.endpointUrl, api: true });
  assert.equal(viaApi.api?.url.href, "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/");
  await assert.rejects(
    TranscriptionClient.fromStack("Elsewhere", { endpointUrl: stack.endpointUrl }),
    (e: unknown) => e instanceof ConfigurationError && /'Elsewhere' does not exist/.test(e.message),
  );
  fromStack.destroy();
  viaApi.destroy();

  const env = {
    WHISPER_QUEUE_URL: stack.queueUrl,
    WHISPER_RESULTS_BUCKET: stack.bucket,
    AWS_ENDPOINT_URL: stack.endpointUrl,
    AWS_REGION: "us-east-1",
  };
  const fromEnv = TranscriptionClient.fromEnv(env);
  assert.equal(await fromEnv.dlqUrl(), stack.dlqUrl); // found through the queue's redrive policy
  assert.equal(fromEnv.settledUrl, undefined); // no settled-letters queue: dead letters are read from the DLQ only
  const withSettled = TranscriptionClient.fromEnv({ ...env, WHISPER_SETTLED_URL: "http://127.0.0.1:1/q/settled" });
  assert.equal(withSettled.settledUrl, "http://127.0.0.1:1/q/settled");
  withSettled.destroy();
  assert.equal((await fromEnv.status("node-synthetic")).state, "failed");
  fromEnv.destroy();
  assert.throws(
    () => TranscriptionClient.fromEnv({ WHISPER_RESULTS_BUCKET: "b" }),
    /no jobs queue: set WHISPER_QUEUE_URL/,
  );
  assert.throws(() => TranscriptionClient.fromEnv({ WHISPER_QUEUE_URL: "q" }), ConfigurationError);
});
