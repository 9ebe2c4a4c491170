/**
 * readManifestFile reads into one buffer of the size fstat gives, and still reads a file
 * whose size fstat does not know (or that grew) to its end, within the per-file limit.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { type ManifestEntry, readManifestFile } from "../../lib/sources/files.ts";

const entry = (path: string): ManifestEntry => ({ file: path, kind: "file", path, size: 0, mtimeMs: 0, sig: "" });

test("a file fstat calls empty is read to its end, and its bytes counted", () => {
  // /proc files have size 0 by fstat and hold text: the buffer grows as it reads.
  const r = readManifestFile(entry("/proc/self/mountinfo"));
  if ("error" in r) throw new Error(r.error);
  expect(r.text.length).toBeGreaterThan(0);
  expect(r.text.split("\n")[0]).toBe(readFileSync("/proc/self/mountinfo", "utf8").split("\n")[0]);
  expect(r.bytes).toBe(Buffer.byteLength(r.text));
});

test("the per-file limit holds when fstat's size was too small", () => {
  const r = readManifestFile(entry("/proc/self/mountinfo"), 100);
  expect(r).toEqual({ error: 'Cannot read "/proc/self/mountinfo": over the 100-byte limit per file (skipped)' });
});

test("a regular file is read whole, its bytes counted", () => {
  const r = readManifestFile(entry("examples/seed/services.yaml"));
  if ("error" in r) throw new Error(r.error);
  expect(r.text).toBe(readFileSync("examples/seed/services.yaml", "utf8"));
  expect(r.bytes).toBe(Buffer.byteLength(r.text));
});
