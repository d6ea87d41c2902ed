/**
 * The backend's side of whisper-batch in Node.js, the Python client's `TranscriptionClient` method for method:
 *
 *     const client = await TranscriptionClient.fromStack("WhisperBatch");   // or fromEnv(), or new (...)
 *     const jobId = await client.uploadAndSubmit("call.flac", { formats: ["srt", "json"] });
 *     const status = await client.wait(jobId, { timeout: 600_000 });       // JobStatus: .succeeded, .errorCode
 *     const text = (await client.transcript(jobId)).text;
 *
 * Jobs are validated with the worker's own contract before anything is uploaded or sent, so a job the worker would
 * reject fails here, at once, naming the field. Everything thrown is a `TranscriptionError` (see errors.ts).
 * Times are in milliseconds, as everywhere in Node; sizes in bytes.
 */

import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, stat, writeFile } from "node:fs/promises";
import { basename, extname, join, resolve, sep } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

import { CloudFormationClient, DescribeStacksCommand } from "@aws-sdk/client-cloudformation";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { SQSClient, SendMessageCommand } from "@aws-sdk/client-sqs";
import { Upload } from "@aws-sdk/lib-storage";

import {
  aws,
  clientConfig,
  deadLetterQueueUrl,
  errorCode,
  fifoParams,
  redrivePolicy,
  regionFromQueueUrl,
  type AwsOptions,
} from "./aws.js";
import type { JobInput, JobMessage, JobResult, LegacyJob, OutputFormat } from "./contract/types.js";
import { isJobId, JOB_ID_PATTERN, newJobId, validateJob } from "./contract/validate.js";
import { DeadLetterQueue, type DeadLetter } from "./deadletters.js";
import { ConfigurationError, JobFailed, JobNotFound, JobValidationError, ServiceError, WaitTimeout } from "./errors.js";
import { checkHealth, type HealthReport } from "./health.js";
import { ApiClient, type ApiOptions, type Credentials } from "./https.js";
import { estimateCost, type CostEstimate } from "./pricing.js";
import { mergeStatus, parseResult, type JobStatus } from "./status.js";

export const DEFAULT_STACK_NAME = "WhisperBatch";

export interface ClientOptions {
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
  /** moto, LocalStack, MinIO. */
  endpointUrl?: string | undefined;
  region?: string | undefined;
  credentials?: Credentials | undefined;
  resultsPrefix?: string | undefined;
  audioPrefix?: string | undefined;
  /** Submit (and, without a bucket, follow) jobs through the stack's HTTPS API instead of SQS and S3. */
  api?: ApiOptions | undefined;
}

export interface UploadProgress {
  /** Bytes uploaded so far. */
  loaded: number;
  /** The file's size, when known (always for a path or a buffer). */
  total: number | undefined;
}

export interface UploadOptions {
  onProgress?: (progress: UploadProgress) => void;
  /** Names the uploaded object `audio/<job_id>/<filename>`; by default the path's base name, else "audio". */
  filename?: string;
  contentType?: string;
  /** Multipart part size in bytes (at least 5 MiB, S3's minimum); larger sources go up in parts, in parallel. */
  partSize?: number;
  /** How many parts are in flight at once. */
  queueSize?: number;
}

