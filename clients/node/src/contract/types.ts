/**
 * The documents of the contract, as TypeScript types: the job message (README "Message contract"), `result.json`
 * (README "Results", the worker's `JobResult`) and the callback payloads (README "Callbacks"). Keys stay as the
 * worker writes them (snake_case): these are the wire documents, not a re-modelling of them.
 */

export const OUTPUT_FORMATS = ["json", "srt", "vtt", "txt", "tsv"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
/** A format as a job may spell it: the worker lower-cases it. */
export type FormatName = OutputFormat | Uppercase<OutputFormat>;

/** The models the worker knows by name (the schema's description lists them); any case is accepted on the wire. */
export const MODEL_NAMES = [
  "tiny",
  "tiny.en",
  "base",
  "base.en",
  "small",
  "small.en",
  "medium",
  "medium.en",
  "large-v1",
  "large-v2",
  "large-v3",
  "large",
  "large-v3-turbo",
  "turbo",
] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

declare const customModelBrand: unique symbol;
/** A model name a particular worker serves beyond the official ones: made with `customModel("my-finetune")`. */
export type CustomModel = string & { readonly [customModelBrand]: true };

/** Marks `name` as a model your workers serve although it is not an official Whisper name. */
export function customModel(name: string): CustomModel {
  return name as CustomModel;
}

/** A model as a job names it: official (either case: the worker lower-cases it) or made with `customModel()`. */
export type Model = ModelName | Uppercase<ModelName> | CustomModel;

export type CallbackShape = "v1" | "legacy";

/** A job as a backend writes it (contract version 1); only `audio` is required here, `job_id` is generated. */
export interface JobInput {
  version?: 1;
  job_id?: string;
  audio: string;
  model?: Model | null;
  formats?: FormatName[];
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
  /** How SRT and WebVTT cues are cut and timed (README "Message contract"); omitted fields take their defaults. */
  subtitles?: SubtitleOptions;
  /** Transcribe only where someone speaks (default true); false decodes every second, an object tunes it. */
  vad?: boolean | VadOptions;
  callback_url?: string | null;
  callback_shape?: CallbackShape;
  progress_callback?: boolean;
  metadata?: Record<string, unknown>;
}

/** Voice activity detection's tunables; omitted fields take their defaults. */
export interface VadOptions {
  /** Speech probability from which a 32 ms chunk counts as speech, 0-1 (0.5). */
  threshold?: number;
  /** Shorter bursts of speech are ignored, milliseconds (250). */
  min_speech_ms?: number;
  /** A pause this long ends a stretch of speech, milliseconds (2000). */
  min_silence_ms?: number;
  /** Audio kept on each side of every stretch of speech, milliseconds (400). */
  speech_pad_ms?: number;
}

/** Subtitle options: readable cues cut between words (the defaults), or `style: "segments"`, one per segment. */
export interface SubtitleOptions {
  style?: "readable" | "segments";
  /** Characters a line, 10-200 (42). */
  max_line_width?: number;
  /** Lines a cue, 1-4 (2). */
  max_line_count?: number;
  /** Seconds a cue stays at least (1.0) and at most (7.0). */
  min_duration?: number;
  max_duration?: number;
  /** Reading speed a cue is held on screen for, characters a second (20). */
  max_chars_per_second?: number;
  /** Seconds between cues (0.08). */
  min_gap?: number;
  /** Visible speaker names: null is every_cue in SRT, none in WebVTT (whose voice spans name the speaker). */
  speaker_labels?: "changes" | "every_cue" | "none" | null;
  /** Underline each word while it is spoken. */
  highlight_words?: boolean;
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
  /** As the old backends wrote it: `"BASE"`, or lower-case, or a `customModel()`. */
  model?: Model;
  /** `"SRT"`, `"json"`, ...: one output format, either case. */
  format?: FormatName;
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
  /** Seconds of speech voice activity detection found (0: no speech, an empty transcript); absent when it was off. */
  speech_seconds?: number | null;
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
