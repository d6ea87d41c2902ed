// dist/cjs holds the CommonJS build (tsconfig.cjs.json): its own package.json tells Node and TypeScript that its .js
// and .d.ts files are CommonJS, while the package root stays "type": "module" for the ESM build in dist/src.
import { writeFileSync } from "node:fs";

writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), '{\n  "type": "commonjs"\n}\n');
