/**
 * What a backend using this package can catch, and what each error tells it to do (the same tree as the Python
 * client's `worker.client.errors`):
 *
 *     TranscriptionError            base: catch this to handle everything the client throws
 *     ├── ConfigurationError        no queue URL / bucket / stack outputs: fix the setup, do not retry
 *     ├── JobValidationError        the job breaks the message contract (`.errors` names each field): fix the job
 *     │   └── InsecureCallbackUrl   an http:// or private-address callback_url the worker would skip: fix the URL,
 *     │                             or opt in (`allowInsecureCallbacks`) for local testing
 *     ├── JobNotFound               never submitted (a mistyped id), or no such result, format or dead letter (yet)
 *     ├── JobFailed                 the job finished `failed` (`.code`, `.reason` as in README "Failure handling")
 *     ├── WaitTimeout               the job did not finish in time (`.status` is the last state seen): wait longer
 *     ├── EstimateError             a cost estimate for an unknown model or instance, or a bad duration
 *     ├── ServiceError              S3, SQS, CloudFormation or the HTTPS API refused or was unreachable: retry later
 *     ├── Aborted                   the caller's AbortSignal fired (`name` is "AbortError", `cause` its reason)
 *     └── WebhookVerificationError  a callback whose signature, timestamp or headers do not check out: answer 400
 *
 * The AWS SDK's own exceptions never escape the client: they arrive as `ServiceError` with the original in `cause`;
 * `awsCode` and `httpStatus` are set only when AWS answered (a refused connection has neither).
 */

import type { JobStatus } from "./status.js";

/** One offending field of a job, as the worker's contract names it (`formats.0`, `beam_size`, `body`). */
export interface FieldError {
  field: string;
  message: string;
}

export class TranscriptionError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    // `name` is the subclass's, so logs and `String(err)` say which error it is.
    this.name = new.target.name;
  }
}

export class ConfigurationError extends TranscriptionError {}

/** The job would be rejected by the worker, or lose its callback there; nothing was uploaded or sent. */
export class JobValidationError extends TranscriptionError {
  readonly errors: FieldError[];

  constructor(message: string, errors?: FieldError[]) {
    super(message);
    this.errors = errors ?? [{ field: "body", message }];
  }
}

/**
 * A callback URL the worker would refuse to call (plain http, or a host on a loopback, private, link-local or
 * reserved address): the job would complete and its callback be skipped. Pass `allowInsecureCallbacks` (and run the
 * worker with WHISPER_ALLOW_HTTP / WHISPER_ALLOW_PRIVATE_URLS) for a local receiver.
 */
export class InsecureCallbackUrl extends JobValidationError {
  constructor(
    readonly url: string,
    reason: string,
    field = "callback_url",
  ) {
    super(`invalid job: ${field}: ${reason}`, [{ field, message: reason }]);
  }
}

export class JobNotFound extends TranscriptionError {}

/** The worker finished the job with a failure; `code` is one of README's failure codes. */
export class JobFailed extends TranscriptionError {
  constructor(
    readonly jobId: string,
    readonly code: string,
    readonly reason: string,
  ) {
    super(`job ${jobId} failed: ${code}: ${reason}`);
  }
}

/** `wait()` gave up; the job may still finish later. */
export class WaitTimeout extends TranscriptionError {
  constructor(
    message: string,
    readonly status: JobStatus,
  ) {
    super(message);
  }
}

export class EstimateError extends TranscriptionError {}

/** An AWS (or API) call failed after the SDK's own retries; `awsCode` is AWS's error code when there was one. */
export class ServiceError extends TranscriptionError {
  readonly awsCode: string | undefined;
  readonly httpStatus: number | undefined;

  constructor(
    message: string,
    options: { awsCode?: string | undefined; httpStatus?: number | undefined; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.awsCode = options.awsCode;
    this.httpStatus = options.httpStatus;
  }
}

/**
 * The caller's AbortSignal fired. `name` is "AbortError", as the platform's own, so `err.name === "AbortError"`
 * checks keep working; `cause` is the signal's reason.
 */
export class Aborted extends TranscriptionError {
  constructor(message: string, reason?: unknown) {
    super(message, reason === undefined ? undefined : { cause: reason });
    this.name = "AbortError";
  }
}

/**
 * A callback that is not from the worker, or not as sent: answer it with 400 and do nothing else (the worker does
 * not retry a 4xx). A missing secret or an already-parsed body is a ConfigurationError instead: answer 5xx, so the
 * worker retries once the receiver is fixed.
 */
export class WebhookVerificationError extends TranscriptionError {}
