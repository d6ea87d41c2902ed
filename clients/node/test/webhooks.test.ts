// verifyWebhook over signatures made as the worker makes them (Standard Webhooks: HMAC-SHA256 of id.timestamp.body).
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";

import { ConfigurationError, WebhookVerificationError, verifyWebhook } from "@whisper-batch/client";

const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const BODY = JSON.stringify({ job_id: "t-1", status: "completed", results: { srt: "results/t-1/transcript.srt" } });

function signed(body: string, secret = SECRET, at = Math.floor(Date.now() / 1000)): Record<string, string> {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const signature = createHmac("sha256", key).update(`msg-1.${at}.${body}`).digest("base64");
  return { "webhook-id": "msg-1", "webhook-timestamp": String(at), "webhook-signature": `v1,${signature}` };
}

test("a callback signed with the secret verifies, from a string, bytes or fetch Headers", () => {
  assert.equal(verifyWebhook<{ job_id: string }>(BODY, signed(BODY), SECRET).job_id, "t-1");
  assert.equal(verifyWebhook<{ job_id: string }>(Buffer.from(BODY), signed(BODY), SECRET).job_id, "t-1");
  assert.equal(
    verifyWebhook<{ job_id: string }>(new TextEncoder().encode(BODY), new Headers(signed(BODY)), SECRET).job_id,
    "t-1",
  );
  const upper = Object.fromEntries(Object.entries(signed(BODY)).map(([k, v]) => [k.toUpperCase(), v]));
  assert.equal(verifyWebhook<{ job_id: string }>(BODY, upper, SECRET).job_id, "t-1");
});

test("forged, altered, replayed or unsigned callbacks throw WebhookVerificationError", () => {
  const headers = signed(BODY);
  const refused = (body: unknown, h: Record<string, string>, secret = SECRET): void => {
    assert.throws(() => verifyWebhook(body as string, h, secret), WebhookVerificationError);
  };
  refused(BODY.replace("completed", "failed"), headers);
  refused(BODY, headers, `whsec_${randomBytes(24).toString("base64")}`);
  refused(BODY, signed(BODY, SECRET, Math.floor(Date.now() / 1000) - 3600));
  refused(BODY, { "webhook-id": "msg-1" });
  assert.throws(() => verifyWebhook(JSON.parse(BODY) as string, headers, SECRET), /express\.raw/);
  assert.throws(() => verifyWebhook(BODY, headers, ""), ConfigurationError);
});
