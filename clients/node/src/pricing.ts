/**
 * What a transcription costs on our workers, next to what a managed API charges for the same audio: the Python
 * client's `worker/client/pricing.py`, derivation for derivation, over the same data file (src/data/prices.json is
 * a copy of worker/client/data/prices.json made by `npm run sync`; a test compares both clients' numbers).
 *
 *     throughput(model, instance) = measured[(instance, family)]                       when measured
 *                                 = reference throughput of the instance
 *                                   * relative speed of the model's family / relative speed of the reference family
 *
 * Throughput is audio seconds per wall-clock second of one worker. The estimate is the marginal cost of the audio
 * on a busy worker: instance start-up, model loading and the idle tail before Batch scales to zero come on top.
 */

import { PRICES_DATA } from "./data.js";
import { EstimateError } from "./errors.js";

interface InstanceRow {
  accelerator: string | null;
  reference_family: string;
  reference_throughput?: number;
  bandwidth_gbs?: number;
  on_demand_hourly: number;
  spot_hourly: number;
}

interface PricesFile {
  model_family: Record<string, string>;
  gpu_relative_speed: { speeds: Record<string, number> };
  cpu_parameters_millions: { parameters: Record<string, number> };
  gpu_anchor: { audio_seconds: number; wall_seconds: number; bandwidth_gbs: number };
  estimate_note: string;
  instances: { types: Record<string, InstanceRow> };
  measured: { instance: string; family: string; times_realtime: number; note: string }[];
  managed: { name: string; usd_per_minute: number; source: string }[];
}

const PRICES = PRICES_DATA as PricesFile;

// A model runs at its family's speed: .en variants are the same size, large-v1/v2/v3 the same architecture.
export const MODEL_FAMILY: Readonly<Record<string, string>> = PRICES.model_family;
const GPU_RELATIVE_SPEED = PRICES.gpu_relative_speed.speeds;
const PARAMETERS_M = PRICES.cpu_parameters_millions.parameters;
// On a CPU (compute-bound) speed is taken as inversely proportional to the parameter count, relative to tiny.
const CPU_RELATIVE_SPEED: Record<string, number> = Object.fromEntries(
  Object.entries(PARAMETERS_M).map(([family, n]) => [family, (PARAMETERS_M.tiny as number) / n]),
);
const ANCHOR = PRICES.gpu_anchor;
const ANCHOR_LARGE_THROUGHPUT = ANCHOR.audio_seconds / ANCHOR.wall_seconds;
export const ESTIMATE_NOTE = PRICES.estimate_note;

/** Scale the anchor by memory bandwidth, which bounds batch-1 Whisper decoding: a crude proxy, an estimate. */
function largeOn(bandwidthGbs: number): number {
  return (ANCHOR_LARGE_THROUGHPUT * bandwidthGbs) / ANCHOR.bandwidth_gbs;
}

export interface Instance {
  name: string;
  accelerator: string | null; // null: CPU only
  referenceFamily: string; // the model family referenceThroughput is for
  referenceThroughput: number;
  onDemandHourly: number;
  spotHourly: number;
}

export const INSTANCES: Readonly<Record<string, Instance>> = Object.fromEntries(
  Object.entries(PRICES.instances.types).map(([name, row]) => [
    name,
    {
      name,
      accelerator: row.accelerator,
      referenceFamily: row.reference_family,
      // `||` as Python's `or`: a missing (or zero) reference figure is derived from the bandwidth.
      referenceThroughput: row.reference_throughput || largeOn(row.bandwidth_gbs ?? 0),
      onDemandHourly: row.on_demand_hourly,
      spotHourly: row.spot_hourly,
    },
  ]),
);

const MEASURED = new Map(PRICES.measured.map((row) => [`${row.instance}\u0000${row.family}`, row]));

export type Basis = "measured" | "estimate";

export interface Throughput {
  timesRealtime: number; // audio seconds per wall second
  basis: Basis;
  note: string;
}

export interface ManagedComparison {
  name: string;
  costUsd: number;
  source: string;
}

export interface CostEstimate {
  durationSeconds: number;
  model: string;
  instanceType: string;
  spot: boolean;
  throughput: Throughput;
  instanceSeconds: number; // wall-clock seconds of the instance spent on this audio
  gpuSeconds: number; // the same on a GPU instance, 0 on a CPU-only one
  hourlyUsd: number;
  costUsd: number;
  managed: ManagedComparison[];
}

