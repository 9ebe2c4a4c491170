/**
 * `npm run build`: one executable, dist/kip, made with `bun build --compile`. `--bytecode`
 * precompiles the JS so the binary starts in ~40 ms less (measured on examples/seed), and
 * `--splitting` keeps the daemon's lazily imported code (apiserver client, prom-client) out of
 * what `kip render` loads at start: 130–150 ms → ~100 ms for examples/seed.
 * The binary is written beside its final name and renamed into place, so a process that runs
 * dist/kip while another rebuilds it never sees a half-written file.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";

mkdirSync("dist", { recursive: true });
const tmp = `dist/.kip-${process.pid}`;
const r = spawnSync(
  process.execPath,
  [
    "build",
    "--compile",
    "--minify",
    "--bytecode",
    "--splitting",
    "--format",
    "esm",
    "--sourcemap",
    "cli/main.ts",
    "--outfile",
    tmp,
  ],
  { stdio: "inherit" },
);
if (r.status === 0) {
  renameSync(tmp, "dist/kip");
  if (existsSync(`${tmp}.map`)) renameSync(`${tmp}.map`, "dist/kip.map");
} else rmSync(tmp, { force: true });
process.exit(r.status ?? 1);
