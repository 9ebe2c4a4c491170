/**
 * build(state, options) → the rules kube-proxy writes for one IP family (spec §4, §5, §7, §8).
 * Pure: no I/O. Services are visited in ServicePortName order and endpoints in `ip:port`
 * order, so output is deterministic (spec §16); otherwise the order is kube-proxy's.
 */
import { cidrContains, isLoopback, parseCIDR, parseIP } from "../model/ip.ts";
import { type ClusterState, type EndpointSlice, SERVICE_NAME_LABEL } from "../model/types.ts";
import { categorize } from "./categorize.ts";
import { isServiceChain } from "./chains.ts";
import { type EndpointInfo, endpointsByServicePort } from "./endpoints.ts";
import { markString, probability } from "./format.ts";
import { endpointChain } from "./names.ts";
import type { BuildOptions, LocalDetector } from "./options.ts";
import type { Ruleset, ServicePortSummary } from "./ruleset.ts";
import { type ServicePortInfo, servicePortKey, servicePorts } from "./serviceport.ts";

/** One service port's output: what the rule builder appends for it. */
export interface PortOutput {
  /** Filter rules (REJECT/DROP, firewall, health-check ports). */
  filter: string[];
  /** nat KUBE-SERVICES / KUBE-NODEPORTS rules. */
  entry: string[];
  /** The port's own nat chains and their rules (SVC/SVL/EXT/FW/SEP). */
  chains: string[];
  rules: string[];
  noLocal: { internal: number; external: number };
  /** All endpoints of the port, any condition (large-cluster accounting). */
  endpointCount: number;
  /** Undefined when the build was asked for no summaries (a sync loop). */
  summary?: ServicePortSummary;
}

/**
 * Rules of the last build, per service port, kept by a sync loop between syncs: a partial
 * sync then computes only the changed Services (kube-proxy recomputes all and discards most).
 */
export interface BuildCache {
  optsKey: string;
  largeCluster: boolean;
  ports: Map<string, PortOutput>;
  /** Every chain of every cached port (the build's activeNatChains). */
  active: Set<string>;
  /** servicePorts() of each Service object, for these options. */
  servicePorts: WeakMap<object, ServicePortInfo[]>;
}

export function newBuildCache(): BuildCache {
  return { optsKey: "", largeCluster: false, ports: new Map(), active: new Set(), servicePorts: new WeakMap() };
}

/** What a sync knows beyond the cluster state (lib/sync); render passes nothing. */
export interface SyncContext {
  /** Reused and refreshed by each build (partial syncs only read what did not change). */
  cache?: BuildCache;
  /** Services (`ns/name`) changed since the last sync; undefined = full sync. */
  changedServices?: ReadonlySet<string>;
  /**
   * nat chains present on the host (read from iptables-save, or what the sync loop knows it
   * wrote): those that are service chains and no longer active get `-X`.
   */
  existingNatChains?: Iterable<string>;
  /** In large-cluster mode stale chains are collected at most once per syncPeriod. */
  skipStaleChainCleanup?: boolean;
  /**
   * false: no per-port summaries (`Ruleset.services` is empty). A sync loop reads none, and at
   * 10k × 10 they hold 17 MB of the cache's 85 MB of heap (110k small objects) for nothing.
   */
  summaries?: boolean;
}

/** Above this many endpoints, SEP/SVC/SVL rules lose their comments (spec §8.3). */
export const LARGE_CLUSTER_THRESHOLD = 1000;

function detectorArgs(d: LocalDetector, local: boolean): string | undefined {
  const not = local ? "" : "! ";
  switch (d.mode) {
    case "ClusterCIDR":
    case "NodeCIDR":
      return `${not}-s ${d.cidr}`;
    case "BridgeInterface":
      return `${not}-i ${d.bridge}`;
    case "InterfaceNamePrefix":
      return `${not}-i ${d.prefix}+`;
    default:
      return undefined;
  }
}

const bySpn = (a: ServicePortInfo, b: ServicePortInfo) =>
  a.spn < b.spn ? -1 : a.spn > b.spn ? 1 : a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0;

