/**
 * One contract: a job is checked against the JSON Schema the worker prints (`whisper-worker schema`, stored as
 * src/data/job-message.schema.json by `npm run sync`) before anything is uploaded or sent, plus the few rules a
 * JSON Schema cannot say that the worker also enforces (URL shapes, metadata size, the message size). Errors name
 * each offending field as the worker's `ContractError` does: `{field: "formats.0", message: "..."}`.
 *
 * The speaker rules come from the schema's `dependentSchemas` (reported on the speaker field, in the worker's words),
 * except `max_speakers >= min_speakers`, which compares two values and so is checked here.
 *
 * Not checked here: whether a language code or name is one Whisper knows, and whether the model can serve it
 * (translate on an English-only model); the worker rejects those with `invalid_message`, before fetching audio.
 */

import { randomUUID } from "node:crypto";

import _Ajv2020 from "ajv/dist/2020.js";
import type { ErrorObject, Options, ValidateFunction } from "ajv/dist/2020.js";

import { JOB_MESSAGE_SCHEMA } from "../data.js";
import { JobValidationError, type FieldError } from "../errors.js";
import { fromLegacy, isLegacyShape, legacyFieldName } from "./legacy-shape.js";
import type { JobMessage } from "./types.js";

export const JOB_ID_PATTERN = "^[A-Za-z0-9_-]{1,128}$";
export const MAX_MESSAGE_BYTES = 256 * 1024;
export const MAX_METADATA_BYTES = 4096;
const MAX_REPORTED_ERRORS = 20;

const JOB_ID_RE = /^[A-Za-z0-9_-]{1,128}$/; // no multiline flag: a trailing newline does not pass
const S3_BUCKET_RE = /^[A-Za-z0-9._-]{1,255}$/;
const CONTROL_RE = /[\x00-\x1f\x7f]/;
const WHITESPACE_RE = /\s/;

// ajv is CommonJS: imported from ESM its default export is the module object, whose `default` is the class; the
// CommonJS build gets the class itself (which also has `default`). Either way, `.default ?? itself`.
type AjvClass = new (options: Options) => { compile(schema: object): ValidateFunction };
const Ajv2020 = ((_Ajv2020 as unknown as { default?: AjvClass }).default ?? _Ajv2020) as unknown as AjvClass;
let compiled: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  compiled ??= new Ajv2020({ allErrors: true, strict: true }).compile(JOB_MESSAGE_SCHEMA);
  return compiled;
}

export function isJobId(value: unknown): value is string {
  return typeof value === "string" && JOB_ID_RE.test(value);
}

/** A fresh job id, shaped like the Python client's (`job-<32 hex>`). */
export function newJobId(): string {
  return `job-${randomUUID().replaceAll("-", "")}`;
}

/**
 * The job as the worker will read it, or JobValidationError naming every offending field. Takes a v1 job or the
 * legacy camelCase shape; a job without an id gets a fresh one. The result is what is sent: defaults filled in,
 * nulls left out, `model`, `language` and `formats` lower-cased, duplicate formats dropped. `shape: "legacy"`
 * reads the job as the legacy shape even when it lacks the fields that mark one (so errors name legacy fields).
 */
