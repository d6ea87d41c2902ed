// The HTTPS mode against a local stand-in for the stack's API Gateway (infra/api.py's routes): it checks that each
// request is SigV4-signed for execute-api (re-computing the signature with the test credentials), then does what
// the real integration does: POST /v1/jobs sends the body to the jobs queue, GET /v1/jobs/{id} reads result.json,
// else status.json, from S3. A job submitted this way is transcribed by the worker and followed through the API.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { Sha256 } from "@aws-crypto/sha256-js";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";

import { customModel, JobValidationError, ServiceError, TranscriptionClient } from "@whisper-batch/client";

import { JFK } from "./support/paths.js";
import { localStack, rawClients } from "./support/stack.js";

const stack = localStack();
const raw = rawClients(stack);
const CREDENTIALS = { accessKeyId: "testing", secretAccessKey: "testing", sessionToken: "testing" };
const seen: {
  method: string;
  path: string;
  auth: "sigv4" | "apiKey";
  body: string;
  service?: string;
  region?: string;
}[] = [];
let server: Server;
let apiUrl: string;

async function signatureProblem(req: IncomingMessage, body: string): Promise<string | undefined> {
  const authorization = req.headers.authorization ?? "";
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(
      authorization,
    );
  if (!match) return `not a SigV4 Authorization header: ${authorization}`;
  const [, , , region, service, signedHeaders] = match;
  if (service !== "execute-api") return `signed for ${service}, not execute-api`;
  const amzDate = String(req.headers["x-amz-date"]);
  const headers: Record<string, string> = {};
  for (const name of (signedHeaders as string).split(";")) headers[name] = String(req.headers[name]);
  const url = new URL(req.url ?? "/", `http://${req.headers.host}`);
  const request = new HttpRequest({
    method: req.method ?? "GET",
    protocol: "http:",
    hostname: url.hostname,
    port: Number(url.port),
    path: url.pathname,
    headers,
    ...(body ? { body } : {}),
  });
  const signer = new SignatureV4({
    service: "execute-api",
    region: region as string,
    credentials: CREDENTIALS,
    sha256: Sha256,
  });
  const signingDate = new Date(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
  );
  const expected = (await signer.sign(request, { signingDate })).headers.authorization;
  return expected === authorization ? undefined : `signature does not match: expected ${expected}`;
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body = "";
  for await (const chunk of req) body += String(chunk);
  const reply = (status: number, document: unknown): void => {
    res
      .writeHead(status, { "content-type": "application/json" })
      .end(typeof document === "string" ? document : JSON.stringify(document));
  };
  const apiKey = req.headers["x-api-key"];
  if (apiKey !== undefined) {
    if (apiKey !== "k-123") return reply(403, { message: "Forbidden" });
  } else {
    const problem = await signatureProblem(req, body);
    if (problem) return reply(403, { message: problem });
  }
  const credential = /Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\//.exec(req.headers.authorization ?? "");
  seen.push({
    method: req.method ?? "",
    path: req.url ?? "",
    auth: apiKey ? "apiKey" : "sigv4",
    body,
    ...(credential ? { region: credential[1] as string, service: credential[2] as string } : {}),
  });
  if (req.method === "POST" && req.url === "/v1/jobs") {
    const sent = await raw.sqs.send(new SendMessageCommand({ QueueUrl: stack.queueUrl, MessageBody: body }));
    return reply(202, { message_id: sent.MessageId, request_id: "req-1" });
  }
  const job = /^\/v1\/jobs\/([^/]+)$/.exec(req.url ?? "");
  if (req.method === "GET" && job) {
    for (const name of ["result.json", "status.json"]) {
      try {
        const object = await raw.s3.send(
          new GetObjectCommand({ Bucket: stack.bucket, Key: `results/${job[1]}/${name}` }),
        );
        return reply(200, await object.Body?.transformToString());
      } catch {
        continue;
      }
    }
    return reply(404, { error: "not_found", message: `no result or status for job ${job[1]}` });
  }
  reply(404, { message: "Missing Authentication Token" });
}

before(async () => {
  server = createServer(
    (req, res) => void handle(req, res).catch((error: unknown) => res.writeHead(500).end(String(error))),
  );
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`;
  await raw.s3.send(
    new PutObjectCommand({ Bucket: stack.bucket, Key: "audio/https/jfk.flac", Body: await readFile(JFK) }),
  );
});

after(() => {
  server.close();
  raw.s3.destroy();
  raw.sqs.destroy();
});

test(
  "a job posted to the API with SigV4 arrives whole, is transcribed, and is followed through the API",
  { timeout: 150_000 },
  async () => {
    const client = new TranscriptionClient({ api: { url: apiUrl, region: "eu-west-1" } }); // credentials: the SDK's chain
    const jobId = await client.submit({
      job_id: "node-https",
      audio: `s3://${stack.bucket}/audio/https/jfk.flac`,
      model: "tiny.en",
      formats: ["TXT"],
    });
    assert.equal(jobId, "node-https");
    const post = seen.find((r) => r.method === "POST");
    assert.ok(post);
    assert.deepEqual([post.auth, post.service, post.region], ["sigv4", "execute-api", "eu-west-1"]);
    assert.deepEqual(
      JSON.parse(post.body),
      client.validate({
        job_id: "node-https",
        audio: `s3://${stack.bucket}/audio/https/jfk.flac`,
        model: "tiny.en",
        formats: ["txt"],
      }),
    );

    const status = await client.wait(jobId, { timeout: 120_000, pollInterval: 250 });
    assert.equal(status.state, "completed");
    assert.deepEqual(status.result?.results, { txt: "results/node-https/transcript.txt" });
    assert.deepEqual((await client.result(jobId)).status, "completed");
    assert.ok(seen.filter((r) => r.method === "GET").every((r) => r.auth === "sigv4" && r.service === "execute-api"));
    await assert.rejects(client.readTranscript(jobId, "txt"), /only has the HTTPS API/); // transcripts are in S3, not behind the API
    assert.equal((await client.status("never-submitted")).state, "queued");
    client.destroy();
  },
);

test("an API key replaces the signature; the API's refusals are typed errors", async () => {
  const keyed = new TranscriptionClient({ api: { url: apiUrl, apiKey: "k-123" }, region: "us-east-1" });
  await keyed.submit({
    job_id: "node-https-key",
    audio: "s3://elsewhere/none.flac",
    model: customModel("no-such-model"),
  });
  assert.equal(seen.at(-1)?.auth, "apiKey");
  keyed.destroy();
  const wrongKey = new TranscriptionClient({ api: { url: apiUrl, apiKey: "wrong" }, region: "us-east-1" });
  await assert.rejects(
    wrongKey.submit({ audio: "s3://b/k" }),
    (e: unknown) => e instanceof ServiceError && e.httpStatus === 403,
  );
  await assert.rejects(wrongKey.submit({ audio: "ftp://b/k" }), JobValidationError); // validated before any request
  wrongKey.destroy();
});
