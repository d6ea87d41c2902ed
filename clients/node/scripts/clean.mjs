// Every build starts from an empty dist/, so a deleted source file never leaves a stale test or module behind.
import { rmSync } from "node:fs";

rmSync(new URL("../dist", import.meta.url), { recursive: true, force: true });
