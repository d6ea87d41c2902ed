// The documented Node.js examples, run as written: docs/getting-started/node.md's ESM and CommonJS blocks and
// README's "Send your first job" block are extracted byte for byte, saved as .mjs / .cjs files and run with `node`
// against the suite's local deployment. As a reader's backend would: `@whisper-batch/client` resolves from a
// node_modules next to the file (a link to this package), `interview.flac` is a real clip in the working directory,
// `fromStack("WhisperBatch")` reads a CloudFormation stack of that name on moto whose outputs are the local queue
// and bucket, and the SDK reaches moto through AWS_ENDPOINT_URL (as tests/test_client_e2e.py runs the Python
// quick start), not through anything written into the example.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import { CloudFormationClient, CreateStackCommand } from "@aws-sdk/client-cloudformation";

import { JFK, PACKAGE_ROOT, REPO_ROOT, SPOKEN } from "./support/paths.js";
import { assertWorkerAlive, localStack } from "./support/stack.js";

const run = promisify(execFile);
const EXAMPLE_TIMEOUT = 150_000;
const STACK_NAME = "WhisperBatch"; // the name the examples use, as a reader's deployment has it
const stack = localStack();
const NODE_GUIDE = `${REPO_ROOT}docs/getting-started/node.md`;
const README = `${REPO_ROOT}README.md`;

/** The fenced code blocks of `text` in `language` (```ts, ```js), in order, as written. */
function codeBlocks(text: string, language: string): string[] {
  return [...text.matchAll(new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1] as string);
}

/** The text of one `## ` section of a page, subsections included; fails when the page has no such section. */
function docSection(text: string, title: string): string {
  const start = text.indexOf(`\n## ${title}\n`);
  assert.ok(start !== -1, `no "## ${title}" section`);
  const end = text.indexOf("\n## ", start + 1);
  return text.slice(start, end === -1 ? undefined : end);
}

/** The one block the test runs; missing means the docs changed under the test, which is a failure, not a skip. */
function theBlock(text: string, where: string, language: string): string {
  const [block] = codeBlocks(text, language);
  assert.ok(block, `${where}: no \`\`\`${language} block (the example this test runs is gone)`);
  assert.ok(block.includes(`fromStack("${STACK_NAME}")`), `${where}: the example no longer connects through fromStack`);
  return block;
}

let home: string; // node_modules/@whisper-batch/client -> this package, as `npm install path/to/clients/node` makes

before(async () => {
  home = await mkdtemp(join(tmpdir(), "whisper-node-quickstart-"));
  await mkdir(join(home, "node_modules", "@whisper-batch"), { recursive: true });
  await symlink(PACKAGE_ROOT.replace(/\/$/, ""), join(home, "node_modules", "@whisper-batch", "client"), "dir");
  // The reader's deployment: a stack named like ours whose outputs are the local resources.
  const cloudformation = new CloudFormationClient({ region: "us-east-1", endpoint: stack.endpointUrl });
  const template = {
    Resources: { Marker: { Type: "AWS::SQS::Queue", Properties: { QueueName: "whisper-node-quickstart-marker" } } },
    Outputs: {
      QueueUrl: { Value: stack.queueUrl },
      DlqUrl: { Value: stack.dlqUrl },
      BucketName: { Value: stack.bucket },
    },
  };
  await cloudformation.send(new CreateStackCommand({ StackName: STACK_NAME, TemplateBody: JSON.stringify(template) }));
  cloudformation.destroy();
});

after(async () => {
  await rm(home, { recursive: true, force: true });
});

/**
 * `node file` for one example, in its own directory (under the one with node_modules) holding `interview.flac`;
 * the example's stdout, and the directory to look at what it wrote. Rejects with its output when it exits non-zero.
 */
async function runExample(name: string, code: string): Promise<{ stdout: string; dir: string }> {
  const dir = await mkdtemp(join(home, `${name.replace(/\W/g, "-")}-`));
  await copyFile(JFK, join(dir, "interview.flac"));
  await writeFile(join(dir, name), code);
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_ENDPOINT_URL: stack.endpointUrl };
  delete env.WHISPER_NODE_TEST_STACK; // the example knows only what a reader's shell would give it
  try {
    const { stdout } = await run(process.execPath, [name], { cwd: dir, env, timeout: EXAMPLE_TIMEOUT });
    return { stdout, dir };
  } catch (error) {
    assertWorkerAlive(stack);
    const failed = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`${name} failed: ${failed.message}\nstdout:\n${failed.stdout}\nstderr:\n${failed.stderr}`);
  }
}

test("docs/getting-started/node.md's ESM example runs as written", { timeout: EXAMPLE_TIMEOUT + 30_000 }, async () => {
  const example = theBlock(await readFile(NODE_GUIDE, "utf8"), "docs/getting-started/node.md", "ts");
  const { stdout, dir } = await runExample("quickstart.mjs", example);
  assert.ok(stdout.toLowerCase().includes(SPOKEN), stdout);
  assert.match(stdout, /^\d+ \/ \d+ bytes$/m, "onProgress reported the upload");
  assert.ok((await readFile(join(dir, "interview.srt"), "utf8")).includes("-->"), "interview.srt was downloaded");
});

test(
  "docs/getting-started/node.md's CommonJS example runs as written",
  { timeout: EXAMPLE_TIMEOUT + 30_000 },
  async () => {
    const example = theBlock(await readFile(NODE_GUIDE, "utf8"), "docs/getting-started/node.md", "js");
    assert.ok(example.startsWith("// upload-and-wait.cjs\n"), "the block is the .cjs file it says it is");
    const { stdout } = await runExample("upload-and-wait.cjs", example);
    assert.ok(stdout.toLowerCase().includes(SPOKEN), stdout);
  },
);

test("README's Node.js first job runs as written", { timeout: EXAMPLE_TIMEOUT + 30_000 }, async () => {
  const section = docSection(await readFile(README, "utf8"), "Send your first job");
  const example = theBlock(section, "README.md (Send your first job)", "ts");
  const { stdout } = await runExample("first-job.mjs", example);
  assert.ok(stdout.toLowerCase().includes(SPOKEN), stdout);
});
