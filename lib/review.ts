/**
 * Two renders of a manifest set (before and after a change) → what a reviewer needs to know:
 * Services added, removed and changed, endpoints per port, and above all what became
 * reachable from outside the cluster (node ports, external and load-balancer IPs, source
 * ranges, traffic policies). Pure: it reads the Services and the per-port summaries.
 */
import { cidrContains, parseCIDR, parseIP } from "./model/ip.ts";
import type { Service } from "./model/types.ts";
import type { ServicePortSummary } from "./proxy/ruleset.ts";

/** One side of the comparison: the Services after defaulting/allocation, and what the build made of them. */
export interface ReviewSide {
  /** The Services rendered (RenderResult's `loaded.state.services`, after allocation). */
  services: readonly Service[];
  /** The summaries of the build (Ruleset's `services`). */
  ports: readonly ServicePortSummary[];
}

/** A change to what is reachable from outside the cluster. */
export interface ExposureChange {
  /** `namespace/name`. */
  service: string;
  /** "opened" widens exposure, "closed" narrows it, "changed" is neither (a policy switch). */
  kind: "opened" | "closed" | "changed";
  /** One sentence, e.g. `NodePort 31839/TCP opened (port http)`. */
  what: string;
}

/** Endpoints of one service port before and after (undefined: the port does not exist on that side). */
export interface PortEndpoints {
  /** `port-name/PROTOCOL`, or `port/PROTOCOL` when unnamed. */
  port: string;
  /** Ready endpoints before. */
  before?: number;
  /** Ready endpoints after. */
  after?: number;
}

/** One Service that changed, and how. */
export interface ServiceReview {
  /** `namespace/name`. */
  service: string;
  /** Whether it is new, gone, or there on both sides with changes. */
  status: "added" | "removed" | "changed";
  /** Field-level changes in words (type, ports, policies, affinity). */
  changes: string[];
  /** Ready endpoints per port, before and after. */
  endpoints: PortEndpoints[];
}

/** What changed between two renders: each Service that changed, and what became reachable from outside. */
export interface Review {
  /** Services added, removed or changed, sorted by `namespace/name`. */
  services: ServiceReview[];
  /** Changes to what is reachable from outside the cluster. */
  exposure: ExposureChange[];
}

const key = (s: Service) => `${s.namespace}/${s.name}`;

function portLabel(p: ServicePortSummary): string {
  const name = p.servicePortName.slice(p.service.length + 1);
  return `${name || p.port}/${p.protocol}`;
}

/** Ready endpoints per port label: what traffic is spread over. */
function endpointsByPort(ports: readonly ServicePortSummary[], service: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of ports) {
    if (p.service !== service) continue;
    m.set(portLabel(p), p.endpoints.filter((e) => e.ready).length);
  }
  return m;
}

function nodePorts(s: Service): Map<string, string> {
  const m = new Map<string, string>();
  for (const p of s.ports)
    if (p.nodePort) m.set(`${p.nodePort}/${p.protocol}`, p.name ? `port ${p.name}` : `port ${p.port}`);
  if (s.type === "LoadBalancer" && s.externalTrafficPolicy === "Local" && s.healthCheckNodePort)
    m.set(`${s.healthCheckNodePort}/TCP`, "health check");
  return m;
}

const lbIPs = (s: Service) => s.loadBalancerIngress.flatMap((i) => (i.ip ? [i.ip] : []));
const isExternal = (s: Service) => s.type === "NodePort" || s.type === "LoadBalancer" || s.externalIPs.length > 0;

/** Ranges of `b` that no range of `a` covers (a widening when going from a to b). */
function uncovered(a: readonly string[], b: readonly string[]): string[] {
  const A = a.map((r) => parseCIDR(r)).filter((c) => c !== undefined);
  return b.filter((r) => {
    const c = parseCIDR(r);
    if (!c) return true;
    const net = parseIP(c.text.split("/")[0]);
    return !A.some((o) => o.family === c.family && o.prefix <= c.prefix && net !== undefined && cidrContains(o, net));
  });
}

