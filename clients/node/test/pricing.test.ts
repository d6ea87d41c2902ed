// One price table: the TS estimate equals the Python CLI's (`whisper-worker estimate --json`) over a small grid.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  EstimateError,
  TranscriptionClient,
  estimateCost,
  parseDuration,
  type CostEstimate,
} from "@whisper-batch/client";
import { estimateCost as legacyEstimateCost } from "@whisper-batch/client/legacy";

import { python } from "./support/python.js";

const MODELS = ["tiny.en", "base", "large-v3", "turbo"];
const INSTANCES = ["c6a.large", "g5.xlarge"];

function close(actual: number, expected: number, what: string): void {
  const scale = Math.max(Math.abs(expected), Number.MIN_VALUE);
  assert.ok(Math.abs(actual - expected) / scale <= 1e-9, `${what}: ${actual} vs Python's ${expected}`);
}

// The CLI's own entry point (worker.cli.main), once per grid point, in one Python process: sixteen interpreter
// start-ups would cost more than the rest of the suite's unit tests together.
const CLI_GRID = `
import contextlib, io, json, sys
from worker.cli import main
answers = []
for argv in json.load(sys.stdin):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0, argv
    answers.append(json.loads(out.getvalue()))
print(json.dumps(answers))
`;

type PythonEstimate = {
  cost_usd: number;
  instance_seconds: number;
  gpu_seconds: number;
  hourly_usd: number;
  throughput: { times_realtime: number; basis: string };
  managed: { name: string; cost_usd: number }[];
};

function argv(model: string, instance: string, spot: boolean): string[] {
  return [
    "estimate",
    "--duration",
    "1h",
    "--model",
    model,
    "--instance",
    instance,
    ...(spot ? ["--spot"] : []),
    "--json",
  ];
}

function assertSame(ts: CostEstimate, py: PythonEstimate, what: string): void {
  close(ts.costUsd, py.cost_usd, `${what} cost`);
  close(ts.instanceSeconds, py.instance_seconds, `${what} instance seconds`);
  close(ts.throughput.timesRealtime, py.throughput.times_realtime, `${what} throughput`);
  assert.equal(ts.gpuSeconds === 0, py.gpu_seconds === 0, `${what} GPU or not`);
  assert.equal(ts.hourlyUsd, py.hourly_usd);
  assert.equal(ts.throughput.basis, py.throughput.basis);
  assert.deepEqual(
    ts.managed.map((m) => m.name),
    py.managed.map((m) => m.name),
  );
  ts.managed.forEach((m, j) => close(m.costUsd, py.managed[j]?.cost_usd ?? NaN, `${what} ${m.name}`));
}

test("estimateCost matches the Python CLI for every model, instance and spot choice", async () => {
  const grid = MODELS.flatMap((model) =>
    INSTANCES.flatMap((instance) => [false, true].map((spot) => ({ model, instance, spot }))),
  );
  const answers = JSON.parse(
    await python(["-c", CLI_GRID], JSON.stringify(grid.map((g) => argv(g.model, g.instance, g.spot)))),
  ) as PythonEstimate[];
  assert.equal(answers.length, grid.length);
  grid.forEach(({ model, instance, spot }, i) => {
    assertSame(
      estimateCost(3600, model, instance, spot),
      answers[i] as PythonEstimate,
      `${model} on ${instance}${spot ? " (spot)" : ""}`,
    );
  });
  // And once as a command of its own, as an operator runs it.
  const command = await python(["-m", "worker.cli", ...argv("turbo", "g5.xlarge", true)]);
  assertSame(
    estimateCost(3600, "turbo", "g5.xlarge", true),
    JSON.parse(command) as PythonEstimate,
    "turbo on g5.xlarge (spot), CLI process",
  );
});

test("durations read like the CLI's, and bad input is an EstimateError", () => {
  assert.equal(parseDuration("1h30m"), 5400);
  assert.equal(parseDuration("01:30:00"), 5400);
  assert.equal(parseDuration("30:00"), 1800);
  assert.equal(parseDuration("1.5h"), 5400);
  assert.equal(parseDuration("90s"), 90);
  assert.equal(parseDuration("5400"), 5400);
  assert.throws(() => parseDuration("soon"), EstimateError);
  assert.throws(() => estimateCost(0), /duration must be positive/);
  assert.throws(() => estimateCost(60, "huge"), /no throughput figure for model 'huge'/);
  assert.throws(() => estimateCost(60, "base", "m5.large"), /unknown instance type 'm5.large'/);
  assert.equal(
    TranscriptionClient.estimateCost("1h30m", "base", "g5.xlarge", true).costUsd,
    estimateCost(5400, "base", "g5.xlarge", true).costUsd,
  );
});

test("the legacy estimateCost(duration, model) is the USD figure, any model case, g5.xlarge on demand", () => {
  assert.equal(legacyEstimateCost(5400, "BASE"), estimateCost(5400, "base", "g5.xlarge", false).costUsd);
  assert.equal(legacyEstimateCost("1h30m", "BASE", { spot: true }).toFixed(4), "0.0167"); // README's example
});
