/**
 * Stale UDP flows (spec §10): which are deleted, from parsed `conntrack -L` output; and for
 * real, in a namespace, after `kip sync` drops a DNS endpoint.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadManifests } from "../../lib/model/load.ts";
import { parseConntrack, staleFlows, staleGroups, udpTargets } from "../../lib/sync/conntrack.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { eventually, LOOPBACK_PORTS, manifestsSyncArgs, startSync, stopAfterEach } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";

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

test("stale flows are deleted in groups: one per Service address and port and stale endpoint", () => {
  const flow = (sport: number, dst: string, dport: number, reply: string) => ({
    origSrc: "10.244.1.20",
    origDst: dst,
    origSport: sport,
    origDport: dport,
    replySrc: reply,
    replySport: 53,
  });
  const flows = [
    ...Array.from({ length: 5000 }, (_, i) => flow(10000 + i, "10.96.0.10", 53, "10.244.0.9")),
    flow(7000, "192.168.56.11", 30053, "10.244.0.9"),
    flow(7001, "10.96.0.10", 53, "10.244.0.7"),
  ];
  expect(staleGroups(flows)).toEqual([
    {
      origSrc: "10.244.1.20",
      origSport: 10000,
      origDst: "10.96.0.10",
      origDport: 53,
      replySrc: "10.244.0.9",
      replySport: 53,
      flows: 5000,
    },
    {
      origSrc: "10.244.1.20",
      origSport: 7000,
      origDst: "192.168.56.11",
      origDport: 30053,
      replySrc: "10.244.0.9",
      replySport: 53,
      flows: 1,
    },
    {
      origSrc: "10.244.1.20",
      origSport: 7001,
      origDst: "10.96.0.10",
      origDport: 53,
      replySrc: "10.244.0.7",
      replySport: 53,
      flows: 1,
    },
  ] as unknown as ReturnType<typeof staleGroups>);
});

const skip = skipRealIptables();
const procs = stopAfterEach();

describe.skipIf(skip)("conntrack cleanup for real", () => {
  test("an endpoint leaves: its UDP flows are deleted, the other endpoint's stay", async () => {
    const dir = tempDir("kip-ct-");
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
      const p = startSync(ns, manifestsSyncArgs(dir, "n", ...LOOPBACK_PORTS));
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

  test("5,000 stale UDP flows are deleted in seconds, one conntrack -D, and a rule change does not wait", async () => {
    const dir = tempDir("kip-ct5k-");
    writeFileSync(join(dir, "dns.yaml"), DNS(["10.244.0.9"]));
    await withNetns(async (ns, run) => {
      for (const argv of [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"],
        ["ip", "addr", "add", "10.244.0.1/16", "dev", "d0"],
        ["ip", "link", "set", "d0", "up"],
        ["ip", "route", "add", "10.96.0.0/12", "dev", "d0"],
      ])
        expect(run(argv).stderr).toBe("");
      const p = startSync(ns, manifestsSyncArgs(dir, "n", ...LOOPBACK_PORTS));
      procs.push(p);
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
      // 5,000 clients of the DNS Service: one datagram from each of 5,000 distinct ports, DNATed by
      // kip's rules to 10.244.0.9.
      const send = run([
        process.execPath,
        "-e",
        `const dgram = require("node:dgram");
         let next = 20000;
         const one = () => {
           if (next >= 25000) return;
           const s = dgram.createSocket("udp4");
           s.bind(next++, () => s.send("q", 53, "10.96.0.10", () => { s.close(); one(); }));
         };
         for (let i = 0; i < 50; i++) one();`,
      ]);
      expect(send.code).toBe(0);
      const count = (ep: string) =>
        run(["conntrack", "-L", "-p", "udp", "--orig-dst", "10.96.0.10"])
          .stdout.split("\n")
          .filter((l) => l.includes(`src=${ep} `)).length;
      expect(count("10.244.0.9")).toBe(5000);
      // The endpoint moves to 10.244.0.8: every flow answered by 10.244.0.9 is stale.
      const t0 = performance.now();
      writeFileSync(join(dir, "dns.yaml"), DNS(["10.244.0.8"]));
      const line = await p.waitForLog(/stale UDP conntrack entries deleted family=IPv4 deleted=\d+/, 60_000);
      const ms = performance.now() - t0;
      expect(line).toMatch(/deleted=5000 /);
      expect(count("10.244.0.9")).toBe(0);
      console.log(
        `5000 stale UDP flows: deleted ${Math.round(ms)} ms after the edit (${line.replace(/^.*deleted=/, "deleted=")})`,
      );
      expect(ms).toBeLessThan(10_000);
      // A rule change right after: it is synced promptly, cleanup or not.
      const t1 = performance.now();
      const before = p.lines.length;
      writeFileSync(
        join(dir, "web.yaml"),
        DNS(["10.244.0.8"])
          .replaceAll("dns", "web")
          .replace("10.96.0.10", "10.96.0.11")
          .replace(/nodePort: 30053/, "nodePort: 30054"),
      );
      await eventually(
        "the next change synced",
        () => p.lines.slice(before).some((l) => /synced family=IPv4 .*ok=true/.test(l)),
        10_000,
      );
      expect(performance.now() - t1).toBeLessThan(5_000);
    });
  }, 90_000);
});
