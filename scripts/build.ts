/**
 * `npm run build`: one executable, made with `bun build --compile`, and nothing else in dist/.
 *
 *   bun scripts/build.ts                      → dist/kip       (linux, this machine's arch, glibc)
 *   bun scripts/build.ts --target musl        → dist/kip-musl  (Alpine and other musl systems)
 *   bun scripts/build.ts --sourcemap          → also build/sourcemaps/<target>/*.map, and the
 *                                               maps embedded in the binary (+3.4 MB) for stack traces
 *
 * `--bytecode` precompiles the JS so the binary starts in ~40 ms less (measured on
 * examples/seed), and `--splitting` keeps the daemon's lazily imported code (apiserver client,
 * prom-client) out of what `kip render` loads at start: 130–150 ms → ~100 ms for examples/seed.
 *
 * The musl target needs Bun's musl runtime: Bun downloads it from the npm registry on first use
 * (about 35 MB, kept in ~/.bun/install/cache). Offline, point KIP_BUN_MUSL at a musl `bun`
 * binary (`--compile-executable-path`).
 *
 * The build runs in a scratch directory (where Bun also writes the chunks' maps), and the
 * binary is moved beside its final name and renamed into place, so a process that runs
 * dist/kip while another rebuilds it never sees a half-written file.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = process.argv.slice(2);
const targetIndex = args.indexOf("--target");
const target = targetIndex >= 0 ? args[targetIndex + 1] : "glibc";
if (target !== "glibc" && target !== "musl") {
  console.error(`build: --target ${JSON.stringify(target)} is not glibc or musl`);
  process.exit(2);
}
const sourcemap = args.includes("--sourcemap");
const arch = process.arch === "arm64" ? "arm64" : "x64";
const out = target === "musl" ? "dist/kip-musl" : "dist/kip";

const scratch = mkdtempSync(join(tmpdir(), "kip-build-"));
const argv = ["build", "--compile", "--minify", "--bytecode", "--splitting", "--format", "esm"];
if (target === "musl") {
  argv.push(`--target=bun-linux-${arch}-musl`);
  if (process.env.KIP_BUN_MUSL) argv.push(`--compile-executable-path=${process.env.KIP_BUN_MUSL}`);
}
if (sourcemap) argv.push("--sourcemap");
argv.push("cli/main.ts", "--outfile", join(scratch, "kip"));

let status = 1;
try {
  const r = spawnSync(process.execPath, argv, { stdio: "inherit" });
  status = r.status ?? 1;
  if (status === 0) {
    mkdirSync("dist", { recursive: true });
    // The scratch directory may be on another file system: copy next to the target, then rename.
    const tmp = `${out}.tmp-${process.pid}`;
    copyFileSync(join(scratch, "kip"), tmp);
    renameSync(tmp, out);
    if (sourcemap) {
      const maps = join("build", "sourcemaps", target);
      rmSync(maps, { recursive: true, force: true });
      mkdirSync(maps, { recursive: true });
      for (const f of readdirSync(scratch)) if (f.endsWith(".map")) copyFileSync(join(scratch, f), join(maps, f));
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(status);
