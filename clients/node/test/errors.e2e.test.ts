// What a backend catches, against moto and a closed port: every error a TranscriptionError, AWS's code and HTTP
// status only when AWS answered, an abort reported as Aborted by every call, a mistyped id found out at once, an
// oversized metadata refused before it is serialised, and callback URLs the worker would skip refused up front.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, test } from "node:test";

import { CreateQueueCommand } from "@aws-sdk/client-sqs";

import {
  Aborted,
  InsecureCallbackUrl,
  isPublicAddress,
  JobNotFound,
  JobValidationError,
  ServiceError,
  TranscriptionClient,
  TranscriptionError,
} from "@whisper-batch/client";
import { submitToCloudWorker } from "@whisper-batch/client/legacy";

import { python } from "./support/python.js";
import { localStack, rawClients } from "./support/stack.js";

const stack = localStack();
const strict = new TranscriptionClient({ queueUrl: stack.queueUrl, bucket: stack.bucket, endpoint: stack.endpointUrl });

after(() => strict.destroy());

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test("a refused connection is a ServiceError with no AWS code or HTTP status", async () => {
  const port = await closedPort();
  const client = new TranscriptionClient({
    queueUrl: stack.queueUrl,
    bucket: stack.bucket,
    endpoint: `http://127.0.0.1:${port}`,
    maxAttempts: 1,
  });
  await assert.rejects(client.status("some-job"), (error: unknown) => {
    assert.ok(error instanceof ServiceError);
    assert.equal(error.awsCode, undefined);
    assert.equal(error.httpStatus, undefined);
    return true;
  });
  client.destroy();
});

test("a missing bucket carries AWS's code and HTTP status", async () => {
  const client = new TranscriptionClient({
    queueUrl: stack.queueUrl,
    bucket: "no-such-bucket",
    endpoint: stack.endpointUrl,
  });
  await assert.rejects(client.status("some-job"), (error: unknown) => {
    assert.ok(error instanceof ServiceError);
    assert.equal(error.awsCode, "NoSuchBucket");
    assert.equal(error.httpStatus, 404);
    return true;
  });
  client.destroy();
});

test("an aborted call rejects with Aborted, a TranscriptionError named AbortError", async () => {
  const gone = AbortSignal.abort(new Error("the request was cancelled"));
  for (const call of [
    strict.status("some-job", { signal: gone }),
    strict.submit({ audio: `s3://${stack.bucket}/a.flac` }, { signal: gone }),
    strict.readTranscript("some-job", "srt", { signal: gone }),
    strict.checkHealth({ signal: gone }),
    strict.deadLetters(10, { signal: gone }),
  ]) {
    await assert.rejects(call, (error: unknown) => {
      assert.ok(error instanceof Aborted && error instanceof TranscriptionError);
      assert.equal(error.name, "AbortError");
      return true;
    });
  }
  // Mid-wait: a job that stays queued (a queue no worker reads), abandoned while wait() sleeps.
  const controller = new AbortController();
  const raw = rawClients(stack);
  const unread = (await raw.sqs.send(new CreateQueueCommand({ QueueName: "node-abort-unread" }))).QueueUrl;
  raw.sqs.destroy();
  raw.s3.destroy();
  const idle = new TranscriptionClient({ queueUrl: unread, bucket: stack.bucket, endpoint: stack.endpointUrl });
  const jobId = await idle.submit({ audio: `s3://${stack.bucket}/never-there.flac` });
  const waiting = idle.wait(jobId, { signal: controller.signal, pollInterval: 60_000, maxPollInterval: 60_000 });
  setImmediate(() => controller.abort());
  await assert.rejects(waiting, (error: unknown) => error instanceof Aborted && error.name === "AbortError");
  idle.destroy();
});

test("an id never submitted is JobNotFound, at once", async () => {
  await assert.rejects(strict.status("node-mistyped-id"), JobNotFound);
  await assert.rejects(strict.wait("node-mistyped-id", { timeout: null }), JobNotFound);
});

test("oversized metadata is refused without serialising it", async () => {
  const huge = "x".repeat(64 * 1024 * 1024);
  await assert.rejects(
    strict.submit({ audio: `s3://${stack.bucket}/a.flac`, metadata: { note: huge } }),
    (error: unknown) => {
      assert.ok(error instanceof JobValidationError);
      assert.deepEqual(
        error.errors.map((e) => e.field),
        ["metadata"],
      );
      return true;
    },
  );
});

test("callback URLs the worker would skip are refused unless the caller opts in", async () => {
  const refused = async (url: string, field = "callback_url"): Promise<void> => {
    await assert.rejects(
      strict.submit({ audio: `s3://${stack.bucket}/a.flac`, callback_url: url }),
      (error: unknown) => {
        assert.ok(error instanceof InsecureCallbackUrl && error instanceof JobValidationError);
        assert.equal(error.errors[0]?.field, field);
        return true;
      },
    );
  };
  await refused("http://backend.example/hooks");
  for (const host of ["127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "[::ffff:192.168.0.1]", "localhost"]) {
    await refused(`https://${host}/hooks`);
  }
  await refused("https://user:secret@backend.example/hooks");
  await assert.rejects(
    submitToCloudWorker(
      {
        transcriptionId: "node-legacy-insecure",
        s3AudioUrl: `s3://${stack.bucket}/a.flac`,
        callbackUrl: "http://127.0.0.1/x",
      },
      { client: strict },
    ),
    (error: unknown) => error instanceof InsecureCallbackUrl && error.errors[0]?.field === "callbackUrl",
  );
  assert.ok(isPublicAddress("8.8.8.8") && isPublicAddress("2606:4700::1111"));
  assert.ok(!isPublicAddress("100.64.0.1") && !isPublicAddress("fd00::1") && !isPublicAddress("2002:0a00:0001::1"));
  // Opted in (a worker run with WHISPER_ALLOW_HTTP and WHISPER_ALLOW_PRIVATE_URLS): validated, not refused.
  const local = new TranscriptionClient({
    queueUrl: stack.queueUrl,
    bucket: stack.bucket,
    endpoint: stack.endpointUrl,
    allowInsecureCallbacks: true,
  });
  const message = local.validate({ audio: `s3://${stack.bucket}/a.flac`, callback_url: "http://127.0.0.1:9/hooks" });
  assert.equal(message.callback_url, "http://127.0.0.1:9/hooks");
  local.destroy();
});

test("isPublicAddress agrees with the worker's worker/addresses.py", async () => {
  const addresses = [
    "8.8.8.8",
    "1.1.1.1",
    "10.0.0.1",
    "100.64.1.1",
    "127.0.0.1",
    "169.254.169.254",
    "172.16.5.4",
    "172.32.0.1",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "0.0.0.0",
    "::",
    "::1",
    "::ffff:8.8.8.8",
    "::ffff:10.0.0.1",
    "64:ff9b::808:808",
    "64:ff9b::a00:1",
    "2002:808:808::1",
    "2002:a00:1::1",
    "2001:db8::1",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "fc00::1",
    "fe80::1",
    "ff02::1",
    "not-an-address",
  ];
  const script =
    "import json, sys\nfrom worker.addresses import is_public_address\nprint(json.dumps([is_public_address(a) for a in json.load(sys.stdin)]))";
  const expected = JSON.parse(await python(["-c", script], JSON.stringify(addresses))) as boolean[];
  assert.deepEqual(
    addresses.map((a) => [a, isPublicAddress(a)]),
    addresses.map((a, i) => [a, expected[i]]),
  );
});
