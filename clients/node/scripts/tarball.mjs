// `npm run --silent tarball`: builds the package and packs it; prints the tarball's absolute path and nothing else,
// so a backend installs it in one command:
//   npm install "$(npm --prefix path/to/whisper-batch/clients/node run --silent tarball)"
import { execSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
execSync("node scripts/prepack.mjs", { cwd: root, stdio: ["ignore", process.stderr, "inherit"] });
const packed = execSync("npm pack --ignore-scripts --json --loglevel=error", { cwd: root, encoding: "utf8" });
console.log(`${root}${JSON.parse(packed)[0].filename}`);
