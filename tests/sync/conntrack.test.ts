/**
 * Stale UDP flows (spec §10): which are deleted, from parsed `conntrack -L` output; and for
 * real, in a namespace, after `kip sync` drops a DNS endpoint.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadManifests } from "../../lib/model/load.ts";
import { parseConntrack, staleFlows, udpTargets } from "../../lib/sync/conntrack.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { eventually, FAST, LOOPBACK_PORTS, type SyncProc, startSync } from "../support/sync_proc.ts";

const DNS = (eps: string[]) => `apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: kube-system, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}]
endpoints:
${eps.map((ip) => `  - {addresses: [${ip}]}`).join("\n")}
`;

const LIST = `udp      17 119 src=10.244.1.20 dst=10.96.0.10 sport=5000 dport=53 [UNREPLIED] src=10.244.0.9 dst=10.244.1.20 sport=53 dport=5000 mark=0 use=1
udp      17 119 src=10.244.1.21 dst=10.96.0.10 sport=5001 dport=53 src=10.244.0.8 dst=10.244.1.21 sport=53 dport=5001 [ASSURED] mark=0 use=1
udp      17 119 src=192.168.1.5 dst=192.168.56.11 sport=7000 dport=30053 src=10.244.0.9 dst=10.244.0.1 sport=53 dport=7000 mark=0 use=1
udp      17 119 src=10.244.1.22 dst=10.96.0.99 sport=5002 dport=53 src=10.244.0.9 dst=10.244.1.22 sport=53 dport=5002 mark=0 use=1
tcp      6 86399 ESTABLISHED src=10.244.1.20 dst=10.96.0.10 sport=40000 dport=53 src=10.244.0.9 dst=10.244.1.20 sport=53 dport=40000 [ASSURED] mark=0 use=1`;

test("flows to the Service answered by an endpoint that left are stale; the rest stay", () => {
  const { state } = loadManifests([{ file: "d.yaml", text: DNS(["10.244.0.8"]) }], { nodeName: "n" });
  const flows = parseConntrack(LIST);
  expect(flows).toHaveLength(4); // the TCP flow is not UDP
  const stale = staleFlows(flows, udpTargets(state, "IPv4", "n"));
  expect(stale.map((f) => `${f.origSrc}>${f.origDst}:${f.origDport}`)).toEqual([
    "10.244.1.20>10.96.0.10:53",
    "192.168.1.5>192.168.56.11:30053",
  ]);
  // No serving endpoint at all: kube-proxy leaves the Service's flows alone.
  const none = loadManifests([{ file: "d.yaml", text: DNS([]).replace(/endpoints:\n$/, "endpoints: []\n") }], {
    nodeName: "n",
  });
  expect(staleFlows(flows, udpTargets(none.state, "IPv4", "n"))).toEqual([]);
});

const skip = skipRealIptables();
let procs: SyncProc[] = [];
afterEach(async () => {
  for (const p of procs) await p.stop();
  procs = [];
});

describe.skipIf(skip)("conntrack cleanup for real", () => {
  test("an endpoint leaves: its UDP flows are deleted, the other endpoint's stay", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kip-ct-"));
    writeFileSync(join(dir, "dns.yaml"), DNS(["10.244.0.8", "10.244.0.9"]));
    await withNetns(async (ns, run) => {
      const flow = (client: string, ep: string, sport: string) => [
        "conntrack",
        "-I",
        "-p",
        "udp",
        "-s",
        client,
        "-d",
        "10.96.0.10",
        "--sport",
        sport,
        "--dport",
        "53",
        "-r",
        ep,
        "-q",
        client,
        "--reply-port-src",
        "53",
        "--reply-port-dst",
        sport,
        "-t",
        "300",
      ];
      expect(run(flow("10.244.1.20", "10.244.0.9", "5000")).code).toBe(0);
      expect(run(flow("10.244.1.21", "10.244.0.8", "5001")).code).toBe(0);
      const p = startSync(ns, [
        "--manifests",
        dir,
        "--hostname-override",
        "n",
        "--ip-families",
        "IPv4",
        ...FAST,
        ...LOOPBACK_PORTS,
        "--state-dir",
        join(dir, "state"),
      ]);
      procs.push(p);
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
      writeFileSync(join(dir, "dns.yaml"), DNS(["10.244.0.8"]));
      await p.waitForLog(/stale UDP conntrack entries deleted family=IPv4 deleted=1/);
      const left = run(["conntrack", "-L", "-p", "udp"]).stdout;
      expect(left).toContain("src=10.244.0.8");
      expect(left).not.toContain("src=10.244.0.9");
      await eventually("nothing else deleted", () =>
        run(["conntrack", "-L", "-p", "udp"]).stdout.includes("sport=5001"),
      );
    });
  }, 30_000);
});
