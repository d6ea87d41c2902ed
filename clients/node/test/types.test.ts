// What the compiler refuses: each `@ts-expect-error` below must meet an error, or the build (tsc) fails. The calls
// sit in a function that is never run; the test only proves the file compiled, i.e. every bad shape was refused.
import assert from "node:assert/strict";
import { test } from "node:test";

import { customModel, TranscriptionClient, type JobInput, type LegacyJob } from "@whisper-batch/client";
import { submitToCloudWorker } from "@whisper-batch/client/legacy";

export async function refusedShapes(client: TranscriptionClient): Promise<void> {
  // @ts-expect-error a misspelt field: neither a v1 nor a legacy job
  await client.submit({ audoi: "s3://b/k" });
  // @ts-expect-error audio is a URL string
  await client.submit({ audio: 42 });
  // @ts-expect-error docx is not an output format
  await client.submit({ audio: "s3://b/k", formats: ["docx"] });
  // @ts-expect-error beam_size is a number
  await client.submit({ audio: "s3://b/k", beam_size: "5" });
  // @ts-expect-error not an official model: custom names go through customModel()
  await client.submit({ audio: "s3://b/k", model: "my-finetune" });
  // @ts-expect-error the legacy format is one of the output formats, in either case
  await submitToCloudWorker({ transcriptionId: "t", s3AudioUrl: "s3://b/k", format: "DOCX" });
  // @ts-expect-error a plain record is not a job
  await client.submit({ audio: "s3://b/k" } as Record<string, unknown>);
  // @ts-expect-error readTranscript takes an output format
  await client.readTranscript("id", "docx");
  // @ts-expect-error retryMode is the SDK's: standard or adaptive
  new TranscriptionClient({ queueUrl: "q", bucket: "b", retryMode: "sometimes" });
}

export async function acceptedShapes(client: TranscriptionClient, signal: AbortSignal): Promise<void> {
  const v1: JobInput = { audio: "s3://b/k", formats: ["srt", "JSON"], model: "TINY.EN", beam_size: 5 };
  const legacy: LegacyJob = { transcriptionId: "t", s3AudioUrl: "s3://b/k", model: "BASE", format: "SRT" };
  await client.submit(v1, { signal });
  await client.submit(legacy);
  await client.submit({ audio: "s3://b/k", model: customModel("my-finetune") });
  await client.status("id", { signal });
  await client.wait("id", { signal, timeout: 1_000 });
  await client.readTranscript("id", "srt", { signal });
  new TranscriptionClient({ queueUrl: "q", bucket: "b", endpoint: "http://x", maxAttempts: 3, retryMode: "adaptive" });
  new TranscriptionClient({ queueUrl: "q", bucket: "b", endpointUrl: "http://x", logger: console });
}

test("the bad job shapes above do not compile (this file built)", () => {
  assert.equal(typeof refusedShapes, "function");
  assert.equal(typeof acceptedShapes, "function");
});