export interface WaitOptions {
  /** Milliseconds before WaitTimeout (with the last status); `null` waits forever. Default one hour. */
  timeout?: number | null;
  /** Sees every status polled, e.g. to drive a progress bar. */
  onProgress?: (status: JobStatus) => void;
  /** First poll interval in milliseconds (default 1000), growing 1.5× up to `maxPollInterval` (default 10000). */
  pollInterval?: number;
  maxPollInterval?: number;
  signal?: AbortSignal;
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
  private dlq: string | undefined;
  private readonly awsOptions: AwsOptions;

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
    if (!region && options.endpointUrl) region = "us-east-1"; // a local endpoint (moto, LocalStack) takes any region
    if (!region) throw new ConfigurationError("no AWS region: set AWS_REGION or pass region");
    this.region = region;
    this.awsOptions = { region, endpointUrl: options.endpointUrl, credentials: options.credentials };
    this.sqs = new SQSClient(clientConfig(this.awsOptions));
    this.s3 = new S3Client(s3Config(this.awsOptions));
    this.api = options.api ? new ApiClient({ credentials: options.credentials, ...options.api }, region) : undefined;
  }

  // ---------------------------------------------------------------------------------------- construction

  /**
   * From WHISPER_QUEUE_URL, WHISPER_RESULTS_BUCKET, WHISPER_DLQ_URL, WHISPER_SETTLED_URL, AWS_ENDPOINT_URL and
   * AWS_REGION.
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
      endpointUrl: env.AWS_ENDPOINT_URL || undefined,
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
   * `{apiKey}`) jobs are submitted through the stack's HTTPS API, signed with SigV4 (or with the key).
   */
  static async fromStack(
    name: string = DEFAULT_STACK_NAME,
    options: {
      region?: string;
      endpointUrl?: string;
      credentials?: Credentials;
      api?: boolean | { apiKey?: string };
    } = {},
  ): Promise<TranscriptionClient> {
    const region =
      options.region ||
      process.env.AWS_REGION ||
      process.env.AWS_DEFAULT_REGION ||
      (options.endpointUrl ? "us-east-1" : undefined);
    if (!region) throw new ConfigurationError("no AWS region: set AWS_REGION or pass region");
    const cloudformation = new CloudFormationClient(
      clientConfig({ region, endpointUrl: options.endpointUrl, credentials: options.credentials }),
    );
    let outputs: Record<string, string>;
    try {
      const response = await cloudformation.send(new DescribeStacksCommand({ StackName: name }));
      outputs = Object.fromEntries(
        (response.Stacks?.[0]?.Outputs ?? [])
          .filter((o) => o.OutputKey && o.OutputValue)
          .map((o) => [o.OutputKey, o.OutputValue]),
      ) as Record<string, string>;
    } catch (error) {
      if (errorCode(error) === "ValidationError" && String((error as Error).message).includes("does not exist")) {
        throw new ConfigurationError(`stack '${name}' does not exist in ${region}`);
      }
      throw new ServiceError(`reading stack '${name}' failed: ${(error as Error).message}`, {
        awsCode: errorCode(error) || undefined,
        cause: error,
      });
    } finally {
      cloudformation.destroy();
    }
    const missing = ["QueueUrl", "BucketName"].filter((key) => !outputs[key]);
    if (missing.length > 0) throw new ConfigurationError(`stack '${name}' has no output ${missing.join(" or ")}`);
    let api: ApiOptions | undefined;
    if (options.api) {
      if (!outputs.ApiUrl)
        throw new ConfigurationError(`stack '${name}' has no output ApiUrl (deployed with api=false?)`);
      api = {
        url: outputs.ApiUrl,
        ...(typeof options.api === "object" && options.api.apiKey ? { apiKey: options.api.apiKey } : {}),
      };
    }
    const client = new TranscriptionClient({
      queueUrl: outputs.QueueUrl,
      bucket: outputs.BucketName,
      dlqUrl: outputs.DlqUrl,
      settledUrl: outputs.SettledLettersUrl,
      endpointUrl: options.endpointUrl,
      region,
      credentials: options.credentials,
      api,
    });
    client.stackOutputs = outputs;
    return client;
  }

  // ---------------------------------------------------------------------------------------------- submit

  /** The job as the worker will read it, or JobValidationError naming every offending field. */
  validate(job: JobInput | LegacyJob | Record<string, unknown>): JobMessage {
    return validateJob(job);
  }

  /**
   * Validate the job as the worker will and send it (to the jobs queue, or the HTTPS API); its job id. Takes a v1
   * job or the legacy camelCase shape; a job without `job_id` gets a fresh one.
   */
  async submit(job: JobInput | LegacyJob | Record<string, unknown>): Promise<string> {
    const message = this.validate(job);
    if (this.api !== undefined) {
      await this.api.postJob(message);
      return message.job_id;
    }
    const queueUrl = this.need("queueUrl");
    await aws(`sending job ${message.job_id}`, () =>
      this.sqs.send(
        new SendMessageCommand({
          QueueUrl: queueUrl,
          MessageBody: JSON.stringify(message),
          ...fifoParams(queueUrl, message.job_id, randomUUID().replaceAll("-", "")),
        }),
      ),
    );
    return message.job_id;
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
    const body = typeof source === "string" ? createReadStream(source) : source;
    const upload = new Upload({
      client: this.s3,
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
    await aws(`uploading ${filename ?? "audio"} to s3://${bucket}/${key}`, () => upload.done());
    return this.submit(message);
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
   * Where the job stands, from `status.json` (worker progress) and `result.json` (the outcome). A job with neither
   * is `queued`: the client cannot tell a queued job from an unknown id. A progress report newer than the result
   * (the same job id submitted again) wins over the old result.
   */
  async status(jobId: string): Promise<JobStatus> {
    checkJobId(jobId);
    if (this.bucket === undefined && this.api !== undefined) {
      // The API returns result.json, or status.json while there is none: one of the two documents.
      const document = await this.api.getJob(jobId);
      const isResult = document !== null && isResultDocument(document);
      return mergeStatus(jobId, isResult ? parseResult(document) : null, isResult ? null : document);
    }
    const [result, progress] = await Promise.all([
      this.getJson(jobId, "result.json"),
      this.getJson(jobId, "status.json"),
    ]);
    return mergeStatus(jobId, result === null ? null : parseResult(result), progress);
  }

  /**
   * Poll `status()` with backoff until the job finishes; the final status, completed or failed (a failed job does
   * not throw here: look at `.succeeded` and `.errorCode`). WaitTimeout, with the last status, after `timeout`.
   */
  async wait(jobId: string, options: WaitOptions = {}): Promise<JobStatus> {
    const timeout = options.timeout === undefined ? 3_600_000 : options.timeout;
    const maxInterval = options.maxPollInterval ?? 10_000;
    const deadline = timeout === null ? undefined : performance.now() + timeout;
    let interval = options.pollInterval ?? 1_000;
    for (;;) {
      options.signal?.throwIfAborted();
      const status = await this.status(jobId);
      options.onProgress?.(status);
      if (status.done) return status;
      const remaining = deadline === undefined ? undefined : deadline - performance.now();
      if (remaining !== undefined && remaining <= 0) {
        throw new WaitTimeout(`job ${jobId} still ${status.state} after ${(timeout as number) / 1000} s`, status);
      }
      await sleep(
        remaining === undefined ? interval : Math.min(interval, remaining),
        undefined,
        options.signal ? { signal: options.signal } : {},
      );
      interval = Math.min(interval * 1.5, maxInterval);
    }
  }

  /** The `result.json` of a finished job (completed or failed); JobNotFound while unfinished. */
  async result(jobId: string): Promise<JobResult> {
    checkJobId(jobId);
    let document: Record<string, unknown> | null;
    if (this.bucket === undefined && this.api !== undefined) {
      document = await this.api.getJob(jobId);
      if (document !== null && !isResultDocument(document)) document = null; // status.json: no result yet
    } else {
      document = await this.getJson(jobId, "result.json");
    }
    if (document === null)
      throw new JobNotFound(`job ${jobId} has no result yet (state: ${(await this.status(jobId)).state})`);
    return parseResult(document);
  }

  // ----------------------------------------------------------------------------------------------- fetch

  /** Format → S3 key of each transcript of a completed job; JobFailed if it failed. */
  async resultKeys(jobId: string): Promise<Record<string, string>> {
    const result = await this.result(jobId);
    if (result.status !== "completed") {
      throw new JobFailed(jobId, result.error?.code ?? "unknown", result.error?.message ?? "");
    }
    return { ...result.results };
  }

  /** The raw bytes of the job's `format` transcript; JobNotFound if the job did not produce that format. */
  async readTranscript(jobId: string, format: OutputFormat | string): Promise<Buffer> {
    const keys = await this.resultKeys(jobId);
    const key = keys[format.toLowerCase()];
    if (key === undefined) {
      const produced = Object.keys(keys).join(", ") || "nothing";
      throw new JobNotFound(`job ${jobId} has no ${format} transcript; it produced ${produced}`);
    }
    const body = await this.getBytes(key);
    if (body === null) throw new JobNotFound(`s3://${this.bucket}/${key} is missing`);
    return body;
  }

  /** The job's json transcript (OpenAI `verbose_json` shape: `text`, `segments`, `language`, ...). */
  async transcript(jobId: string): Promise<Transcript> {
    return JSON.parse((await this.readTranscript(jobId, "json")).toString("utf8")) as Transcript;
  }

  /** The plain transcript text, from the json or txt output, whichever the job produced. */
  async text(jobId: string): Promise<string> {
    const keys = await this.resultKeys(jobId);
    if ("json" in keys) return String((await this.transcript(jobId)).text ?? "").trim();
    if ("txt" in keys) return (await this.readTranscript(jobId, "txt")).toString("utf8").trim();
    throw new JobNotFound(`job ${jobId} produced neither json nor txt (it produced ${Object.keys(keys).join(", ")})`);
  }

  /**
   * Write the job's `format` transcript to `dest`: a file, or a directory (existing, or written with a trailing
   * slash) for `<job_id>.<format>`; the current directory by default. The path written.
   */
  async download(jobId: string, format: OutputFormat | string, dest?: string): Promise<string> {
    const body = await this.readTranscript(jobId, format);
    let target = resolve(dest ?? ".");
    const isDir =
      dest === undefined ||
      dest.endsWith("/") ||
      dest.endsWith(sep) ||
      (await stat(target).catch(() => undefined))?.isDirectory();
    if (isDir) target = join(target, `${jobId}.${format.toLowerCase()}`);
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
  async checkHealth(): Promise<HealthReport> {
    // Few retries and short timeouts: a health check must answer in seconds, not after the SDK's backoff.
    const fast = { maxAttempts: 2, requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000 } };
    const sqs = new SQSClient({ ...clientConfig(this.awsOptions), ...fast });
    const s3 = new S3Client({ ...s3Config(this.awsOptions), ...fast });
    try {
      return await checkHealth({
        sqs,
        s3,
        queueUrl: this.need("queueUrl"),
        bucket: this.need("bucket"),
        resultsPrefix: this.resultsPrefix,
        dlqUrl: this.dlq,
      });
    } finally {
      sqs.destroy();
      s3.destroy();
    }
  }

  // ------------------------------------------------------------------------------------------------- DLQ

  /** The DLQ: given, or found through the jobs queue's redrive policy. */
  async dlqUrl(): Promise<string> {
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
  async deadLetters(limit = 100): Promise<DeadLetter[]> {
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
   * them. Each goes back as a new message with its original body, so it gets a fresh set of receives, and leaves the
   * queue it was in.
   */
  async redrive(ids?: Iterable<string>): Promise<DeadLetter[]> {
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

  private async getJson(jobId: string, filename: string): Promise<Record<string, unknown> | null> {
    const body = await this.getBytes(`${this.resultsPrefix}${jobId}/${filename}`);
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

  private async getBytes(key: string): Promise<Buffer | null> {
    const bucket = this.need("bucket");
    try {
      const response = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(
        await (response.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
    } catch (error) {
      if (["NoSuchKey", "404", "NotFound"].includes(errorCode(error))) return null;
      throw new ServiceError(`reading s3://${bucket}/${key} failed: ${(error as Error).message}`, {
        awsCode: errorCode(error) || undefined,
        cause: error,
      });
    }
  }
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
  return { ...clientConfig(options), ...(options.endpointUrl ? { forcePathStyle: true } : {}) };
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
