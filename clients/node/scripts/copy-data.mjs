// tsc does not copy the JSON data files the modules read at run time: put them next to the compiled modules.
import { cpSync } from "node:fs";

cpSync(new URL("../src/data", import.meta.url), new URL("../dist/src/data", import.meta.url), { recursive: true });
