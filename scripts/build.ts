/**
 * `npm run build`: one executable, dist/kip, made with `bun build --compile`. `--bytecode`
 * precompiles the JS so the binary starts in ~40 ms less (measured on examples/seed).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
const r = spawnSync(
  process.execPath,
  ["build", "--compile", "--minify", "--bytecode", "--sourcemap", "cli/main.ts", "--outfile", "dist/kip"],
  { stdio: "inherit" },
);
process.exit(r.status ?? 1);
