// One contract: the stored schema is the worker's, and validateJob accepts, normalises and rejects jobs exactly as
// the worker's parse_message does (compared case by case against the Python, in one process).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { JobValidationError, validateJob } from "@whisper-batch/client";

import { PACKAGE_ROOT, REPO_ROOT } from "./support/paths.js";
import { python } from "./support/python.js";

test("the stored schema and price table are the worker's, byte for byte (npm run sync)", async () => {
  const schema = await python(["-m", "worker.cli", "schema"]);
  assert.equal(readFileSync(`${PACKAGE_ROOT}src/data/job-message.schema.json`, "utf8"), schema);
  assert.equal(
    readFileSync(`${PACKAGE_ROOT}src/data/prices.json`, "utf8"),
    readFileSync(`${REPO_ROOT}worker/client/data/prices.json`, "utf8"),
  );
});

const CASES: Record<string, unknown>[] = [
  { job_id: "a", audio: "s3://b/k.flac" },
  { job_id: "b", audio: "S3://b/dir/k.flac", model: "TINY.EN", formats: ["SRT", "srt", "Json"], language: "EN" },
  {
    job_id: "c",
    audio: "https://cdn.example/a.mp3?sig=1",
    task: "translate",
    word_timestamps: true,
    beam_size: 5,
    initial_prompt: "Kubernetes",
  },
  {
    job_id: "d",
    audio: "s3://b/k",
    callback_url: "HTTPS://backend.example/hooks?x=1",
    progress_callback: true,
    metadata: { n: 1, s: "é" },
  },
  { job_id: "e", audio: "s3://b/k", model: "Large-V3", callback_shape: "legacy" },
  {
    transcriptionId: "t-1",
    userId: "u-9",
    s3AudioUrl: "s3://bucket/a.mp3",
    model: "BASE",
    format: "SRT",
    callbackUrl: "https://backend.example/hooks/stt",
  },
  { transcriptionId: "t-2", userId: 42, s3AudioUrl: "s3://bucket/a.mp3", metadata: { plan: "pro" } },
  { job_id: "f", audio: "ftp://host/a.mp3", formats: ["doc"], beam_size: 11 },
  { job_id: "g", audio: "s3://b/k", surprise: true },
  { job_id: "h", audio: "s3://b/k", callback_url: "ftp://backend.example/x" },
  { job_id: "i", audio: "s3://b/k", metadata: { blob: "x".repeat(5000) } },
  { job_id: "j" },
  { job_id: "not valid", audio: "s3://b/k" },
  { job_id: "k", audio: "s3://bucket" },
  { job_id: "l", audio: "s3://b/k", version: 2, formats: [], task: "summarise" },
  { job_id: "m", audio: "s3://b/k", beam_size: "3", word_timestamps: "yes", metadata: "x", model: 5 },
  { job_id: "n", audio: "https://", callback_url: "http://backend.example:99999/" },
  { transcriptionId: "t 3", s3AudioUrl: "s3://bucket", format: "DOC", callbackUrl: "ftp://x" },
  { transcriptionId: "t-4", s3AudioUrl: "s3://bucket/a.mp3", job_id: "also" },
  // Speaker counts: accepted with diarize, null as "not given"; each rule named on the field the worker names.
  { job_id: "s1", audio: "s3://b/k", diarize: true, speakers: 2 },
  { job_id: "s2", audio: "s3://b/k", diarize: true, min_speakers: 2, max_speakers: 2 },
  { job_id: "s3", audio: "s3://b/k", speakers: null, min_speakers: null, max_speakers: null },
  { job_id: "s4", audio: "s3://b/k", diarize: true, speakers: 3, min_speakers: null },
  { job_id: "s5", audio: "s3://b/k", speakers: 2 },
  { job_id: "s6", audio: "s3://b/k", diarize: false, min_speakers: 2, max_speakers: 3 },
  { job_id: "s7", audio: "s3://b/k", diarize: "yes", speakers: 2 },
  { job_id: "s8", audio: "s3://b/k", diarize: true, speakers: 2, max_speakers: 3 },
  { job_id: "s9", audio: "s3://b/k", diarize: true, speakers: 2, min_speakers: 1, max_speakers: 3 },
  { job_id: "s10", audio: "s3://b/k", speakers: 2, min_speakers: 1 },
  { job_id: "s11", audio: "s3://b/k", diarize: true, min_speakers: 4, max_speakers: 3 },
  { job_id: "s12", audio: "s3://b/k", diarize: true, speakers: 0, min_speakers: 5, max_speakers: 3 },
  { job_id: "s13", audio: "s3://b/k", diarize: true, speakers: 33, max_speakers: 2.5, min_speakers: "1" },
  { job_id: "s14", audio: "s3://b/k", speakers: 0 },
];

