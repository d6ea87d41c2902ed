/**
 * The legacy camelCase job shape mapped onto version 1, exactly as the worker's `JobRequest._from_legacy` does
 * (worker/contract/message.py), so a job is the same job whichever client or shape sent it.
 */

import type { FieldError } from "../errors.js";

const LEGACY_MARKERS = ["transcriptionId", "s3AudioUrl"] as const;
const LEGACY_KEYS = new Set(["transcriptionId", "userId", "s3AudioUrl", "model", "format", "callbackUrl", "metadata"]);
// v1 field -> the legacy name a legacy caller wrote, so errors name the field the caller knows.
const LEGACY_FIELD_NAMES: Record<string, string> = {
  job_id: "transcriptionId",
  audio: "s3AudioUrl",
  formats: "format",
  callback_url: "callbackUrl",
};

export function isLegacyShape(data: Record<string, unknown>): boolean {
  return LEGACY_MARKERS.some((key) => key in data);
}

/**
 * The v1 fields of a legacy-shaped job: `transcriptionId` → `job_id`, `s3AudioUrl` → `audio`, `format` →
 * `formats: [format]`, `callbackUrl` → `callback_url`, `userId` into `metadata`, and `callback_shape: "legacy"`.
 * Case is left to validation, which lower-cases `model` and `formats` for both shapes. Keys the legacy shape does
 * not have are returned as errors (the worker rejects them the same way).
 */
export function fromLegacy(data: Record<string, unknown>): { mapped: Record<string, unknown>; unknown: FieldError[] } {
  const unknown = Object.keys(data)
    .filter((key) => !LEGACY_KEYS.has(key))
    .map((key) => ({ field: key, message: `unknown field '${key}'` }));
  const mapped: Record<string, unknown> = {};
  if ("transcriptionId" in data) mapped.job_id = data.transcriptionId;
  if ("s3AudioUrl" in data) mapped.audio = data.s3AudioUrl;
  if ("model" in data) mapped.model = data.model;
  if ("format" in data) mapped.formats = typeof data.format === "string" ? [data.format] : data.format;
  if ("callbackUrl" in data) mapped.callback_url = data.callbackUrl;
  let metadata = data.metadata;
  const isObject = (value: unknown): value is Record<string, unknown> =>
    typeof value === "object" && value !== null && !Array.isArray(value);
  if ("userId" in data && (metadata === undefined || metadata === null || isObject(metadata))) {
    metadata = { ...((metadata as Record<string, unknown> | null | undefined) ?? {}), userId: data.userId };
  }
  if (metadata !== undefined || "metadata" in data) mapped.metadata = metadata;
  mapped.callback_shape = "legacy";
  return { mapped, unknown };
}

/** A v1 field path (`formats.0`) as the legacy caller named it (`format`). */
export function legacyFieldName(field: string): string {
  const parts = field.split(".");
  const head = parts[0] ?? field;
  const legacy = LEGACY_FIELD_NAMES[head];
  if (legacy === undefined) return field;
  if (legacy === "format" && parts.length === 2) return "format"; // the single legacy format was wrapped in a list
  return [legacy, ...parts.slice(1)].join(".");
}
