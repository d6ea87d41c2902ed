/**
 * The package's two data files: the worker's JSON Schema of the job message and the price table shared with the
 * Python client. `npm run sync` copies both from the repository as JSON (tests fail when they drift) and the build
 * turns them into the TypeScript modules imported here: no file is read at import, so a bundle carries them.
 */

export { JOB_MESSAGE_SCHEMA } from "./data/job-message.schema.js";
export { PRICES_DATA } from "./data/prices.js";
