// Regenerates the package's two data files from the repository, so the Node.js client never drifts from the worker:
//   src/data/job-message.schema.json  = `whisper-worker schema` (the worker's own contract, JSON Schema 2020-12)
//   src/data/prices.json              = worker/client/data/prices.json (the one price table)
// then their TypeScript modules (scripts/gen-data.mjs), which the package imports.
// The worker's command is ../../.venv/bin/whisper-worker, or `$WHISPER_PYTHON -m worker.cli` when that is set.
import { execFileSync } from "node:child_process";
import { copyFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const repo = here("../../../");
const [command, ...args] = process.env.WHISPER_PYTHON
  ? [process.env.WHISPER_PYTHON, "-m", "worker.cli", "schema"]
  : [here("../../../.venv/bin/whisper-worker"), "schema"];
const schema = execFileSync(command, args, { cwd: repo, encoding: "utf8", env: { ...process.env, PYTHONPATH: repo } });
JSON.parse(schema); // refuse to store anything but JSON
writeFileSync(here("../src/data/job-message.schema.json"), schema);
copyFileSync(here("../../../worker/client/data/prices.json"), here("../src/data/prices.json"));
execFileSync(process.execPath, [here("gen-data.mjs")], { stdio: "inherit" }); // and their TypeScript modules
console.log("synced src/data/job-message.schema.json and src/data/prices.json");
