/**
 * What the API server allocates when a Service is created, simulated for manifests that
 * leave it out: cluster IPs from the service CIDRs, node ports and health-check node ports
 * from the node-port range. App repositories never write these, so without them a CI render
 * of a real repository has no Service rules at all.
 *
 * Every value comes from a hash of the object's identity, so the same input gives the same
 * rules on every run and machine, and adding or removing one Service moves no other (unless
 * two identities hash to the same slot: then the one that sorts first keeps it). Values the
 * manifests set explicitly are reserved before anything is allocated.
 */
import { sha256 } from "../util/sha256.ts";
import { plural } from "../util/text.ts";
import { type CIDR, cidrContains, type IPFamily, parseCIDR, parseIP } from "./ip.ts";
import type { Service } from "./types.ts";

/** The cluster settings an API server allocates from (kube-apiserver's flag names). */
export interface ClusterPolicy {
  /** `--service-cluster-ip-range`: one CIDR, or two of different families (dual-stack). */
  serviceCIDRs: CIDR[];
  /** `--service-node-port-range`: first port and count. */
  nodePorts: PortRange;
}

/** A range of ports: `base` and `size` ports from it. */
export interface PortRange {
  /** The first port. */
  base: number;
  /** How many ports, the first included. */
  size: number;
}

export const DEFAULT_SERVICE_CIDR = "10.96.0.0/12";
export const DEFAULT_NODE_PORT_RANGE = "30000-32767";

/** `30000-32767` or `30000+2767` (kube-apiserver accepts both), else an error message. */
export function parsePortRange(s: string): PortRange | string {
  const m = /^\s*([0-9]{1,5})\s*([-+])\s*([0-9]{1,5})\s*$/.exec(s);
  if (!m) return `${JSON.stringify(s)} is not a port range (FIRST-LAST, e.g. 30000-32767)`;
  const base = Number(m[1]);
  const last = m[2] === "-" ? Number(m[3]) : base + Number(m[3]);
  if (base < 1 || last > 65535 || last < base) return `${JSON.stringify(s)} is not a port range within 1-65535`;
  return { base, size: last - base + 1 };
}

/** kubeadm's defaults: service range 10.96.0.0/12, node ports 30000-32767. */
export function defaultClusterPolicy(): ClusterPolicy {
  return {
    serviceCIDRs: parseServiceCIDRs(DEFAULT_SERVICE_CIDR) as CIDR[],
    nodePorts: parsePortRange(DEFAULT_NODE_PORT_RANGE) as PortRange,
  };
}

export function formatPortRange(r: PortRange): string {
  return `${r.base}-${r.base + r.size - 1}`;
}

/** `10.96.0.0/12[,fd00::/108]`: at most one CIDR per family; else an error message. */
export function parseServiceCIDRs(s: string): CIDR[] | string {
  const out: CIDR[] = [];
  for (const part of s.split(",").map((p) => p.trim())) {
    const c = parseCIDR(part);
    if (!c) return `${JSON.stringify(part)} is not a valid CIDR`;
    if (out.some((o) => o.family === c.family)) return `${JSON.stringify(s)} holds two ${c.family} ranges`;
    const hostBits = c.bytes.length * 8 - c.prefix;
    if (hostBits < 2) return `${JSON.stringify(part)} is too small to allocate from`;
    out.push(c);
  }
  return out;
}

/** 32 bits of an identity's SHA-256 (bytes 2-5: what simulated pod IPs have always used). */
function digest(identity: string): number {
  const d = sha256(identity);
  return ((d[2] << 24) | (d[3] << 16) | (d[4] << 8) | d[5]) >>> 0;
}

/**
 * The first free slot of an identity's own sequence: its hash, then hashes of
 * `identity#1`, `identity#2`… (so two identities that collide once do not keep colliding, and
 * a freed slot moves only those whose sequence passed through it), then a linear scan.
 */
function probe(identity: string, size: number, free: (i: number) => boolean): number | undefined {
  let n = digest(identity) % size;
  for (let k = 1; k <= 32; k++) {
    if (free(n)) return n;
    n = digest(`${identity}#${k}`) % size;
  }
  for (let tries = 0; tries < size; tries++, n = (n + 1) % size) if (free(n)) return n;
  return undefined;
}

function bytesToV6(b: number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  return groups.join(":");
}

/**
 * Addresses of a CIDR handed out by a hash of an identity, probing upward on collision.
 * `skip` host offsets at the start are never given (0 is the network address); for IPv4 the
 * broadcast address is never given either.
 */
