/**
 * The backend's side of whisper-batch in Node.js, the Python client's `TranscriptionClient` method for method:
 *
 *     const client = await TranscriptionClient.fromStack("WhisperBatch");   // or fromEnv(), or new (...)
 *     const jobId = await client.uploadAndSubmit("call.flac", { formats: ["srt", "json"] });
 *     const status = await client.wait(jobId, { timeout: 600_000 });       // JobStatus: .succeeded, .errorCode
 *     const text = (await client.transcript(jobId)).text;
 *
 * Jobs are validated with the worker's own contract before anything is uploaded or sent, so a job the worker would
 * reject fails here, at once, naming the field; so does a callback URL the worker would not call. Everything thrown
 * is a `TranscriptionError` (see errors.ts). Every call takes `{ signal }` (an AbortSignal). Times are in
 * milliseconds, as everywhere in Node; sizes in bytes.
 *
 * Submitting writes a small marker, `results/<job_id>/queued.json`, next to where the worker reports progress: one
 * more S3 request per job, so that `status()` tells a queued job from one never submitted (JobNotFound).
 */

import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, stat, writeFile } from "node:fs/promises";
import { basename, extname, join, resolve, sep } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { SQSClient, SendMessageCommand } from "@aws-sdk/client-sqs";
import { Upload } from "@aws-sdk/lib-storage";

import {
  aws,
  checkAborted,
  clientConfig,
  deadLetterQueueUrl,
  errorCode,
  fifoParams,
  isAbort,
  redrivePolicy,
  regionFromQueueUrl,
  serviceError,
  type AwsOptions,
  type Logger,
  type RetryOptions,
} from "./aws.js";
import {
  callbackPolicy,
  callbackUrlProblem,
  checkCallbackUrl,
  type AllowInsecureCallbacks,
  type CallbackPolicy,
} from "./callbacks.js";
import type { JobInput, JobMessage, JobResult, LegacyJob, OutputFormat } from "./contract/types.js";
import { isJobId, JOB_ID_PATTERN, newJobId, validateJob } from "./contract/validate.js";
import { DeadLetterQueue, type DeadLetter } from "./deadletters.js";
import {
  Aborted,
  ConfigurationError,
  InsecureCallbackUrl,
  JobFailed,
  JobNotFound,
  JobValidationError,
  WaitTimeout,
} from "./errors.js";
import { checkHealth, type HealthReport } from "./health.js";
import { ApiClient, type ApiOptions, type Credentials } from "./https.js";
import { estimateCost, type CostEstimate } from "./pricing.js";
import { mergeStatus, parseResult, type JobStatus } from "./status.js";

export const DEFAULT_STACK_NAME = "WhisperBatch";

/** What every call that talks to AWS takes. */
export interface CallOptions {
  /** Cancels the call: it rejects with `Aborted` (a TranscriptionError named "AbortError"). */
  signal?: AbortSignal | undefined;
}

/** The marker a submit leaves beside the worker's documents, so a queued job is told from an unknown id. */
export const QUEUED_MARKER = "queued.json";

export interface ClientOptions extends RetryOptions {
  /** The jobs queue; not needed when jobs go through the HTTPS API (`api`). */
  queueUrl?: string | undefined;
  /** The results bucket, which also takes uploads under `audio/`. */
  bucket?: string | undefined;
  /** The DLQ; by default the one the jobs queue's redrive policy names. */
  dlqUrl?: string | undefined;
  /**
   * The settled-letters queue (the stack's `SettledLettersUrl`), where settled dead letters wait: `deadLetters()` and
   * `redrive()` read it after the DLQ. Without it they read the DLQ only.
   */
  settledUrl?: string | undefined;
  /** moto, LocalStack, MinIO (the AWS SDK's name for it); S3 then uses path-style addressing. */
  endpoint?: string | undefined;
  /** @deprecated The former name of `endpoint`. */
  endpointUrl?: string | undefined;
  region?: string | undefined;
  credentials?: Credentials | undefined;
  resultsPrefix?: string | undefined;
  audioPrefix?: string | undefined;
  /** Submit (and, without a bucket, follow) jobs through the stack's HTTPS API instead of SQS and S3. */
  api?: ApiOptions | undefined;
  /**
   * Accept callback URLs the production worker skips: `true` for both plain `http://` and private or loopback
   * addresses, or `{ http, privateAddresses }`. Only for a worker run with WHISPER_ALLOW_HTTP /
   * WHISPER_ALLOW_PRIVATE_URLS (local testing); otherwise such a job is refused with InsecureCallbackUrl.
   */
  allowInsecureCallbacks?: AllowInsecureCallbacks | undefined;
  /** Receives the SDK's logs and the client's own warnings (`console` fits). */
  logger?: Logger | undefined;
}

