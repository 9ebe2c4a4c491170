/**
 * Validation and defaulting of the fields kip reads, as the API server would do them.
 *
 * Manifests are untrusted: their values end up in iptables-restore input run as root. Every
 * name, label, port, address and CIDR that can reach a rule is checked here, and the model
 * types (types.ts) only ever hold values that passed.
 */
import { quote } from "../util/quote.ts";
import { type IPFamily, isLoopback, isUnspecified, parseCIDR, parseIP } from "./ip.ts";
import type { Path } from "./parse.ts";
import { ENUMS, LIMITS, PROBE_ANNOTATION, specialIPProblem } from "./rules.ts";
import type {
  Endpoint,
  EndpointPort,
  EndpointSlice,
  IPFamilyPolicy,
  LoadBalancerIngress,
  Node,
  Protocol,
  Service,
  ServicePort,
  ServiceType,
  TrafficPolicy,
} from "./types.ts";

/** Receives problems with the field path they concern. */
export interface Reporter {
  error(path: Path, message: string): void;
  warn(path: Path, message: string): void;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const INTERFACE_NAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

/** An input value as quoted in a message: escaped, bounded (lib/util/quote.ts). */
const q = quote;

export function isDNS1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}
export function isDNS1035Label(s: string): boolean {
  return s.length <= 63 && DNS1035_LABEL.test(s);
}
export function isDNS1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}
export function isIANASvcName(s: string): boolean {
  return s.length <= 15 && IANA_SVC_NAME.test(s) && /[a-z]/.test(s) && !s.includes("--");
}
export function isLabelValue(s: string): boolean {
  return s === "" || (s.length <= 63 && LABEL_NAME.test(s));
}
export function isQualifiedName(s: string): boolean {
  const parts = s.split("/");
  if (parts.length > 2) return false;
  const name = parts[parts.length - 1];
  if (parts.length === 2 && (parts[0].length === 0 || !isDNS1123Subdomain(parts[0]))) return false;
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}
/** A Linux interface name as used by `-i` (bridge, prefix): no spaces, quotes or options. */
export function isInterfaceName(s: string): boolean {
  return INTERFACE_NAME.test(s) && !s.startsWith("-");
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Field access helpers that report type errors against a path. */
class Fields {
  constructor(readonly r: Reporter) {}

  obj(v: unknown, path: Path): Record<string, unknown> | undefined {
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) {
      this.r.error(path, `must be an object, not ${q(v)}`);
      return undefined;
    }
    return v;
  }
  /** A list element: null is not an absent field here, it is a wrong value. */
  item(v: unknown, path: Path): Record<string, unknown> | undefined {
    if (v === null || v === undefined) {
      this.r.error(path, "must be an object, not null");
      return undefined;
    }
    return this.obj(v, path);
  }
  /** A required field: absent, null and "" are all "is required". */
  required(v: unknown, path: Path): boolean {
    if (v !== undefined && v !== null && v !== "") return true;
    this.r.error(path, "is required");
    return false;
  }
  list(v: unknown, path: Path): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.r.error(path, `must be a list, not ${q(v)}`);
      return [];
    }
    return v;
  }
  str(v: unknown, path: Path): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") {
      this.r.error(path, `${q(v)} is not a string`);
      return undefined;
    }
    return v;
  }
  bool(v: unknown, path: Path): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") {
      this.r.error(path, `${q(v)} is not a boolean`);
      return undefined;
    }
    return v;
  }
  int(v: unknown, path: Path, min: number, max: number): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.r.error(path, `${q(v)} is not a whole number`);
      return undefined;
    }
    if (v < min || v > max) {
      this.r.error(path, `${v} is out of range (${min}-${max})`);
      return undefined;
    }
    return v;
  }
  oneOf<T extends string>(v: unknown, path: Path, allowed: readonly T[], dflt: T): T {
    const s = this.str(v, path);
    if (s === undefined || s === "") return dflt;
    if (!(allowed as readonly string[]).includes(s)) {
      this.r.error(path, `${q(s)} is not one of ${allowed.join(", ")}`);
      return dflt;
    }
    return s as T;
  }
  labels(v: unknown, path: Path): Record<string, string> {
    const o = this.obj(v, path);
    const out: Record<string, string> = {};
    if (!o) return out;
    for (const [k, val] of Object.entries(o)) {
      if (!isQualifiedName(k)) this.r.error([...path, k], `label key ${q(k)} is not a valid qualified name`);
      else if (typeof val !== "string") this.r.error([...path, k], `label value ${q(val)} is not a string`);
      else if (!isLabelValue(val)) this.r.error([...path, k], `label value ${q(val)} is not valid`);
      else out[k] = val;
    }
    return out;
  }
  ip(v: unknown, path: Path): string | undefined {
    const s = this.str(v, path);
    if (s === undefined) return undefined;
    const ip = parseIP(s);
    if (!ip) this.r.error(path, `${q(s)} is not a valid IP address`);
    return ip?.text;
  }
}

