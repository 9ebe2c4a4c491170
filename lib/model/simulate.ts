/**
 * `--simulate-endpoints`: ready endpoints for Services that have a selector but no
 * EndpointSlice, made from the workloads whose pod labels match — what the EndpointSlice
 * controller would produce once the pods run. Pod IPs are deterministic: a hash of the pod's
 * identity placed inside the cluster CIDR, so adding one workload does not move the others.
 */
import { sha256 } from "../util/sha256.ts";
import { type CIDR, type IPFamily, parseCIDR } from "./ip.ts";
import type { EndpointSlice, Origin, Protocol, Service } from "./types.ts";
import { Fields, isIANASvcName, type Reporter, readMeta } from "./validate.ts";

export interface ContainerPort {
  name: string;
  containerPort: number;
  protocol: Protocol;
}

export interface Workload {
  kind: string;
  namespace: string;
  name: string;
  replicas: number;
  podLabels: Record<string, string>;
  ports: ContainerPort[];
  /** Pods only: status.podIPs, when present. */
  podIPs: string[];
  origin?: Origin;
}

/** Validate the fields simulation reads from a Deployment/StatefulSet/ReplicaSet/DaemonSet/Pod. */
export function validateWorkload(kind: string, obj: Record<string, unknown>, r: Reporter): Workload | undefined {
  let failed = false;
  const f = new Fields({
    error: (p, m) => {
      failed = true;
      r.error(p, m);
    },
    warn: r.warn,
  });
  const meta = readMeta(f, obj.metadata, "subdomain", true);
  const spec = f.obj(obj.spec, ["spec"]) ?? {};
  let podSpec: Record<string, unknown>;
  let podLabels: Record<string, string>;
  let replicas = 1;
  let specPath: (string | number)[];
  if (kind === "Pod") {
    podSpec = spec;
    podLabels = meta.labels;
    specPath = ["spec"];
  } else {
    const tpl = f.obj(spec.template, ["spec", "template"]) ?? {};
    const tmeta = f.obj(tpl.metadata, ["spec", "template", "metadata"]) ?? {};
    podLabels = f.labels(tmeta.labels, ["spec", "template", "metadata", "labels"]);
    podSpec = f.obj(tpl.spec, ["spec", "template", "spec"]) ?? {};
    specPath = ["spec", "template", "spec"];
    // A DaemonSet runs one pod per node; one stands for them here.
    if (kind !== "DaemonSet") replicas = f.int(spec.replicas, ["spec", "replicas"], 0, 1_000_000) ?? 1;
  }
  const ports: ContainerPort[] = [];
  f.list(podSpec.containers, [...specPath, "containers"]).forEach((rc, ci) => {
    const c = f.obj(rc, [...specPath, "containers", ci]);
    if (!c) return;
    f.list(c.ports, [...specPath, "containers", ci, "ports"]).forEach((rp, pi) => {
      const path = [...specPath, "containers", ci, "ports", pi];
      const p = f.obj(rp, path);
      if (!p) return;
      const name = f.str(p.name, [...path, "name"]) ?? "";
      if (name !== "" && !isIANASvcName(name))
        f.r.error([...path, "name"], `${JSON.stringify(name)} is not a valid port name`);
      const containerPort = f.int(p.containerPort, [...path, "containerPort"], 1, 65535);
      const protocol = f.oneOf<Protocol>(p.protocol, [...path, "protocol"], ["TCP", "UDP", "SCTP"], "TCP");
      if (containerPort !== undefined) ports.push({ name, containerPort, protocol });
    });
  });
  const podIPs: string[] = [];
  if (kind === "Pod") {
    const status = f.obj(obj.status, ["status"]) ?? {};
    const ips = f.list(status.podIPs, ["status", "podIPs"]);
    ips.forEach((v, i) => {
      const o = f.obj(v, ["status", "podIPs", i]);
      const ip = o ? f.ip(o.ip, ["status", "podIPs", i, "ip"]) : undefined;
      if (ip) podIPs.push(ip);
    });
    if (ips.length === 0 && status.podIP !== undefined) {
      const ip = f.ip(status.podIP, ["status", "podIP"]);
      if (ip) podIPs.push(ip);
    }
  }
  if (failed) return undefined;
  return { kind, namespace: meta.namespace, name: meta.name, replicas, podLabels, ports, podIPs };
}

export interface SimulationWarning {
  origin?: Origin;
  message: string;
}

export interface SimulationResult {
  slices: EndpointSlice[];
  warnings: SimulationWarning[];
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** Deterministic addresses inside a CIDR, never the network or (IPv4) broadcast address. */
class Allocator {
  private used = new Set<string>();
  constructor(private cidr: CIDR) {}

