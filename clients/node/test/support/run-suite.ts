/**
 * `npm test`'s runner: starts ONE local deployment for the whole suite (test/support/local_stack.py: moto's S3/SQS
 * and a real worker process), runs `node --test` over the compiled test files with the deployment described in
 * WHISPER_NODE_TEST_STACK, then stops the deployment. Exits with the tests' status, non-zero on any failure.
 *
 *     node dist/test/support/run-suite.js [dist/test/some.test.js ...]
 */

import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { createInterface } from "node:readline";

import { PACKAGE_ROOT, PYTHON } from "./paths.js";

const STARTUP_MS = 120_000;

async function startStack(): Promise<{ line: string; stop: () => Promise<void> }> {
  const helper = spawn(PYTHON, [`${PACKAGE_ROOT}test/support/local_stack.py`], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, PYTHONUNBUFFERED: "1" },
  });
  const exited = new Promise<number | null>((resolve) => helper.once("exit", (code) => resolve(code)));
  const firstLine = new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: helper.stdout });
    lines.once("line", resolve);
    helper.once("error", reject);
    void exited.then((code) => reject(new Error(`local_stack.py exited with ${code} before describing the stack`)));
    setTimeout(
      () => reject(new Error(`local_stack.py did not describe the stack within ${STARTUP_MS / 1000} s`)),
      STARTUP_MS,
    ).unref();
  });
  const stop = async (): Promise<void> => {
    helper.stdin.end(); // the helper's signal to stop the worker and the server
    const timer = setTimeout(() => helper.kill("SIGKILL"), 45_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    return { line: await firstLine, stop };
  } catch (error) {
    helper.kill("SIGKILL");
    throw error;
  }
}

async function main(): Promise<number> {
  const testDir = `${PACKAGE_ROOT}dist/test/`;
  const files = process.argv.slice(2);
  if (files.length === 0) {
    // Explicit files: Node 20's runner would otherwise also run every .js under a test/ folder, support included.
    files.push(
      ...readdirSync(testDir)
        .filter((name) => name.endsWith(".test.js"))
        .sort()
        .map((name) => testDir + name),
    );
  }
  const started = performance.now();
  const stack = await startStack();
  console.log(`local stack up in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  // The tests talk to moto with fake credentials only: no real AWS setting of this shell reaches them.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("AWS_") && !name.startsWith("WHISPER_NODE_")),
  );
  Object.assign(env, {
    WHISPER_NODE_TEST_STACK: stack.line,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_SESSION_TOKEN: "testing",
    AWS_REGION: "us-east-1",
    AWS_CONFIG_FILE: "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    // The SDK warns once per process that its 2027 releases will need Node 22 (see README); not news to the tests.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  });
  try {
    const runner = spawn(process.execPath, ["--test", ...files], { stdio: "inherit", env, cwd: PACKAGE_ROOT });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      runner.once("exit", (c, s) => resolve([c, s])),
    );
    return code ?? (signal ? 1 : 0);
  } finally {
    await stack.stop();
    console.log(`suite finished in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