/** What a valid metadata.name is, in the API server's words, per naming rule. */
const NAME_RULES = {
  dns1035:
    "at most 63 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (e.g. web-app)",
  dns1123label:
    "at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit (e.g. web-app)",
  subdomain:
    "at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. web-app.v1)",
} as const;

/** metadata.name / namespace / labels, common to every kind. */
export function readMeta(
  f: Fields,
  v: unknown,
  nameRule: "dns1035" | "dns1123label" | "subdomain",
  namespaced: boolean,
): { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, unknown> } {
  const m = f.obj(v, ["metadata"]) ?? {};
  const name = f.str(m.name, ["metadata", "name"]) ?? "";
  const check = { dns1035: isDNS1035Label, dns1123label: isDNS1123Label, subdomain: isDNS1123Subdomain }[nameRule];
  if (name === "") f.r.error(["metadata", "name"], "is required");
  else if (!check(name)) f.r.error(["metadata", "name"], `${q(name)} is not a valid name: ${NAME_RULES[nameRule]}`);
  let namespace = "";
  if (namespaced) {
    namespace = f.str(m.namespace, ["metadata", "namespace"]) || "default";
    if (!isDNS1123Label(namespace)) f.r.error(["metadata", "namespace"], `${q(namespace)} is not a valid namespace`);
  }
  const labels = f.labels(m.labels, ["metadata", "labels"]);
  const annotations = f.obj(m.annotations, ["metadata", "annotations"]) ?? {};
  checkAnnotations(f, annotations);
  return { name, namespace, labels, annotations };
}

/** Annotation keys are qualified names; keys and values together fit in 256 KiB. */
function checkAnnotations(f: Fields, annotations: Record<string, unknown>): void {
  let total = 0;
  for (const [k, v] of Object.entries(annotations)) {
    const path = ["metadata", "annotations", k];
    if (!isQualifiedName(k.toLowerCase())) f.r.error(path, `annotation key ${q(k)} is not a valid qualified name`);
    if (v !== null && typeof v !== "string") f.r.error(path, `annotation value ${q(v)} is not a string`);
    total += k.length + (typeof v === "string" ? v.length : 0);
  }
  // Lengths count UTF-16 units; bytes are counted only when they could matter.
  if (total * 3 > LIMITS.annotationsTotalBytes) {
    let bytes = 0;
    for (const [k, v] of Object.entries(annotations))
      bytes += Buffer.byteLength(k) + (typeof v === "string" ? Buffer.byteLength(v) : 0);
    if (bytes > LIMITS.annotationsTotalBytes)
      f.r.error(
        ["metadata", "annotations"],
        `may not be more than ${LIMITS.annotationsTotalBytes} bytes in total (keys and values), not ${bytes}`,
      );
  }
}

const PROTOCOLS = ENUMS.protocol;
const TYPES = ENUMS.serviceType;
const POLICIES = ENUMS.trafficPolicy;
const IP_FAMILY_POLICIES = ENUMS.ipFamilyPolicy;

/**
 * spec.ipFamilies and spec.ipFamilyPolicy against each other and the cluster IPs, as the API
 * server checks them: not on ExternalName; at most two families; SingleStack (also the
 * default when unset) with two cluster IPs or two families is refused.
 */
