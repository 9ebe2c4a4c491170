/**
 * The daemon fed by the apiserver source (the real client, over TLS, against the in-repo test
 * apiserver) and writing real iptables in a namespace: live rules converge to what `kip
 * render` gives for the same objects after every add, change and delete; the apiserver killed
 * and restarted leaves the rules alone meanwhile, then kip reconnects and converges.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ExecRunner } from "../../lib/iptables/exec_runner.ts";
import { dumpOfTables, parseSave } from "../../lib/iptables/save_parser.ts";
import { compareDumps } from "../../lib/kube_iptables.ts";
import { defaultConfig } from "../../lib/proxy/options.ts";
import { ChangeTracker } from "../../lib/proxy/tracker.ts";
import { renderManifests } from "../../lib/render.ts";
import { createApiserverSource } from "../../lib/sources/apiserver.ts";
import { Daemon } from "../../lib/sync/daemon.ts";
import { createLogger } from "../../lib/sync/log.ts";
import { Proxier } from "../../lib/sync/proxier.ts";
import { realClock } from "../../lib/sync/runner.ts";
import { startTestApiserver, type TestApiserver } from "../support/apiserver.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { eventually } from "../support/sync_proc.ts";

const skip = skipRealIptables();
const config = { ...defaultConfig(), hostname: "node1", clusterCIDR: "10.244.0.0/16", hostAddresses: ["10.0.0.1/24"] };

const service = (name: string, ip: string) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: "default" },
  spec: {
    type: "ClusterIP",
    clusterIP: ip,
    clusterIPs: [ip],
    ipFamilies: ["IPv4"],
    ports: [{ name: "http", port: 80, protocol: "TCP" }],
  },
});
const slice = (svc: string, ips: string[]) => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: `${svc}-abc`, namespace: "default", labels: { "kubernetes.io/service-name": svc } },
  addressType: "IPv4",
  ports: [{ name: "http", port: 8080, protocol: "TCP" }],
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: "node1" })),
});

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

describe.skipIf(skip)("kip sync from an apiserver", () => {
  test("converges after add, change and delete; survives the apiserver going away", async () => {
    const api: TestApiserver = await startTestApiserver();
    cleanups.push(() => api.close());
    const objects = new Map<string, object>();
    const put = (key: string, obj: object, fresh: boolean) => {
      objects.set(key, obj);
      if (fresh) api.add(obj as never);
      else api.update(obj as never);
    };
    put("s/web", service("web", "10.96.0.20"), true);
    put("e/web", slice("web", ["10.244.1.5", "10.244.1.6"]), true);
    put("s/api", service("api", "10.96.0.21"), true);
    put("e/api", slice("api", ["10.244.1.7"]), true);

    await withNetns(async (ns, run) => {
      const runner = await ExecRunner.create("IPv4", "nft", { prefix: ["ip", "netns", "exec", ns] });
      const logs: string[] = [];
      const daemon = new Daemon({
        source: createApiserverSource({
          kubeconfig: api.kubeconfigPath,
          nodeName: "node1",
          retry: { initialMs: 100, maxMs: 500 },
        }),
        tracker: new ChangeTracker("node1"),
        proxiers: [new Proxier({ family: "IPv4", runner, config, syncPeriodMs: 30_000, now: () => Date.now() })],
        clock: realClock,
        minSyncPeriodMs: 50,
        syncPeriodMs: 30_000,
        log: createLogger("text", (l) => logs.push(l)),
        canary: false,
      });
      cleanups.push(() => daemon.stop());

      /** Live rules vs `kip render` of the objects the apiserver holds now. */
      const drift = () => {
        const text = JSON.stringify({ apiVersion: "v1", kind: "List", items: [...objects.values()] });
        const r = renderManifests([{ file: "api.json", text }], config, { family: "IPv4" });
        if (!r.ruleset) throw new Error(r.errors.map((e) => e.message).join("; "));
        const live = parseSave(run(["iptables-nft-save"]).stdout);
        return compareDumps(live, dumpOfTables({ filter: r.ruleset.filter, nat: r.ruleset.nat }), {
          family: "IPv4",
          jumps: true,
        }).chains;
      };

      await daemon.start();
      await eventually("the first sync to converge", () => drift().length === 0);

      put("e/web", slice("web", ["10.244.1.5", "10.244.1.9"]), false);
      await eventually("an endpoint change", () => drift().length === 0);
      put("s/db", service("db", "10.96.0.22"), true);
      await eventually("a new Service (no endpoints: REJECT)", () => drift().length === 0);
      expect(run(["iptables-nft-save", "-t", "filter"]).stdout).toContain("default/db:http has no endpoints");
      objects.delete("e/api");
      api.remove("EndpointSlice", "default", "api-abc");
      objects.delete("s/api");
      api.remove("Service", "default", "api");
      await eventually("a deleted Service", () => drift().length === 0);
      expect(run(["iptables-nft-save", "-t", "nat"]).stdout).not.toContain("default/api");

      // The apiserver goes away: nothing is flushed meanwhile.
      const before = run(["iptables-nft-save", "-t", "nat"]).stdout.replace(/^#.*\n/gm, "");
      await api.stop();
      await eventually("the source to report the lost connection", () => logs.some((l) => /WARN/.test(l)));
      expect(run(["iptables-nft-save", "-t", "nat"]).stdout.replace(/^#.*\n/gm, "")).toBe(before);
      // Changes made while kip could not see them arrive after the restart.
      put("e/web", slice("web", ["10.244.1.10"]), false);
      await api.restart();
      await eventually("convergence after the apiserver came back", () => drift().length === 0, 20_000);
      expect(run(["iptables-nft-save", "-t", "nat"]).stdout).toContain("10.244.1.10:8080");
    });
  }, 60_000);
});
