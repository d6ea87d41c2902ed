/**
 * Where a job stands, from the worker's two documents (README "Progress"): `results/<job_id>/status.json`, kept up
 * to date while it works, and `result.json`, written last. The same rules as the Python client's `status()`.
 */

import type { JobResult } from "./contract/types.js";

export type JobState = "queued" | "fetching" | "decoding" | "transcribing" | "storing" | "completed" | "failed";
export const TERMINAL_STATES: readonly string[] = ["completed", "failed"];

export interface JobStatus {
  jobId: string;
  /** `queued` until a worker reports progress (the client's status() throws JobNotFound for an unknown id). */
  state: JobState | string;
  /** The worker's progress through the audio when it reports one; 100 once completed. */
  percent: number | null;
  updatedAt: string | null;
  /** The parsed `result.json` once the job has finished. */
  result: JobResult | null;
  done: boolean;
  succeeded: boolean;
  errorCode: string | null;
  errorMessage: string | null;
}

function make(
  jobId: string,
  state: string,
  percent: number | null,
  updatedAt: string | null,
  result: JobResult | null,
): JobStatus {
  const done = result !== null && TERMINAL_STATES.includes(state);
  return {
    jobId,
    state,
    percent,
    updatedAt,
    result,
    done,
    succeeded: done && state === "completed",
    errorCode: result?.error?.code ?? null,
    errorMessage: result?.error?.message ?? null,
  };
}

/**
 * The job's status from its `result.json` and `status.json` (either may be null: not written yet, or unreadable).
 * A progress report newer than the result (the same job id submitted again) wins over the old result; a terminal
 * progress state without a readable result is `storing`, since result.json is written last.
 */
export function mergeStatus(
  jobId: string,
  result: JobResult | null,
  progress: Record<string, unknown> | null,
): JobStatus {
  if (result !== null && TERMINAL_STATES.includes(result.status)) {
    const reportedLater = progress !== null && newer(progress.updated_at, result.finished_at);
    if (!reportedLater || TERMINAL_STATES.includes(String(progress?.state))) {
      const percent = result.status === "completed" ? 100 : null;
      return make(jobId, result.status, percent, result.finished_at ?? null, result);
    }
  }
  if (progress !== null) {
    let state = typeof progress.state === "string" && progress.state ? progress.state : "queued";
    if (TERMINAL_STATES.includes(state)) state = "storing";
    const percent = typeof progress.percent === "number" ? progress.percent : null;
    const updatedAt = typeof progress.updated_at === "string" ? progress.updated_at : null;
    return make(jobId, state, percent, updatedAt, null);
  }
  return make(jobId, "queued", null, null, null);
}

/** A parsed `result.json`, as the Python `JobResult.from_dict`: missing pieces defaulted, unknown keys kept. */
export function parseResult(document: Record<string, unknown>): JobResult {
  const error = document.error;
  return {
    ...document,
    job_id: typeof document.job_id === "string" ? document.job_id : null,
    status: typeof document.status === "string" ? document.status : "failed",
    results: isRecord(document.results) ? (document.results as Record<string, string>) : {},
    metadata: isRecord(document.metadata) ? document.metadata : {},
    error: isRecord(error) ? { code: String(error.code), message: String(error.message) } : null,
  } as JobResult;
}

/** Whether ISO-8601 timestamp `first` is later than `second`; false when either is unreadable. */
export function newer(first: unknown, second: unknown): boolean {
  const a = instant(first);
  const b = instant(second);
  return a !== undefined && b !== undefined && a > b;
}

// The worker writes microseconds and an offset ("2026-11-25T22:40:00.123456+00:00"); Date keeps milliseconds, so
// the sub-millisecond digits are compared separately.
const ISO_RE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/;

function instant(value: unknown): bigint | undefined {
  if (typeof value !== "string") return undefined;
  const match = ISO_RE.exec(value);
  if (match === null) return undefined;
  const [, seconds, fraction = "", offset] = match;
  const ms = Date.parse(`${seconds}${offset}`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt(fraction.padEnd(9, "0").slice(0, 9));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