function checkIPFamilies(
  f: Fields,
  spec: Record<string, unknown>,
  type: ServiceType,
  headless: boolean,
  clusterIPCount: number,
  policy: IPFamilyPolicy | undefined,
): void {
  const fams = Array.isArray(spec.ipFamilies) ? spec.ipFamilies : [];
  if (type === "ExternalName") {
    if (policy !== undefined) f.r.error(["spec", "ipFamilyPolicy"], "may not be set for ExternalName services");
    if (fams.length > 0) f.r.error(["spec", "ipFamilies"], "may not be set for ExternalName services");
    return;
  }
  if (fams.length > LIMITS.ipFamilies) f.r.error(["spec", "ipFamilies"], "may hold at most two families");
  // Other Services' families were checked with their cluster IPs.
  if (headless)
    fams.forEach((fam, i) => {
      if (!(ENUMS.ipFamily as readonly unknown[]).includes(fam))
        f.r.error(["spec", "ipFamilies", i], `${q(fam)} is not one of ${ENUMS.ipFamily.join(", ")}`);
      else if (fams.indexOf(fam) !== i) f.r.error(["spec", "ipFamilies", i], `duplicate family ${q(fam)}`);
    });
  // Unset means SingleStack, except headless and selectorless: the API server then defaults
  // to RequireDualStack (it cannot know the families of endpoints someone else manages).
  const selectorless = spec.selector === undefined || spec.selector === null || Object.keys(spec.selector).length === 0;
  if (policy === undefined && headless && selectorless) return;
  if ((policy ?? "SingleStack") !== "SingleStack") return;
  const unset = policy === undefined ? " (unset means SingleStack)" : "";
  if (clusterIPCount === 2)
    f.r.error(
      ["spec", "ipFamilyPolicy"],
      `must be RequireDualStack or PreferDualStack when multiple cluster IPs are specified${unset}`,
    );
  if (fams.length === 2)
    f.r.error(
      ["spec", "ipFamilyPolicy"],
      `must be RequireDualStack or PreferDualStack when multiple IP families are specified${unset}`,
    );
}