export class AddressPool {
  private used = new Set<string>();
  private readonly first: number;
  private readonly usable: number;

  constructor(
    readonly cidr: CIDR,
    skip: number,
  ) {
    const hostBits = cidr.bytes.length * 8 - cidr.prefix;
    const size = hostBits >= 48 ? 2 ** 48 : 2 ** hostBits;
    this.first = skip;
    this.usable = size - skip - (cidr.family === "IPv4" ? 1 : 0);
  }

  /** Mark an address as taken (an explicit one from the manifests). */
  reserve(text: string): void {
    this.used.add(text);
  }

  has(text: string): boolean {
    const ip = parseIP(text);
    return ip !== undefined && cidrContains(this.cidr, ip);
  }

  take(identity: string): string | undefined {
    if (this.usable < 1 || this.used.size >= this.usable) return undefined;
    const n = probe(identity, this.usable, (i) => !this.used.has(this.at(this.first + i)));
    if (n === undefined) return undefined;
    const text = this.at(this.first + n);
    this.used.add(text);
    return text;
  }

  private at(offset: number): string {
    const bytes = [...this.cidr.bytes];
    let rest = offset;
    for (let i = bytes.length - 1; i >= 0 && rest > 0; i--) {
      const sum = bytes[i] + (rest % 256);
      bytes[i] = sum % 256;
      rest = Math.floor(rest / 256) + Math.floor(sum / 256);
    }
    return this.cidr.family === "IPv4" ? bytes.join(".") : (parseIP(bytesToV6(bytes))?.text ?? "");
  }
}

/** Ports of a range handed out by a hash of an identity, probing upward on collision. */
class PortPool {
  private used = new Set<number>();
  constructor(private readonly range: PortRange) {}

  reserve(port: number): void {
    this.used.add(port);
  }

  take(identity: string): number | undefined {
    const { base, size } = this.range;
    const n = probe(identity, size, (i) => !this.used.has(base + i));
    if (n === undefined) return undefined;
    this.used.add(base + n);
    return base + n;
  }
}

/** One value the simulation made up, for messages and `-o json`. */
export interface Allocated {
  /** `namespace/name`. */
  service: string;
  /** What was filled in. */
  field: "clusterIP" | "nodePort" | "healthCheckNodePort";
  /** The value: an address for `clusterIP`, a port number otherwise. */
  value: string | number;
  /** The service port, for node ports. */
  port?: number;
  /** The service port's protocol, for node ports. */
  protocol?: string;
}

/** What allocateServices returns. */
export interface AllocationResult {
  /** The Services with what was missing filled in (same order; untouched ones are the same objects). */
  services: Service[];
  /** Each value it made up. */
  allocated: Allocated[];
  /** Services that could not get what they need (`origin` for file:line). */
  warnings: { service: Service; message: string }[];
}

const key = (s: Service) => `${s.namespace}/${s.name}`;

/** Which families a Service gets in this cluster, as the API server decides (ipFamilyPolicy). */
function familiesFor(svc: Service, cluster: IPFamily[]): { families: IPFamily[]; problem?: string } {
  const policy = svc.ipFamilyPolicy ?? "SingleStack";
  const requested = svc.requestedIPFamilies ?? [];
  const have = svc.clusterIPs.length > 0 ? svc.ipFamilies : [];
  const missing = [...have, ...requested].filter((f) => !cluster.includes(f));
  if (missing.length > 0)
    return { families: [], problem: `${missing[0]} is not configured in --service-cluster-ip-range` };
  const order = [...new Set<IPFamily>([...have, ...requested, ...cluster])];
  if (policy === "SingleStack") return { families: order.slice(0, 1) };
  if (policy === "RequireDualStack" && cluster.length < 2)
    return {
      families: [],
      problem: "ipFamilyPolicy RequireDualStack needs a dual-stack --service-cluster-ip-range (one CIDR per family)",
    };
  return { families: order.slice(0, 2) };
}

/**
 * Fill in the cluster IPs, node ports and health-check node ports the API server would
 * allocate. Headless and ExternalName Services are left as they are.
 */
