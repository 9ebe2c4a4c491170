/**
 * Proxy configuration (the KubeProxyConfiguration fields iptables mode reads, spec §15) and
 * its resolution into the per-family options the builder takes.
 */
import { cidrContains, type IPFamily, isLoopback, isUnspecified, parseCIDR, parseIP } from "../model/ip.ts";
import { type Node, ZONE_LABEL } from "../model/types.ts";

/**
 * How kube-proxy tells traffic from local pods (`--detect-local-mode`): by the cluster CIDR, the node's
 * pod CIDR, the bridge it arrives on, or an interface name prefix; None: it cannot.
 */
export type DetectLocalMode = "ClusterCIDR" | "NodeCIDR" | "BridgeInterface" | "InterfaceNamePrefix" | "None";

/** Node-wide settings, with kube-proxy's names and defaults. */
export interface ProxyConfig {
  /** Node name (`--hostname-override`); decides which endpoints are local. */
  hostname: string;
  /** `--node-ip`: at most one per family. Empty: from bindAddress, the Node, or loopback. */
  nodeIPs: string[];
  /** The config file's `bindAddress`: a specific address is the node IP when `nodeIPs` is empty (default `0.0.0.0`). */
  bindAddress: string;
  /** Comma-separated, at most one per family. */
  clusterCIDR: string;
  /** `--detect-local-mode`; "" = ClusterCIDR, the default. */
  detectLocalMode: DetectLocalMode | "";
  /** `--pod-bridge-interface` (BridgeInterface mode). */
  bridgeInterface: string;
  /** `--pod-interface-name-prefix` (InterfaceNamePrefix mode). */
  interfaceNamePrefix: string;
  /** `--masquerade-all`: masquerade every packet to a cluster IP. */
  masqueradeAll: boolean;
  /** `--iptables-masquerade-bit` (0–31, default 14): the mark bit for packets to masquerade. */
  masqueradeBit: number;
  /** `--iptables-localhost-nodeports` (default true): node ports also on 127.0.0.1 (IPv4). */
  localhostNodePorts: boolean;
  /** CIDRs, or `["primary"]`; empty = every local address. */
  nodePortAddresses: string[];
  /** The node's interface addresses as `IP/LEN` (what kube-proxy reads from the host). */
  hostAddresses: string[];
  /** iptables ≥ 1.6.2: MASQUERADE gets `--random-fully`. */
  randomFully: boolean;
  /** nfacct counters could be created: write the `-m nfacct` matches. */
  nfacct: boolean;
  /** sysctl nf_conntrack_tcp_be_liberal is on: no INVALID drop rule. */
  conntrackTCPBeLiberal: boolean;
  /** Feature gates that change rules (both default on, as in current kube-proxy). */
  featureGates: { PreferSameTrafficDistribution: boolean; LoadBalancerIPMode: boolean };
}

/** kube-proxy's defaults; set at least `hostname` (and `clusterCIDR` to detect local traffic). */
export function defaultConfig(): ProxyConfig {
  return {
    hostname: "",
    nodeIPs: [],
    bindAddress: "0.0.0.0",
    clusterCIDR: "",
    detectLocalMode: "",
    bridgeInterface: "",
    interfaceNamePrefix: "",
    masqueradeAll: false,
    masqueradeBit: 14,
    localhostNodePorts: true,
    nodePortAddresses: [],
    hostAddresses: [],
    randomFully: true,
    nfacct: false,
    conntrackTCPBeLiberal: false,
    featureGates: { PreferSameTrafficDistribution: true, LoadBalancerIPMode: true },
  };
}

/** How local traffic is told apart, resolved for one family: the CIDR, bridge or prefix the rules match. */
export type LocalDetector =
  | { mode: "ClusterCIDR" | "NodeCIDR"; cidr: string }
  | { mode: "BridgeInterface"; bridge: string }
  | { mode: "InterfaceNamePrefix"; prefix: string }
  | { mode: "None" };

/** Everything the builder needs, already resolved for one family. */
export interface BuildOptions {
  /** The family these rules are for. */
  family: IPFamily;
  /** This node's name: endpoints on it are local. */
  nodeName: string;
  /** This node's zone label (topology hints); "" when unknown. */
  zone: string;
  /** This family's node IP, for "allow from node" in KUBE-FW (loopback when unknown). */
  nodeIP: string;
  /** The mark bit for packets to masquerade. */
  masqueradeBit: number;
  /** Masquerade every packet to a cluster IP. */
  masqueradeAll: boolean;
  /** How local traffic is told apart. */
  localDetector: LocalDetector;
  /** This family's nodePortAddresses CIDRs; [] = match-all. */
  nodePortCIDRs: string[];
  /** This family's interface IPs (for non-match-all nodePortAddresses). */
  hostIPs: string[];
  /** localhostNodePorts effective (IPv4 and a CIDR covering 127.0.0.0). */
  localhostNodePorts: boolean;
  /** MASQUERADE gets `--random-fully`. */
  randomFully: boolean;
  /** Write `-m nfacct` matches (counters must exist first). */
  nfacct: boolean;
  /** No rule dropping INVALID packets (`nf_conntrack_tcp_be_liberal` is on). */
  conntrackTCPBeLiberal: boolean;
  /** Gate PreferSameTrafficDistribution: endpoints' node hints are honoured. */
  preferSameTrafficDistribution: boolean;
  /** Gate LoadBalancerIPMode: load-balancer ingress with ipMode Proxy gets no rules. */
  loadBalancerIPMode: boolean;
}

