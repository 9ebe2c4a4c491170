/**
 * What the daemon exposes on the network, for real in a namespace: /debug/last-restore
 * answers loopback clients only (unless --debug-from-network), and health-check NodePort
 * servers listen only on the addresses --nodeport-addresses selects. In-process: the debug
 * body is cached, and a failing liveness check turns /livez to 503.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { cachedDebugBody, HealthState, healthzServer, isLoopbackPeer, listen } from "../../lib/sync/http.ts";
import type { RestoreRecord } from "../../lib/sync/proxier.ts";
import { type Exec, skipRealIptables, withNetns } from "../support/netns.ts";
import { eventually, LOOPBACK_PORTS, manifestsSyncArgs, startSync, stopAfterEach } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";

const LB = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.40
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  ports: [{port: 80, nodePort: 31000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.244.1.5], nodeName: node1}]
`;

describe("in-process", () => {
  test("the debug body is built once per change of the records, not per request", () => {
    const a: RestoreRecord = { ok: true, at: 1, full: true, inputs: ["*nat\nCOMMIT\n"] };
    let records: Record<string, { lastSuccess?: RestoreRecord }> = { IPv4: { lastSuccess: a } };
    let reads = 0;
    const body = cachedDebugBody(() => {
      reads++;
      return records;
    });
    const first = body();
    expect(body()).toBe(first);
    expect(reads).toBe(2);
    records = { IPv4: { lastSuccess: { ...a, at: 2 } } };
    const second = body();
    expect(second).not.toBe(first);
    expect(JSON.parse(second).IPv4.lastSuccess.at).toBe(2);
  });

  test("loopback peers", () => {
    for (const a of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) expect(isLoopbackPeer(a)).toBe(true);
    for (const a of ["10.1.1.1", "::ffff:10.0.0.1", "fe80::1", "", undefined]) expect(isLoopbackPeer(a)).toBe(false);
  });

  test("a failing liveness check (a stuck scan) makes /livez answer 503", async () => {
    const health = new HealthState(["IPv4"], 60_000, () => Date.now());
    let stuck = false;
    health.addCheck(() => (stuck ? "the manifests scan has been running for 45s" : undefined));
    const server = healthzServer(health, undefined, () => Date.now());
    const addr = await listen(server, "127.0.0.1:0");
    expect((await fetch(`http://${addr}/livez`)).status).toBe(200);
    stuck = true;
    expect((await fetch(`http://${addr}/livez`)).status).toBe(503);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});

const skip = skipRealIptables();
const procs = stopAfterEach();

/** A namespace with loopback and 10.1.1.1/24 on a veth: a "network" address of the node. */
function node(run: (argv: string[]) => Exec): void {
  for (const argv of [
    ["ip", "link", "set", "lo", "up"],
    ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
    ["ip", "addr", "add", "10.1.1.1/24", "dev", "v0"],
    ["ip", "link", "set", "v0", "up"],
    // Both ends up: an interface without carrier is not among the host's addresses (libuv).
    ["ip", "link", "set", "v1", "up"],
  ])
    expect(run(argv).stderr).toBe("");
}

const status = (run: (argv: string[]) => Exec, url: string, from?: string) =>
  run([
    "curl",
    "-s",
    "-o",
    "/dev/null",
    "--max-time",
    "5",
    ...(from ? ["--interface", from] : []),
    "-w",
    "%{http_code}",
    url,
  ]).stdout;

describe.skipIf(skip)("kip sync's network surfaces", () => {
  for (const open of [false, true])
    test(`/debug/last-restore from the network: ${open ? "200 with --debug-from-network" : "403"}; from loopback: 200`, async () => {
      const dir = tempDir("kip-debug-");
      writeFileSync(join(dir, "lb.yaml"), LB);
      await withNetns(async (ns, run) => {
        node(run);
        const p = startSync(
          ns,
          manifestsSyncArgs(
            dir,
            "node1",
            "--healthz-bind-address",
            "127.0.0.1:0",
            "--metrics-bind-address",
            "0.0.0.0:0",
            ...(open ? ["--debug-from-network"] : []),
          ),
        );
        procs.push(p);
        const port = /metrics=\S+:(\d+)/.exec(await p.waitForLog(/serving healthz=\S+ metrics=\S+/))?.[1];
        await p.waitForLog(/synced family=IPv4 type=full ok=true/);
        expect(status(run, `http://127.0.0.1:${port}/debug/last-restore`)).toBe("200");
        expect(status(run, `http://10.1.1.1:${port}/debug/last-restore`, "10.1.1.1")).toBe(open ? "200" : "403");
        // /metrics stays open to the network, as it was (Prometheus scrapes it).
        expect(status(run, `http://10.1.1.1:${port}/metrics`, "10.1.1.1")).toBe("200");
      });
    }, 30_000);

  test("health-check NodePort servers listen where --nodeport-addresses says, not on 0.0.0.0", async () => {
    const dir = tempDir("kip-hc-");
    writeFileSync(join(dir, "lb.yaml"), LB);
    await withNetns(async (ns, run) => {
      node(run);
      const p = startSync(
        ns,
        manifestsSyncArgs(dir, "node1", "--nodeport-addresses", "10.1.1.0/24", ...LOOPBACK_PORTS),
      );
      procs.push(p);
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
      // The servers start right after the sync that first needs them.
      await eventually(
        "the health-check server on 10.1.1.1",
        () => status(run, "http://10.1.1.1:32100/") === "200",
      ).catch((e) => {
        throw new Error(`${e.message}\n${p.lines.join("\n")}`);
      });
      expect(status(run, "http://127.0.0.1:32100/")).toBe("000"); // connection refused
    });
  }, 30_000);
});
