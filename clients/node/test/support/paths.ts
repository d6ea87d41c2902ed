// Where things are, from the compiled file's place (dist/test/support/): the package, the repository, the sample.
import { fileURLToPath } from "node:url";

export const PACKAGE_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL("../../../../../", import.meta.url));
export const JFK = `${REPO_ROOT}tests/data/jfk.flac`;
export const SPOKEN = "ask not what your country can do for you";

/** The worker's Python: WHISPER_PYTHON, else the repository's virtualenv. */
export const PYTHON = process.env.WHISPER_PYTHON || `${REPO_ROOT}.venv/bin/python`;
