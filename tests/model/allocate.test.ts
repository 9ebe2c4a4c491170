/**
 * What --simulate allocates: stable per object, never a reserved address, explicit values
 * kept and reserved first, dual-stack by ipFamilyPolicy, node ports from the range.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  allocateServices,
  type ClusterPolicy,
  defaultClusterPolicy,
  parsePortRange,
  parseServiceCIDRs,
} from "../../lib/model/allocate.ts";
import { cidrContains, parseCIDR, parseIP } from "../../lib/model/ip.ts";
import { loadManifests } from "../../lib/model/load.ts";
import type { Service } from "../../lib/model/types.ts";
import { defaultConfig } from "../../lib/proxy/options.ts";
import { renderManifests } from "../../lib/render.ts";
import { modelService } from "../support/objects.ts";

/** A Service as a manifest leaves it: no cluster IP, no node port. */
function svc(name: string, extra: Partial<Service> = {}): Service {
  return modelService("default", name, "", {
    clusterIPs: [],
    ipFamilies: [],
    ports: [{ name: "http", protocol: "TCP", port: 80, nodePort: 0, targetPort: 8080 }],
    ...extra,
  });
}

function policy(cidrs: string, ports = "30000-32767"): ClusterPolicy {
  return {
    serviceCIDRs: parseServiceCIDRs(cidrs) as ClusterPolicy["serviceCIDRs"],
    nodePorts: parsePortRange(ports) as ClusterPolicy["nodePorts"],
  };
}

describe("flag values", () => {
  test("port ranges: FIRST-LAST and FIRST+COUNT, as kube-apiserver", () => {
    expect(parsePortRange("30000-32767")).toEqual({ base: 30000, size: 2768 });
    expect(parsePortRange("30000+100")).toEqual({ base: 30000, size: 101 });
    for (const bad of ["", "30000", "32767-30000", "0-10", "1-70000", "a-b", "1-2-3"])
      expect(typeof parsePortRange(bad)).toBe("string");
  });

  test("service CIDRs: one per family", () => {
    expect((parseServiceCIDRs("10.96.0.0/12,fd00::/108") as { text: string }[]).map((c) => c.text)).toEqual([
      "10.96.0.0/12",
      "fd00::/108",
    ]);
    expect(parseServiceCIDRs("10.96.0.0/12,10.100.0.0/16")).toContain("two IPv4 ranges");
    expect(parseServiceCIDRs("10.96.0.0/32")).toContain("too small");
    expect(parseServiceCIDRs("nope")).toContain("not a valid CIDR");
  });
});

