/**
 * Temp directories do not outlive the run that made them: a test that throws or times out
 * still has its directory removed when the process exits, a killed run's are removed by the
 * next run, and no test makes one of its own that nothing would remove.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { cleanupLeftovers, removeTempDir, tempDir } from "./tempdir.ts";

const TESTS = join(import.meta.dir, "..");

test("a test that throws, and one that times out, leave no directory behind", () => {
  const dir = tempDir("kip-tempdir-");
  writeFileSync(
    join(dir, "leaky.test.ts"),
    [
      `import { test } from "bun:test";`,
      `import { existsSync } from "node:fs";`,
      `import { tempDir } from ${JSON.stringify(join(import.meta.dir, "tempdir.ts"))};`,
      `const made = (d: string) => console.log("made", d, existsSync(d));`,
      `test("throws", () => { made(tempDir("kip-tempdir-throws-")); throw new Error("boom"); });`,
      `test("times out", async () => { made(tempDir("kip-tempdir-hangs-")); await new Promise(() => {}); }, 200);`,
    ].join("\n"),
  );
  // From the repository, as `bun test` runs here: bunfig.toml's preload is what cleans up.
  const r = spawnSync(process.execPath, ["test", join(dir, "leaky.test.ts")], {
    cwd: join(TESTS, ".."),
    encoding: "utf8",
    env: { ...process.env, TMPDIR: tmpdir() },
    timeout: 60_000,
  });
  const out = `${r.stdout}${r.stderr}`;
  expect(r.status).toBe(1);
  expect(out).toContain("2 fail");
  const made = [...out.matchAll(/^made (\S+) (true|false)$/gm)];
  expect(made.map((m) => m[2])).toEqual(["true", "true"]);
  for (const [, d] of made) expect(existsSync(d)).toBe(false);
});

test("a dead run's directories go; this run's, a live run's and other tools' stay", () => {
  // A pid that was a process and is no more; and one that is alive (ours, by its parent's).
  const dead = spawnSync("true").pid as number;
  const mine = tempDir("kip-tempdir-");
  const left = join(tmpdir(), `kip-tempdir-t${dead}-AbC123`);
  const alive = join(tmpdir(), `kip-tempdir-t${process.ppid}-AbC123`);
  const other = join(tmpdir(), `kip-other-${dead}-AbC123`);
  try {
    for (const d of [left, alive, other]) mkdirSync(join(d, "sub"), { recursive: true });
    expect(cleanupLeftovers()).toEqual([left]);
    expect(existsSync(left)).toBe(false);
    for (const d of [mine, alive, other]) expect(existsSync(d)).toBe(true);
  } finally {
    for (const d of [left, alive, other]) removeTempDir(d);
    removeTempDir(mine);
  }
});

test("tempDir refuses a prefix the sweep would not recognise", () => {
  expect(() => tempDir("kip-diff")).toThrow('prefix "kip-diff" is not like "kip-name-"');
  expect(() => tempDir("../kip-x-")).toThrow();
});

test("no test makes a temp directory of its own: they use tempDir, which removes them", () => {
  const offenders: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (!e.name.startsWith("fixtures")) walk(p);
      } else if (
        /\.ts$/.test(e.name) &&
        p !== join(import.meta.dir, "tempdir.ts") &&
        p !== join(import.meta.dir, "tempdir.test.ts")
      ) {
        const text = readFileSync(p, "utf8");
        if (/\bmkdtemp(?:Sync)?\(|\btmpdir\(\)/.test(text)) offenders.push(relative(TESTS, p));
      }
    }
  };
  walk(TESTS);
  expect(offenders).toEqual([]);
});
