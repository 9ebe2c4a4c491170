/**
 * The bare-metal story with real packets (tests/support/topology.ts): a node namespace runs
 * `kip sync --manifests` with a Service whose kip/readiness-probe checks three backend hosts
 * on the bridge (HTTP on 9090, servers this test starts and kills); a client outside (ext)
 * sends requests to the Service's external IP, routed to the node, in a loop.
 *
 * - One backend killed: within periodSeconds × failureThreshold plus one sync its endpoint is
 *   gone from the rules, and from then on no request goes to it and none fails. The time from
 *   the kill to the rule's removal is measured and printed.
 * - Started again: it gets traffic back.
 * - All killed: connections are refused at once (REJECT), not left to time out.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { skipRealIptables } from "../support/netns.ts";
import { eventually, FAST, LOOPBACK_PORTS, type SyncProc, startSync } from "../support/sync_proc.ts";
import { removeTempDir, tempDir } from "../support/tempdir.ts";
import { ADDR, BACKENDS, NODE_FLAGS, SERVER_PODS, startTopology, type Topology, waitFor } from "../support/topology.ts";

const skip = skipRealIptables();
const POD_SERVER = join(import.meta.dir, "..", "support", "pod_server.ts");
const VIP = "192.168.56.150";
const PORT = 9090;
const PERIOD_S = 1;
const FAILURES = 2;
const POD_IP = { pod1: ADDR.pod1, pod2: ADDR.pod2, pod3: ADDR.pod3 } as const;
type Pod = (typeof SERVER_PODS)[number];

const MANIFESTS = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations:
    kip/readiness-probe: |
      httpGet: { path: /healthz }
      periodSeconds: ${PERIOD_S}
      timeoutSeconds: 1
      failureThreshold: ${FAILURES}
spec:
  clusterIP: 10.96.0.50
  externalIPs: [${VIP}]
  ports: [{ name: http, port: 80, targetPort: ${PORT} }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: { kubernetes.io/service-name: web }
addressType: IPv4
ports: [{ name: http, port: ${PORT}, protocol: TCP }]
endpoints:
  - { addresses: [${ADDR.pod1}], conditions: { ready: true }, nodeName: node1 }
  - { addresses: [${ADDR.pod2}], conditions: { ready: true }, nodeName: node1 }
  - { addresses: [${ADDR.pod3}], conditions: { ready: true }, nodeName: node1 }
`;

for (const backend of BACKENDS) {
  describe.skipIf(skip)(`bare metal: health-checked backends (${backend})`, () => {
    let topo: Topology | undefined;
    let daemon: SyncProc | undefined;
    const servers = new Map<Pod, ChildProcess>();
    const dir = tempDir("kip-e2e-bare-");
    const node = () => {
      if (!topo) throw new Error("no topology");
      return topo;
    };

    /** A backend's HTTP server on :9090, started in its namespace; resolves once it listens. */
    const startBackend = async (pod: Pod) => {
      const child = spawn("ip", ["netns", "exec", node().ns[pod], process.execPath, POD_SERVER, pod, String(PORT)], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      servers.set(pod, child);
      await new Promise<void>((resolve, reject) => {
        let out = "";
        child.stdout?.on("data", (d) => {
          out += String(d);
          if (out.includes("ready")) resolve();
        });
        child.once("exit", (code) => reject(new Error(`backend ${pod} exited (${code}) before it was ready`)));
      });
    };
    /** Kill a backend's server (SIGKILL: a host that dies) and wait for the process to be gone. */
    const killBackend = async (pod: Pod) => {
      const child = servers.get(pod);
      servers.delete(pod);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGKILL");
      await gone;
    };
    /** One request from outside to the Service address: which backend answered, or curl's failure. */
    const request = () => {
      const started = Date.now();
      const r = node().curl("ext", `http://${VIP}/`, 2);
      return { started, ms: Date.now() - started, code: r.code, pod: r.code === 0 ? r.body.split(" ")[0] : undefined };
    };
    const natHas = (ip: string) => node().save(["-t", "nat"]).stdout.includes(`--to-destination ${ip}:${PORT}`);

    beforeAll(async () => {
      mkdirSync(join(dir, "m"), { recursive: true });
      writeFileSync(join(dir, "m", "web.yaml"), MANIFESTS);
      topo = await startTopology(backend);
      // The Service address is the node's own, as keepalived would hold it (a REJECT for a VIP
      // the node only forwards would not reach the client).
      const add = node().inNode(["ip", "addr", "add", `${VIP}/32`, "dev", "lo"]);
      if (add.code !== 0) throw new Error(`ip addr add ${VIP}: ${add.stderr}`);
      for (const pod of SERVER_PODS) await startBackend(pod);
    }, 120_000);

    afterAll(async () => {
      await daemon?.stop();
      for (const pod of [...servers.keys()]) await killBackend(pod);
      await topo?.stop();
      removeTempDir(dir);
    });

    test("traffic is balanced across the backends that pass their probe; a dead one leaves, and comes back", async () => {
      daemon = startSync(node().ns.node, [
        "--manifests",
        join(dir, "m"),
        ...NODE_FLAGS,
        "--backend",
        backend,
        "--ip-families",
        "IPv4",
        "--state-dir",
        join(dir, "state"),
        ...FAST,
        ...LOOPBACK_PORTS,
      ]);
      await daemon.waitForLog(/synced family=IPv4 type=full ok=true/);
      const serving = await daemon.waitForLog(/ serving /);
      const metricsAddr = /metrics=(\S+)/.exec(serving)?.[1];
      // Every backend answers (round robin by probability: a few dozen requests see all three).
      const seen = new Set<string>();
      await eventually("all three backends to answer", () => {
        const r = request();
        if (r.pod) seen.add(r.pod);
        return seen.size === 3;
      });

      // pod3 dies. Requests go on; its endpoint must leave the rules in time.
      const killedAt = Date.now();
      await killBackend("pod3");
      const log: ReturnType<typeof request>[] = [];
      let removedAt = 0;
      await waitFor(
        "pod3 to leave the rules",
        () => {
          log.push(request());
          if (natHas(ADDR.pod3)) return false;
          removedAt = Date.now();
          return true;
        },
        { timeoutMs: 15_000, everyMs: 0 },
      );
      const removal = removedAt - killedAt;
      process.stderr.write(
        `bare metal (${backend}): backend killed → removed from the rules in ${removal} ms ` +
          `(periodSeconds ${PERIOD_S} × failureThreshold ${FAILURES}; ${log.filter((r) => r.code !== 0).length} of ${log.length} requests failed meanwhile)\n`,
      );
      // periodSeconds × failureThreshold, plus one sync (min-sync-period 100 ms, a restore) and this loop's step.
      expect(removal).toBeLessThan(PERIOD_S * FAILURES * 1000 + 1500);
      await daemon.waitForLog(/WARN endpoint not ready service=default\/web endpoint=10\.244\.1\.17:9090 /);
      // From now on: no request fails, none reaches pod3, the other two share them.
      const after = Array.from({ length: 30 }, () => request());
      expect(after.filter((r) => r.code !== 0)).toEqual([]);
      expect(new Set(after.map((r) => r.pod))).toEqual(new Set(["pod1", "pod2"]));

      // What the operator sees.
      const dbg = node().inNode(["curl", "-s", "--noproxy", "*", `http://${metricsAddr}/debug/endpoints`]);
      const eps = JSON.parse(dbg.stdout).endpoints as { endpoint: string; ready: boolean; reason: string }[];
      expect(eps.map((e) => [e.endpoint, e.ready])).toEqual([
        [`${ADDR.pod1}:${PORT}`, true],
        [`${ADDR.pod2}:${PORT}`, true],
        [`${ADDR.pod3}:${PORT}`, false],
      ]);
      expect(eps[2].reason).toBe("connection refused");
      const metrics = node().inNode(["curl", "-s", "--noproxy", "*", `http://${metricsAddr}/metrics`]).stdout;
      expect(metrics).toContain(
        `kip_endpoint_probe_ready{namespace="default",service="web",endpoint="${ADDR.pod3}:${PORT}"} 0`,
      );
      expect(metrics).toMatch(/kip_endpoint_probe_duration_seconds_count\{probe="httpGet",result="success"\} \d+/);

      // pod3 is back: one passing probe (successThreshold 1), one sync, and it answers again.
      const backAt = Date.now();
      await startBackend("pod3");
      await waitFor("pod3 to come back into the rules", () => natHas(ADDR.pod3), { timeoutMs: 15_000 });
      const back = Date.now() - backAt;
      process.stderr.write(`bare metal (${backend}): backend started → back in the rules in ${back} ms\n`);
      await eventually("pod3 to answer again", () => request().pod === "pod3");
      await daemon.waitForLog(/INFO endpoint ready service=default\/web endpoint=10\.244\.1\.17:9090 /);
    }, 90_000);

    test("every backend dead: connections are refused at once, not left to time out", async () => {
      if (!daemon) throw new Error("no daemon");
      for (const pod of SERVER_PODS) await killBackend(pod);
      await waitFor("no endpoint left in the rules", () => SERVER_PODS.every((pod) => !natHas(POD_IP[pod])), {
        timeoutMs: 15_000,
      });
      expect(node().save(["-t", "filter"]).stdout).toContain('"default/web:http has no endpoints"');
      // A couple of requests only: the kernel rate-limits the ICMP errors REJECT sends.
      for (let i = 0; i < 2; i++) {
        const r = request();
        expect(r.code).toBe(7); // connection refused
        expect(r.ms).toBeLessThan(1000);
      }
      expect(await daemon.stop()).toBe(0);
    }, 60_000);
  });
}
