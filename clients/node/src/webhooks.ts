/**
 * Callbacks, verified in one line: the worker signs each POST per Standard Webhooks (`webhook-id`,
 * `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`), keyed with the
 * `whsec_...` secret in its WHISPER_WEBHOOK_SECRET. Verification is the `standardwebhooks` package's, which also
 * refuses timestamps more than five minutes off (replays).
 *
 *     const event = verifyWebhook(req.body, req.headers, process.env.WHISPER_WEBHOOK_SECRET); // raw body!
 *
 * This module is also the package's light entry, `@whisper-batch/client/webhooks`: it pulls in no AWS SDK, so a
 * callback receiver (a Lambda behind a function URL, an Express route) stays small when bundled.
 */

import { Webhook, WebhookVerificationError as LibraryVerificationError } from "standardwebhooks";

import type { LegacyCallback, ProgressCallback, V1Callback } from "./contract/types.js";
import { ConfigurationError, WebhookVerificationError } from "./errors.js";

export { ConfigurationError, TranscriptionError, WebhookVerificationError } from "./errors.js";
export type { LegacyCallback, ProgressCallback, V1Callback } from "./contract/types.js";

/** Any callback the worker sends: a v1 or legacy result, or a progress event. */
export type WebhookPayload = V1Callback | LegacyCallback | ProgressCallback;

/** The body as received: a string, a Buffer (`express.raw()`), any bytes. */
export type RawBody = string | Uint8Array | ArrayBuffer;

/** Node's `IncomingHttpHeaders` (Express's `req.headers`), a plain record, or fetch's `Headers`. */
export type HeadersLike = Headers | Record<string, string | string[] | undefined>;

const webhooks = new Map<string, Webhook>();

function webhookFor(secret: string): Webhook {
  let webhook = webhooks.get(secret);
  if (webhook === undefined) {
    try {
      webhook = new Webhook(secret);
    } catch (error) {
      throw new ConfigurationError(
        `the webhook secret is not a Standard Webhooks secret (whsec_<base64>): ${(error as Error).message}`,
      );
    }
    webhooks.set(secret, webhook);
  }
  return webhook;
}

function flatHeaders(headers: HeadersLike): Record<string, string> {
  const flat: Record<string, string> = {};
  const entries: Iterable<[string, string | string[] | undefined]> =
    typeof (headers as Headers).entries === "function" && typeof (headers as Headers).get === "function"
      ? (headers as Headers).entries()
      : Object.entries(headers);
  for (const [name, value] of entries) {
    if (value === undefined) continue;
    flat[name.toLowerCase()] = Array.isArray(value) ? value.join(" ") : value;
  }
  return flat;
}

const RAW_BODY_HELP =
  "signature verification needs the exact bytes received, but this body was already parsed (express.json() or " +
  "a body parser ran first). Keep the raw body for this route: mount it with express.raw({ type: " +
  "'application/json' }) before app.use(express.json()), or use app.use(express.json({ verify: keepRawBody })) " +
  "and pass req.rawBody";

/**
 * The callback's JSON payload if the signature over the exact `rawBody` checks out with `secret`; otherwise
 * WebhookVerificationError (answer 400: the worker does not retry it). `rawBody` must be the bytes as received: a
 * body already parsed (express.json) cannot be checked, and a missing or malformed secret is a setup fault: both
 * throw ConfigurationError (answer 500, so the worker retries once the receiver is fixed).
 */
export function verifyWebhook<T = WebhookPayload>(rawBody: RawBody, headers: HeadersLike, secret: string): T {
  if (typeof secret !== "string" || secret === "")
    throw new ConfigurationError("no webhook secret: set the worker's WHISPER_WEBHOOK_SECRET here too");
  let body: string;
  if (typeof rawBody === "string") body = rawBody;
  else if (rawBody instanceof Uint8Array)
    body = Buffer.from(rawBody.buffer, rawBody.byteOffset, rawBody.byteLength).toString("utf8");
  else if (rawBody instanceof ArrayBuffer) body = Buffer.from(rawBody).toString("utf8");
  else throw new ConfigurationError(RAW_BODY_HELP);
  const webhook = webhookFor(secret);
  let payload: unknown;
  try {
    payload = webhook.verify(body, flatHeaders(headers));
  } catch (error) {
    if (error instanceof LibraryVerificationError)
      throw new WebhookVerificationError(`invalid webhook: ${error.message}`);
    if (error instanceof SyntaxError)
      throw new WebhookVerificationError(`invalid webhook: the signed body is not JSON (${error.message})`);
    throw error;
  }
  if (typeof payload !== "object" || payload === null)
    throw new WebhookVerificationError("invalid webhook: the body is not a JSON object");
  return payload as T;
}

/**
 * For `express.json({ verify: keepRawBody })`: keeps each request's bytes as `req.rawBody`, so a callback route
 * behind a global JSON parser can still be verified: `verifyWebhook(req.rawBody, req.headers, secret)`.
 */
export function keepRawBody(req: object, _res: unknown, buffer: Buffer): void {
  (req as { rawBody?: Buffer }).rawBody = buffer;
}