export function validateJob(job: unknown, options: { shape?: "legacy" } = {}): JobMessage {
  tooLargeToSerialise(job);
  let data: unknown;
  try {
    // What is sent is JSON: undefined fields vanish, dates become strings, exactly as the worker will see them.
    data = JSON.parse(JSON.stringify(job ?? null) ?? "null");
  } catch (error) {
    throw invalid([{ field: "body", message: `must be JSON-serialisable (${(error as Error).message})` }]);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw invalid([{ field: "body", message: `body must be a JSON object, not ${jsonType(data)}` }]);
  }
  let fields = data as Record<string, unknown>;
  const legacy = options.shape === "legacy" || isLegacyShape(fields);
  if (legacy) {
    const { mapped, unknown } = fromLegacy(fields);
    if (unknown.length > 0) throw invalid(unknown);
    fields = mapped;
  } else if (!("job_id" in fields)) {
    fields = { job_id: newJobId(), ...fields };
  }
  fields = lowerCased(fields);

  const errors = schemaErrors(fields);
  const known = new Set(errors.map((e) => e.field));
  for (const [field, check] of EXTRA_CHECKS) {
    if (known.has(field) || fields[field] === undefined || fields[field] === null) continue;
    const message = check(fields[field]);
    if (message !== undefined) errors.push({ field, message });
  }
  // Comparing two values is beyond JSON Schema; the worker compares them only once both are valid.
  const { min_speakers: low, max_speakers: high } = fields;
  const judged = !known.has("min_speakers") && !known.has("max_speakers");
  if (judged && typeof low === "number" && typeof high === "number" && high < low) {
    errors.push({ field: "max_speakers", message: `max_speakers ${high} is below min_speakers ${low}` });
  }
  if (errors.length > 0) {
    throw invalid(
      legacy
        ? errors.map((e) => (e.message.startsWith("unknown field ") ? e : { ...e, field: legacyFieldName(e.field) }))
        : errors,
    );
  }

  const message = canonical(fields);
  const size = Buffer.byteLength(JSON.stringify(message), "utf8");
  if (size > MAX_MESSAGE_BYTES) {
    throw invalid([{ field: "body", message: `body is ${size} bytes, more than the ${MAX_MESSAGE_BYTES} allowed` }]);
  }
  return message;
}

/**
 * Refuses, before anything is serialised, a job whose JSON is sure to exceed the message limit (a 512 MiB metadata
 * string is not copied to be measured): a lower bound of its encoded size, walked no further than the limit.
 */
function tooLargeToSerialise(job: unknown): void {
  if (typeof job !== "object" || job === null) return;
  const metadata = (job as { metadata?: unknown }).metadata;
  if (typeof metadata === "object" && metadata !== null && encodedAtLeast(metadata, MAX_MESSAGE_BYTES)) {
    throw invalid([
      { field: "metadata", message: `JSON encoding is more than the ${MAX_METADATA_BYTES} bytes allowed` },
    ]);
  }
  if (encodedAtLeast(job, MAX_MESSAGE_BYTES)) {
    throw invalid([{ field: "body", message: `body is more than the ${MAX_MESSAGE_BYTES} bytes allowed` }]);
  }
}

/** Whether `value`'s JSON surely takes more than `limit` bytes (a string's length never exceeds its UTF-8 size). */
function encodedAtLeast(value: unknown, limit: number): boolean {
  let size = 0;
  const pending: unknown[] = [value];
  const seen = new Set<object>();
  while (pending.length > 0 && size <= limit) {
    const item = pending.pop();
    if (typeof item === "string") size += item.length + 2;
    else if (typeof item === "object" && item !== null) {
      if (seen.has(item)) continue; // a cycle: JSON.stringify reports it
      seen.add(item);
      size += 2;
      if (typeof (item as { toJSON?: unknown }).toJSON === "function") continue; // a Date: serialised its own way
      const isArray = Array.isArray(item);
      for (const [key, child] of Object.entries(item)) {
        size += isArray ? 1 : key.length + 3; // a comma; or "key":
        pending.push(child);
        if (size > limit) break;
      }
    } else size += 1;
  }
  return size > limit;
}

function invalid(items: FieldError[]): JobValidationError {
  const parts = items
    .slice(0, MAX_REPORTED_ERRORS)
    .map((item) => (item.message.startsWith("unknown field ") ? item.message : `${item.field}: ${item.message}`));
  if (items.length > MAX_REPORTED_ERRORS) parts.push(`(and ${items.length - MAX_REPORTED_ERRORS} more errors)`);
  return new JobValidationError(`invalid job: ${parts.join("; ")}`, items);
}