/** Validate and default a v1 Service. undefined when it has errors (reported). */
export function validateService(obj: Record<string, unknown>, r: Reporter): Service | undefined {
  let failed = false;
  const rep: Reporter = {
    error: (p, m) => {
      failed = true;
      r.error(p, m);
    },
    warn: r.warn,
  };
  const f = new Fields(rep);
  const meta = readMeta(f, obj.metadata, "dns1035", true);
  const spec = f.obj(obj.spec, ["spec"]) ?? {};
  const status = f.obj(obj.status, ["status"]) ?? {};
  const type = f.oneOf<ServiceType>(spec.type, ["spec", "type"], TYPES, "ClusterIP");

  // Cluster IPs and families.
  const clusterIPText = f.str(spec.clusterIP, ["spec", "clusterIP"]);
  const rawIPs = f.list(spec.clusterIPs, ["spec", "clusterIPs"]);
  let clusterIPs: string[] = [];
  const ipFamilies: IPFamily[] = [];
  const requestedIPFamilies: IPFamily[] = [];
  const ipFamilyPolicy =
    spec.ipFamilyPolicy === undefined || spec.ipFamilyPolicy === null
      ? undefined
      : f.oneOf<IPFamilyPolicy>(spec.ipFamilyPolicy, ["spec", "ipFamilyPolicy"], IP_FAMILY_POLICIES, "SingleStack");
  const headless = clusterIPText === "None" || rawIPs[0] === "None";
  if (headless) {
    clusterIPs = ["None"];
    if (type === "NodePort" || type === "LoadBalancer")
      f.r.error(["spec", "clusterIP"], `may not be "None" for ${type} services`);
  } else if (type !== "ExternalName") {
    const texts = rawIPs.length > 0 ? rawIPs : clusterIPText ? [clusterIPText] : [];
    if (texts.length > 2) f.r.error(["spec", "clusterIPs"], "may hold at most two addresses (one per family)");
    texts.forEach((t, i) => {
      const path = rawIPs.length > 0 ? ["spec", "clusterIPs", i] : ["spec", "clusterIP"];
      const s = f.str(t, path);
      const ip = s === undefined ? undefined : parseIP(s);
      if (s !== undefined && !ip) f.r.error(path, `${q(s)} is not a valid IP address`);
      if (!ip) return;
      if (ipFamilies.includes(ip.family)) f.r.error(path, `${q(s)}: a second ${ip.family} address is not allowed`);
      if (isUnspecified(ip) || isLoopback(ip)) f.r.error(path, `${q(s)} may not be used as a cluster IP`);
      clusterIPs.push(ip.text);
      ipFamilies.push(ip.family);
    });
    if (rawIPs.length > 0 && clusterIPText && clusterIPText !== "" && parseIP(clusterIPText)?.text !== clusterIPs[0])
      f.r.error(["spec", "clusterIP"], `${q(clusterIPText)} must equal spec.clusterIPs[0]`);
    const fams = f.list(spec.ipFamilies, ["spec", "ipFamilies"]);
    fams.forEach((fam, i) => {
      if (fam !== "IPv4" && fam !== "IPv6") f.r.error(["spec", "ipFamilies", i], `${q(fam)} is not one of IPv4, IPv6`);
      else if (i < ipFamilies.length && ipFamilies[i] !== fam)
        f.r.error(["spec", "ipFamilies", i], `${q(fam)} does not match the family of spec.clusterIPs[${i}]`);
      else if (requestedIPFamilies.includes(fam)) f.r.error(["spec", "ipFamilies", i], `duplicate family ${q(fam)}`);
      else requestedIPFamilies.push(fam);
    });
  }
  checkIPFamilies(f, spec, type, headless, clusterIPs.length, ipFamilyPolicy);

  // Ports.
  const ports: ServicePort[] = [];
  const rawPorts = f.list(spec.ports, ["spec", "ports"]);
  if (rawPorts.length === 0 && !headless && type !== "ExternalName") f.r.error(["spec", "ports"], "is required");
  const names = new Set<string>();
  const seen = new Set<string>();
  const nodePorts = new Set<string>();
  rawPorts.forEach((raw, i) => {
    const path = ["spec", "ports", i];
    const p = f.item(raw, path);
    if (!p) return;
    const name = f.str(p.name, [...path, "name"]) ?? "";
    if (name !== "" && !isDNS1123Label(name)) f.r.error([...path, "name"], `${q(name)} is not a valid port name`);
    if (rawPorts.length > 1 && name === "")
      f.r.error([...path, "name"], "is required when a Service has several ports");
    if (names.has(name) && name !== "") f.r.error([...path, "name"], `duplicate port name ${q(name)}`);
    names.add(name);
    const protocol = f.oneOf<Protocol>(p.protocol, [...path, "protocol"], PROTOCOLS, "TCP");
    const port = f.required(p.port, [...path, "port"]) ? f.int(p.port, [...path, "port"], 1, 65535) : undefined;
    const nodePort = f.int(p.nodePort, [...path, "nodePort"], 0, 65535) ?? 0;
    if (nodePort !== 0 && type !== "NodePort" && type !== "LoadBalancer")
      f.r.error([...path, "nodePort"], `may not be used when type is ${q(type)}`);
    if (port !== undefined) {
      const key = `${port}/${protocol}`;
      if (seen.has(key)) f.r.error([...path, "port"], `duplicate port ${key}`);
      seen.add(key);
    }
    if (nodePort !== 0) {
      const key = `${nodePort}/${protocol}`;
      if (nodePorts.has(key)) f.r.error([...path, "nodePort"], `duplicate nodePort ${key}`);
      nodePorts.add(key);
    }
    let targetPort: number | string | undefined;
    if (typeof p.targetPort === "string") {
      // A string is a port name, always: "8080" in quotes is refused, as the API server does.
      if (!isIANASvcName(p.targetPort))
        f.r.error(
          [...path, "targetPort"],
          `${q(p.targetPort)} is not a valid port name${/^[0-9]+$/.test(p.targetPort) ? " (a port number is written without quotes)" : ""}`,
        );
      else targetPort = p.targetPort;
    } else targetPort = f.int(p.targetPort, [...path, "targetPort"], 1, 65535);
    if (port !== undefined) ports.push({ name, protocol, port, nodePort, targetPort });
  });

  // External IPs: no unspecified, loopback, link-local or multicast addresses.
  const externalIPs: string[] = [];
  f.list(spec.externalIPs, ["spec", "externalIPs"]).forEach((v, i) => {
    const text = f.ip(v, ["spec", "externalIPs", i]);
    const ip = text ? parseIP(text) : undefined;
    if (!ip) return;
    const b = ip.bytes;
    const special =
      isUnspecified(ip) ||
      isLoopback(ip) ||
      (ip.family === "IPv4"
        ? (b[0] === 169 && b[1] === 254) || b[0] >= 224
        : (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) || b[0] === 0xff);
    if (special)
      f.r.error(["spec", "externalIPs", i], `${q(v)} may not be unspecified, loopback, link-local or multicast`);
    else externalIPs.push(ip.text);
  });

  // Source ranges: trimmed, canonical network form.
  const loadBalancerSourceRanges: string[] = [];
  const ranges = f.list(spec.loadBalancerSourceRanges, ["spec", "loadBalancerSourceRanges"]);
  if (ranges.length > 0 && type !== "LoadBalancer")
    f.r.error(["spec", "loadBalancerSourceRanges"], 'may only be used when type is "LoadBalancer"');
  ranges.forEach((v, i) => {
    const s = f.str(v, ["spec", "loadBalancerSourceRanges", i]);
    if (s === undefined) return;
    const c = parseCIDR(s.trim());
    if (!c) f.r.error(["spec", "loadBalancerSourceRanges", i], `${q(s)} is not a valid CIDR`);
    else loadBalancerSourceRanges.push(c.text);
  });

  // Load balancer status.
  const loadBalancerIngress: LoadBalancerIngress[] = [];
  const lb = f.obj(status.loadBalancer, ["status", "loadBalancer"]) ?? {};
  f.list(lb.ingress, ["status", "loadBalancer", "ingress"]).forEach((raw, i) => {
    const path = ["status", "loadBalancer", "ingress", i];
    const ing = f.item(raw, path);
    if (!ing) return;
    const hostname = f.str(ing.hostname, [...path, "hostname"]);
    if (hostname !== undefined && hostname !== "" && !isDNS1123Subdomain(hostname))
      f.r.error([...path, "hostname"], `${q(hostname)} is not a valid hostname`);
    const ip = ing.ip === undefined || ing.ip === "" ? undefined : f.ip(ing.ip, [...path, "ip"]);
    let ipMode: string | undefined;
    if (ing.ipMode !== undefined) {
      ipMode = f.oneOf(ing.ipMode, [...path, "ipMode"], ENUMS.ipMode, "VIP");
      if (ip === undefined) f.r.error([...path, "ipMode"], "may only be set when ip is set");
    }
    loadBalancerIngress.push({ ip, ipMode });
  });

  // Session affinity.
  const sessionAffinity = f.oneOf(spec.sessionAffinity, ["spec", "sessionAffinity"], ENUMS.sessionAffinity, "None");
  const sac = f.obj(spec.sessionAffinityConfig, ["spec", "sessionAffinityConfig"]);
  let affinityTimeoutSeconds = 0;
  if (sessionAffinity === "ClientIP") {
    const cip = sac ? f.obj(sac.clientIP, ["spec", "sessionAffinityConfig", "clientIP"]) : undefined;
    const t = cip?.timeoutSeconds;
    affinityTimeoutSeconds =
      f.int(t, ["spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"], 1, 86400) ?? 10800;
  } else if (sac && Object.keys(sac).length > 0) {
    f.r.error(["spec", "sessionAffinityConfig"], 'must not be set when sessionAffinity is "None"');
  }

  // Traffic policies.
  const externallyAccessible =
    type === "NodePort" || type === "LoadBalancer" || (type === "ClusterIP" && externalIPs.length > 0);
  const etpRaw = f.str(spec.externalTrafficPolicy, ["spec", "externalTrafficPolicy"]);
  let externalTrafficPolicy: TrafficPolicy = "Cluster";
  if (etpRaw !== undefined && etpRaw !== "") {
    if (!externallyAccessible)
      f.r.error(["spec", "externalTrafficPolicy"], "may only be set for externally-accessible services");
    else externalTrafficPolicy = f.oneOf<TrafficPolicy>(etpRaw, ["spec", "externalTrafficPolicy"], POLICIES, "Cluster");
  }
  const internalTrafficPolicy = f.oneOf<TrafficPolicy>(
    spec.internalTrafficPolicy,
    ["spec", "internalTrafficPolicy"],
    POLICIES,
    "Cluster",
  );
  // Not read by the iptables rules: an unknown value is a warning, not a dropped Service (a
  // newer API server may add values; kube-proxy ignores those it does not know).
  const td = f.str(spec.trafficDistribution, ["spec", "trafficDistribution"]);
  if (td !== undefined && td !== "" && !(ENUMS.trafficDistribution as readonly string[]).includes(td))
    f.r.warn(["spec", "trafficDistribution"], `${q(td)} is not one of ${ENUMS.trafficDistribution.join(", ")}`);
  // Read only for LoadBalancer with ETP Local; elsewhere accepted and ignored (as kube-proxy).
  const healthCheckNodePort = f.int(spec.healthCheckNodePort, ["spec", "healthCheckNodePort"], 0, 65535) ?? 0;

  const publishNotReadyAddresses = f.bool(spec.publishNotReadyAddresses, ["spec", "publishNotReadyAddresses"]);
  const allocateLoadBalancerNodePorts = f.bool(spec.allocateLoadBalancerNodePorts, [
    "spec",
    "allocateLoadBalancerNodePorts",
  ]);
  if (allocateLoadBalancerNodePorts !== undefined && type !== "LoadBalancer")
    f.r.error(["spec", "allocateLoadBalancerNodePorts"], 'may only be used when type is "LoadBalancer"');

  let selector: Record<string, string> | undefined;
  if (spec.selector !== undefined && spec.selector !== null) {
    selector = f.labels(spec.selector, ["spec", "selector"]);
    if (Object.keys(selector).length === 0) selector = undefined;
  }

  if (failed) return undefined;
  return {
    namespace: meta.namespace,
    name: meta.name,
    labels: meta.labels,
    type,
    clusterIPs,
    ipFamilies: headless ? [] : ipFamilies,
    ports,
    selector,
    externalIPs,
    loadBalancerSourceRanges,
    loadBalancerIngress,
    sessionAffinity,
    affinityTimeoutSeconds,
    externalTrafficPolicy,
    internalTrafficPolicy,
    healthCheckNodePort,
    ...(ipFamilyPolicy ? { ipFamilyPolicy } : {}),
    ...(requestedIPFamilies.length > 0 ? { requestedIPFamilies } : {}),
    ...(publishNotReadyAddresses ? { publishNotReadyAddresses } : {}),
    ...(allocateLoadBalancerNodePorts === false ? { allocateLoadBalancerNodePorts } : {}),
    // Kept as text: the manifests loader parses it (probe.ts); the apiserver source ignores it.
    ...(typeof meta.annotations[PROBE_ANNOTATION] === "string"
      ? { readinessProbeAnnotation: meta.annotations[PROBE_ANNOTATION] }
      : {}),
  };
}

