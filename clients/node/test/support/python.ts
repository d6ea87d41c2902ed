// Running the worker's own Python (the reference the Node.js client must agree with).
import { execFile } from "node:child_process";
import { promisify } from "node:util";

import { PYTHON, REPO_ROOT } from "./paths.js";

const run = promisify(execFile);

/** stdout of `python args...` in the repository root; rejects (with stderr) on a non-zero exit. */
export async function python(args: string[], input?: string): Promise<string> {
  const child = run(PYTHON, args, {
    cwd: REPO_ROOT,
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, PYTHONPATH: REPO_ROOT },
  });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  return (await child).stdout;
}
