// The package as a backend installs it: `npm pack`'s tarball installed into a throwaway app (offline from npm's cache
// where it can), then four apps, run at once against the suite's moto and real worker, each submitting a job with a
// callback to a receiver here and printing what it waited for: CommonJS (`require`, the legacy backends' call),
// ESM, TypeScript compiled to CommonJS with `tsc --strict`, and an esbuild bundle run from a directory with no
// node_modules (a Lambda). The callbacks must arrive signed. The types also compile under moduleResolution node10
// and bundler, and a bundle of the light `/webhooks` entry stays small.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import { PutObjectCommand } from "@aws-sdk/client-s3";

import { verifyWebhook, type LegacyCallback, type V1Callback } from "@whisper-batch/client";

import { eventually } from "./support/eventually.js";
import { JFK, PACKAGE_ROOT, SPOKEN } from "./support/paths.js";
import { assertWorkerAlive, localStack, rawClients } from "./support/stack.js";

const run = promisify(execFile);
const APP_TIMEOUT = 180_000;
const WEBHOOKS_BUNDLE_LIMIT = 50 * 1024;
const stack = localStack();
const raw = rawClients(stack);
const bin = (name: string): string => `${PACKAGE_ROOT}node_modules/.bin/${name}`;

const CJS_APP = `
const { submitToCloudWorker } = require("@whisper-batch/client/legacy");
const { InsecureCallbackUrl, TranscriptionClient } = require("@whisper-batch/client");
const [audio, callbackUrl, id] = process.argv.slice(2);

async function main() {
  // Without the opt-in an http:// callback is refused before anything is sent.
  const strict = new TranscriptionClient({
    queueUrl: process.env.WHISPER_QUEUE_URL,
    bucket: process.env.WHISPER_RESULTS_BUCKET,
    endpoint: process.env.AWS_ENDPOINT_URL,
  });
  const refused = await strict.submit({ audio, callback_url: callbackUrl }).then(() => false, (e) => e instanceof InsecureCallbackUrl);
  const outcome = await submitToCloudWorker(
    { transcriptionId: id, userId: 7, s3AudioUrl: audio, model: "TINY.EN", format: "TXT", callbackUrl },
    { wait: { timeout: 150000, pollInterval: 250 } },
  );
  console.log(JSON.stringify({ refused, ...outcome }));
}
main().catch((error) => { console.error(error); process.exitCode = 1; });
`;

const ESM_APP = `
import { TranscriptionClient } from "@whisper-batch/client";
import { verifyWebhook } from "@whisper-batch/client/webhooks";
const [audio, callbackUrl, id] = process.argv.slice(2);
const client = TranscriptionClient.fromEnv();
await client.submit({ job_id: id, audio, model: "tiny.en", formats: ["json"], callback_url: callbackUrl });
const status = await client.wait(id, { timeout: 150_000, pollInterval: 250 });
console.log(JSON.stringify({ state: status.state, text: await client.text(id), verify: typeof verifyWebhook }));
`;

const TS_APP = `
import { JobNotFound, TranscriptionClient, type JobInput } from "@whisper-batch/client";
import { submitToCloudWorker } from "@whisper-batch/client/legacy";
import { verifyWebhook } from "@whisper-batch/client/webhooks";

async function main(): Promise<void> {
  const [audio, callbackUrl, id] = process.argv.slice(2) as [string, string, string];
  const client = TranscriptionClient.fromEnv();
  const unknown = await client.status(\`\${id}-never\`).then(() => "queued", (e: unknown) => e instanceof JobNotFound ? "not found" : String(e));
  const job: JobInput = { job_id: id, audio, model: "tiny.en", formats: ["srt"], callback_url: callbackUrl };
  await client.submit(job);
  const status = await client.wait(id, { timeout: 150_000, pollInterval: 250 });
  const srt = (await client.readTranscript(id, "srt")).toString("utf8");
  console.log(JSON.stringify({ state: status.state, unknown, srt, legacy: typeof submitToCloudWorker, verify: typeof verifyWebhook }));
}
main().catch((error: unknown) => { console.error(error); process.exitCode = 1; });
`;

const BUNDLED_APP = `
import { TranscriptionClient } from "@whisper-batch/client";

export async function handler(event) {
  const client = TranscriptionClient.fromEnv();
  await client.submit({ job_id: event.id, audio: event.audio, model: "tiny.en", formats: ["txt"], callback_url: event.callbackUrl });
  const status = await client.wait(event.id, { timeout: 150_000, pollInterval: 250 });
  return { state: status.state, text: await client.text(event.id) };
}

const [audio, callbackUrl, id] = process.argv.slice(2);
if (id) handler({ audio, callbackUrl, id }).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e); process.exitCode = 1; });
`;

const WEBHOOK_RECEIVER = `
import { verifyWebhook } from "@whisper-batch/client/webhooks";
export const handler = async (event) => {
  const payload = verifyWebhook(event.body, event.headers, process.env.WHISPER_WEBHOOK_SECRET);
  return { statusCode: 204, body: String(payload.job_id) };
};
`;