function withFailure(r: Reporter): { rep: Reporter; failed: () => boolean } {
  let failed = false;
  return {
    rep: {
      error: (p, m) => {
        failed = true;
        r.error(p, m);
      },
      warn: r.warn,
    },
    failed: () => failed,
  };
}

/** Topology hints: zone names are label values, node names are node names; no repeats. */
function hintNames(f: Fields, v: unknown, path: Path, of: "zone" | "node"): string[] {
  const list = f.list(v, path);
  const max = of === "zone" ? LIMITS.zoneHints : LIMITS.nodeHints;
  if (list.length > max) {
    f.r.error(path, `may hold at most ${max} entries`);
    return [];
  }
  const out: string[] = [];
  list.forEach((h, i) => {
    const o = f.item(h, [...path, i]);
    const name = o ? f.str(o.name, [...path, i, "name"]) : undefined;
    if (name === undefined || name === "") f.r.error([...path, i, "name"], "is required");
    else if (of === "zone" ? !isLabelValue(name) : !isDNS1123Subdomain(name))
      f.r.error([...path, i, "name"], `${q(name)} is not a valid ${of} name`);
    else if (out.includes(name)) f.r.error([...path, i, "name"], `duplicate ${of} ${q(name)}`);
    else out.push(name);
  });
  return out;
}

