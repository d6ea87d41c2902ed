/**
 * The stack's HTTPS API (infra/api.py), for backends outside AWS or without SQS access: `POST {ApiUrl}jobs` with
 * the v1 message as the JSON body (API Gateway validates it and sends it to the jobs queue: 202 `{message_id,
 * request_id}`, or 400 naming the field), and `GET {ApiUrl}jobs/{job_id}` (`result.json`, or `status.json` while
 * there is none, or 404). Requests are signed with SigV4 for `execute-api`, or carry `x-api-key` when the stack was
 * deployed with `apiAuth=apiKey`.
 */

import { Sha256 } from "@aws-crypto/sha256-js";
import { defaultProvider } from "@aws-sdk/credential-provider-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";

import type { JobMessage } from "./contract/types.js";
import { checkAborted, isAbort, serviceError } from "./aws.js";
import { ConfigurationError, JobValidationError, ServiceError } from "./errors.js";

export type Credentials = NonNullable<ConstructorParameters<typeof SignatureV4>[0]["credentials"]>;

export interface ApiOptions {
  /** The stack's `ApiUrl` output, e.g. `https://abc123.execute-api.eu-west-1.amazonaws.com/v1/`. */
  url: string;
  /** With `apiAuth=apiKey`: sent as `x-api-key` instead of a SigV4 signature. */
  apiKey?: string | undefined;
  /** The signing region; by default the one in the API's host name, else the client's. */
  region?: string | undefined;
  /** Signing credentials; by default the AWS SDK's chain (environment, profile, SSO, container, instance). */
  credentials?: Credentials | undefined;
}

export interface ApiAccepted {
  messageId: string | null;
  requestId: string | null;
}

const API_HOST_RE = /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$/;
const ATTEMPTS = 3; // 429 and 5xx are retried: a job sent twice is recognised by the worker (job id + fingerprint)

export class ApiClient {
  readonly url: URL;
  private readonly signer: SignatureV4 | undefined;

  constructor(
    readonly options: ApiOptions,
    fallbackRegion?: string,
  ) {
    let url: URL;
    try {
      url = new URL(options.url.endsWith("/") ? options.url : `${options.url}/`);
    } catch {
      throw new ConfigurationError(`the API URL ${JSON.stringify(options.url)} is not a URL`);
    }
    this.url = url;
    if (options.apiKey === undefined) {
      const region = options.region ?? API_HOST_RE.exec(url.hostname)?.[1] ?? fallbackRegion;
      if (!region)
        throw new ConfigurationError("no region to sign API requests for: set AWS_REGION or pass api.region");
      this.signer = new SignatureV4({
        service: "execute-api",
        region,
        credentials: options.credentials ?? defaultProvider(),
        sha256: Sha256,
      });
    }
  }

  /** Send a validated job through the API; what API Gateway answered. */
  async postJob(message: JobMessage, signal?: AbortSignal): Promise<ApiAccepted> {
    const response = await this.request("POST", "jobs", JSON.stringify(message), signal);
    const body = await readJson(response);
    if (response.status === 202 || response.status === 200) {
      return { messageId: stringOrNull(body?.message_id), requestId: stringOrNull(body?.request_id) };
    }
    if (response.status === 400 && body?.error === "invalid_message") {
      // We validated against the same contract, so this is the stack's schema disagreeing with ours: say both.
      const details = [body.message, body.details].filter((part) => typeof part === "string" && part).join(": ");
      throw new JobValidationError(`the API refused job ${message.job_id}: ${details}`, [
        { field: "body", message: details },
      ]);
    }
    throw apiError(`submitting job ${message.job_id}`, response, body);
  }

  /** `result.json`, or `status.json` while there is none; null when the API has neither. */
  async getJob(jobId: string, signal?: AbortSignal): Promise<Record<string, unknown> | null> {
    const response = await this.request("GET", `jobs/${encodeURIComponent(jobId)}`, undefined, signal);
    const body = await readJson(response);
    if (response.status === 404) return null;
    if (response.status === 200) return body;
    throw apiError(`reading job ${jobId}`, response, body);
  }

  private async request(method: "GET" | "POST", path: string, body?: string, signal?: AbortSignal): Promise<Response> {
    const target = new URL(path, this.url);
    const headers: Record<string, string> = { host: target.host, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let lastError: unknown;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      checkAborted(signal, `${method} ${target.href}`);
      let sent = { ...headers };
      if (this.signer !== undefined) {
        const query = Object.fromEntries(target.searchParams);
        const request = new HttpRequest({
          method,
          protocol: target.protocol,
          hostname: target.hostname,
          ...(target.port ? { port: Number(target.port) } : {}),
          path: target.pathname,
          query,
          headers,
          ...(body !== undefined ? { body } : {}),
        });
        try {
          sent = (await this.signer.sign(request)).headers;
        } catch (error) {
          throw new ConfigurationError(`no AWS credentials to sign the API request: ${(error as Error).message}`);
        }
      } else {
        sent["x-api-key"] = this.options.apiKey as string;
      }
      delete sent.host; // fetch sets Host from the URL: the same value the signature covers
      try {
        const response = await fetch(target, {
          method,
          headers: sent,
          ...(body !== undefined ? { body } : {}),
          ...(signal !== undefined ? { signal } : {}),
        });
        if ((response.status === 429 || response.status >= 500) && attempt < ATTEMPTS) {
          await response.body?.cancel();
          await backoff(attempt);
          continue;
        }
        return response;
      } catch (error) {
        if (isAbort(error, signal)) throw serviceError(`${method} ${target.href}`, error, signal);
        lastError = error;
        if (attempt < ATTEMPTS) await backoff(attempt);
      }
    }
    throw new ServiceError(`${method} ${target.href} failed: ${(lastError as Error)?.message ?? lastError}`, {
      cause: lastError,
    });
  }
}

async function readJson(response: Response): Promise<Record<string, unknown> | null> {
  const text = await response.text();
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

function apiError(action: string, response: Response, body: Record<string, unknown> | null): ServiceError {
  const code = stringOrNull(body?.error) ?? (response.status === 403 ? "AccessDenied" : undefined);
  const message = stringOrNull(body?.message) ?? response.statusText;
  return new ServiceError(`${action} failed: HTTP ${response.status}${code ? ` ${code}` : ""}: ${message}`, {
    awsCode: code ?? undefined,
    httpStatus: response.status,
  });
}

function stringOrNull(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

function backoff(attempt: number): Promise<void> {
  const ms = Math.random() * 200 * 2 ** attempt; // full jitter
  return new Promise((resolve) => setTimeout(resolve, ms));
}
