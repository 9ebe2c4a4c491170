/**
 * `npm run build`: one executable, dist/kip, made with `bun build --compile`.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
const r = spawnSync(
  process.execPath,
  ["build", "--compile", "--minify", "--sourcemap", "cli/main.ts", "--outfile", "dist/kip"],
  { stdio: "inherit" },
);
process.exit(r.status ?? 1);
