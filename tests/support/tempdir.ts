/**
 * Temporary directories for tests: every one is removed after the last test of the run (the
 * preload's afterAll), whether its test passed, threw or timed out, and a killed run's are
 * removed by the next run. No test makes its own with mkdtempSync (tempdir.test.ts checks).
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pidAlive } from "./netns.ts";

/** What a test may name its directories: `kip-` and words, each ending in "-" (`kip-diff-`). */
const PREFIX = /^kip-(?:[a-z0-9]+-)*$/;

/** Directories tempDir made: `<prefix>t<pid>-` and mkdtemp's six characters. */
const TEST_DIR = /^kip-(?:[a-z0-9]+-)*t(\d+)-[A-Za-z0-9]{6}$/;

/** Directories this process made and has not removed yet. */
const live = new Set<string>();
let exitHook = false;

/** Remove a directory tempDir made, whatever is in it, before the end of the run. */
export function removeTempDir(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {}
  live.delete(dir);
}

/** Remove every directory this process made: after the last test (preload.ts), or at exit. */
export function removeTempDirs(): void {
  for (const d of live) removeTempDir(d);
}

/**
 * A new empty directory under the system's temp dir, named `<prefix>t<pid>-XXXXXX`, removed at
 * the end of the run; a killed run's are removed by the next (cleanupLeftovers).
 */
export function tempDir(prefix: string): string {
  if (!PREFIX.test(prefix)) throw new Error(`tempDir: prefix ${JSON.stringify(prefix)} is not like "kip-name-"`);
  if (!exitHook) {
    exitHook = true;
    cleanupLeftovers();
    // `bun test` emits no "exit" (the preload's afterAll calls removeTempDirs); a script does.
    process.once("exit", removeTempDirs);
  }
  const dir = mkdtempSync(join(tmpdir(), `${prefix}t${process.pid}-`));
  live.add(dir);
  return dir;
}

/** Remove the directories of earlier test runs whose process is gone; returns their paths. */
export function cleanupLeftovers(): string[] {
  const removed: string[] = [];
  const root = tmpdir();
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = TEST_DIR.exec(name);
    if (!m) continue;
    const dir = join(root, name);
    const pid = Number(m[1]);
    if (pid === process.pid ? live.has(dir) : pidAlive(pid)) continue;
    removeTempDir(dir);
    removed.push(dir);
  }
  return removed;
}