/** The worker lower-cases these before validating them (its "before" validators), so the schema sees them so too. */
function lowerCased(fields: Record<string, unknown>): Record<string, unknown> {
  const out = { ...fields };
  for (const key of ["model", "language"] as const) {
    const value = out[key];
    if (typeof value === "string") out[key] = value.toLowerCase();
  }
  if (Array.isArray(out.formats)) {
    out.formats = out.formats.map((item: unknown) => (typeof item === "string" ? item.toLowerCase() : item));
  }
  return out;
}

/** The message as sent: the schema's property order, defaults filled in, nulls left out (as the Python client). */
function canonical(fields: Record<string, unknown>): JobMessage {
  const properties = JOB_MESSAGE_SCHEMA.properties as Record<string, { default?: unknown; $ref?: string }>;
  const defaults: Record<string, unknown> = { formats: ["json"], metadata: {} };
  const message: Record<string, unknown> = {};
  for (const [name, property] of Object.entries(properties)) {
    let value = name in fields ? fields[name] : (defaults[name] ?? property.default);
    const nested = nestedDefaults(property);
    if (nested !== undefined && (value === undefined || isPlainObject(value))) {
      value = { ...nested, ...withoutNulls((value ?? {}) as Record<string, unknown>) }; // as the worker fills them
    }
    if (value === undefined || value === null) continue;
    if (name === "formats") value = [...new Set(value as string[])];
    if (name === "audio" || name === "callback_url") value = normalisedUrl(value as string);
    message[name] = value;
  }
  return message as unknown as JobMessage;
}