function exposureOf(before: Service | undefined, after: Service | undefined, out: ExposureChange[]): void {
  const svc = key((after ?? before) as Service);
  const push = (kind: ExposureChange["kind"], what: string) => out.push({ service: svc, kind, what });
  const b = before;
  const a = after;
  // Node ports.
  const bn = b ? nodePorts(b) : new Map<string, string>();
  const an = a ? nodePorts(a) : new Map<string, string>();
  for (const [np, label] of an) if (!bn.has(np)) push("opened", `NodePort ${np} opened (${label})`);
  for (const [np, label] of bn) if (!an.has(np)) push("closed", `NodePort ${np} closed (${label})`);
  // External IPs and load-balancer IPs.
  for (const [field, get] of [
    ["external IP", (s: Service) => s.externalIPs],
    ["load-balancer IP", lbIPs],
  ] as const) {
    const bs = new Set(b ? get(b) : []);
    const as = new Set(a ? get(a) : []);
    for (const ip of as) if (!bs.has(ip)) push("opened", `${field} ${ip} added`);
    for (const ip of bs) if (!as.has(ip)) push("closed", `${field} ${ip} removed`);
  }
  // Source ranges: only meaningful while the Service is a LoadBalancer on both sides.
  if (a?.type === "LoadBalancer" && b?.type === "LoadBalancer") {
    const br = b.loadBalancerSourceRanges;
    const ar = a.loadBalancerSourceRanges;
    if (br.length > 0 && ar.length === 0)
      push("opened", `loadBalancerSourceRanges removed (was ${br.join(", ")}): open to every source`);
    else if (br.length === 0 && ar.length > 0) push("closed", `loadBalancerSourceRanges set to ${ar.join(", ")}`);
    else {
      const wider = uncovered(br, ar);
      if (wider.length > 0) push("opened", `loadBalancerSourceRanges widened: ${br.join(", ")} → ${ar.join(", ")}`);
      else if (uncovered(ar, br).length > 0)
        push("closed", `loadBalancerSourceRanges narrowed: ${br.join(", ")} → ${ar.join(", ")}`);
    }
  } else if (a?.type === "LoadBalancer" && a.loadBalancerSourceRanges.length === 0 && lbIPs(a).length > 0)
    push("opened", "a LoadBalancer open to every source (no loadBalancerSourceRanges)");
  // Traffic policies and type.
  if (a && b) {
    if (a.type !== b.type && (isExternal(a) || isExternal(b)))
      push(isExternal(a) && !isExternal(b) ? "opened" : "changed", `type ${b.type} → ${a.type}`);
    if (a.externalTrafficPolicy !== b.externalTrafficPolicy && isExternal(a) && isExternal(b))
      push("changed", `externalTrafficPolicy ${b.externalTrafficPolicy} → ${a.externalTrafficPolicy}`);
    if (a.internalTrafficPolicy !== b.internalTrafficPolicy)
      push("changed", `internalTrafficPolicy ${b.internalTrafficPolicy} → ${a.internalTrafficPolicy}`);
  } else if (a && isExternal(a) && !b && !out.some((x) => x.service === svc)) push("opened", `new ${a.type} Service`);
}

function fieldChanges(b: Service, a: Service): string[] {
  const out: string[] = [];
  if (b.type !== a.type) out.push(`type ${b.type} → ${a.type}`);
  const ports = (s: Service) =>
    s.ports.map((p) => `${p.name || p.port}:${p.port}/${p.protocol}→${p.targetPort ?? p.port}`);
  const bp = ports(b).join(", ");
  const ap = ports(a).join(", ");
  if (bp !== ap) out.push(`ports ${bp || "none"} → ${ap || "none"}`);
  if (b.clusterIPs.join(",") !== a.clusterIPs.join(","))
    out.push(`cluster IPs ${b.clusterIPs.join(", ") || "none"} → ${a.clusterIPs.join(", ") || "none"}`);
  if (b.sessionAffinity !== a.sessionAffinity) out.push(`sessionAffinity ${b.sessionAffinity} → ${a.sessionAffinity}`);
  if (JSON.stringify(b.selector ?? {}) !== JSON.stringify(a.selector ?? {})) out.push("selector changed");
  return out;
}

/** What changed between two renders of a manifest set. */
export function reviewChanges(before: ReviewSide, after: ReviewSide): Review {
  const B = new Map(before.services.map((s) => [key(s), s]));
  const A = new Map(after.services.map((s) => [key(s), s]));
  const names = [...new Set([...B.keys(), ...A.keys()])].sort();
  const services: ServiceReview[] = [];
  const exposure: ExposureChange[] = [];
  for (const name of names) {
    const b = B.get(name);
    const a = A.get(name);
    exposureOf(b, a, exposure);
    const be = endpointsByPort(before.ports, name);
    const ae = endpointsByPort(after.ports, name);
    const endpoints: PortEndpoints[] = [...new Set([...be.keys(), ...ae.keys()])]
      .sort()
      .map((port) => ({ port, before: be.get(port), after: ae.get(port) }));
    const status = !b ? "added" : !a ? "removed" : "changed";
    const changes = a && b ? fieldChanges(b, a) : [];
    const moved = endpoints.some((e) => e.before !== e.after);
    if (status === "changed" && changes.length === 0 && !moved && !exposure.some((x) => x.service === name)) continue;
    services.push({ service: name, status, changes, endpoints });
  }
  return { services, exposure };
}
