/**
 * The running daemon's HTTP side, as an operator or the kubelet probes it (inside the test
 * namespace, with curl): /healthz and /livez bodies, /metrics names, /debug/last-restore, and
 * a health-check NodePort server for an ETP=Local LoadBalancer Service (spec §11).
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { LOOPBACK_PORTS, startSync, stopAfterEach } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";

const skip = skipRealIptables();
const procs = stopAfterEach();

const LB = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.40
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  ports: [{port: 80, nodePort: 31000}]
status: {loadBalancer: {ingress: [{ip: 192.0.2.10}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
  - {addresses: [10.244.1.5], nodeName: node1}
  - {addresses: [10.244.1.6], nodeName: node1, conditions: {ready: false}}
  - {addresses: [10.244.2.7], nodeName: node2}
`;

describe.skipIf(skip)("kip sync HTTP endpoints", () => {
  test("healthz, livez, metrics, last restore, and the health-check NodePort", async () => {
    const dir = tempDir("kip-http-");
    writeFileSync(join(dir, "lb.yaml"), LB);
    await withNetns(async (ns, run) => {
      expect(run(["ip", "link", "set", "lo", "up"]).code).toBe(0);
      const p = startSync(ns, [
        "--manifests",
        dir,
        "--hostname-override",
        "node1",
        "--cluster-cidr",
        "10.244.0.0/16",
        "--ip-families",
        "IPv4",
        ...LOOPBACK_PORTS,
        "--state-dir",
        join(dir, "state"),
      ]);
      procs.push(p);
      const serving = await p.waitForLog(/serving healthz=\S+ metrics=\S+/);
      const [, healthz, metrics] = /healthz=(\S+) metrics=(\S+)/.exec(serving) ?? [];
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
      const curl = (url: string) => {
        const r = run(["curl", "-s", "--noproxy", "*", "--max-time", "5", "-w", "\n%{http_code}", url]);
        const i = r.stdout.lastIndexOf("\n");
        return { body: r.stdout.slice(0, i), status: Number(r.stdout.slice(i + 1)) };
      };

      const h = curl(`http://${healthz}/healthz`);
      expect(h.status).toBe(200);
      expect(h.body).toMatch(
        /^\{"lastUpdated": "\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000 UTC m=\+\d+\.\d{9}","currentTime": "[^"]+", "nodeEligible": true\}$/,
      );
      const l = curl(`http://${healthz}/livez`);
      expect(l.status).toBe(200);
      expect(l.body).toMatch(/^\{"lastUpdated": "[^"]+","currentTime": "[^"]+"\}$/);

      const m = curl(`http://${metrics}/metrics`);
      expect(m.status).toBe(200);
      for (const name of [
        'kubeproxy_sync_proxy_rules_iptables_total{table="nat",ip_family="IPv4"}',
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket",
        "kubeproxy_sync_full_proxy_rules_duration_seconds_count",
        'kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}',
        'kubeproxy_proxy_healthz_total{code="200"} 1',
      ])
        expect(m.body).toContain(name);
      expect(curl(`http://${metrics}/proxyMode`)).toEqual({ body: "iptables", status: 200 });
      const last = JSON.parse(curl(`http://${metrics}/debug/last-restore`).body);
      expect(last.IPv4.lastSuccess.ok).toBe(true);
      expect(last.IPv4.lastSuccess.inputs[0]).toContain("-A KUBE-SVL-");

      // One local ready endpoint (10.244.1.6 is not ready; 10.244.2.7 is on node2).
      const hc = curl("http://127.0.0.1:32100/anything");
      expect(hc.status).toBe(200);
      expect(hc.body).toBe(
        '{\n\t"service": {\n\t\t"namespace": "shop",\n\t\t"name": "web"\n\t},\n\t"localEndpoints": 1,\n\t"serviceProxyHealthy": true\n}',
      );
    });
  }, 30_000);
});

describe.skipIf(skip)("kip sync --config", () => {
  test("sync periods and bind addresses come from the KubeProxyConfiguration when no flag sets them", async () => {
    // The configuration beside the manifests directory, not in it (it is no manifest).
    const root = tempDir("kip-cfg-");
    const dir = join(root, "manifests");
    mkdirSync(dir);
    writeFileSync(join(dir, "lb.yaml"), LB);
    const cfg = join(root, "kube-proxy.yaml");
    writeFileSync(
      cfg,
      [
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
        "kind: KubeProxyConfiguration",
        "hostnameOverride: node1",
        "clusterCIDR: 10.244.0.0/16",
        "healthzBindAddress: 127.0.0.1:0",
        "metricsBindAddress: 127.0.0.1:0",
        "iptables: {minSyncPeriod: 100ms, syncPeriod: 1s}",
      ].join("\n"),
    );
    await withNetns(async (ns, run) => {
      expect(run(["ip", "link", "set", "lo", "up"]).code).toBe(0);
      const p = startSync(ns, [
        "--manifests",
        dir,
        "--config",
        cfg,
        "--ip-families",
        "IPv4",
        "--rescan-period",
        "200ms",
        "--state-dir",
        join(dir, "state"),
      ]);
      procs.push(p);
      await p.waitForLog(/settings node=node1 minSyncPeriodMs=100 syncPeriodMs=1000 /);
      // 127.0.0.1:0 from the file: the default 0.0.0.0:10256 would log its own address.
      await p.waitForLog(/serving healthz=127\.0\.0\.1:\d+ metrics=127\.0\.0\.1:\d+/);
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
    });
  }, 30_000);
});
