/**
 * The real-packet node (tests/support/topology.ts) driven by `kip sync`: first `--once`, then
 * a running daemon watching a manifests directory; traffic follows each change.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBinary } from "../support/binary.ts";
import { skipRealIptables } from "../support/netns.ts";
import { eventually, FAST, LOOPBACK_PORTS, type SyncProc, startSync } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";
import { BACKENDS, E2E_MANIFESTS, NODE_FLAGS, startTopology, type Topology } from "../support/topology.ts";

const skip = skipRealIptables();
const NGINX = "http://10.97.54.248/";

for (const backend of BACKENDS) {
  describe.skipIf(skip)(`packets through kip sync (${backend})`, () => {
    let topo: Topology | undefined;
    let daemon: SyncProc | undefined;
    const dir = tempDir("kip-e2e-sync-");
    const slices = join(dir, "m", "endpointslices.yaml");
    const flags = [...NODE_FLAGS, "--backend", backend, "--ip-families", "IPv4", "--state-dir", join(dir, "state")];
    const node = () => {
      if (!topo) throw new Error("no topology");
      return topo;
    };
    /** Which pods answer nginx-svc from the client pod, over up to `n` requests. */
    const pods = (n = 40) => {
      const seen = new Set<string>();
      for (let i = 0; i < n && seen.size < 3; i++) {
        node().conntrackFlush();
        const r = node().curl("client", NGINX);
        if (r.code === 0) seen.add(r.body.split(" ")[0]);
      }
      return [...seen].sort();
    };

    beforeAll(async () => {
      cpSync(E2E_MANIFESTS, join(dir, "m"), { recursive: true });
      topo = await startTopology(backend);
    }, 120_000);

    afterAll(async () => {
      await daemon?.stop();
      await topo?.stop();
    });

    test("kip sync --once: a node with no rules gets them, ClusterIP reaches every pod", () => {
      // Before: no rules, so the ClusterIP goes nowhere (one short request is enough to see it).
      expect(node().curl("client", NGINX, 1).code).not.toBe(0);
      const r = node().inNode([ensureBinary(), "sync", "--once", "--manifests", join(dir, "m"), ...flags]);
      expect(r.code).toBe(0);
      expect(pods()).toEqual(["pod1", "pod2", "pod3"]);
    }, 60_000);

    test("a running kip sync: an endpoint removed from the slice gets no more traffic, and back", async () => {
      daemon = startSync(node().ns.node, ["--manifests", join(dir, "m"), ...flags, ...FAST, ...LOOPBACK_PORTS]);
      await daemon.waitForLog(/synced family=IPv4 type=full ok=true/);
      const original = readFileSync(slices, "utf8");
      writeFileSync(slices, original.replace(/^ {2}- \{ addresses: \[10\.244\.1\.17\].*\n/m, ""));
      await daemon.waitForLog(/synced family=IPv4 type=partial ok=true/);
      expect(pods()).toEqual(["pod1", "pod2"]);
      writeFileSync(slices, original);
      await eventually("pod3 to get traffic again", () => pods(20).includes("pod3"));
      expect(await daemon.stop()).toBe(0);
      // Stopped: the rules stay, traffic still flows.
      expect(pods()).toEqual(["pod1", "pod2", "pod3"]);
    }, 60_000);
  });
}
