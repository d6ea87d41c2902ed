// The Express example (examples/express-webhook.ts) inside an app that parses JSON for every route: a real job's
// signed callback from the worker arrives and is read; a receiver without its secret, or one whose body was parsed
// before the route, answers 500 (the worker retries) and logs why; a forged callback gets 400.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { PutObjectCommand } from "@aws-sdk/client-s3";
import express from "express";

import { keepRawBody } from "@whisper-batch/client/webhooks";

import { webhookApp, type Transcriptions } from "../examples/express-webhook.js";
import { eventually } from "./support/eventually.js";
import { JFK } from "./support/paths.js";
import { client as makeClient, localStack, rawClients } from "./support/stack.js";

const stack = localStack();
const client = makeClient(stack);
const raw = rawClients(stack);
const completed: string[] = [];
const handlers: Transcriptions = {
  completed: (transcriptionId) => void completed.push(transcriptionId),
  failed: () => undefined,
};
const servers: Server[] = [];

/** Serves `app` on 127.0.0.1; its callback URL. */
async function serve(app: express.Express): Promise<string> {
  const server = app.listen(0, "127.0.0.1");
  servers.push(server);
  await new Promise((resolve) => server.once("listening", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/stt`;
}

/** A body signed as the worker signs it. */
function signed(body: string, secret = stack.secret): Record<string, string> {
  const at = Math.floor(Date.now() / 1000);
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const signature = createHmac("sha256", key).update(`msg-1.${at}.${body}`).digest("base64");
  return {
    "content-type": "application/json",
    "webhook-id": "msg-1",
    "webhook-timestamp": String(at),
    "webhook-signature": `v1,${signature}`,
  };
}

const logged: string[] = [];
const consoleError = console.error;

before(async () => {
  await raw.s3.send(
    new PutObjectCommand({ Bucket: stack.bucket, Key: "audio/express/jfk.flac", Body: await readFile(JFK) }),
  );
  console.error = (...args: unknown[]) => void logged.push(args.map(String).join(" "));
});

after(() => {
  console.error = consoleError;
  for (const server of servers) server.close();
  client.destroy();
  raw.s3.destroy();
  raw.sqs.destroy();
});

test(
  "behind express.json({ verify: keepRawBody }), a real callback is verified and read",
  { timeout: 180_000 },
  async () => {
    const app = express();
    app.use(express.json({ verify: keepRawBody }));
    const url = await serve(webhookApp(stack.secret, handlers, app));
    await client.submit({
      transcriptionId: "node-express",
      s3AudioUrl: `s3://${stack.bucket}/audio/express/jfk.flac`,
      model: "tiny.en",
      format: "txt",
      callbackUrl: url,
    });
    await eventually(() => (completed.includes("node-express") ? true : undefined), 150_000, "the verified callback");
  },
);

test("a receiver that cannot verify answers 500 and logs why; a forged callback gets 400", async () => {
  const body = JSON.stringify({ job_id: "x", transcriptionId: "x", status: "COMPLETED" });
  const post = (url: string, headers: Record<string, string>): Promise<Response> =>
    fetch(url, { method: "POST", headers, body });

  const noSecret = await serve(webhookApp(undefined, handlers));
  assert.equal((await post(noSecret, signed(body))).status, 500);
  assert.match(logged.at(-1) ?? "", /no webhook secret/);

  const parsedFirst = express();
  parsedFirst.use(express.json()); // the body is parsed before the route: its bytes are gone
  const parsed = await serve(webhookApp(stack.secret, handlers, parsedFirst));
  assert.equal((await post(parsed, signed(body))).status, 500);
  assert.match(logged.at(-1) ?? "", /keepRawBody/);

  const plain = await serve(webhookApp(stack.secret, handlers));
  assert.equal((await post(plain, { ...signed(body), "webhook-signature": "v1,AAAA" })).status, 400);
  assert.equal((await post(plain, signed(body))).status, 204);
  assert.equal(completed.filter((id) => id === "x").length, 1, "only the genuine callback was acted on");
});