export interface UploadProgress {
  /** Bytes uploaded so far. */
  loaded: number;
  /** The file's size, when known (always for a path or a buffer). */
  total: number | undefined;
}

export interface UploadOptions extends CallOptions {
  onProgress?: (progress: UploadProgress) => void;
  /** Names the uploaded object `audio/<job_id>/<filename>`; by default the path's base name, else "audio". */
  filename?: string;
  contentType?: string;
  /** Multipart part size in bytes (at least 5 MiB, S3's minimum); larger sources go up in parts, in parallel. */
  partSize?: number;
  /** How many parts are in flight at once. */
  queueSize?: number;
}

export interface WaitOptions extends CallOptions {
  /** Milliseconds before WaitTimeout (with the last status); `null` waits forever. Default one hour. */
  timeout?: number | null;
  /** Sees every status polled, e.g. to drive a progress bar. */
  onProgress?: (status: JobStatus) => void;
  /** First poll interval in milliseconds (default 1000), growing 1.5× up to `maxPollInterval` (default 10000). */
  pollInterval?: number;
  maxPollInterval?: number;
}

/** A job for `uploadAndSubmit`: any v1 field but `audio`, which is the upload. */
export type UploadJob = Omit<JobInput, "audio">;

/** The json output (OpenAI `verbose_json` shape). */
export interface Transcript {
  text: string;
  language?: string;
  duration?: number;
  task?: string;
  segments: { id: number; start: number; end: number; text: string; [key: string]: unknown }[];
  words?: { word: string; start: number; end: number; [key: string]: unknown }[];
  [key: string]: unknown;
}

const UNSAFE_KEY_CHARS = /[^A-Za-z0-9._-]+/g;
const CONTENT_TYPES: Record<string, string> = {
  ".flac": "audio/flac",
  ".mp3": "audio/mpeg",
  ".wav": "audio/x-wav",
  ".m4a": "audio/mp4",
  ".aac": "audio/aac",
  ".ogg": "audio/ogg",
  ".oga": "audio/ogg",
  ".opus": "audio/ogg",
  ".webm": "video/webm",
  ".mp4": "video/mp4",
  ".mkv": "video/x-matroska",
  ".mov": "video/quicktime",
};

export class TranscriptionClient {
  readonly queueUrl: string | undefined;
  readonly bucket: string | undefined;
  readonly region: string;
  readonly resultsPrefix: string;
  readonly audioPrefix: string;
  readonly sqs: SQSClient;
  readonly s3: S3Client;
  readonly api: ApiClient | undefined;
  /** The settled-letters queue, when there is one: dead letters are listed and redriven from it as from the DLQ. */
  readonly settledUrl: string | undefined;
  /** All outputs of the stack, when made by fromStack. */
  stackOutputs: Record<string, string> = {};
  /** Which callback URLs the worker is expected to call beyond its production rules (see ClientOptions). */
  readonly callbackPolicy: Required<CallbackPolicy>;
  private dlq: string | undefined;
  private readonly awsOptions: AwsOptions;
  private readonly logger: Logger | undefined;

  constructor(options: ClientOptions) {
    if (!options.queueUrl && !options.api) throw new ConfigurationError("no jobs queue URL (or API URL)");
    if (!options.bucket && !options.api) throw new ConfigurationError("no results bucket");
    this.queueUrl = options.queueUrl || undefined;
    this.bucket = options.bucket || undefined;
    this.dlq = options.dlqUrl || undefined;
    this.settledUrl = options.settledUrl || undefined;
    this.resultsPrefix = `${(options.resultsPrefix ?? "results/").replace(/\/+$/, "")}/`;
    this.audioPrefix = `${(options.audioPrefix ?? "audio/").replace(/\/+$/, "")}/`;
    let region =
      options.region ||
      process.env.AWS_REGION ||
      process.env.AWS_DEFAULT_REGION ||
      (options.queueUrl && regionFromQueueUrl(options.queueUrl));
    const endpoint = options.endpoint || options.endpointUrl || undefined;
    if (!region && endpoint) region = "us-east-1"; // a local endpoint (moto, LocalStack) takes any region
    if (!region) throw new ConfigurationError("no AWS region: set AWS_REGION or pass region");
    this.region = region;
    this.callbackPolicy = callbackPolicy(options.allowInsecureCallbacks);
    this.logger = options.logger;
    this.awsOptions = {
      region,
      endpoint,
      credentials: options.credentials,
      maxAttempts: options.maxAttempts,
      retryMode: options.retryMode,
      logger: options.logger,
    };
    this.sqs = new SQSClient(clientConfig(this.awsOptions));
    this.s3 = new S3Client(s3Config(this.awsOptions));
    this.api = options.api ? new ApiClient({ credentials: options.credentials, ...options.api }, region) : undefined;
  }

