/**
 * writeAllSync, how kip writes stdout: all of it, through partial writes and a descriptor
 * made non-blocking (EAGAIN waits), so a slow reader holds kip back rather than kip queueing
 * its output in memory.
 */
import { expect, test } from "bun:test";
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeAllSync } from "../../cli/io.ts";
import { tempDir } from "../support/tempdir.ts";

test("a non-blocking pipe with a slow reader: every byte arrives, in order, after waits", async () => {
  const dir = tempDir("kip-io-");
  const fifo = join(dir, "fifo");
  const out = join(dir, "out");
  expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
  // O_RDWR never blocks on a FIFO; O_NONBLOCK makes a full pipe say EAGAIN.
  const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
  // The reader: dd in small blocks, so the 64 KiB pipe fills many times over.
  const reader = Bun.spawn(["dd", `if=${fifo}`, `of=${out}`, "bs=4096", "status=none"]);
  const text = Array.from({ length: 40_000 }, (_, i) => `-A KUBE-SEP-${i} -p tcp -j DNAT ü ${i}\n`).join("");
  let waits = 0;
  try {
    writeAllSync(fd, text, () => {
      waits++;
      Bun.sleepSync(1);
    });
  } finally {
    closeSync(fd);
  }
  expect(await reader.exited).toBe(0);
  expect(readFileSync(out, "utf8")).toBe(text);
  expect(waits).toBeGreaterThan(0);
});

test("a blocking file: written whole, multi-byte text counted in bytes", () => {
  const dir = tempDir("kip-io-");
  const path = join(dir, "f");
  const fd = openSync(path, "w");
  const text = `${"é".repeat(70_000)}\n`;
  try {
    writeAllSync(fd, text);
    writeAllSync(fd, "end\n");
  } finally {
    closeSync(fd);
  }
  expect(readFileSync(path, "utf8")).toBe(`${text}end\n`);
});
