/**
 * `--simulate-endpoints`: ready endpoints for Services that have a selector but no
 * EndpointSlice, made from the workloads whose pod labels match — what the EndpointSlice
 * controller would produce once the pods run. Pod IPs are deterministic: a hash of the pod's
 * identity placed inside the cluster CIDR, so adding one workload does not move the others.
 *
 * Pods carry the labels their controller adds that Services select on (a StatefulSet pod's
 * `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`), and run on a
 * node: a DaemonSet's on every known node, others spread over the known nodes by a hash of
 * their identity (one node, the rendering one, when the input has no Node objects).
 */

import { quote } from "../util/quote.ts";
import { sha256 } from "../util/sha256.ts";
import { AddressPool } from "./allocate.ts";
import { Fields, isIANASvcName, type Reporter, readMeta } from "./fields.ts";
import { type IPFamily, parseCIDR } from "./ip.ts";
import type { EndpointSlice, Origin, Protocol, Service } from "./types.ts";

/** A container port of a workload's pod template (what a Service's named targetPort refers to). */
export interface ContainerPort {
  /** The port's name; "" when unnamed. */
  name: string;
  /** The port number in the pod. */
  containerPort: number;
  /** Its protocol (default TCP). */
  protocol: Protocol;
}

/** A Deployment, StatefulSet, ReplicaSet, DaemonSet or Pod, as far as endpoint simulation reads it. */
export interface Workload {
  /** `Deployment`, `StatefulSet`, `ReplicaSet`, `DaemonSet` or `Pod`. */
  kind: string;
  /** The object's namespace. */
  namespace: string;
  /** The object's name. */
  name: string;
  /** Pods it runs: spec.replicas (default 1); 1 for a DaemonSet (one per node) and a Pod. */
  replicas: number;
  /** The labels of its pods (the pod template's), which Services select on. */
  podLabels: Record<string, string>;
  /** The containers' ports. */
  ports: ContainerPort[];
  /** Pods only: status.podIPs, when present. */
  podIPs: string[];
  /** Pods only: spec.nodeName, when present. */
  nodeName?: string;
  /** Pods only: false when status.conditions says Ready is not True. */
  ready?: boolean;
  /** Where the object was read from. */
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
    const c = f.item(rc, [...specPath, "containers", ci]);
    if (!c) return;
    f.list(c.ports, [...specPath, "containers", ci, "ports"]).forEach((rp, pi) => {
      const path = [...specPath, "containers", ci, "ports", pi];
      const p = f.item(rp, path);
      if (!p) return;
      const name = f.str(p.name, [...path, "name"]) ?? "";
      if (name !== "" && !isIANASvcName(name)) f.r.error([...path, "name"], `${quote(name)} is not a valid port name`);
      const containerPort = f.int(p.containerPort, [...path, "containerPort"], 1, 65535);
      if (p.containerPort === undefined || p.containerPort === null)
        f.r.error([...path, "containerPort"], "is required");
      const protocol = f.oneOf<Protocol>(p.protocol, [...path, "protocol"], ["TCP", "UDP", "SCTP"], "TCP");
      if (containerPort !== undefined) ports.push({ name, containerPort, protocol });
    });
  });
  const podIPs: string[] = [];
  let nodeName: string | undefined;
  let ready: boolean | undefined;
  if (kind === "Pod") {
    nodeName = f.str(spec.nodeName, ["spec", "nodeName"]) || undefined;
    const st = f.obj(obj.status, ["status"]) ?? {};
    f.list(st.conditions, ["status", "conditions"]).forEach((c) => {
      if (typeof c === "object" && c !== null && (c as Record<string, unknown>).type === "Ready")
        ready = (c as Record<string, unknown>).status === "True";
    });
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
  return {
    kind,
    namespace: meta.namespace,
    name: meta.name,
    replicas,
    podLabels,
    ports,
    podIPs,
    ...(nodeName ? { nodeName } : {}),
    ...(ready === false ? { ready } : {}),
  };
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

/** Where simulated pods get their addresses and nodes. */
export interface SimulationOptions {
  /** Pod CIDRs (`--cluster-cidr`), at most one per family. */
  clusterCIDRs: readonly string[];
  /** Node objects of the input: pods are spread over them. */
  nodes: readonly string[];
  /** The rendering node (`--hostname-override`): where pods run when `nodes` is empty. */
  nodeName: string;
}

/** One pod a workload stands for. */
interface SimPod {
  w: Workload;
  index: number;
  labels: Record<string, string>;
  nodeName: string;
  ready: boolean;
}

const STS_POD_NAME = "statefulset.kubernetes.io/pod-name";
const POD_INDEX = "apps.kubernetes.io/pod-index";

function digest32(s: string): number {
  const d = sha256(s);
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0;
}

/** The pods a workload stands for, with the labels and node their controller gives them. */
function podsOf(w: Workload, nodes: readonly string[], here: string): SimPod[] {
  const ready = w.ready !== false;
  if (w.kind === "Pod") return [{ w, index: 0, labels: w.podLabels, nodeName: w.nodeName ?? here, ready }];
  if (w.kind === "DaemonSet") {
    const on = nodes.length > 0 ? nodes : [here];
    return on.map((nodeName, index) => ({ w, index, labels: w.podLabels, nodeName, ready }));
  }
  const pods: SimPod[] = [];
  for (let i = 0; i < w.replicas; i++) {
    const labels =
      w.kind === "StatefulSet"
        ? { ...w.podLabels, [STS_POD_NAME]: `${w.name}-${i}`, [POD_INDEX]: `${i}` }
        : w.podLabels;
    const nodeName =
      nodes.length > 0 ? nodes[digest32(`${w.namespace}/${w.kind}/${w.name}/${i}`) % nodes.length] : here;
    pods.push({ w, index: i, labels, nodeName, ready });
  }
  return pods;
}

/**
 * Slices for every Service with a selector and no EndpointSlice of its own, one per family
 * and per distinct resolved port set (as the controller splits pods with different ports).
 */
export function simulateEndpoints(
  services: readonly Service[],
  existing: readonly EndpointSlice[],
  workloads: readonly Workload[],
  opts: SimulationOptions,
): SimulationResult {
  const warnings: SimulationWarning[] = [];
  const slices: EndpointSlice[] = [];
  const covered = new Set(existing.map((s) => `${s.namespace}/${s.labels["kubernetes.io/service-name"] ?? ""}`));
  const cidrs = opts.clusterCIDRs.map((c) => parseCIDR(c.trim())).filter((c) => c !== undefined);
  // Offset 0 (the network address) is never a pod's.
  const pools = new Map<IPFamily, AddressPool>();
  for (const c of cidrs) if (!pools.has(c.family)) pools.set(c.family, new AddressPool(c, 1));
  const nodes = [...opts.nodes].sort();
  // Pod identities are allocated in a fixed order so results never depend on input order.
  const pods = [...workloads]
    .sort((a, b) => (`${a.namespace}/${a.kind}/${a.name}` < `${b.namespace}/${b.kind}/${b.name}` ? -1 : 1))
    .flatMap((w) => podsOf(w, nodes, opts.nodeName));
  const podsByNamespace = new Map<string, SimPod[]>();
  for (const p of pods) {
    const list = podsByNamespace.get(p.w.namespace);
    if (list) list.push(p);
    else podsByNamespace.set(p.w.namespace, [p]);
  }
  const podIPCache = new Map<string, string | undefined>();
  const podIP = (p: SimPod, family: IPFamily): string | undefined => {
    const w = p.w;
    if (w.podIPs.length > 0) return w.podIPs.find((ip) => ip.includes(":") === (family === "IPv6"));
    const id = `${family} ${w.namespace}/${w.kind}/${w.name}/${p.index}`;
    if (!podIPCache.has(id)) podIPCache.set(id, pools.get(family)?.take(id));
    return podIPCache.get(id);
  };

  for (const svc of services) {
    const key = `${svc.namespace}/${svc.name}`;
    if (!svc.selector || covered.has(key) || svc.type === "ExternalName") continue;
    const selector = svc.selector;
    const matched = (podsByNamespace.get(svc.namespace) ?? []).filter((p) => matches(selector, p.labels));
    if (matched.length === 0) {
      warnings.push({ origin: svc.origin, message: `Service ${key}: selector matches no workload in the manifests` });
      continue;
    }
    const families = svc.ipFamilies.length > 0 ? svc.ipFamilies : (["IPv4"] as IPFamily[]);
    for (const family of families) {
      if (!pools.has(family) && matched.some((p) => p.w.podIPs.length === 0)) {
        warnings.push({
          origin: svc.origin,
          message: `Service ${key}: no ${family} --cluster-cidr to place simulated pod IPs in`,
        });
        continue;
      }
      // Group pods by their resolved port numbers: one slice per distinct set.
      const groups = new Map<string, { ports: number[]; pods: { ip: string; pod: SimPod }[] }>();
      const warned = new Set<string>();
      for (const pod of matched) {
        const w = pod.w;
        const resolved = svc.ports.map((p) => {
          if (typeof p.targetPort === "string") {
            const cp = w.ports.find((c) => c.name === p.targetPort && c.protocol === p.protocol);
            if (!cp && !warned.has(`${w.kind}/${w.name}/${p.targetPort}`)) {
              warned.add(`${w.kind}/${w.name}/${p.targetPort}`);
              warnings.push({
                origin: w.origin,
                message: `Service ${key}: targetPort ${quote(p.targetPort)} is not declared by any container of ${w.kind} ${w.namespace}/${w.name}`,
              });
            }
            return cp ? cp.containerPort : 0;
          }
          return p.targetPort ?? p.port;
        });
        const gk = resolved.join(",");
        let g = groups.get(gk);
        if (!g) groups.set(gk, (g = { ports: resolved, pods: [] }));
        const ip = podIP(pod, family);
        if (ip) g.pods.push({ ip, pod });
      }
      let n = 0;
      for (const g of groups.values()) {
        if (g.pods.length === 0) continue;
        slices.push({
          namespace: svc.namespace,
          name: `${svc.name}-simulated-${family === "IPv6" ? "v6-" : ""}${n++}`,
          labels: { "kubernetes.io/service-name": svc.name },
          addressType: family,
          // A named port no container declares resolves to 0: kube-proxy skips such a port.
          ports: svc.ports.map((p, i) => ({ name: p.name, port: g.ports[i], protocol: p.protocol })),
          endpoints: g.pods.map(({ ip, pod }) => ({
            addresses: [ip],
            // publishNotReadyAddresses: the controller publishes every pod as ready.
            ready: pod.ready || svc.publishNotReadyAddresses === true,
            serving: pod.ready,
            terminating: false,
            nodeName: pod.nodeName || undefined,
            zoneHints: [],
            nodeHints: [],
          })),
        });
      }
    }
  }
  return { slices, warnings };
}