  // ---------------------------------------------------------------------------------------- construction

  /**
   * From WHISPER_QUEUE_URL, WHISPER_RESULTS_BUCKET, WHISPER_DLQ_URL, WHISPER_SETTLED_URL, AWS_ENDPOINT_URL and
   * AWS_REGION; WHISPER_ALLOW_HTTP and WHISPER_ALLOW_PRIVATE_URLS (true/1), as the local worker is run with,
   * set `allowInsecureCallbacks`.
   */
  static fromEnv(
    env: Record<string, string | undefined> = process.env,
    overrides: ClientOptions = {},
  ): TranscriptionClient {
    const queueUrl = overrides.queueUrl || env.WHISPER_QUEUE_URL;
    const bucket = overrides.bucket || env.WHISPER_RESULTS_BUCKET;
    if (!queueUrl && !overrides.api)
      throw new ConfigurationError("no jobs queue: set WHISPER_QUEUE_URL, or use TranscriptionClient.fromStack(name)");
    if (!bucket && !overrides.api)
      throw new ConfigurationError(
        "no results bucket: set WHISPER_RESULTS_BUCKET, or use TranscriptionClient.fromStack(name)",
      );
    return new TranscriptionClient({
      dlqUrl: env.WHISPER_DLQ_URL || undefined,
      settledUrl: env.WHISPER_SETTLED_URL || undefined,
      endpoint: env.AWS_ENDPOINT_URL || undefined,
      allowInsecureCallbacks: {
        http: truthy(env.WHISPER_ALLOW_HTTP),
        privateAddresses: truthy(env.WHISPER_ALLOW_PRIVATE_URLS),
      },
      region: env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined,
      resultsPrefix: env.WHISPER_RESULTS_PREFIX || undefined,
      ...withoutUndefined(overrides),
      queueUrl,
      bucket,
    });
  }

  /**
   * From the outputs of a deployed stack (`QueueUrl`, `BucketName`, `DlqUrl`, `SettledLettersUrl`, `ApiUrl`). With
   * `api: true` (or
   * `{apiKey}`) jobs are submitted through the stack's HTTPS API, signed with SigV4 (or with the key). The other
   * options are the constructor's. The CloudFormation SDK is loaded here only, so other uses never bundle it.
   */
  static async fromStack(
    name: string = DEFAULT_STACK_NAME,
    options: Omit<ClientOptions, "queueUrl" | "bucket" | "dlqUrl" | "settledUrl" | "api"> &
      CallOptions & { api?: boolean | { apiKey?: string } } = {},
  ): Promise<TranscriptionClient> {
    const { signal, api: apiOption, ...rest } = options;
    const endpoint = options.endpoint || options.endpointUrl || undefined;
    const region =
      options.region ||
      process.env.AWS_REGION ||
      process.env.AWS_DEFAULT_REGION ||
      (endpoint ? "us-east-1" : undefined);
    if (!region) throw new ConfigurationError("no AWS region: set AWS_REGION or pass region");
    checkAborted(signal, `reading stack '${name}'`);
    const { CloudFormationClient, DescribeStacksCommand } = await import("@aws-sdk/client-cloudformation");
    const cloudformation = new CloudFormationClient(
      clientConfig({
        region,
        endpoint,
        credentials: options.credentials,
        maxAttempts: options.maxAttempts,
        retryMode: options.retryMode,
        logger: options.logger,
      }),
    );
    let outputs: Record<string, string>;
    try {
      const response = await cloudformation.send(
        new DescribeStacksCommand({ StackName: name }),
        signal ? { abortSignal: signal } : {},
      );
      outputs = Object.fromEntries(
        (response.Stacks?.[0]?.Outputs ?? [])
          .filter((o) => o.OutputKey && o.OutputValue)
          .map((o) => [o.OutputKey, o.OutputValue]),
      ) as Record<string, string>;
    } catch (error) {
      if (errorCode(error) === "ValidationError" && String((error as Error).message).includes("does not exist")) {
        throw new ConfigurationError(`stack '${name}' does not exist in ${region}`);
      }
      throw serviceError(`reading stack '${name}'`, error, signal);
    } finally {
      cloudformation.destroy();
    }
    const missing = ["QueueUrl", "BucketName"].filter((key) => !outputs[key]);
    if (missing.length > 0) throw new ConfigurationError(`stack '${name}' has no output ${missing.join(" or ")}`);
    let api: ApiOptions | undefined;
    if (apiOption) {
      if (!outputs.ApiUrl)
        throw new ConfigurationError(`stack '${name}' has no output ApiUrl (deployed with api=false?)`);
      api = {
        url: outputs.ApiUrl,
        ...(typeof apiOption === "object" && apiOption.apiKey ? { apiKey: apiOption.apiKey } : {}),
      };
    }
    const client = new TranscriptionClient({
      ...rest,
      queueUrl: outputs.QueueUrl,
      bucket: outputs.BucketName,
      dlqUrl: outputs.DlqUrl,
      settledUrl: outputs.SettledLettersUrl,
      endpoint,
      region,
      api,
    });
    client.stackOutputs = outputs;
    return client;
  }