const LOOPBACK: Record<IPFamily, string> = { IPv4: "127.0.0.1", IPv6: "::1" };

/** Node IPs per family: --node-ip, else a specific bindAddress, else the Node's addresses. */
export function nodeIPsByFamily(config: ProxyConfig, node?: Node): Partial<Record<IPFamily, string>> {
  const out: Partial<Record<IPFamily, string>> = {};
  const take = (s: string) => {
    const ip = parseIP(s);
    if (ip && !isUnspecified(ip) && !out[ip.family]) out[ip.family] = ip.text;
  };
  for (const s of config.nodeIPs) take(s);
  if (Object.keys(out).length === 0) take(config.bindAddress);
  if (Object.keys(out).length === 0 && node) {
    for (const type of ["InternalIP", "ExternalIP"])
      for (const a of node.addresses) if (a.type === type) take(a.address);
  }
  return out;
}

/** nodePortAddresses for one family with `primary` expanded; [] means match-all. */
export function nodePortCIDRs(
  config: ProxyConfig,
  family: IPFamily,
  nodeIPs: Partial<Record<IPFamily, string>>,
): string[] {
  const list: string[] = [];
  for (const s of config.nodePortAddresses) {
    if (s === "primary") {
      for (const fam of ["IPv4", "IPv6"] as const) {
        const ip = nodeIPs[fam] ? parseIP(nodeIPs[fam]) : undefined;
        if (ip && !isLoopback(ip)) list.push(`${ip.text}/${fam === "IPv4" ? 32 : 128}`);
      }
    } else list.push(s);
  }
  const cidrs = list.map(parseCIDR).filter((c) => c !== undefined && c.family === family);
  if (cidrs.some((c) => c?.prefix === 0)) return [];
  return cidrs.map((c) => c?.text ?? "");
}

function detector(config: ProxyConfig, family: IPFamily, node?: Node): LocalDetector {
  const mode = config.detectLocalMode || "ClusterCIDR";
  const firstOfFamily = (list: string[]) =>
    list.map((s) => parseCIDR(s.trim())).find((c) => c !== undefined && c.family === family)?.text;
  switch (mode) {
    case "ClusterCIDR": {
      const cidr = firstOfFamily(config.clusterCIDR ? config.clusterCIDR.split(",") : []);
      return cidr ? { mode, cidr } : { mode: "None" };
    }
    case "NodeCIDR": {
      const cidr = firstOfFamily(node?.podCIDRs ?? []);
      return cidr ? { mode, cidr } : { mode: "None" };
    }
    case "BridgeInterface":
      return config.bridgeInterface ? { mode, bridge: config.bridgeInterface } : { mode: "None" };
    case "InterfaceNamePrefix":
      return config.interfaceNamePrefix ? { mode, prefix: config.interfaceNamePrefix } : { mode: "None" };
    default:
      return { mode: "None" };
  }
}

/** Resolve node-wide config plus the Node object into one family's build options. */
export function resolveBuildOptions(config: ProxyConfig, family: IPFamily, node?: Node): BuildOptions {
  const nodeIPs = nodeIPsByFamily(config, node);
  const npCIDRs = nodePortCIDRs(config, family, nodeIPs);
  const lo = parseIP("127.0.0.0");
  const localhostNodePorts =
    family === "IPv4" &&
    config.localhostNodePorts &&
    (npCIDRs.length === 0 ||
      npCIDRs.some((s) => {
        const c = parseCIDR(s);
        return c !== undefined && lo !== undefined && cidrContains(c, lo);
      }));
  let hostAddresses = config.hostAddresses;
  if (hostAddresses.length === 0) {
    // Default host facts: the node IPs plus loopback.
    hostAddresses = [
      ...Object.values(nodeIPs).map((ip) => `${ip}/${ip.includes(":") ? 128 : 32}`),
      "127.0.0.1/8",
      "::1/128",
    ];
  }
  const hostIPs = hostAddresses
    .map((s) => parseIP(s.split("/")[0]))
    .filter((ip) => ip !== undefined && ip.family === family)
    .map((ip) => ip?.text ?? "");
  return {
    family,
    nodeName: config.hostname,
    zone: node?.labels[ZONE_LABEL] ?? "",
    nodeIP: nodeIPs[family] ?? LOOPBACK[family],
    masqueradeBit: config.masqueradeBit,
    masqueradeAll: config.masqueradeAll,
    localDetector: detector(config, family, node),
    nodePortCIDRs: npCIDRs,
    hostIPs,
    localhostNodePorts,
    randomFully: config.randomFully,
    nfacct: config.nfacct,
    conntrackTCPBeLiberal: config.conntrackTCPBeLiberal,
    preferSameTrafficDistribution: config.featureGates.PreferSameTrafficDistribution,
    loadBalancerIPMode: config.featureGates.LoadBalancerIPMode,
  };
}