describe("allocateServices", () => {
  test("cluster IPs inside the range, never the network, first or broadcast address", () => {
    // A /29 has 8 addresses: .0 network, .1 the kubernetes Service, .7 broadcast → 5 usable.
    const p = policy("10.0.0.0/29");
    const services = ["a", "b", "c", "d", "e", "f"].map((n) => svc(n));
    const r = allocateServices(services, p);
    const ips = r.services.map((s) => s.clusterIPs[0]).filter(Boolean);
    expect(ips.sort()).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
    expect(r.warnings.map((w) => w.message)).toEqual(["the IPv4 service range is full: no cluster IP left"]);
  });

  test("IPv6: never the network or the first address", () => {
    const r = allocateServices(
      ["a", "b"].map((n) => svc(n, { requestedIPFamilies: ["IPv6"] })),
      policy("10.96.0.0/12,fd00::/126"),
    );
    expect(r.services.map((s) => s.clusterIPs[0]).sort()).toEqual(["fd00::2", "fd00::3"]);
    expect(r.services.every((s) => s.ipFamilies[0] === "IPv6")).toBe(true);
  });

  test("the same input gives the same values, whatever the order", () => {
    const p = defaultClusterPolicy();
    const services = Array.from({ length: 50 }, (_, i) => svc(`s${i}`, { type: i % 2 ? "NodePort" : "ClusterIP" }));
    const a = allocateServices(services, p).services;
    const b = allocateServices([...services].reverse(), p).services;
    const byName = (l: Service[]) => Object.fromEntries(l.map((s) => [s.name, [s.clusterIPs, s.ports[0].nodePort]]));
    expect(byName(b)).toEqual(byName(a));
    expect(byName(allocateServices(services, p).services)).toEqual(byName(a));
  });

  test("adding or removing a Service moves no other, unless their hashes collided (property)", () => {
    // A small node-port range, so collisions happen: only a Service that lost its first
    // choice to another may move when that other goes away.
    const p = policy("10.96.0.0/12", "30000-30099");
    const first = (s: Service) => allocateServices([s], p).services[0];
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/), { minLength: 2, maxLength: 30 }),
        fc.nat(),
        (names, pick) => {
          const all = names.map((n) => svc(n, { type: "NodePort" }));
          const full = new Map(allocateServices(all, p).services.map((s) => [s.name, s]));
          const removed = pick % all.length;
          const fewer = allocateServices(
            all.filter((_, i) => i !== removed),
            p,
          ).services;
          for (const s of fewer) {
            const before = full.get(s.name) as Service;
            const own = first(s);
            if (before.ports[0].nodePort === own.ports[0].nodePort)
              expect(s.ports[0].nodePort).toBe(before.ports[0].nodePort);
            if (before.clusterIPs[0] === own.clusterIPs[0]) expect(s.clusterIPs).toEqual(before.clusterIPs);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test("explicit values are kept and never handed to another Service", () => {
    // A range of 4 usable addresses and 3 node ports: the explicit ones must be skipped.
    const p = policy("10.0.0.0/29", "30000-30002");
    const fixed = svc("fixed", {
      type: "NodePort",
      clusterIPs: ["10.0.0.4"],
      ipFamilies: ["IPv4"],
      ports: [{ name: "", protocol: "TCP", port: 80, nodePort: 30001, targetPort: 80 }],
    });
    const others = ["a", "b", "c"].map((n) => svc(n, { type: "NodePort" }));
    const r = allocateServices([fixed, ...others], p);
    expect(r.services[0]).toBe(fixed);
    const got = r.services.slice(1);
    expect(got.map((s) => s.clusterIPs[0])).not.toContain("10.0.0.4");
    expect(got.map((s) => s.ports[0].nodePort).filter((n) => n > 0)).not.toContain(30001);
    expect(got.filter((s) => s.ports[0].nodePort > 0)).toHaveLength(2);
    expect(r.warnings.some((w) => w.message.includes("node-port range is full"))).toBe(true);
  });

  test("dual-stack: ipFamilyPolicy decides how many addresses, ipFamilies their order", () => {
    const p = policy("10.96.0.0/12,fd00:10:96::/112");
    const r = allocateServices(
      [
        svc("single"),
        svc("prefer", { ipFamilyPolicy: "PreferDualStack" }),
        svc("require-v6-first", { ipFamilyPolicy: "RequireDualStack", requestedIPFamilies: ["IPv6", "IPv4"] }),
        svc("v6", { requestedIPFamilies: ["IPv6"] }),
      ],
      p,
    );
    const fam = (s: Service) => s.ipFamilies.join(",");
    expect(r.services.map(fam)).toEqual(["IPv4", "IPv4,IPv6", "IPv6,IPv4", "IPv6"]);
    const [v4, v6] = p.serviceCIDRs;
    for (const s of r.services)
      for (const ip of s.clusterIPs) {
        const parsed = parseIP(ip);
        expect(parsed && cidrContains(parsed.family === "IPv4" ? v4 : v6, parsed)).toBe(true);
      }
    // Single-stack cluster: PreferDualStack gets one, RequireDualStack none (with a reason).
    const single = allocateServices(
      [svc("prefer", { ipFamilyPolicy: "PreferDualStack" }), svc("req", { ipFamilyPolicy: "RequireDualStack" })],
      policy("10.96.0.0/12"),
    );
    expect(single.services[0].clusterIPs).toHaveLength(1);
    expect(single.services[1].clusterIPs).toEqual([]);
    expect(single.warnings[0].message).toContain("RequireDualStack needs a dual-stack --service-cluster-ip-range");
  });

  test("a Service with one explicit address and PreferDualStack gets the other family", () => {
    const r = allocateServices(
      [svc("half", { clusterIPs: ["10.96.0.10"], ipFamilies: ["IPv4"], ipFamilyPolicy: "PreferDualStack" })],
      policy("10.96.0.0/12,fd00::/112"),
    );
    expect(r.services[0].clusterIPs[0]).toBe("10.96.0.10");
    expect(r.services[0].ipFamilies).toEqual(["IPv4", "IPv6"]);
  });

  test("node ports: NodePort and LoadBalancer ports, one per port number, health check for ETP Local", () => {
    const r = allocateServices(
      [
        svc("dns", {
          type: "LoadBalancer",
          externalTrafficPolicy: "Local",
          ports: [
            { name: "dns-udp", protocol: "UDP", port: 53, nodePort: 0 },
            { name: "dns-tcp", protocol: "TCP", port: 53, nodePort: 0 },
          ],
        }),
        svc("no-node-ports", { type: "LoadBalancer", allocateLoadBalancerNodePorts: false }),
        svc("internal"),
      ],
      policy("10.96.0.0/12", "30000-30099"),
    );
    const [dns, noNP, internal] = r.services;
    expect(dns.ports[0].nodePort).toBe(dns.ports[1].nodePort);
    expect(dns.ports[0].nodePort).toBeGreaterThanOrEqual(30000);
    expect(dns.ports[0].nodePort).toBeLessThanOrEqual(30099);
    expect(dns.healthCheckNodePort).toBeGreaterThanOrEqual(30000);
    expect(dns.healthCheckNodePort).not.toBe(dns.ports[0].nodePort);
    expect(noNP.ports[0].nodePort).toBe(0);
    expect(internal.ports[0].nodePort).toBe(0);
    expect(r.allocated.filter((a) => a.field === "nodePort")).toHaveLength(1);
  });

  test("Services that already have their addresses are not checked against the range's families", () => {
    const v6 = svc("v6", { clusterIPs: ["fd00::10"], ipFamilies: ["IPv6"] });
    const r = allocateServices([v6], defaultClusterPolicy());
    expect(r.warnings).toEqual([]);
    expect(r.services[0]).toBe(v6);
    const wants = svc("wants-v6", { requestedIPFamilies: ["IPv6"] });
    expect(allocateServices([wants], defaultClusterPolicy()).warnings.map((w) => w.message)).toEqual([
      "cannot allocate a cluster IP: IPv6 is not configured in --service-cluster-ip-range",
    ]);
  });

  test("headless and ExternalName Services are left alone", () => {
    const headless = svc("h", { clusterIPs: ["None"] });
    const ext = svc("e", { type: "ExternalName" });
    const r = allocateServices([headless, ext], defaultClusterPolicy());
    expect(r.services).toEqual([headless, ext]);
    expect(r.allocated).toEqual([]);
  });
});

describe("render --simulate on app-repo manifests", () => {
  const config = { ...defaultConfig(), hostname: "node1" };
  const repo = (extra = "") => [
    {
      file: "k8s/app.yaml",
      text: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
${extra}`,
    },
  ];

  test("every Service port gets rules, and the output is the same on every run", () => {
    const a = renderManifests(repo(), config, { family: "IPv4", simulate: true });
    expect(a.errors).toEqual([]);
    expect(a.warnings).toEqual([]);
    expect(a.restore).toContain('--comment "default/web:http cluster IP"');
    expect(a.restore).toContain("-j KUBE-EXT-");
    expect(a.ruleset?.services[0].endpoints).toHaveLength(3);
    expect(renderManifests(repo(), config, { family: "IPv4", simulate: true }).restore).toBe(a.restore);
    expect(a.allocated.map((x) => x.field).sort()).toEqual(["clusterIP", "nodePort"]);
  });

  test("an unrelated Service added changes no other rule", () => {
    const before = renderManifests(repo(), config, { family: "IPv4", simulate: true }).restore.split("\n");
    const extra = `---
apiVersion: v1
kind: Service
metadata: {name: other}
spec:
  type: NodePort
  ports: [{port: 9000}]
`;
    const after = new Set(renderManifests(repo(extra), config, { family: "IPv4", simulate: true }).restore.split("\n"));
    for (const line of before) expect(after.has(line)).toBe(true);
  });

  test("-n gives objects without a namespace that namespace", () => {
    const r = renderManifests(repo(), config, { family: "IPv4", simulate: true, namespace: "shop" });
    expect(r.restore).toContain('"shop/web:http cluster IP"');
    expect(r.restore).not.toContain("default/web");
  });

  test("without --simulate a Service without clusterIP is skipped with a warning", () => {
    const r = renderManifests(repo(), config, { family: "IPv4" });
    expect(r.warnings.map((w) => w.message)).toEqual([
      "Service default/web: spec.clusterIP: no clusterIP: the API server would allocate one; skipping this Service",
    ]);
    expect(r.ruleset?.services).toEqual([]);
  });

  test("StatefulSet pods carry their pod-name label; publishNotReadyAddresses publishes not-ready pods", () => {
    const files = [
      {
        file: "sts.yaml",
        text: `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: db, ports: [{name: sql, containerPort: 5432}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: db-1}
spec:
  selector: {app: db, statefulset.kubernetes.io/pod-name: db-1}
  ports: [{port: 5432, targetPort: sql}]
---
apiVersion: v1
kind: Service
metadata: {name: db-idx}
spec:
  selector: {app: db, apps.kubernetes.io/pod-index: "2"}
  ports: [{port: 5432, targetPort: sql}]
---
apiVersion: v1
kind: Pod
metadata: {name: starting, labels: {app: warm}}
spec: {containers: [{name: c, image: c}]}
status:
  podIP: 10.244.9.9
  conditions: [{type: Ready, status: "False"}]
---
apiVersion: v1
kind: Service
metadata: {name: warm}
spec:
  publishNotReadyAddresses: true
  selector: {app: warm}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: warm-strict}
spec:
  selector: {app: warm}
  ports: [{port: 80}]
`,
      },
    ];
    const r = renderManifests(files, config, { family: "IPv4", simulate: true });
    expect(r.errors).toEqual([]);
    const eps = (name: string) => r.ruleset?.services.find((s) => s.service === `default/${name}`)?.endpoints ?? [];
    expect(eps("db-1")).toHaveLength(1);
    expect(eps("db-idx")).toHaveLength(1);
    expect(eps("db-1")[0].address).not.toBe(eps("db-idx")[0].address);
    expect(eps("warm").map((e) => e.ready)).toEqual([true]);
    const strict = r.ruleset?.services.find((s) => s.service === "default/warm-strict");
    expect(strict?.internalVerdict).toBe("REJECT");
  });

  test("DaemonSet pods run on every Node of the input; local endpoints follow --hostname-override", () => {
    const files = [
      {
        file: "ds.yaml",
        text: `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, image: a}]}
---
apiVersion: v1
kind: Service
metadata: {name: agent}
spec:
  selector: {app: agent}
  ports: [{port: 80}]
${["node1", "node2", "node3"].map((n) => `---\napiVersion: v1\nkind: Node\nmetadata: {name: ${n}}\n`).join("")}`,
      },
    ];
    const r = renderManifests(files, config, { family: "IPv4", simulate: true });
    const eps = r.ruleset?.services[0].endpoints ?? [];
    expect(eps).toHaveLength(3);
    expect(eps.filter((e) => e.local)).toHaveLength(1);
  });

  test("the cluster's node-port range: outside it is a warning offline, an error when enforced", () => {
    const text = `apiVersion: v1
kind: Service
metadata: {name: ssh}
spec:
  type: NodePort
  clusterIP: 10.96.0.9
  ports: [{port: 22, nodePort: 22}]
`;
    const cluster = defaultClusterPolicy();
    const offline = loadManifests([{ file: "s.yaml", text }], {
      nodeName: "n",
      policy: { cluster, checkServiceCIDRs: false, enforce: false },
    });
    expect(offline.warnings.map((w) => w.message)).toEqual([
      "Service default/ssh: spec.ports[0].nodePort: 22 is outside the node-port range 30000-32767 (--service-node-port-range)",
    ]);
    expect(offline.state.services).toHaveLength(1);
    const enforced = loadManifests([{ file: "s.yaml", text }], {
      nodeName: "n",
      policy: { cluster, checkServiceCIDRs: true, enforce: true },
    });
    expect(enforced.errors.map((e) => e.message)).toEqual([
      "Service default/ssh: spec.ports[0].nodePort: 22 is outside the node-port range 30000-32767 (--service-node-port-range)",
    ]);
    expect(enforced.state.services).toEqual([]);
    const meta = loadManifests([{ file: "s.yaml", text: text.replace("10.96.0.9", "169.254.169.254") }], {
      nodeName: "n",
      policy: { cluster: { ...cluster, nodePorts: { base: 1, size: 65535 } }, checkServiceCIDRs: false, enforce: true },
    });
    expect(meta.errors.map((e) => e.message)).toEqual([
      'Service default/ssh: spec.clusterIP: "169.254.169.254" may not be loopback, link-local, multicast or unspecified',
    ]);
    expect(parseCIDR("10.96.0.0/12")).toBeDefined();
  });
});
