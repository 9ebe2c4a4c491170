/**
 * readManifestPaths opens files defensively: symlinks that leave the directory, FIFOs (also
 * swapped in behind a checked name), huge files and a too-large total are reported, never
 * followed, blocked on or read whole; what `kip render` relies on (links inside the
 * directory, stdin, a named pipe given on the command line) keeps working.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readManifestPaths } from "../../lib/sources/files.ts";
import { tempDir } from "../support/tempdir.ts";

const SVC = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n";

function dir(): string {
  return tempDir("kip-files-");
}

function mkfifo(p: string): void {
  const r = spawnSync("mkfifo", [p]);
  if (r.status !== 0) throw new Error(`mkfifo ${p}: ${r.stderr}`);
}

describe("readManifestPaths", () => {
  test("a symlink to a file inside the directory is read; one to a file or directory outside is refused", () => {
    const outside = dir();
    writeFileSync(join(outside, "secret.yaml"), "password: hunter2\n");
    const d = dir();
    mkdirSync(join(d, "real"));
    writeFileSync(join(d, "real", "svc.yaml"), SVC);
    symlinkSync(join(d, "real", "svc.yaml"), join(d, "link.yaml"));
    symlinkSync(join(outside, "secret.yaml"), join(d, "leak.yaml"));
    symlinkSync("/", join(d, "root"));
    const r = readManifestPaths([d], () => "");
    expect(r.files.map((f) => f.file)).toEqual([join(d, "link.yaml"), join(d, "real", "svc.yaml")]);
    expect(r.errors).toEqual([
      `Cannot read ${JSON.stringify(join(d, "leak.yaml"))}: a symlink to outside ${JSON.stringify(d)} (skipped)`,
      `Cannot read ${JSON.stringify(join(d, "root"))}: a symlink to outside ${JSON.stringify(d)} (skipped)`,
    ]);
    expect(JSON.stringify(r)).not.toContain("hunter2");
  });

  test("a FIFO in the directory is reported at once, not read (reading one blocks forever)", () => {
    const d = dir();
    mkfifo(join(d, "pipe.yaml"));
    writeFileSync(join(d, "svc.yaml"), SVC);
    const t0 = performance.now();
    const r = readManifestPaths([d], () => "");
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(r.files.map((f) => f.file)).toEqual([join(d, "svc.yaml")]);
    expect(r.errors).toEqual([`Cannot read ${JSON.stringify(join(d, "pipe.yaml"))}: not a regular file (skipped)`]);
  });

  test("a name swapped to a FIFO between the check and the open never blocks", async () => {
    // The race the review found (files.ts checked, then read): another process swaps x.yaml
    // between a regular file and a FIFO while we read. Before the fix a read ended up blocked
    // in open(2) on the FIFO; here the swapper then opens the FIFO for writing, which frees
    // such a reader (and tells us), so a regression fails instead of hanging the suite.
    const d = dir();
    writeFileSync(join(d, "good.txt"), SVC);
    mkfifo(join(d, "pipe"));
    const swapper = Bun.spawn(
      [
        process.execPath,
        "-e",
        `const fs = require("node:fs");
         const d = ${JSON.stringify(d)};
         const until = Date.now() + 1500;
         for (let i = 0; Date.now() < until; i++) {
           fs.symlinkSync(i % 2 ? "pipe" : "good.txt", d + "/.t" + i);
           fs.renameSync(d + "/.t" + i, d + "/x.yaml");
         }
         let freed = 0;
         const stop = Date.now() + 500;
         while (Date.now() < stop) {
           try { fs.closeSync(fs.openSync(d + "/pipe", fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)); freed++; } catch {}
         }
         console.log(freed);`,
      ],
      { stdout: "pipe" },
    );
    const until = Date.now() + 1500;
    let reads = 0;
    let fifoSeen = 0;
    while (Date.now() < until) {
      const r = readManifestPaths([d], () => "");
      reads++;
      if (r.errors.some((e) => e.includes("not a regular file") || e.includes("became a symlink"))) fifoSeen++;
    }
    await swapper.exited;
    const freed = Number((await new Response(swapper.stdout).text()).trim());
    expect(freed).toBe(0); // no reader was ever stuck on the FIFO
    expect(reads).toBeGreaterThan(10);
    expect(fifoSeen).toBeGreaterThan(0);
  });

  test("the swap, done by the kernel itself: a FIFO opened where a regular file was expected is refused", () => {
    const d = dir();
    mkfifo(join(d, "x.yaml"));
    // As the daemon reads a file named on the command line (readNamedPipes: false).
    const r = readManifestPaths([join(d, "x.yaml")], () => "", { readNamedPipes: false });
    expect(r.files).toEqual([]);
    expect(r.errors[0]).toContain("not a regular file");
  });

  test("size caps: a file over the per-file cap, then files past the total cap, are skipped and reported", () => {
    const d = dir();
    writeFileSync(join(d, "a.yaml"), SVC);
    writeFileSync(join(d, "b-huge.yaml"), `# ${"x".repeat(4096)}\n`);
    writeFileSync(join(d, "c.yaml"), SVC.repeat(20));
    writeFileSync(join(d, "d.yaml"), SVC);
    const r = readManifestPaths([d], () => "", { maxFileBytes: 4000, maxTotalBytes: 2000 });
    expect(r.files.map((f) => f.file)).toEqual([join(d, "a.yaml")]);
    expect(r.errors).toEqual([
      `Cannot read ${JSON.stringify(join(d, "b-huge.yaml"))}: 4099 bytes is over the 4000-byte limit per file (skipped)`,
      `Cannot read ${JSON.stringify(join(d, "c.yaml"))}: the manifests are over the 2000-byte limit in total; this file and the ones after it are skipped`,
    ]);
  });

  test("kip render's inputs keep working: stdin, and a named pipe given on the command line", () => {
    expect(readManifestPaths(["-"], () => SVC)).toEqual({ files: [{ file: "<stdin>", text: SVC }], errors: [] });
    const d = dir();
    const fifo = join(d, "in.yaml");
    mkfifo(fifo);
    // A writer on the other end, as `kip render <(kubectl get …)` has.
    const writer = Bun.spawn(["dd", `of=${fifo}`, "status=none"], { stdin: new Blob([SVC]) });
    const r = readManifestPaths([fifo], () => "");
    expect(r).toEqual({ files: [{ file: fifo, text: SVC }], errors: [] });
    return writer.exited;
  });
});