  // ---------------------------------------------------------------------------------------------- submit

  /**
   * The job as the worker will read it, or JobValidationError naming every offending field (InsecureCallbackUrl
   * for a callback URL the worker would skip; a host name is resolved at submit, not here).
   */
  validate(job: JobInput | LegacyJob): JobMessage {
    const message = validateJob(job);
    this.checkCallbackShape(message);
    return message;
  }

  /**
   * Validate the job as the worker will and send it (to the jobs queue, or the HTTPS API); its job id. Takes a v1
   * job or the legacy camelCase shape; a job without `job_id` gets a fresh one. Then records it as queued
   * (`results/<job_id>/queued.json`), so `status()` knows it.
   */
  async submit(job: JobInput | LegacyJob, options: CallOptions = {}): Promise<string> {
    return this.send(this.validate(job), options.signal);
  }

  /** Sends a validated message (submit, uploadAndSubmit, submitToCloudWorker). @internal */
  async send(message: JobMessage, signal?: AbortSignal): Promise<string> {
    if (message.callback_url) await checkCallbackUrl(message.callback_url, this.callbackPolicy);
    const action = `sending job ${message.job_id}`;
    checkAborted(signal, action);
    if (this.api !== undefined) {
      await this.api.postJob(message, signal);
    } else {
      const queueUrl = this.need("queueUrl");
      await aws(
        action,
        () =>
          this.sqs.send(
            new SendMessageCommand({
              QueueUrl: queueUrl,
              MessageBody: JSON.stringify(message),
              ...fifoParams(queueUrl, message.job_id, randomUUID().replaceAll("-", "")),
            }),
            abortable(signal),
          ),
        signal,
      );
    }
    if (this.bucket !== undefined) await this.markQueued(message.job_id, signal);
    return message.job_id;
  }

