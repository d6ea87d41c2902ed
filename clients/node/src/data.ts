/**
 * The package's two data files, read once at import: the worker's JSON Schema of the job message and the price
 * table shared with the Python client. Both are copies made by `npm run sync`; tests fail when they drift.
 * Read from disk rather than imported as JSON modules, which Node 20 still flags as experimental.
 */

import { readFileSync } from "node:fs";

function load(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`./data/${name}`, import.meta.url), "utf8"));
}

export const JOB_MESSAGE_SCHEMA = load("job-message.schema.json") as Record<string, unknown>;
export const PRICES_DATA = load("prices.json");
