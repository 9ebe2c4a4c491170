/**
 * `kip sync --manifests` over a directory of hostile files, for real in a namespace: an
 * unresolved alias, an alias bomb, 200,000 nested `[`, a FIFO, a FIFO swapped in behind a
 * checked name, a huge file, a symlink out of the directory. The daemon keeps running, syncs
 * the good files, answers /livez all along, and reports each bad file once, not at every rescan.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GOOD, hostileFiles, REPORTED, startSwapper } from "../support/hostile.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { FAST, LOOPBACK_PORTS, startSync, stopAfterEach } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";

const skip = skipRealIptables();
const procs = stopAfterEach();

describe.skipIf(skip)("kip sync and hostile manifests", () => {
  test("the daemon survives, syncs the good files, answers /livez, and reports each bad file once", async () => {
    const dir = tempDir("kip-hostile-");
    const outside = tempDir("kip-outside-");
    const m = join(dir, "m");
    mkdirSync(m);
    writeFileSync(join(m, "good.yaml"), GOOD);
    hostileFiles(m, outside);
    await withNetns(async (ns, run) => {
      expect(run(["ip", "link", "set", "lo", "up"]).code).toBe(0);
      const swapped = startSwapper(m, 4000);
      const p = startSync(ns, [
        "--manifests",
        m,
        "--hostname-override",
        "node1",
        "--ip-families",
        "IPv4",
        "--manifests-max-file-bytes",
        "1Mi",
        ...FAST,
        ...LOOPBACK_PORTS,
        "--state-dir",
        join(dir, "state"),
      ]);
      procs.push(p);
      const serving = await p.waitForLog(/serving healthz=\S+/);
      const healthz = /healthz=(\S+)/.exec(serving)?.[1];
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
      // /livez while the swapper runs and the directory is rescanned every 200 ms.
      const codes: string[] = [];
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        const r = run([
          "curl",
          "-s",
          "-o",
          "/dev/null",
          "--max-time",
          "2",
          "-w",
          "%{http_code}",
          `http://${healthz}/livez`,
        ]);
        codes.push(r.stdout);
      }
      expect(await swapped).toBe(0); // kip never sat in open(2) on the FIFO
      expect(codes.length).toBeGreaterThan(10);
      expect(codes.filter((c) => c !== "200")).toEqual([]);
      expect(p.child.exitCode).toBeNull();
      const nat = run(["iptables-save", "-t", "nat"]).stdout;
      expect(nat).toContain('"shop/web cluster IP"');
      // Each bad file: one report over ~20 rescans (x.yaml's swaps are new versions each time).
      for (const name of REPORTED) {
        const lines = p.lines.filter((l) => l.includes(join(m, name)));
        expect({ name, reports: lines.length }).toEqual({ name, reports: 1 });
      }
      expect(p.lines.join("\n")).not.toContain("s3cr3t");
      expect(await p.stop()).toBe(0);
    });
  }, 40_000);
});