/**
 * The topology hints of an endpoint that has none: one shared, frozen empty list (two lists
 * per endpoint were 200k arrays, ~6 MB of heap, at 10k Services × 10). Read-only by contract.
 */
const NO_HINTS: string[] = Object.freeze([]) as unknown as string[];

/**
 * Node names seen valid, each kept once: an endpoint's nodeName is the same few strings over
 * and over (one per node), so the model holds one copy per node instead of one per endpoint
 * (100k strings at 10k × 10), and the regex runs once per name. Bounded: cleared at 10,000.
 */
const nodeNames = new Map<string, string>();

/** `s` as the shared copy when it is a valid node name, else undefined. */
function nodeNameOf(s: string): string | undefined {
  const known = nodeNames.get(s);
  if (known !== undefined) return known;
  if (!isDNS1123Subdomain(s)) return undefined;
  if (nodeNames.size >= 10_000) nodeNames.clear();
  nodeNames.set(s, s);
  return s;
}

/** An endpoint condition: a boolean, or absent. */
function condition(f: Fields, v: unknown, path: Path, key: string): boolean | undefined {
  return typeof v === "boolean" ? v : f.bool(v, [...path, "conditions", key]);
}

/** Validate and default a discovery.k8s.io/v1 EndpointSlice. */
export function validateEndpointSlice(obj: Record<string, unknown>, r: Reporter): EndpointSlice | undefined {
  const { rep, failed } = withFailure(r);
  const f = new Fields(rep);
  const meta = readMeta(f, obj.metadata, "subdomain", true);
  const addressType = f.oneOf(obj.addressType, ["addressType"], ENUMS.addressType, "IPv4");
  f.required(obj.addressType, ["addressType"]);
  const ports: EndpointPort[] = [];
  let rawPorts = f.list(obj.ports, ["ports"]);
  if (rawPorts.length > LIMITS.portsPerSlice) {
    f.r.error(["ports"], `may hold at most ${LIMITS.portsPerSlice} ports`);
    rawPorts = [];
  }
  const names = new Set<string>();
  rawPorts.forEach((raw, i) => {
    const p = f.item(raw, ["ports", i]);
    if (!p) return;
    // The API server defaults a missing name to "" and protocol to TCP.
    const name = f.str(p.name, ["ports", i, "name"]) ?? "";
    if (name !== "" && !isDNS1123Label(name)) f.r.error(["ports", i, "name"], `${q(name)} is not a valid port name`);
    if (names.has(name)) f.r.error(["ports", i, "name"], `duplicate port name ${q(name)}`);
    names.add(name);
    const port = f.int(p.port, ["ports", i, "port"], 0, 65535) ?? null;
    const protocol = f.oneOf<Protocol>(p.protocol, ["ports", i, "protocol"], PROTOCOLS, "TCP");
    ports.push({ name, port, protocol });
  });
  const endpoints: Endpoint[] = [];
  let rawEps = f.list(obj.endpoints, ["endpoints"]);
  // Past a limit the API server stops there; so does kip (an alias can make lists long).
  if (rawEps.length > LIMITS.endpointsPerSlice) {
    f.r.error(["endpoints"], `may hold at most ${LIMITS.endpointsPerSlice} endpoints`);
    rawEps = [];
  }
  // The hot loop of loading (100k endpoints at 10k Services × 10): field paths are made only
  // for a problem, well-typed values are taken as they are, and absent hints share one list.
  for (let i = 0; i < rawEps.length; i++) {
    const raw = rawEps[i];
    const path = ["endpoints", i];
    const e = isObject(raw) ? raw : f.item(raw, path);
    if (!e) continue;
    let addrs = Array.isArray(e.addresses) ? e.addresses : f.list(e.addresses, [...path, "addresses"]);
    if (addrs.length === 0 || addrs.length > LIMITS.addressesPerEndpoint) {
      f.r.error([...path, "addresses"], `must hold 1 to ${LIMITS.addressesPerEndpoint} addresses`);
      addrs = [];
    }
    const addresses: string[] = [];
    for (let j = 0; j < addrs.length; j++) {
      const a = addrs[j];
      const s = typeof a === "string" ? a : f.str(a, [...path, "addresses", j]);
      if (s === undefined) continue;
      if (addressType === "FQDN") {
        if (!isDNS1123Subdomain(s)) f.r.error([...path, "addresses", j], `${q(s)} is not a valid FQDN`);
        else addresses.push(s);
        continue;
      }
      const ip = parseIP(s);
      if (!ip) f.r.error([...path, "addresses", j], `${q(s)} is not a valid IP address`);
      else if (ip.family !== addressType)
        f.r.error([...path, "addresses", j], `${q(s)} is not an ${addressType} address`);
      else {
        const special = specialIPProblem(ip);
        if (special) f.r.error([...path, "addresses", j], `${q(s)} ${special}`);
        else addresses.push(ip.text);
      }
    }
    const c = (isObject(e.conditions) ? e.conditions : f.obj(e.conditions, [...path, "conditions"])) ?? {};
    const rawNode = e.nodeName;
    const nodeName = typeof rawNode === "string" ? nodeNameOf(rawNode) : f.str(rawNode, [...path, "nodeName"]);
    if (nodeName === undefined && typeof rawNode === "string")
      f.r.error([...path, "nodeName"], `${q(rawNode)} is not a valid node name`);
    const hints = e.hints === undefined ? undefined : f.obj(e.hints, [...path, "hints"]);
    endpoints.push({
      addresses,
      ready: condition(f, c.ready, path, "ready"),
      serving: condition(f, c.serving, path, "serving"),
      terminating: condition(f, c.terminating, path, "terminating"),
      nodeName,
      zoneHints:
        hints?.forZones == null ? NO_HINTS : hintNames(f, hints.forZones, [...path, "hints", "forZones"], "zone"),
      nodeHints:
        hints?.forNodes == null ? NO_HINTS : hintNames(f, hints.forNodes, [...path, "hints", "forNodes"], "node"),
    });
  }
  if (failed()) return undefined;
  return { namespace: meta.namespace, name: meta.name, labels: meta.labels, addressType, ports, endpoints };
}