export function allocateServices(services: readonly Service[], policy: ClusterPolicy): AllocationResult {
  const pools = new Map<IPFamily, AddressPool>();
  // Offset 1 of the primary range is the `kubernetes` Service's address.
  for (const c of policy.serviceCIDRs) pools.set(c.family, new AddressPool(c, 2));
  const ports = new PortPool(policy.nodePorts);
  for (const s of services) {
    for (const ip of s.clusterIPs) for (const p of pools.values()) if (p.has(ip)) p.reserve(ip);
    for (const p of s.ports) if (p.nodePort) ports.reserve(p.nodePort);
    if (s.healthCheckNodePort) ports.reserve(s.healthCheckNodePort);
  }
  const cluster = policy.serviceCIDRs.map((c) => c.family);
  const allocated: Allocated[] = [];
  const warnings: AllocationResult["warnings"] = [];
  const out = new Map<Service, Service>();
  // A fixed order, so collisions resolve the same way whatever the order of the files.
  const sorted = [...services].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  for (const svc of sorted) {
    if (svc.type === "ExternalName" || svc.clusterIPs[0] === "None") continue;
    let next = svc;
    // Only a Service still short of addresses is the allocator's business (a dump of a real
    // cluster has them all, whatever --service-cluster-ip-range says).
    const dual = (svc.ipFamilyPolicy ?? "SingleStack") !== "SingleStack";
    const { families, problem } =
      svc.clusterIPs.length === 0 || (dual && svc.clusterIPs.length === 1)
        ? familiesFor(svc, cluster)
        : { families: svc.ipFamilies, problem: undefined };
    if (problem) {
      warnings.push({ service: svc, message: `cannot allocate a cluster IP: ${problem}` });
      if (svc.clusterIPs.length === 0) continue;
    }
    if (!problem && families.length > svc.clusterIPs.length) {
      const clusterIPs = [...svc.clusterIPs];
      const ipFamilies = [...svc.ipFamilies];
      for (const fam of families) {
        if (ipFamilies.includes(fam)) continue;
        const ip = pools.get(fam)?.take(`${fam} ${key(svc)}`);
        if (!ip) {
          warnings.push({ service: svc, message: `the ${fam} service range is full: no cluster IP left` });
          continue;
        }
        clusterIPs.push(ip);
        ipFamilies.push(fam);
        allocated.push({ service: key(svc), field: "clusterIP", value: ip });
      }
      if (clusterIPs.length === 0) continue;
      next = { ...next, clusterIPs, ipFamilies };
    }
    const wantsNodePorts =
      svc.type === "NodePort" || (svc.type === "LoadBalancer" && svc.allocateLoadBalancerNodePorts !== false);
    if (wantsNodePorts && svc.ports.some((p) => p.nodePort === 0)) {
      // Ports with the same number and different protocols share one node port, as the API
      // server allocates them.
      const byNumber = new Map<number, number>();
      for (const p of svc.ports) if (p.nodePort) byNumber.set(p.port, p.nodePort);
      const portsOut = svc.ports.map((p) => {
        if (p.nodePort) return p;
        let nodePort = byNumber.get(p.port);
        if (nodePort === undefined) {
          nodePort = ports.take(`${key(svc)}:${p.port}`);
          if (nodePort === undefined) {
            warnings.push({ service: svc, message: `the node-port range is full: no node port for port ${p.port}` });
            return p;
          }
          byNumber.set(p.port, nodePort);
          allocated.push({ service: key(svc), field: "nodePort", value: nodePort, port: p.port, protocol: p.protocol });
        }
        return { ...p, nodePort };
      });
      next = { ...next, ports: portsOut };
    }
    if (svc.type === "LoadBalancer" && svc.externalTrafficPolicy === "Local" && svc.healthCheckNodePort === 0) {
      const hc = ports.take(`${key(svc)} healthCheckNodePort`);
      if (hc === undefined)
        warnings.push({ service: svc, message: "the node-port range is full: no health-check port" });
      else {
        next = { ...next, healthCheckNodePort: hc };
        allocated.push({ service: key(svc), field: "healthCheckNodePort", value: hc });
      }
    }
    if (next !== svc) out.set(svc, next);
  }
  return { services: services.map((s) => out.get(s) ?? s), allocated, warnings };
}

/** "allocated 3 cluster IPs, 2 node ports, 1 health-check node port" (what was made up). */
export function allocationSummary(list: readonly Allocated[]): string {
  const n = (field: Allocated["field"]) => list.filter((a) => a.field === field).length;
  const parts = [plural(n("clusterIP"), "cluster IP"), plural(n("nodePort"), "node port")];
  const hc = n("healthCheckNodePort");
  if (hc > 0) parts.push(plural(hc, "health-check node port"));
  return `allocated ${parts.join(", ")}`;
}