  /**
   * `results/<job_id>/queued.json`, after the message is sent: a job the worker has not touched yet is then known.
   * The job is on its way whatever happens here, so a failure is logged, not thrown (a retried submit would send it
   * twice); status() then reports JobNotFound until the worker starts it.
   */
  private async markQueued(jobId: string, signal?: AbortSignal): Promise<void> {
    const body = JSON.stringify({ job_id: jobId, state: "queued", queued_at: new Date().toISOString() });
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.need("bucket"),
          Key: `${this.resultsPrefix}${jobId}/${QUEUED_MARKER}`,
          Body: body,
          ContentType: "application/json",
        }),
        abortable(signal),
      );
    } catch (error) {
      if (isAbort(error, signal)) return; // sent already: the abort came too late to matter
      const warn = this.logger?.warn.bind(this.logger) ?? ((...content: unknown[]) => console.warn(...content));
      warn(
        `@whisper-batch/client: job ${jobId} was sent, but recording it as queued failed (status() will not know it ` +
          `until a worker starts it; does the role allow s3:PutObject on ${this.resultsPrefix}*/${QUEUED_MARKER}?):`,
        serviceError("recording the job as queued", error).message,
      );
    }
  }

  /** InsecureCallbackUrl for a callback URL the worker would skip, by its literal form (no DNS here). */
  private checkCallbackShape(message: JobMessage): void {
    if (!message.callback_url) return;
    const problem = callbackUrlProblem(message.callback_url, this.callbackPolicy);
    if (problem !== undefined) throw new InsecureCallbackUrl(message.callback_url, problem);
  }

  /**
   * Upload audio (a file path, bytes or a readable stream) under `audio/<job_id>/` in the bucket, then submit it;
   * its job id. The job is validated before the upload starts. Sources larger than a part (5 MiB by default) go up
   * as a multipart upload, several parts at once; `onProgress` sees the bytes uploaded so far.
   */
  async uploadAndSubmit(
    source: string | Uint8Array | Readable,
    job: UploadJob = {},
    options: UploadOptions = {},
  ): Promise<string> {
    const bucket = this.need("bucket");
    let filename = options.filename;
    if (typeof source === "string") {
      const info = await stat(source).catch(() => undefined);
      if (!info?.isFile())
        throw new JobValidationError(`${source} is not a file`, [{ field: "audio", message: "not a file" }]);
      filename ??= basename(source);
    }
    const jobId = job.job_id ?? newJobId();
    const key = this.audioKey(typeof jobId === "string" ? jobId : String(jobId), filename ?? "audio");
    const message = this.validate({ ...job, job_id: jobId, audio: `s3://${bucket}/${key}` });
    if (message.callback_url) await checkCallbackUrl(message.callback_url, this.callbackPolicy);
    const signal = options.signal;
    const action = `uploading ${filename ?? "audio"} to s3://${bucket}/${key}`;
    checkAborted(signal, action);
    const body = typeof source === "string" ? createReadStream(source) : source;
    const upload = new Upload({
      client: this.s3,
      ...(signal !== undefined ? { abortController: linkedController(signal) } : {}),
      params: {
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType:
          options.contentType ?? CONTENT_TYPES[extname(filename ?? "").toLowerCase()] ?? "application/octet-stream",
      },
      ...(options.partSize !== undefined ? { partSize: options.partSize } : {}),
      ...(options.queueSize !== undefined ? { queueSize: options.queueSize } : {}),
    });
    const onProgress = options.onProgress;
    if (onProgress) upload.on("httpUploadProgress", (p) => onProgress({ loaded: p.loaded ?? 0, total: p.total }));
    await aws(action, () => upload.done(), signal);
    return this.send(message, signal);
  }

  /** The key an upload for `jobId` goes to: `audio/<job_id>/<filename with unsafe characters replaced>`. */
  audioKey(jobId: string, filename: string): string {
    const safe =
      filename
        .replace(UNSAFE_KEY_CHARS, "-")
        .replace(/^[-.]+|[-.]+$/g, "")
        .slice(-200) || "audio";
    return `${this.audioPrefix}${jobId}/${safe}`;
  }

  // ---------------------------------------------------------------------------------------------- follow

  /**
   * Where the job stands, from `status.json` (worker progress) and `result.json` (the outcome); `queued` when the
   * worker has written neither but the submit's `queued.json` marker is there. JobNotFound when there is nothing at
   * all: never submitted (a mistyped id), or submitted by a client that leaves no marker. A progress report newer
   * than the result (the same job id submitted again) wins over the old result. Through the HTTPS API alone (no
   * bucket) an unknown id still reads as `queued`.
   */
  async status(jobId: string, options: CallOptions = {}): Promise<JobStatus> {
    checkJobId(jobId);
    const signal = options.signal;
    if (this.bucket === undefined && this.api !== undefined) {
      // The API returns result.json, or status.json while there is none: one of the two documents.
      const document = await this.api.getJob(jobId, signal);
      const isResult = document !== null && isResultDocument(document);
      return mergeStatus(jobId, isResult ? parseResult(document) : null, isResult ? null : document);
    }
    const [result, progress] = await Promise.all([
      this.getJson(jobId, "result.json", signal),
      this.getJson(jobId, "status.json", signal),
    ]);
    if (result === null && progress === null && (await this.getJson(jobId, QUEUED_MARKER, signal)) === null) {
      throw new JobNotFound(`job ${jobId} was never submitted (no ${QUEUED_MARKER}, status.json or result.json)`);
    }
    return mergeStatus(jobId, result === null ? null : parseResult(result), progress);
  }

  /**
   * Poll `status()` with backoff until the job finishes; the final status, completed or failed (a failed job does
   * not throw here: look at `.succeeded` and `.errorCode`). WaitTimeout, with the last status, after `timeout`;
   * JobNotFound at once for a job never submitted; Aborted when `signal` fires.
   */
  async wait(jobId: string, options: WaitOptions = {}): Promise<JobStatus> {
    const timeout = options.timeout === undefined ? 3_600_000 : options.timeout;
    const maxInterval = options.maxPollInterval ?? 10_000;
    const deadline = timeout === null ? undefined : performance.now() + timeout;
    const signal = options.signal;
    let interval = options.pollInterval ?? 1_000;
    for (;;) {
      checkAborted(signal, `waiting for job ${jobId}`);
      const status = await this.status(jobId, { signal });
      options.onProgress?.(status);
      if (status.done) return status;
      const remaining = deadline === undefined ? undefined : deadline - performance.now();
      if (remaining !== undefined && remaining <= 0) {
        throw new WaitTimeout(`job ${jobId} still ${status.state} after ${(timeout as number) / 1000} s`, status);
      }
      try {
        await sleep(
          remaining === undefined ? interval : Math.min(interval, remaining),
          undefined,
          abortableTimer(signal),
        );
      } catch (error) {
        throw new Aborted(`waiting for job ${jobId}: aborted`, signal?.reason ?? error);
      }
      interval = Math.min(interval * 1.5, maxInterval);
    }
  }

  /** The `result.json` of a finished job (completed or failed); JobNotFound while unfinished. */
  async result(jobId: string, options: CallOptions = {}): Promise<JobResult> {
    checkJobId(jobId);
    const signal = options.signal;
    let document: Record<string, unknown> | null;
    if (this.bucket === undefined && this.api !== undefined) {
      document = await this.api.getJob(jobId, signal);
      if (document !== null && !isResultDocument(document)) document = null; // status.json: no result yet
    } else {
      document = await this.getJson(jobId, "result.json", signal);
    }
    if (document === null) {
      const state = await this.status(jobId, { signal }).then(
        (status) => status.state,
        (error: unknown) => {
          if (error instanceof JobNotFound) return "never submitted";
          throw error;
        },
      );
      throw new JobNotFound(`job ${jobId} has no result yet (state: ${state})`);
    }
    return parseResult(document);
  }

  // ----------------------------------------------------------------------------------------------- fetch

  /** Format → S3 key of each transcript of a completed job; JobFailed if it failed. */
  async resultKeys(jobId: string, options: CallOptions = {}): Promise<Record<string, string>> {
    const result = await this.result(jobId, options);
    if (result.status !== "completed") {
      throw new JobFailed(jobId, result.error?.code ?? "unknown", result.error?.message ?? "");
    }
    return { ...result.results };
  }

  /** The raw bytes of the job's `format` transcript; JobNotFound if the job did not produce that format. */
  async readTranscript(jobId: string, format: OutputFormat, options: CallOptions = {}): Promise<Buffer> {
    const keys = await this.resultKeys(jobId, options);
    const wanted = String(format).toLowerCase();
    const key = keys[wanted];
    if (key === undefined) {
      const produced = Object.keys(keys).join(", ") || "nothing";
      throw new JobNotFound(`job ${jobId} has no ${wanted} transcript; it produced ${produced}`);
    }
    const body = await this.getBytes(key, options.signal);
    if (body === null) throw new JobNotFound(`s3://${this.bucket}/${key} is missing`);
    return body;
  }

  /** The job's json transcript (OpenAI `verbose_json` shape: `text`, `segments`, `language`, ...). */
  async transcript(jobId: string, options: CallOptions = {}): Promise<Transcript> {
    return JSON.parse((await this.readTranscript(jobId, "json", options)).toString("utf8")) as Transcript;
  }

  /** The plain transcript text, from the json or txt output, whichever the job produced. */
  async text(jobId: string, options: CallOptions = {}): Promise<string> {
    const keys = await this.resultKeys(jobId, options);
    if ("json" in keys) return String((await this.transcript(jobId, options)).text ?? "").trim();
    if ("txt" in keys) return (await this.readTranscript(jobId, "txt", options)).toString("utf8").trim();
    throw new JobNotFound(`job ${jobId} produced neither json nor txt (it produced ${Object.keys(keys).join(", ")})`);
  }

  /**
   * Write the job's `format` transcript to `dest`: a file, or a directory (existing, or written with a trailing
   * slash) for `<job_id>.<format>`; the current directory by default. The path written.
   */
  async download(jobId: string, format: OutputFormat, dest?: string, options: CallOptions = {}): Promise<string> {
    const body = await this.readTranscript(jobId, format, options);
    let target = resolve(dest ?? ".");
    const isDir =
      dest === undefined ||
      dest.endsWith("/") ||
      dest.endsWith(sep) ||
      (await stat(target).catch(() => undefined))?.isDirectory();
    if (isDir) target = join(target, `${jobId}.${String(format).toLowerCase()}`);
    await mkdir(resolve(target, ".."), { recursive: true });
    await writeFile(target, body);
    return target;
  }

  // ------------------------------------------------------------------------------------- cost and health

  /** Cost, instance seconds and the managed APIs' price for this much audio (see pricing.ts). */
  static estimateCost(
    duration: number | string,
    model = "base",
    instanceType = "g5.xlarge",
    spot = false,
  ): CostEstimate {
    return estimateCost(duration, model, instanceType, spot);
  }

  estimateCost(duration: number | string, model = "base", instanceType = "g5.xlarge", spot = false): CostEstimate {
    return estimateCost(duration, model, instanceType, spot);
  }

  /** The bucket, the jobs queue (waiting and in-flight counts) and the DLQ's depth, each checked for real. */
  async checkHealth(options: CallOptions = {}): Promise<HealthReport> {
    checkAborted(options.signal, "checking health");
    // Few retries and short timeouts: a health check must answer in seconds, not after the SDK's backoff.
    const fast = { maxAttempts: 2, requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000 } };
    const sqs = new SQSClient({ ...clientConfig(this.awsOptions), ...fast });
    const s3 = new S3Client({ ...s3Config(this.awsOptions), ...fast });
    // An abort closes the clients' sockets: the checks in flight fail at once, and the report is not returned.
    const close = (): void => {
      sqs.destroy();
      s3.destroy();
    };
    options.signal?.addEventListener("abort", close, { once: true });
    try {
      const report = await checkHealth({
        sqs,
        s3,
        queueUrl: this.need("queueUrl"),
        bucket: this.need("bucket"),
        resultsPrefix: this.resultsPrefix,
        dlqUrl: this.dlq,
      });
      checkAborted(options.signal, "checking health");
      return report;
    } finally {
      options.signal?.removeEventListener("abort", close);
      close();
    }
  }

  // ------------------------------------------------------------------------------------------------- DLQ

  /** The DLQ: given, or found through the jobs queue's redrive policy. */
  async dlqUrl(options: CallOptions = {}): Promise<string> {
    checkAborted(options.signal, "finding the DLQ");
    if (this.dlq === undefined) {
      const queueUrl = this.need("queueUrl");
      this.dlq = await aws("reading the jobs queue's redrive policy", async () =>
        deadLetterQueueUrl(this.sqs, await redrivePolicy(this.sqs, queueUrl)),
      );
      if (this.dlq === undefined)
        throw new ConfigurationError("the jobs queue has no redrive policy: set WHISPER_DLQ_URL or pass dlqUrl");
    }
    return this.dlq;
  }

  /** The DLQ, then the settled-letters queue when there is one: dead letters are listed and redriven from both. */
  private async letterQueues(): Promise<DeadLetterQueue[]> {
    const queues = [new DeadLetterQueue(this.sqs, await this.dlqUrl())];
    if (this.settledUrl) queues.push(new DeadLetterQueue(this.sqs, this.settledUrl));
    return queues;
  }

  /**
   * Up to `limit` messages in the DLQ and the settled-letters queue (DLQ first) with why they are there; they stay
   * where they are. A settled one says when (`settledAt`).
   */
  async deadLetters(limit = 100, options: CallOptions = {}): Promise<DeadLetter[]> {
    checkAborted(options.signal, "listing the DLQ");
    const queues = await this.letterQueues();
    return aws("listing the DLQ", async () => {
      const letters: DeadLetter[] = [];
      for (const queue of queues) {
        letters.push(...(await queue.held(limit - letters.length, async (held) => [...held])));
        if (letters.length >= limit) break;
      }
      return letters;
    });
  }

  /**
   * Send dead letters back to the jobs queue: those whose job id or message id is in `ids`, or all when `ids` is
   * omitted, from the DLQ and the settled-letters queue. The letters moved; ids that matched nothing are not among
   * them. Each goes back as a new message with its original body, so it gets a fresh set of receives, leaves the
   * queue it was in, and is recorded as queued as `submit()` records a job.
   */
  async redrive(ids?: Iterable<string>, options: CallOptions = {}): Promise<DeadLetter[]> {
    checkAborted(options.signal, "redriving the DLQ");
    const wanted = ids === undefined ? undefined : new Set(ids);
    const queueUrl = this.need("queueUrl");
    const queues = await this.letterQueues();
    const picked = (d: DeadLetter): boolean =>
      wanted === undefined || (d.jobId !== null && wanted.has(d.jobId)) || wanted.has(d.messageId);
    const chosen: DeadLetter[] = [];
    // Every queue stays held until all are done (the Python client's ExitStack), then what was not moved goes back.
    const drain = async (index: number): Promise<void> => {
      const queue = queues[index];
      if (queue === undefined) return;
      await queue.held(undefined, async (letters) => {
        for (const letter of letters) {
          if (!picked(letter)) continue;
          await queue.move(letter, queueUrl);
          chosen.push(letter);
        }
        await drain(index + 1);
      });
    };
    await aws("redriving the DLQ", () => drain(0));
    // Queued again, as a submit records it, so status() knows the job until a worker starts it.
    if (this.bucket !== undefined) {
      for (const letter of chosen) if (letter.jobId !== null) await this.markQueued(letter.jobId);
    }
    return chosen;
  }

  /** Close the SDK clients' sockets (a process exits without this too, once idle). */
  destroy(): void {
    this.sqs.destroy();
    this.s3.destroy();
  }

  // -------------------------------------------------------------------------------------------------- S3

  private need<K extends "queueUrl" | "bucket">(name: K): string {
    const value = this[name];
    if (!value) {
      const what =
        name === "queueUrl"
          ? "no jobs queue URL: this client only has the HTTPS API"
          : "no results bucket: this client only has the HTTPS API";
      throw new ConfigurationError(what);
    }
    return value;
  }

  private async getJson(
    jobId: string,
    filename: string,
    signal?: AbortSignal,
  ): Promise<Record<string, unknown> | null> {
    const body = await this.getBytes(`${this.resultsPrefix}${jobId}/${filename}`, signal);
    if (body === null) return null;
    try {
      const value: unknown = JSON.parse(body.toString("utf8"));
      return typeof value === "object" && value !== null && !Array.isArray(value)
        ? (value as Record<string, unknown>)
        : null;
    } catch {
      return null; // half-written or foreign: as good as absent
    }
  }

  private async getBytes(key: string, signal?: AbortSignal): Promise<Buffer | null> {
    const bucket = this.need("bucket");
    try {
      const response = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }), abortable(signal));
      return Buffer.from(
        await (response.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
    } catch (error) {
      if (["NoSuchKey", "404", "NotFound"].includes(errorCode(error))) return null;
      throw serviceError(`reading s3://${bucket}/${key}`, error, signal);
    }
  }
}