  take(identity: string): string | undefined {
    const hostBits = this.cidr.bytes.length * 8 - this.cidr.prefix;
    const size = hostBits >= 48 ? 2 ** 48 : 2 ** hostBits;
    const usable = this.cidr.family === "IPv4" ? size - 2 : size - 1;
    if (usable < 1 || this.used.size >= usable) return undefined;
    const d = sha256(identity);
    let n = ((d[0] * 2 ** 40 + d[1] * 2 ** 32 + ((d[2] << 24) | (d[3] << 16) | (d[4] << 8) | d[5])) >>> 0) % usable;
    for (;;) {
      const offset = n + 1;
      const bytes = [...this.cidr.bytes];
      let rest = offset;
      for (let i = bytes.length - 1; i >= 0 && rest > 0; i--) {
        const sum = bytes[i] + (rest % 256);
        bytes[i] = sum % 256;
        rest = Math.floor(rest / 256) + Math.floor(sum / 256);
      }
      const text =
        this.cidr.family === "IPv4"
          ? bytes.join(".")
          : (parseCIDR(`${bytesToV6(bytes)}/128`)?.text.split("/")[0] ?? "");
      if (!this.used.has(text)) {
        this.used.add(text);
        return text;
      }
      n = (n + 1) % usable;
    }
  }
}

function bytesToV6(b: number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  return groups.join(":");
}

/**
 * Slices for every Service with a selector and no EndpointSlice of its own, one per family
 * and per distinct resolved port set (as the controller splits pods with different ports).
 */
export function simulateEndpoints(
  services: readonly Service[],
  existing: readonly EndpointSlice[],
  workloads: readonly Workload[],
  clusterCIDRs: readonly string[],
): SimulationResult {
  const warnings: SimulationWarning[] = [];
  const slices: EndpointSlice[] = [];
  const covered = new Set(existing.map((s) => `${s.namespace}/${s.labels["kubernetes.io/service-name"] ?? ""}`));
  const cidrs = clusterCIDRs.map((c) => parseCIDR(c.trim())).filter((c) => c !== undefined);
  const allocators = new Map<IPFamily, Allocator>();
  for (const c of cidrs) if (!allocators.has(c.family)) allocators.set(c.family, new Allocator(c));
  // Pod identities are allocated in a fixed order so results never depend on input order.
  const sortedWorkloads = [...workloads].sort((a, b) =>
    `${a.namespace}/${a.kind}/${a.name}` < `${b.namespace}/${b.kind}/${b.name}` ? -1 : 1,
  );
  const podIPCache = new Map<string, string | undefined>();
  const podIP = (w: Workload, i: number, family: IPFamily): string | undefined => {
    if (w.podIPs.length > 0) return w.podIPs.find((ip) => ip.includes(":") === (family === "IPv6"));
    const id = `${family} ${w.namespace}/${w.kind}/${w.name}/${i}`;
    if (!podIPCache.has(id)) podIPCache.set(id, allocators.get(family)?.take(id));
    return podIPCache.get(id);
  };

  for (const svc of services) {
    const key = `${svc.namespace}/${svc.name}`;
    if (!svc.selector || covered.has(key) || svc.type === "ExternalName") continue;
    const selector = svc.selector;
    const matched = sortedWorkloads.filter((w) => w.namespace === svc.namespace && matches(selector, w.podLabels));
    if (matched.length === 0) {
      warnings.push({ origin: svc.origin, message: `Service ${key}: selector matches no workload in the manifests` });
      continue;
    }
    const families = svc.ipFamilies.length > 0 ? svc.ipFamilies : (["IPv4"] as IPFamily[]);
    for (const family of families) {
      if (!allocators.has(family) && matched.some((w) => w.podIPs.length === 0)) {
        warnings.push({
          origin: svc.origin,
          message: `Service ${key}: no ${family} --cluster-cidr to place simulated pod IPs in`,
        });
        continue;
      }
      // Group pods by their resolved port numbers: one slice per distinct set.
      const groups = new Map<string, { ports: number[]; ips: string[] }>();
      const warned = new Set<string>();
      for (const w of matched) {
        const resolved = svc.ports.map((p) => {
          if (typeof p.targetPort === "string") {
            const cp = w.ports.find((c) => c.name === p.targetPort && c.protocol === p.protocol);
            if (!cp && !warned.has(`${w.name}/${p.targetPort}`)) {
              warned.add(`${w.name}/${p.targetPort}`);
              warnings.push({
                origin: w.origin,
                message: `Service ${key}: targetPort ${JSON.stringify(p.targetPort)} is not declared by any container of ${w.kind} ${w.namespace}/${w.name}`,
              });
            }
            return cp ? cp.containerPort : 0;
          }
          return p.targetPort ?? p.port;
        });
        const gk = resolved.join(",");
        let g = groups.get(gk);
        if (!g) groups.set(gk, (g = { ports: resolved, ips: [] }));
        for (let i = 0; i < w.replicas; i++) {
          const ip = podIP(w, i, family);
          if (ip) g.ips.push(ip);
        }
      }
      let n = 0;
      for (const g of groups.values()) {
        if (g.ips.length === 0) continue;
        slices.push({
          namespace: svc.namespace,
          name: `${svc.name}-simulated-${family === "IPv6" ? "v6-" : ""}${n++}`,
          labels: { "kubernetes.io/service-name": svc.name },
          addressType: family,
          // A named port no container declares resolves to 0: kube-proxy skips such a port.
          ports: svc.ports.map((p, i) => ({ name: p.name, port: g.ports[i], protocol: p.protocol })),
          endpoints: g.ips.map((ip) => ({
            addresses: [ip],
            ready: true,
            serving: true,
            terminating: false,
            zoneHints: [],
            nodeHints: [],
          })),
        });
      }
    }
  }
  return { slices, warnings };
}
