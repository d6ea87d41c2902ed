// Writes the package's two data files as TypeScript modules, so nothing is read from disk at import and a bundler
// (esbuild, webpack, CDK's NodejsFunction) carries them like any other code:
//   src/data/job-message.schema.json → src/data/job-message.schema.ts
//   src/data/prices.json             → src/data/prices.ts
// The JSON files stay the source (`npm run sync` refreshes them from the worker); `npm run build` runs this first.
import { readFileSync, writeFileSync } from "node:fs";

const files = [
  ["job-message.schema", "JOB_MESSAGE_SCHEMA", "Record<string, unknown>"],
  ["prices", "PRICES_DATA", "unknown"],
];
for (const [name, constant, type] of files) {
  const json = readFileSync(new URL(`../src/data/${name}.json`, import.meta.url), "utf8");
  const value = JSON.stringify(JSON.parse(json), null, 2);
  const module =
    `// Generated from ${name}.json by scripts/gen-data.mjs (npm run build, npm run sync): do not edit.\n` +
    `export const ${constant}: ${type} = ${value};\n`;
  const target = new URL(`../src/data/${name}.ts`, import.meta.url);
  let current = "";
  try {
    current = readFileSync(target, "utf8");
  } catch {
    // first generation
  }
  if (current !== module) writeFileSync(target, module);
}
