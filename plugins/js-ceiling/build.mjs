// Builds ceiling.js into a hashwatt:policy component (node build.mjs [OUT]).
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "ceiling.wasm"));
const { component } = await componentize({
  sourcePath: join(here, "ceiling.js"),
  witPath: existsSync(join(here, "wit")) ? join(here, "wit") : join(here, "../../wit/policy"),
  worldName: "policy-plugin",
  // A policy is a pure function of its inputs: no WASI clocks, randomness,
  // stdio or HTTP in the component.
  disableFeatures: ["random", "stdio", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
console.log(out);