/** The SDK's per-call options for an optional signal. */
function abortable(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal !== undefined ? { abortSignal: signal } : {};
}

/** An AbortController that aborts with `signal` (lib-storage's Upload takes a controller, not a signal). */
function linkedController(signal: AbortSignal): AbortController {
  const controller = new AbortController();
  if (signal.aborted) controller.abort(signal.reason);
  else signal.addEventListener("abort", () => controller.abort(signal.reason), { once: true });
  return controller;
}

function abortableTimer(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal !== undefined ? { signal } : {};
}

function truthy(value: string | undefined): boolean {
  return ["1", "true", "yes", "on"].includes((value ?? "").trim().toLowerCase());
}

function checkJobId(jobId: string): void {
  if (!isJobId(jobId)) {
    throw new JobValidationError(`invalid job id '${jobId}': 1-128 ASCII letters, digits, '_' or '-'`, [
      { field: "job_id", message: `does not match ${JOB_ID_PATTERN}` },
    ]);
  }
}

/** result.json has a `status`; status.json a `state`. */
function isResultDocument(document: Record<string, unknown>): boolean {
  return "status" in document && !("state" in document);
}

// moto, LocalStack and MinIO serve buckets by path, not by virtual host.
function s3Config(options: AwsOptions): Record<string, unknown> {
  return { ...clientConfig(options), ...(options.endpoint ? { forcePathStyle: true } : {}) };
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