/** For a property that is an object of its own (`$ref` to a definition, e.g. `subtitles`): its fields' defaults. */
function nestedDefaults(property: { $ref?: string }): Record<string, unknown> | undefined {
  const ref = property.$ref?.match(/^#\/\$defs\/(.+)$/)?.[1];
  if (ref === undefined) return undefined;
  const definition = (
    JOB_MESSAGE_SCHEMA.$defs as Record<string, { properties?: Record<string, { default?: unknown }> }>
  )[ref];
  const out: Record<string, unknown> = {};
  for (const [field, spec] of Object.entries(definition?.properties ?? {})) {
    if (spec.default !== undefined && spec.default !== null) out[field] = spec.default;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function withoutNulls(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null && v !== undefined));
}

// ------------------------------------------------------------------------------------------- schema errors

// `dependentSchemas/<field>/...`: a rule that applies because <field> was given (the speaker counts).
const DEPENDENT_RE = /^#\/dependentSchemas\/([^/]+)\//;

function schemaErrors(fields: Record<string, unknown>): FieldError[] {
  const validate = schemaValidator();
  if (validate(fields)) return [];
  const byField = new Map<string, ErrorObject[]>();
  const dependent = new Map<string, boolean>(); // speaker field -> whether what it lacks is diarize: true
  for (const error of validate.errors ?? []) {
    const owner = DEPENDENT_RE.exec(error.schemaPath)?.[1];
    if (owner !== undefined) {
      const aboutDiarize = error.instancePath === "/diarize" || error.params.missingProperty === "diarize";
      dependent.set(owner, (dependent.get(owner) ?? false) || aboutDiarize);
      continue;
    }
    const field = fieldOf(error);
    byField.set(field, [...(byField.get(field) ?? []), error]);
  }
  const items: FieldError[] = [];
  for (const [field, errors] of byField) {
    // A nullable field is `anyOf: [{...}, {type: null}]`: its "must be null" and "must match a schema in anyOf"
    // say nothing the first branch's error does not say better.
    const useful = errors.filter((e) => e.keyword !== "anyOf" && !(e.keyword === "type" && e.params.type === "null"));
    for (const error of useful.length > 0 ? useful : errors.slice(0, 1)) {
      items.push({ field, message: messageOf(error) });
    }
  }
  // As the worker's validator: it judges a speaker field only once the field itself is valid, asks for diarize
  // first, and sees `speakers` (for the exclusion) only if that is valid too.
  for (const [field, needsDiarize] of dependent) {
    if (byField.has(field)) continue;
    if (needsDiarize) items.push({ field, message: "only applies with diarize: true" });
    else if (!byField.has("speakers")) {
      items.push({ field, message: "give either speakers or min_speakers/max_speakers" });
    }
  }
  return items;
}

function fieldOf(error: ErrorObject): string {
  const path = error.instancePath
    .split("/")
    .slice(1)
    .map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"));
  if (error.keyword === "required") path.push(String(error.params.missingProperty));
  if (error.keyword === "additionalProperties") path.push(String(error.params.additionalProperty));
  return path.length > 0 ? path.join(".") : "body";
}

function messageOf(error: ErrorObject): string {
  switch (error.keyword) {
    case "required":
      return "field required";
    case "additionalProperties":
      return `unknown field '${String(error.params.additionalProperty)}'`;
    case "enum":
      return `must be one of ${(error.params.allowedValues as unknown[]).map(String).join(", ")}`;
    case "const":
      return `must be ${JSON.stringify(error.params.allowedValue)}`;
    default:
      return error.message ?? error.keyword;
  }
}

// -------------------------------------------------------------------------------- what a schema cannot say

type Check = (value: unknown) => string | undefined;

const EXTRA_CHECKS: [string, Check][] = [
  ["audio", (value) => (typeof value === "string" ? audioUrlError(value) : undefined)],
  ["callback_url", (value) => (typeof value === "string" ? httpUrlError(value) : undefined)],
  ["metadata", (value) => (typeof value === "object" && value !== null ? metadataError(value) : undefined)],
];

/** `s3://bucket/key` or an http(s) URL: the worker's `_check_audio_url` (which schemes it fetches is its policy). */
function audioUrlError(value: string): string | undefined {
  const sep = value.indexOf("://");
  const scheme = sep < 0 ? "" : value.slice(0, sep).toLowerCase();
  if (sep < 0 || !["s3", "http", "https"].includes(scheme))
    return "must be an s3://bucket/key, https:// or http:// URL";
  if (scheme !== "s3") return httpUrlError(value);
  if (CONTROL_RE.test(value)) return "URL must not contain control characters";
  const rest = value.slice(sep + 3);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  if (!bucket) return "s3 URL must name a bucket: s3://bucket/key";
  if (!S3_BUCKET_RE.test(bucket)) return "s3 bucket name may only contain letters, digits, '.', '_' and '-'";
  if (slash < 0 || slash === rest.length - 1) return "s3 URL must have a non-empty key: s3://bucket/key";
  return undefined;
}

/** An absolute http(s) URL with a host: the worker's `_check_http_url`. */
function httpUrlError(value: string): string | undefined {
  if (WHITESPACE_RE.test(value) || CONTROL_RE.test(value))
    return "URL must not contain whitespace or control characters";
  const scheme = value.slice(0, Math.max(value.indexOf(":"), 0)).toLowerCase();
  if (scheme !== "http" && scheme !== "https") return "URL scheme must be http or https";
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "malformed URL";
  }
  if (!url.hostname) return "http(s) URL must have a host";
  return undefined;
}

function metadataError(value: object): string | undefined {
  const size = Buffer.byteLength(JSON.stringify(value), "utf8");
  if (size > MAX_METADATA_BYTES) return `JSON encoding is ${size} bytes, more than the ${MAX_METADATA_BYTES} allowed`;
  return undefined;
}

/** The scheme lower-cased, the rest as given (what the worker stores). */
function normalisedUrl(value: string): string {
  const sep = value.indexOf(":");
  return sep < 0 ? value : value.slice(0, sep).toLowerCase() + value.slice(sep);
}

function jsonType(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (typeof value === "string") return "a string";
  if (typeof value === "boolean") return "a boolean";
  return "a number";
}