export function familyOf(model: string): string {
  const family = MODEL_FAMILY[model.toLowerCase()];
  if (family === undefined) {
    throw new EstimateError(
      `no throughput figure for model '${model}'; known: ${Object.keys(MODEL_FAMILY).join(", ")}`,
    );
  }
  return family;
}

export function instanceOf(instanceType: string): Instance {
  const found = INSTANCES[instanceType.toLowerCase()];
  if (found === undefined) {
    const known = Object.keys(INSTANCES).join(", ");
    throw new EstimateError(`unknown instance type '${instanceType}'; priced instance types: ${known}`);
  }
  return found;
}

/** Audio seconds per wall second for this model on this instance, and whether it was measured. */
export function throughput(model: string, instanceType: string): Throughput {
  const family = familyOf(model);
  const inst = instanceOf(instanceType);
  const measured = MEASURED.get(`${inst.name}\u0000${family}`);
  if (measured !== undefined) return { timesRealtime: measured.times_realtime, basis: "measured", note: measured.note };
  const speed = inst.accelerator ? GPU_RELATIVE_SPEED : CPU_RELATIVE_SPEED;
  // Same operation order as the Python, so both clients agree to the last bit.
  const factor = (inst.referenceThroughput * (speed[family] as number)) / (speed[inst.referenceFamily] as number);
  return { timesRealtime: factor, basis: "estimate", note: ESTIMATE_NOTE };
}

/**
 * Cost of transcribing `duration` of audio (seconds, or a duration such as "1h30m"), with the managed APIs' price
 * for the same audio. Defaults as the Python client: model base on an on-demand g5.xlarge.
 */
export function estimateCost(
  duration: number | string,
  model = "base",
  instanceType = "g5.xlarge",
  spot = false,
): CostEstimate {
  const durationSeconds = typeof duration === "string" ? parseDuration(duration) : duration;
  if (!(durationSeconds > 0)) throw new EstimateError(`duration must be positive, got ${String(duration)} seconds`);
  const inst = instanceOf(instanceType);
  const speed = throughput(model, inst.name);
  const seconds = durationSeconds / speed.timesRealtime;
  const hourly = spot ? inst.spotHourly : inst.onDemandHourly;
  return {
    durationSeconds,
    model: model.toLowerCase(),
    instanceType: inst.name,
    spot,
    throughput: speed,
    instanceSeconds: seconds,
    gpuSeconds: inst.accelerator ? seconds : 0,
    hourlyUsd: hourly,
    costUsd: (seconds / 3600) * hourly,
    managed: PRICES.managed.map((p) => ({
      name: p.name,
      costUsd: (durationSeconds / 60) * p.usd_per_minute,
      source: p.source,
    })),
  };
}

const UNITS_RE = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/;
const CLOCK_RE = /^(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)$/;

/** Seconds in `90s`, `45m`, `1h30m`, `1.5h`, `01:30:00`, `30:00` or a plain `5400` (the Python `parse_duration`). */
export function parseDuration(text: string): number {
  const value = text.trim().toLowerCase().replaceAll(" ", "");
  let seconds: number | undefined;
  const clock = CLOCK_RE.exec(value);
  const units = UNITS_RE.exec(value);
  if (/^\d+(?:\.\d+)?$/.test(value)) {
    seconds = Number(value);
  } else if (clock !== null) {
    const [, hours, minutes = "0", secs = "0"] = clock;
    if (Number(secs) < 60 && (hours === undefined || Number(minutes) < 60)) {
      seconds = Number(hours ?? 0) * 3600 + Number(minutes) * 60 + Number(secs);
    }
  } else if (value && units !== null) {
    const [, h, m, s] = units.map((part) => Number(part ?? 0));
    seconds = (h ?? 0) * 3600 + (m ?? 0) * 60 + (s ?? 0);
  }
  if (seconds === undefined) {
    throw new EstimateError(
      `cannot read duration '${text}': use e.g. 90s, 45m, 1h30m, 1.5h, 01:30:00 or a number of seconds`,
    );
  }
  if (seconds <= 0) throw new EstimateError(`duration must be positive, got '${text}'`);
  return seconds;
}