const PARSE = `
import json, sys
from worker.contract import ContractError, parse_message
out = []
for case in json.load(sys.stdin):
    try:
        out.append({"ok": json.loads(parse_message(json.dumps(case)).model_dump_json(exclude_none=True))})
    except ContractError as exc:
        out.append({"fields": sorted(e["field"] for e in exc.errors)})
print(json.dumps(out))
`;

test("validateJob agrees with the worker's parse_message on every case", async () => {
  const expected = JSON.parse(await python(["-c", PARSE], JSON.stringify(CASES))) as (
    { ok: unknown } | { fields: string[] }
  )[];
  CASES.forEach((job, i) => {
    let actual: { ok: unknown } | { fields: string[] };
    try {
      actual = { ok: validateJob(job) };
    } catch (error) {
      assert.ok(error instanceof JobValidationError, String(error));
      actual = { fields: error.errors.map((e) => e.field).sort() };
    }
    assert.deepEqual(actual, expected[i], `case ${i}: ${JSON.stringify(job)}`);
  });
});

test("errors name each field, and the message says what is wrong with it", () => {
  assert.throws(
    () => validateJob({ audio: "ftp://host/a.mp3", formats: ["doc"], beam_size: 11 }),
    (error: unknown) => {
      assert.ok(error instanceof JobValidationError);
      assert.deepEqual(new Set(error.errors.map((e) => e.field)), new Set(["audio", "formats.0", "beam_size"]));
      assert.match(error.message, /^invalid job: .*formats\.0: must be one of json, srt, vtt, txt, tsv/);
      assert.match(error.message, /beam_size: must be <= 10/);
      return true;
    },
  );
  assert.throws(() => validateJob("not an object"), /body must be a JSON object, not a string/);
  assert.throws(() => validateJob({ audio: "s3://b/k", metadata: { n: 10n } }), /must be JSON-serialisable/);
  assert.match(validateJob({ audio: "s3://b/k" }).job_id, /^job-[0-9a-f]{32}$/);
});

test("speaker counts need diarize: true, and speakers excludes min_speakers/max_speakers", () => {
  const job = { job_id: "d", audio: "s3://b/k" };
  const sent = validateJob({ ...job, diarize: true, speakers: 2 });
  assert.equal(sent.diarize, true);
  assert.equal(sent.speakers, 2);
  assert.equal(sent.min_speakers, undefined);
  const reasons = (input: Record<string, unknown>): Record<string, string> => {
    try {
      validateJob({ ...job, ...input });
    } catch (error) {
      assert.ok(error instanceof JobValidationError);
      return Object.fromEntries(error.errors.map((e) => [e.field, e.message]));
    }
    assert.fail(`accepted ${JSON.stringify(input)}`);
  };
  assert.deepEqual(reasons({ speakers: 2 }), { speakers: "only applies with diarize: true" });
  assert.deepEqual(reasons({ diarize: true, speakers: 2, max_speakers: 3 }), {
    max_speakers: "give either speakers or min_speakers/max_speakers",
  });
  assert.deepEqual(reasons({ diarize: true, min_speakers: 4, max_speakers: 3 }), {
    max_speakers: "max_speakers 3 is below min_speakers 4",
  });
  assert.throws(() => validateJob({ ...job, speakers: 2 }), /invalid job: speakers: only applies with diarize: true/);
});