/** Build the filter and nat rules for `opts.family`. */
export function buildRules(state: ClusterState, opts: BuildOptions, sync: SyncContext = {}): Ruleset {
  const family = opts.family;
  const mark = markString(opts.masqueradeBit);
  const ports: ServicePortInfo[] = [];
  const spOpts = { family, loadBalancerIPMode: opts.loadBalancerIPMode };
  const optsKey = JSON.stringify(opts);
  const known = sync.cache && sync.cache.optsKey === optsKey ? sync.cache.servicePorts : new WeakMap();
  for (const svc of state.services) {
    // The same Service object as last time (the tracker keeps unchanged ones) = the same ports.
    let list = known.get(svc);
    if (!list) known.set(svc, (list = servicePorts(svc, spOpts)));
    for (const sp of list) ports.push(sp);
  }
  if (sync.cache) sync.cache.servicePorts = known;
  ports.sort(bySpn);
  const topo = { nodeName: opts.nodeName, zone: opts.zone, preferSameNode: opts.preferSameTrafficDistribution };

  // With a cache from the previous sync and a set of changed Services, only those Services'
  // endpoints and rules are computed again; everything else comes from the cache.
  const cache = sync.cache;
  const changedSet = sync.changedServices;
  let reuse = cache !== undefined && changedSet !== undefined && cache.optsKey === optsKey;
  const portKey = (sp: ServicePortInfo) => `${sp.spn} ${sp.protocol}`;
  if (reuse && cache && changedSet)
    for (const sp of ports) if (!changedSet.has(sp.serviceKey) && !cache.ports.has(portKey(sp))) reuse = false;
  const sliceService = (sl: EndpointSlice) => `${sl.namespace}/${sl.labels[SERVICE_NAME_LABEL] ?? ""}`;
  let epsMap = endpointsByServicePort(
    reuse && changedSet ? state.endpointSlices.filter((sl) => changedSet.has(sliceService(sl))) : state.endpointSlices,
    { family, nodeName: opts.nodeName },
  );
  const fresh = (sp: ServicePortInfo) => !reuse || !changedSet || changedSet.has(sp.serviceKey);
  const countOf = (sp: ServicePortInfo) =>
    fresh(sp)
      ? (epsMap.get(servicePortKey(sp.spn, sp.protocol))?.length ?? 0)
      : (cache?.ports.get(portKey(sp))?.endpointCount ?? 0);
  let totalEndpoints = 0;
  for (const sp of ports) totalEndpoints += countOf(sp);
  const largeCluster = totalEndpoints > LARGE_CLUSTER_THRESHOLD;
  if (reuse && cache && cache.largeCluster !== largeCluster) {
    // Comments come and go with large-cluster mode: every rule changes.
    reuse = false;
    epsMap = endpointsByServicePort(state.endpointSlices, { family, nodeName: opts.nodeName });
  }
  const ipv4 = family === "IPv4";
  const lnp = opts.localhostNodePorts && ipv4;

  const filterChains = [
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-FORWARD",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-FIREWALL",
  ];
  if (lnp) filterChains.push("KUBE-FIREWALL");
  const filterRules: string[] = [];
  const natChains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"];
  const natRules: string[] = [
    `-A KUBE-POSTROUTING -m mark ! --mark ${mark}/${mark} -j RETURN`,
    `-A KUBE-POSTROUTING -j MARK --xor-mark ${mark}`,
    `-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE${opts.randomFully ? " --random-fully" : ""}`,
    `-A KUBE-MARK-MASQ -j MARK --or-mark ${mark}`,
  ];
  if (lnp)
    filterRules.push(
      '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    );

  // Without a reusable cache every chain is added below; with one, only changed ports' chains
  // move in and out of the set the cache keeps.
  const incremental = reuse && cache !== undefined;
  const activeNatChains = incremental && cache ? cache.active : new Set<string>();
  const services: ServicePortSummary[] = [];
  const wantSummaries = sync.summaries !== false;
  const noLocalEndpoints = { internal: 0, external: 0 };
  let skippedNatRules = 0;
  const notLocal = detectorArgs(opts.localDetector, false);
  const isLocal = detectorArgs(opts.localDetector, true);
  const nodeIP = parseIP(opts.nodeIP);

  /** One service port's rules (spec §5.2), into a fresh PortOutput. */
  const emit = (sp: ServicePortInfo, eps: EndpointInfo[]): PortOutput => {
    const o: PortOutput = {
      filter: [],
      entry: [],
      chains: [],
      rules: [],
      noLocal: { internal: 0, external: 0 },
      endpointCount: eps.length,
      summary: undefined,
    };
    const { clusterEps, localEps, reachableEps, hasEndpoints } = categorize(sp, eps, topo);
    const { svc, svl, ext, fw } = sp.chains;
    const P = `-m ${sp.proto} -p ${sp.proto}`;
    const spn = sp.spn;

    const usesSVC = clusterEps.length > 0 && sp.usesClusterEndpoints;
    const usesSVL = localEps.length > 0 && sp.usesLocalEndpoints;
    const internalChain = sp.internalPolicyLocal ? svl : svc;
    const externalChain = sp.externalPolicyLocal ? svl : svc;
    const hasInternal = hasEndpoints && !(sp.internalPolicyLocal && localEps.length === 0);
    const hasExternal = hasEndpoints && !(sp.externalPolicyLocal && localEps.length === 0);
    const usesEXT = hasEndpoints && sp.externallyAccessible;
    const usesFW = hasEndpoints && sp.loadBalancerVIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0;
    const lbTarget = usesFW ? fw : ext;

    let internalVerdict: "" | "REJECT" | "DROP" = "";
    let externalVerdict: "" | "REJECT" | "DROP" = "";
    let internalComment = "";
    let externalComment = "";
    if (!hasEndpoints) {
      internalVerdict = externalVerdict = "REJECT";
      internalComment = externalComment = `"${spn} has no endpoints"`;
    } else {
      if (!hasInternal) {
        internalVerdict = "DROP";
        internalComment = `"${spn} has no local endpoints"`;
        o.noLocal.internal++;
      }
      if (!hasExternal) {
        externalVerdict = "DROP";
        externalComment = `"${spn} has no local endpoints"`;
        o.noLocal.external++;
      }
    }

    // 1. Cluster IP.
    if (hasInternal)
      o.entry.push(
        `-A KUBE-SERVICES -m comment --comment "${spn} cluster IP" ${P} -d ${sp.clusterIP} --dport ${sp.port} -j ${internalChain}`,
      );
    else
      o.filter.push(
        `-A KUBE-SERVICES -m comment --comment ${internalComment} ${P} -d ${sp.clusterIP} --dport ${sp.port} -j ${internalVerdict}`,
      );
    // 2. External IPs.
    for (const x of sp.externalIPs) {
      if (hasEndpoints)
        o.entry.push(
          `-A KUBE-SERVICES -m comment --comment "${spn} external IP" ${P} -d ${x} --dport ${sp.port} -j ${ext}`,
        );
      if (!hasExternal)
        o.filter.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment ${externalComment} ${P} -d ${x} --dport ${sp.port} -j ${externalVerdict}`,
        );
    }
    // 3. Load balancer VIPs.
    for (const l of sp.loadBalancerVIPs) {
      if (hasEndpoints)
        o.entry.push(
          `-A KUBE-SERVICES -m comment --comment "${spn} loadbalancer IP" ${P} -d ${l} --dport ${sp.port} -j ${lbTarget}`,
        );
      if (usesFW)
        o.filter.push(
          `-A KUBE-PROXY-FIREWALL -m comment --comment "${spn} traffic not accepted by ${fw}" ${P} -d ${l} --dport ${sp.port} -j DROP`,
        );
    }
    // 4. No usable endpoints for external traffic to the VIPs.
    if (!hasExternal)
      for (const l of sp.loadBalancerVIPs)
        o.filter.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment ${externalComment} ${P} -d ${l} --dport ${sp.port} -j ${externalVerdict}`,
        );
    // 5. NodePort.
    if (sp.nodePort !== 0) {
      if (hasEndpoints) {
        if (lnp && opts.nfacct)
          o.entry.push(
            `-A KUBE-NODEPORTS -m comment --comment ${spn} ${P} -d 127.0.0.0/8 --dport ${sp.nodePort} -m nfacct --nfacct-name localhost_nps_accepted_pkts -j ${ext}`,
          );
        o.entry.push(`-A KUBE-NODEPORTS -m comment --comment ${spn} ${P} --dport ${sp.nodePort} -j ${ext}`);
      }
      if (!hasExternal)
        o.filter.push(
          `-A KUBE-EXTERNAL-SERVICES -m comment --comment ${externalComment} -m addrtype --dst-type LOCAL ${P} --dport ${sp.nodePort} -j ${externalVerdict}`,
        );
    }
    // 6. Health check NodePort (independent of endpoints).
    if (sp.healthCheckNodePort !== 0)
      o.filter.push(
        `-A KUBE-NODEPORTS -m comment --comment "${spn} health check node port" -m tcp -p tcp --dport ${sp.healthCheckNodePort} -j ACCEPT`,
      );

    // 7. (partial-sync switch: the caller decides whether chains and rules are written)
    const chains = o.chains;
    const rules = o.rules;
    const summaryChains: string[] = [];
    const declare = (c: string) => {
      chains.push(c);
      if (wantSummaries) summaryChains.push(c);
    };

    // 8. Masquerade off-cluster traffic to the cluster IP.
    if (hasInternal) {
      const base = `-A ${internalChain} -m comment --comment "${spn} cluster IP" ${P} -d ${sp.clusterIP} --dport ${sp.port}`;
      if (opts.masqueradeAll) rules.push(`${base} -j KUBE-MARK-MASQ`);
      else if (notLocal) rules.push(`${base} ${notLocal} -j KUBE-MARK-MASQ`);
    }
    // 9. EXT chain.
    if (usesEXT) {
      declare(ext);
      if (!sp.externalPolicyLocal) {
        rules.push(
          `-A ${ext} -m comment --comment "masquerade traffic for ${spn} external destinations" -j KUBE-MARK-MASQ`,
        );
      } else {
        if (isLocal)
          rules.push(
            `-A ${ext} -m comment --comment "pod traffic for ${spn} external destinations" ${isLocal} -j ${svc}`,
          );
        rules.push(
          `-A ${ext} -m comment --comment "masquerade LOCAL traffic for ${spn} external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`,
        );
        rules.push(
          `-A ${ext} -m comment --comment "route LOCAL traffic for ${spn} external destinations" -m addrtype --src-type LOCAL -j ${svc}`,
        );
      }
      if (hasExternal) rules.push(`-A ${ext} -j ${externalChain}`);
    }
    // 10. FW chain: load balancer source ranges.
    if (usesFW) {
      declare(fw);
      const C = `-m comment --comment "${spn} loadbalancer IP"`;
      for (const r of sp.loadBalancerSourceRanges) rules.push(`-A ${fw} ${C} -s ${r} -j ${ext}`);
      const fromNode =
        nodeIP !== undefined &&
        sp.loadBalancerSourceRanges.some((r) => {
          const c = parseCIDR(r);
          return c !== undefined && cidrContains(c, nodeIP);
        });
      if (fromNode) for (const l of sp.loadBalancerVIPs) rules.push(`-A ${fw} ${C} -s ${l} -j ${ext}`);
      rules.push(`-A ${fw} -m comment --comment "other traffic to ${spn} will be dropped by KUBE-PROXY-FIREWALL"`);
    }
    // 11–12. SVC and SVL dispatch.
    // Each endpoint's chain name is hashed once, though SVC, SVL and SEP rules all use it.
    const sepNames = new Map<string, string>();
    const sepName = (e: EndpointInfo) => {
      let n = sepNames.get(e.ipPort);
      if (n === undefined) sepNames.set(e.ipPort, (n = endpointChain(spn, sp.protocol, e.ipPort)));
      return n;
    };
    const dispatch = (chain: string, list: EndpointInfo[]) => {
      declare(chain);
      const sepOf = list.map(sepName);
      const cmt = (e: EndpointInfo) => (largeCluster ? "" : ` -m comment --comment "${spn} -> ${e.ipPort}"`);
      if (sp.affinitySeconds > 0)
        for (let i = 0; i < list.length; i++)
          rules.push(
            `-A ${chain}${cmt(list[i])} -m recent --name ${sepOf[i]} --rcheck --seconds ${sp.affinitySeconds} --reap -j ${sepOf[i]}`,
          );
      const n = list.length;
      for (let i = 0; i < n; i++)
        rules.push(
          i < n - 1
            ? `-A ${chain}${cmt(list[i])} -m statistic --mode random --probability ${probability(n - i)} -j ${sepOf[i]}`
            : `-A ${chain}${cmt(list[i])} -j ${sepOf[i]}`,
        );
    };
    if (usesSVC) dispatch(svc, clusterEps);
    if (usesSVL) dispatch(svl, localEps);
    // 13. SEP chains: hairpin masquerade and DNAT.
    const sepCmt = largeCluster ? "" : ` -m comment --comment ${spn}`;
    const summaryEndpoints: ServicePortSummary["endpoints"] = [];
    for (const e of reachableEps) {
      const sep = sepName(e);
      chains.push(sep);
      rules.push(`-A ${sep}${sepCmt} -s ${e.ip} -j KUBE-MARK-MASQ`);
      const affinity = sp.affinitySeconds > 0 ? ` -m recent --name ${sep} --set` : "";
      rules.push(`-A ${sep}${sepCmt}${affinity} ${P} -j DNAT --to-destination ${e.ipPort}`);
      if (wantSummaries)
        summaryEndpoints.push({
          address: e.ipPort,
          chain: sep,
          ready: e.ready,
          serving: e.serving,
          terminating: e.terminating,
          local: e.isLocal,
        });
    }

    if (wantSummaries)
      o.summary = {
        service: sp.serviceKey,
        servicePortName: spn,
        protocol: sp.protocol,
        port: sp.port,
        clusterIP: sp.clusterIP,
        nodePort: sp.nodePort,
        externalIPs: sp.externalIPs,
        loadBalancerIPs: sp.loadBalancerVIPs,
        chains: summaryChains,
        endpoints: summaryEndpoints,
        internalVerdict,
        externalVerdict,
      };
    return o;
  };

  const nextPorts = new Map<string, PortOutput>();
  for (const sp of ports) {
    const key = portKey(sp);
    const changed = !changedSet || changedSet.has(sp.serviceKey);
    const cached = reuse && !changed ? cache?.ports.get(key) : undefined;
    const o = cached ?? emit(sp, epsMap.get(servicePortKey(sp.spn, sp.protocol)) ?? []);
    nextPorts.set(key, o);
    if (incremental && o !== cached) {
      const before = cache?.ports.get(key);
      if (before) for (const c of before.chains) activeNatChains.delete(c);
    }
    for (const r of o.filter) filterRules.push(r);
    for (const r of o.entry) natRules.push(r);
    noLocalEndpoints.internal += o.noLocal.internal;
    noLocalEndpoints.external += o.noLocal.external;
    // Every chain the service could own is active, written or not, so GC never deletes it.
    if (!incremental || o !== cached) for (const c of o.chains) activeNatChains.add(c);
    // Partial sync: unchanged services keep their chains in the kernel (spec §5.2 step 7).
    if (changed) {
      for (const c of o.chains) natChains.push(c);
      for (const r of o.rules) natRules.push(r);
    } else skippedNatRules += o.rules.length;
    if (o.summary) services.push(o.summary);
  }
  if (cache) {
    // Ports that went away take their chains out of the active set.
    if (incremental)
      for (const [key, o] of cache.ports) if (!nextPorts.has(key)) for (const c of o.chains) activeNatChains.delete(c);
    cache.optsKey = optsKey;
    cache.largeCluster = largeCluster;
    cache.ports = nextPorts;
    cache.active = activeNatChains;
  }

  // Stale service chains left on the host by earlier syncs (spec §8.2), sorted (spec §16).
  let deletedNatChains: string[] = [];
  if (sync.existingNatChains && !sync.skipStaleChainCleanup) {
    const stale: string[] = [];
    for (const c of sync.existingNatChains) if (!activeNatChains.has(c) && isServiceChain(c)) stale.push(c);
    stale.sort();
    for (const c of stale) natChains.push(c);
    for (const c of stale) natRules.push(`-X ${c}`);
    deletedNatChains = stale;
  }

  // Tail: KUBE-SERVICES → KUBE-NODEPORTS, always last (spec §7.3).
  const tail =
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"';
  if (opts.nodePortCIDRs.length === 0) {
    if (!ipv4) natRules.push(`${tail} -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS`);
    else if (lnp) natRules.push(`${tail} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS`);
    else natRules.push(`${tail} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS`);
  } else {
    const cidrs = opts.nodePortCIDRs.map(parseCIDR).filter((c) => c !== undefined);
    const ips = new Set<string>();
    for (const text of opts.hostIPs) {
      const ip = parseIP(text);
      if (!ip || !cidrs.some((c) => cidrContains(c, ip))) continue;
      // Loopback NodePorts only for IPv4 with localhost NodePorts in effect.
      if (isLoopback(ip) && !(ipv4 && lnp)) continue;
      ips.add(ip.text);
    }
    for (const ip of [...ips].sort()) natRules.push(`${tail} -d ${ip} -j KUBE-NODEPORTS`);
  }

  // KUBE-FORWARD, always last in filter.
  if (!opts.conntrackTCPBeLiberal)
    filterRules.push(
      `-A KUBE-FORWARD -m conntrack --ctstate INVALID${opts.nfacct ? " -m nfacct --nfacct-name ct_state_invalid_dropped_pkts" : ""} -j DROP`,
    );
  filterRules.push(
    `-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${mark}/${mark} -j ACCEPT`,
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );

  return {
    family,
    filter: { chains: filterChains, rules: filterRules },
    nat: { chains: natChains, rules: natRules },
    services,
    activeNatChains,
    deletedNatChains,
    largeCluster,
    totalEndpoints,
    skippedNatRules,
    noLocalEndpoints,
  };
}
