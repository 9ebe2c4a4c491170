/**
 * The compiled executable, built on demand when missing or older than the sources, so CLI
 * tests always spawn what `npm run build` makes.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
export const KIP = join(ROOT, "dist", "kip");

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith(".ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

export function ensureBinary(): string {
  let built = 0;
  try {
    built = statSync(KIP).mtimeMs;
  } catch {}
  const sources = Math.max(newestSource(join(ROOT, "cli")), newestSource(join(ROOT, "lib")));
  if (built < sources) {
    const r = spawnSync(process.execPath, ["scripts/build.ts"], { cwd: ROOT, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`build failed:\n${r.stdout}\n${r.stderr}`);
  }
  return KIP;
}

export interface Spawned {
  code: number;
  stdout: string;
  stderr: string;
}

/** Spawn dist/kip with an argv array (never a shell), from the repo root. */
export function kip(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Spawned {
  const r = spawnSync(ensureBinary(), args, {
    cwd: ROOT,
    input: opts.input,
    encoding: "utf8",
    env: { ...process.env, ...opts.env },
    maxBuffer: 1 << 30,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