/**
 * Validate a v1 Endpoints object and convert it as the EndpointSlice mirroring controller
 * would: one slice per subset and address family, `addresses` ready, `notReadyAddresses` not.
 */
export function validateEndpoints(obj: Record<string, unknown>, r: Reporter): EndpointSlice[] | undefined {
  const { rep, failed } = withFailure(r);
  const f = new Fields(rep);
  const meta = readMeta(f, obj.metadata, "subdomain", true);
  const slices: EndpointSlice[] = [];
  f.list(obj.subsets, ["subsets"]).forEach((raw, si) => {
    const s = f.item(raw, ["subsets", si]);
    if (!s) return;
    const ports: EndpointPort[] = [];
    f.list(s.ports, ["subsets", si, "ports"]).forEach((rp, pi) => {
      const path = ["subsets", si, "ports", pi];
      const p = f.item(rp, path);
      if (!p) return;
      const name = f.str(p.name, [...path, "name"]) ?? "";
      if (name !== "" && !isDNS1123Label(name)) f.r.error([...path, "name"], `${q(name)} is not a valid port name`);
      const port = f.required(p.port, [...path, "port"]) ? f.int(p.port, [...path, "port"], 1, 65535) : undefined;
      const protocol = f.oneOf<Protocol>(p.protocol, [...path, "protocol"], PROTOCOLS, "TCP");
      if (port !== undefined) ports.push({ name, port, protocol });
    });
    const byFamily: Record<IPFamily, Endpoint[]> = { IPv4: [], IPv6: [] };
    for (const [key, ready] of [
      ["addresses", true],
      ["notReadyAddresses", false],
    ] as const) {
      f.list(s[key], ["subsets", si, key]).forEach((ra, ai) => {
        const path = ["subsets", si, key, ai];
        const a = f.item(ra, path);
        if (!a) return;
        const ipText = f.required(a.ip, [...path, "ip"]) ? f.ip(a.ip, [...path, "ip"]) : undefined;
        const nodeName = f.str(a.nodeName, [...path, "nodeName"]);
        if (nodeName !== undefined && !isDNS1123Subdomain(nodeName))
          f.r.error([...path, "nodeName"], `${q(nodeName)} is not a valid node name`);
        const ip = ipText ? parseIP(ipText) : undefined;
        if (!ip) return;
        const special = specialIPProblem(ip);
        if (special) {
          f.r.error([...path, "ip"], `${q(a.ip)} ${special}`);
          return;
        }
        byFamily[ip.family].push({
          addresses: [ip.text],
          ready,
          serving: ready,
          nodeName,
          zoneHints: [],
          nodeHints: [],
        });
      });
    }
    for (const fam of ["IPv4", "IPv6"] as const) {
      if (byFamily[fam].length === 0) continue;
      slices.push({
        namespace: meta.namespace,
        name: `${meta.name}-mirror-${si}${fam === "IPv6" ? "-v6" : ""}`,
        labels: {
          "kubernetes.io/service-name": meta.name,
          "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io",
        },
        addressType: fam,
        ports,
        endpoints: byFamily[fam],
      });
    }
  });
  return failed() ? undefined : slices;
}

