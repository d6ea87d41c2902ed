// `prepack` (npm pack, npm publish): build dist/ first, installing the build's dev dependencies when this checkout
// has none yet, so packing works on a fresh clone too.
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
// Progress goes to stderr: `npm run tarball` prints only the tarball's path on stdout.
const npm = (args) => execSync(`npm ${args}`, { cwd: root, stdio: ["ignore", process.stderr, "inherit"] });

if (!existsSync(`${root}node_modules/typescript/bin/tsc`)) {
  console.error("@whisper-batch/client: installing the build's dev dependencies (npm ci) first");
  npm("ci --ignore-scripts --no-audit --no-fund");
}
npm("run build");
