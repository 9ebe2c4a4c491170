/**
 * Namespaces a test run leaves behind (a test that timed out never reaches its `finally`; a
 * killed run never reaches its exit hook) are removed by the next run, and only those.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { addNetns, cleanupLeftovers, deleteNetns, exec, skipRealIptables } from "./netns.ts";

const listed = () => exec(["ip", "netns", "list"]).stdout;

test.skipIf(skipRealIptables())("a dead run's namespaces go; this run's and other tools' stay", () => {
  // A pid that was a process and is no more.
  const dead = spawnSync("true").pid as number;
  const left = `kip-t${dead}-1`;
  const mine = `kip-t${process.pid}-leftover-test`;
  const other = `kipother-${dead}-1`;
  try {
    // (The first addNetns of a process sweeps leftovers itself: add ours before the others.)
    expect(addNetns(mine).code).toBe(0);
    expect(exec(["ip", "netns", "add", left]).code).toBe(0);
    expect(exec(["ip", "netns", "add", other]).code).toBe(0);
    expect(cleanupLeftovers()).toContain(left);
    const now = listed();
    expect(now).not.toContain(left);
    expect(now).toContain(mine);
    expect(now).toContain(other);
  } finally {
    deleteNetns(mine);
    exec(["ip", "netns", "del", other]);
    exec(["ip", "netns", "del", left]);
  }
});
