/** The suite's one local deployment, as run-suite.ts describes it to every test file, and helpers on it. */

import { readFileSync } from "node:fs";

import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";

import { TranscriptionClient } from "@whisper-batch/client";

export interface LocalStack {
  endpointUrl: string;
  bucket: string;
  queueUrl: string;
  dlqUrl: string;
  maxReceiveCount: number;
  secret: string;
  workerPid: number;
  workerLog: string;
}

export function localStack(): LocalStack {
  const described = process.env.WHISPER_NODE_TEST_STACK;
  if (!described)
    throw new Error("no local stack: run the tests with `npm test` (or node dist/test/support/run-suite.js FILE)");
  return JSON.parse(described) as LocalStack;
}

export function client(stack: LocalStack = localStack()): TranscriptionClient {
  return new TranscriptionClient({
    queueUrl: stack.queueUrl,
    bucket: stack.bucket,
    dlqUrl: stack.dlqUrl,
    endpoint: stack.endpointUrl,
    region: "us-east-1",
    // The suite's worker runs with WHISPER_ALLOW_HTTP and WHISPER_ALLOW_PRIVATE_URLS: its receivers are local.
    allowInsecureCallbacks: true,
  });
}

/** Raw SDK clients on the same moto, for what a test sets up or inspects behind the client's back. */
export function rawClients(stack: LocalStack = localStack()): { s3: S3Client; sqs: SQSClient } {
  const config = { region: "us-east-1", endpoint: stack.endpointUrl };
  return { s3: new S3Client({ ...config, forcePathStyle: true }), sqs: new SQSClient(config) };
}

/** The worker is still alive; otherwise its log's tail, so a failing test says why. */
export function assertWorkerAlive(stack: LocalStack = localStack()): void {
  try {
    process.kill(stack.workerPid, 0);
  } catch {
    throw new Error(`the worker died:\n${readFileSync(stack.workerLog, "utf8").slice(-3000)}`);
  }
}