const TYPES_ONLY = `
import { TranscriptionClient, type JobInput } from "@whisper-batch/client";
import { submitToCloudWorker, type LegacyOutcome } from "@whisper-batch/client/legacy";
import { verifyWebhook, type V1Callback } from "@whisper-batch/client/webhooks";
export const job: JobInput = { audio: "s3://b/k", formats: ["srt"] };
export async function check(client: TranscriptionClient): Promise<[string, LegacyOutcome, V1Callback]> {
  const id = await client.submit(job);
  const outcome = await submitToCloudWorker({ transcriptionId: id, s3AudioUrl: "s3://b/k" }, { wait: true });
  return [id, outcome, verifyWebhook<V1Callback>("{}", {}, "whsec_x")];
}
`;

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

let home: string;
let server: Server;
let callbackUrl: string;
let audio: string;
const received: Received[] = [];

async function sh(command: string, args: string[], cwd: string): Promise<string> {
  try {
    return (await run(command, args, { cwd, timeout: APP_TIMEOUT, maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (error) {
    const failed = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(" ")} failed: ${failed.message}\n${failed.stdout}\n${failed.stderr}`);
  }
}

before(async () => {
  home = await mkdtemp(join(tmpdir(), "whisper-node-package-"));
  // `npm test` built dist/ just now; --ignore-scripts keeps prepack from rebuilding it under the running tests.
  const packed = await sh("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", home], PACKAGE_ROOT);
  const tarball = join(home, (JSON.parse(packed) as { filename: string }[])[0]?.filename ?? "");
  await writeFile(join(home, "package.json"), JSON.stringify({ name: "backend", private: true, type: "commonjs" }));
  await sh(
    "npm",
    ["install", tarball, "@types/node@20", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
    home,
  );

  server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  callbackUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  await raw.s3.send(
    new PutObjectCommand({ Bucket: stack.bucket, Key: "audio/package/jfk.flac", Body: await readFile(JFK) }),
  );
  audio = `s3://${stack.bucket}/audio/package/jfk.flac`;
});

after(async () => {
  server?.close();
  raw.s3.destroy();
  raw.sqs.destroy();
  if (home) await rm(home, { recursive: true, force: true });
});

/** `node file args` with the settings a local backend has (the worker allows http:// and private callbacks). */
async function runApp(file: string, cwd: string, id: string): Promise<Record<string, unknown>> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    WHISPER_QUEUE_URL: stack.queueUrl,
    WHISPER_RESULTS_BUCKET: stack.bucket,
    AWS_ENDPOINT_URL: stack.endpointUrl,
    WHISPER_ALLOW_HTTP: "true",
    WHISPER_ALLOW_PRIVATE_URLS: "true",
  };
  delete env.WHISPER_NODE_TEST_STACK;
  try {
    const { stdout } = await run(process.execPath, [file, audio, callbackUrl, id], { cwd, env, timeout: APP_TIMEOUT });
    return JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>;
  } catch (error) {
    assertWorkerAlive(stack);
    const failed = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${file} failed: ${failed.message}\nstdout:\n${failed.stdout}\nstderr:\n${failed.stderr}`);
  }
}

/** The signed callback for `id`, verified with the worker's secret. */
async function callbackFor<T extends { job_id: string }>(id: string): Promise<T> {
  const hit = await eventually(() => received.find((r) => r.body.includes(`"${id}"`)), 60_000, `the callback of ${id}`);
  const payload = verifyWebhook<T>(hit.body, hit.headers, stack.secret);
  assert.equal(payload.job_id, id);
  return payload;
}

test("the tarball carries the built package, its README and LICENSE", async () => {
  const installed = join(home, "node_modules", "@whisper-batch", "client");
  for (const file of ["README.md", "LICENSE", "dist/cjs/index.js", "dist/src/index.js", "dist/cjs/package.json"]) {
    assert.ok((await stat(join(installed, file))).isFile(), `${file} is in the package`);
  }
  const manifest = JSON.parse(await readFile(join(installed, "package.json"), "utf8")) as Record<string, unknown>;
  assert.equal(manifest.sideEffects, false);
  assert.ok(manifest.repository && manifest.homepage);
});

test(
  "CommonJS, ESM, TypeScript (tsc --strict) and a bundled app each submit, wait and get a signed callback",
  { timeout: APP_TIMEOUT * 2 },
  async () => {
    const apps = join(home, "apps");
    await mkdir(join(apps, "src"), { recursive: true });
    await writeFile(join(apps, "app.cjs"), CJS_APP);
    await writeFile(join(apps, "app.mjs"), ESM_APP);
    await writeFile(join(apps, "src", "app.ts"), TS_APP);
    await writeFile(join(apps, "lambda.mjs"), BUNDLED_APP);
    await writeFile(
      join(apps, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          outDir: "dist",
          rootDir: "src",
          types: ["node"],
          skipLibCheck: true,
        },
        include: ["src"],
      }),
    );
    await sh(bin("tsc"), ["-p", "tsconfig.json"], apps);
    // As CDK's NodejsFunction bundles a handler: one CommonJS file for Node, then run where nothing else is.
    const fresh = await mkdtemp(join(tmpdir(), "whisper-node-lambda-"));
    await sh(
      bin("esbuild"),
      ["lambda.mjs", "--bundle", "--minify", "--platform=node", "--format=cjs", "--target=node20", "--outfile=out.cjs"],
      apps,
    );
    await copyFile(join(apps, "out.cjs"), join(fresh, "index.cjs"));

    const [cjs, esm, ts, bundled] = await Promise.all([
      runApp("app.cjs", apps, "pkg-cjs"),
      runApp("app.mjs", apps, "pkg-esm"),
      runApp("dist/app.js", apps, "pkg-ts"),
      runApp("index.cjs", fresh, "pkg-bundle"),
    ]).finally(() => rm(fresh, { recursive: true, force: true }));

    assert.equal(cjs.refused, true, "an http:// callback without the opt-in is refused");
    assert.equal(cjs.success, true, JSON.stringify(cjs));
    assert.equal(cjs.s3ResultUrl, `s3://${stack.bucket}/results/pkg-cjs/transcript.txt`);
    const legacy = await callbackFor<LegacyCallback & { job_id: string }>("pkg-cjs");
    assert.deepEqual([legacy.transcriptionId, legacy.status, legacy.userId], ["pkg-cjs", "COMPLETED", 7]);

    assert.equal(esm.state, "completed");
    assert.ok(String(esm.text).toLowerCase().includes(SPOKEN), JSON.stringify(esm));
    assert.equal(esm.verify, "function");
    assert.equal((await callbackFor<V1Callback>("pkg-esm")).status, "completed");

    assert.deepEqual([ts.state, ts.unknown, ts.legacy, ts.verify], ["completed", "not found", "function", "function"]);
    assert.ok(String(ts.srt).includes("-->"), JSON.stringify(ts));
    assert.deepEqual((await callbackFor<V1Callback>("pkg-ts")).results, { srt: "results/pkg-ts/transcript.srt" });

    assert.equal(bundled.state, "completed");
    assert.ok(String(bundled.text).toLowerCase().includes(SPOKEN), JSON.stringify(bundled));
    assert.equal((await callbackFor<V1Callback>("pkg-bundle")).status, "completed");
  },
);

test("the types resolve under moduleResolution node10 and bundler too", { timeout: APP_TIMEOUT }, async () => {
  const dir = join(home, "types");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "check.ts"), TYPES_ONLY);
  const common = ["--noEmit", "--strict", "--skipLibCheck", "--types", "node", "--target", "ES2022", "check.ts"];
  await Promise.all([
    sh(bin("tsc"), ["--module", "commonjs", "--moduleResolution", "node10", "--esModuleInterop", ...common], dir),
    sh(bin("tsc"), ["--module", "esnext", "--moduleResolution", "bundler", ...common], dir),
  ]);
});