/** Validate a v1 Node (the fields kip reads: labels, podCIDRs, addresses). */
export function validateNode(obj: Record<string, unknown>, r: Reporter): Node | undefined {
  const { rep, failed } = withFailure(r);
  const f = new Fields(rep);
  const meta = readMeta(f, obj.metadata, "subdomain", false);
  const spec = f.obj(obj.spec, ["spec"]) ?? {};
  const status = f.obj(obj.status, ["status"]) ?? {};
  const podCIDRs: string[] = [];
  const rawCIDRs = f.list(spec.podCIDRs, ["spec", "podCIDRs"]);
  const list = rawCIDRs.length > 0 ? rawCIDRs : spec.podCIDR ? [spec.podCIDR] : [];
  list.forEach((v, i) => {
    const path = rawCIDRs.length > 0 ? ["spec", "podCIDRs", i] : ["spec", "podCIDR"];
    const s = f.str(v, path);
    const c = s === undefined ? undefined : parseCIDR(s);
    if (s !== undefined && !c) f.r.error(path, `${q(s)} is not a valid CIDR`);
    if (c) podCIDRs.push(c.text);
  });
  const addresses: Node["addresses"] = [];
  f.list(status.addresses, ["status", "addresses"]).forEach((ra, i) => {
    const a = f.item(ra, ["status", "addresses", i]);
    if (!a) return;
    const type = f.str(a.type, ["status", "addresses", i, "type"]) ?? "";
    const address = f.str(a.address, ["status", "addresses", i, "address"]) ?? "";
    // Hostname entries are names, not IPs; only IP-typed entries are parsed.
    if (type === "InternalIP" || type === "ExternalIP") {
      const ip = parseIP(address);
      if (!ip) f.r.error(["status", "addresses", i, "address"], `${q(address)} is not a valid IP address`);
      else addresses.push({ type, address: ip.text });
    }
  });
  const taints = f.list(spec.taints, ["spec", "taints"]);
  const m = (obj.metadata ?? {}) as Record<string, unknown>;
  const unschedulable =
    m.deletionTimestamp !== undefined || taints.some((t) => isObject(t) && t.key === "ToBeDeletedByClusterAutoscaler");
  if (failed()) return undefined;
  return { name: meta.name, labels: meta.labels, podCIDRs, addresses, unschedulable };
}

export { Fields };
