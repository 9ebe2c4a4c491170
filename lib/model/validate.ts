/**
 * Validation and defaulting of the fields kip reads of Services and Nodes, as the API server
 * would do them (EndpointSlices and Endpoints: validate_endpoints.ts; the shared rules and
 * field access: fields.ts).
 */
import { quote } from "../util/quote.ts";
import {
  Fields,
  isDNS1123Label,
  isDNS1123Subdomain,
  isIANASvcName,
  isObject,
  type Reporter,
  readMeta,
  withFailure,
} from "./fields.ts";
import { type IPFamily, isLoopback, isUnspecified, parseCIDR, parseIP } from "./ip.ts";
import { ENUMS, LIMITS, PROBE_ANNOTATION } from "./rules.ts";
import type {
  IPFamilyPolicy,
  LoadBalancerIngress,
  Node,
  Protocol,
  Service,
  ServicePort,
  ServiceType,
  TrafficPolicy,
} from "./types.ts";

const q = quote;
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
