/**
 * The documents of the contract, as TypeScript types: the job message (README "Message contract"), `result.json`
 * (README "Results", the worker's `JobResult`) and the callback payloads (README "Callbacks"). Keys stay as the
 * worker writes them (snake_case): these are the wire documents, not a re-modelling of them.
 */

export const OUTPUT_FORMATS = ["json", "srt", "vtt", "txt", "tsv"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export type CallbackShape = "v1" | "legacy";

/** A job as a backend writes it (contract version 1); only `audio` is required here, `job_id` is generated. */
export interface JobInput {
  version?: 1;
  job_id?: string;
  audio: string;
  model?: string | null;
  formats?: string[];
  language?: string | null;
  task?: "transcribe" | "translate";
  word_timestamps?: boolean;
  initial_prompt?: string | null;
  beam_size?: number | null;
  /** Label who spoke when (README "Message contract"); the speaker counts below need it. */
  diarize?: boolean;
  /** Exact number of speakers, 1-32; excludes `min_speakers`/`max_speakers`. */
  speakers?: number | null;
  /** Fewest speakers to find, 1-32. */
  min_speakers?: number | null;
  /** Most speakers to label, 1-32, at least `min_speakers`. */
  max_speakers?: number | null;
  callback_url?: string | null;
  callback_shape?: CallbackShape;
  progress_callback?: boolean;
  metadata?: Record<string, unknown>;
}

/** A validated job, as it is sent: lower-cased, de-duplicated, with its job id. */
export interface JobMessage extends JobInput {
  job_id: string;
  formats?: OutputFormat[];
}

/** The shape older backends send (README "Message contract"); the worker maps it onto version 1. */
export interface LegacyJob {
  transcriptionId: string;
  userId?: string | number;
  s3AudioUrl: string;
  model?: string;
  format?: string;
  callbackUrl?: string;
  metadata?: Record<string, unknown>;
}

export interface ErrorInfo {
  code: string;
  message: string;
}

/** One speaker's talk time in a diarized job (`speaker` as the segments label it: `SPEAKER_00`, ...). */
export interface SpeakerTime {
  speaker: string;
  seconds: number;
}

/** `results/<job_id>/result.json`, written last by the worker. */
export interface JobResult {
  version?: number;
  job_id: string | null;
  status: "completed" | "failed" | string;
  model?: string | null;
  task?: string | null;
  language?: string | null;
  duration_seconds?: number | null;
  processing_seconds?: number | null;
  bucket?: string | null;
  results: Record<string, string>;
  error: ErrorInfo | null;
  metadata: Record<string, unknown>;
  request_sha256?: string | null;
  message_id?: string | null;
  attempt?: number | null;
  finished_at?: string | null;
  text_preview?: string | null;
  /** Each speaker's talk time, in order of first appearance; null when the job was not diarized. */
  speakers?: SpeakerTime[] | null;
  callback?: { delivered: boolean; attempts: number; error?: string | null } | null;
}

/** The result callback of a v1 job. */
export interface V1Callback {
  job_id: string;
  status: "completed" | "failed";
  bucket: string | null;
  results: Record<string, string>;
  language: string | null;
  duration_seconds: number | null;
  processing_seconds: number | null;
  model: string | null;
  error: ErrorInfo | null;
  metadata: Record<string, unknown>;
  /** As in `result.json`: each speaker's talk time, null when the job was not diarized. */
  speakers?: SpeakerTime[] | null;
}

/**
 * The result callback of a job sent with `callback_shape: "legacy"` (every job sent by `submitToCloudWorker`): the
 * v1 fields plus what legacy backends read; `status` is upper-case and `error` is the message, its code beside it.
 */
export interface LegacyCallback extends Omit<V1Callback, "status" | "error"> {
  transcriptionId: string;
  userId?: string | number | null;
  status: "COMPLETED" | "FAILED";
  s3ResultUrl: string | null;
  durationSeconds: number | null;
  processingTime: number | null;
  error?: string | null;
  error_code?: string | null;
}

/** The optional progress event (`progress_callback: true`): told apart from results by `event`. */
export interface ProgressCallback {
  job_id: string;
  event: "progress";
  state: string;
  percent: number | null;
}