test("a callback receiver importing only /webhooks bundles small, and runs", { timeout: APP_TIMEOUT }, async () => {
  const dir = join(home, "receiver");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "receiver.mjs"), WEBHOOK_RECEIVER);
  await sh(
    bin("esbuild"),
    ["receiver.mjs", "--bundle", "--minify", "--platform=node", "--format=cjs", "--outfile=out.cjs"],
    dir,
  );
  const size = (await stat(join(dir, "out.cjs"))).size;
  assert.ok(size < WEBHOOKS_BUNDLE_LIMIT, `the /webhooks bundle is ${size} bytes, over ${WEBHOOKS_BUNDLE_LIMIT}`);
  console.log(`# /webhooks bundle: ${size} bytes minified`);
  // Run where nothing else is: a signed event in, the verified job id out.
  const fresh = await mkdtemp(join(tmpdir(), "whisper-node-receiver-"));
  await copyFile(join(dir, "out.cjs"), join(fresh, "index.cjs"));
  const body = JSON.stringify({ job_id: "receiver-1", status: "completed" });
  const at = Math.floor(Date.now() / 1000);
  const key = Buffer.from(stack.secret.slice("whsec_".length), "base64");
  const signature = createHmac("sha256", key).update(`msg-1.${at}.${body}`).digest("base64");
  const headers = { "webhook-id": "msg-1", "webhook-timestamp": String(at), "webhook-signature": `v1,${signature}` };
  const script = `require("./index.cjs").handler(${JSON.stringify({ body, headers })}).then((r) => console.log(r.body))`;
  const { stdout } = await run(process.execPath, ["-e", script], {
    cwd: fresh,
    env: { ...process.env, WHISPER_WEBHOOK_SECRET: stack.secret },
  }).finally(() => rm(fresh, { recursive: true, force: true }));
  assert.equal(stdout.trim(), "receiver-1");
});
