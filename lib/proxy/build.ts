/**
 * build(state, options) → the rules kube-proxy writes for one IP family (spec §4, §5, §7, §8).
 * Pure: no I/O. Services are visited in ServicePortName order and endpoints in `ip:port`
 * order, so output is deterministic (spec §16); otherwise the order is kube-proxy's.
 *
 * buildRules is a list of steps: the Service ports and what a sync's cache spares, the fixed
 * chains' rules, every port's rules, stale chains, and the rules that must come last. A port's
 * rules (emitPort) are written in kube-proxy's steps and order — cluster IP, external
 * destinations, the EXT chain, firewall, the SVC/SVL policy chains, endpoint chains — which
 * read one PortContext, decided once per port.
 */
import { cidrContains, type IP, isLoopback, parseCIDR, parseIP } from "../model/ip.ts";
import { type ClusterState, type EndpointSlice, SERVICE_NAME_LABEL } from "../model/types.ts";
import { type Categorized, categorize, type Topology } from "./categorize.ts";
import {
  destinationComment,
  endpointComment,
  externalComment,
  FIXED_CHAINS,
  FORWARD_COMMENT,
  FORWARD_CONNTRACK_COMMENT,
  firewallDropComment,
  firewallFallThroughComment,
  healthCheckNodePortComment,
  isServiceChain,
  KUBE_EXTERNAL_SERVICES,
  KUBE_FIREWALL,
  KUBE_FORWARD,
  KUBE_MARK_MASQ,
  KUBE_NODEPORTS,
  KUBE_POSTROUTING,
  KUBE_PROXY_FIREWALL,
  KUBE_SERVICES,
  LOCALNET_COMMENT,
  NODEPORTS_TAIL_COMMENT,
  noEndpointsComment,
  SNAT_COMMENT,
} from "./chains.ts";
import { type EndpointInfo, endpointsByServicePort } from "./endpoints.ts";
import { markString, probability } from "./format.ts";
import { endpointChain } from "./names.ts";
import type { BuildOptions, LocalDetector } from "./options.ts";
import type { Ruleset, ServicePortSummary, TableRules } from "./ruleset.ts";
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
  /**
   * false: no per-port summaries (`Ruleset.services` is empty). A sync loop reads none, and at
   * 10k × 10 they hold 17 MB of the cache's 85 MB of heap (110k small objects) for nothing.
   */
  summaries?: boolean;
}

/** Above this many endpoints, SEP/SVC/SVL rules lose their comments (spec §8.3). */
export const LARGE_CLUSTER_THRESHOLD = 1000;

/** Build the filter and nat rules for `opts.family`. */
export function buildRules(state: ClusterState, opts: BuildOptions, sync: SyncContext = {}): Ruleset {
  const optsKey = JSON.stringify(opts);
  const ports = servicePortsOf(state, opts, sync, optsKey);
  const plan = planBuild(state, opts, sync, ports, optsKey);
  const { cache, changedServices: changedSet } = sync;
  const { reuse, epsMap } = plan;
  const b = buildScope(opts, plan.largeCluster, sync.summaries !== false);
  const mark = markString(opts.masqueradeBit);
  const filter = fixedFilter(b);
  const nat = fixedNat(opts, mark);

  // Without a reusable cache every chain is added below; with one, only changed ports' chains
  // move in and out of the set the cache keeps.
  const incremental = reuse && cache !== undefined;
  const activeNatChains = incremental && cache ? cache.active : new Set<string>();
  const services: ServicePortSummary[] = [];
  const noLocalEndpoints = { internal: 0, external: 0 };
  let skippedNatRules = 0;
  const nextPorts = new Map<string, PortOutput>();
  for (const sp of ports) {
    const key = portKey(sp);
    const changed = !changedSet || changedSet.has(sp.serviceKey);
    const cached = reuse && !changed ? cache?.ports.get(key) : undefined;
    const o = cached ?? emitPort(b, sp, epsMap.get(servicePortKey(sp.spn, sp.protocol)) ?? []);
    nextPorts.set(key, o);
    if (incremental && o !== cached) {
      const before = cache?.ports.get(key);
      if (before) for (const c of before.chains) activeNatChains.delete(c);
    }
    for (const r of o.filter) filter.rules.push(r);
    for (const r of o.entry) nat.rules.push(r);
    noLocalEndpoints.internal += o.noLocal.internal;
    noLocalEndpoints.external += o.noLocal.external;
    // Every chain the service could own is active, written or not, so GC never deletes it.
    if (!incremental || o !== cached) for (const c of o.chains) activeNatChains.add(c);
    // Partial sync: unchanged services keep their chains in the kernel (spec §5.2 step 7).
    if (changed) {
      for (const c of o.chains) nat.chains.push(c);
      for (const r of o.rules) nat.rules.push(r);
    } else skippedNatRules += o.rules.length;
    if (o.summary) services.push(o.summary);
  }
  if (cache) {
    // Ports that went away take their chains out of the active set.
    if (incremental)
      for (const [key, o] of cache.ports) if (!nextPorts.has(key)) for (const c of o.chains) activeNatChains.delete(c);
    cache.optsKey = optsKey;
    cache.largeCluster = plan.largeCluster;
    cache.ports = nextPorts;
    cache.active = activeNatChains;
  }

  const deletedNatChains = deleteStaleChains(nat, activeNatChains, sync.existingNatChains);
  for (const r of nodePortsTail(b)) nat.rules.push(r);
  for (const r of forwardRules(opts, mark)) filter.rules.push(r);

  return {
    family: opts.family,
    filter,
    nat,
    services,
    activeNatChains,
    deletedNatChains,
    largeCluster: plan.largeCluster,
    totalEndpoints: plan.totalEndpoints,
    skippedNatRules,
    noLocalEndpoints,
  };
}

// ── Which ports, and what a sync's cache spares ──────────────────────────────────────────

const bySpn = (a: ServicePortInfo, b: ServicePortInfo) =>
  a.spn < b.spn ? -1 : a.spn > b.spn ? 1 : a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0;

const portKey = (sp: ServicePortInfo) => `${sp.spn} ${sp.protocol}`;

/** Every Service's ports in this family, in ServicePortName order. */
function servicePortsOf(state: ClusterState, opts: BuildOptions, sync: SyncContext, optsKey: string) {
  const ports: ServicePortInfo[] = [];
  const spOpts = { family: opts.family, loadBalancerIPMode: opts.loadBalancerIPMode };
  const known = sync.cache && sync.cache.optsKey === optsKey ? sync.cache.servicePorts : new WeakMap();
  for (const svc of state.services) {
    // The same Service object as last time (the tracker keeps unchanged ones) = the same ports.
    let list = known.get(svc);
    if (!list) known.set(svc, (list = servicePorts(svc, spOpts)));
    for (const sp of list) ports.push(sp);
  }
  if (sync.cache) sync.cache.servicePorts = known;
  return ports.sort(bySpn);
}

interface BuildPlan {
  /** Unchanged Services' outputs come from the cache. */
  reuse: boolean;
  /** Endpoints per servicePortKey: of the changed Services only when reusing. */
  epsMap: Map<string, EndpointInfo[]>;
  largeCluster: boolean;
  totalEndpoints: number;
}

/**
 * With a cache from the previous sync and a set of changed Services, only those Services'
 * endpoints and rules are computed again; everything else comes from the cache.
 */
function planBuild(
  state: ClusterState,
  opts: BuildOptions,
  sync: SyncContext,
  ports: ServicePortInfo[],
  optsKey: string,
): BuildPlan {
  const { cache, changedServices: changedSet } = sync;
  const epOpts = { family: opts.family, nodeName: opts.nodeName };
  let reuse = cache !== undefined && changedSet !== undefined && cache.optsKey === optsKey;
  if (reuse && cache && changedSet)
    for (const sp of ports) if (!changedSet.has(sp.serviceKey) && !cache.ports.has(portKey(sp))) reuse = false;
  const sliceService = (sl: EndpointSlice) => `${sl.namespace}/${sl.labels[SERVICE_NAME_LABEL] ?? ""}`;
  let epsMap = endpointsByServicePort(
    reuse && changedSet ? state.endpointSlices.filter((sl) => changedSet.has(sliceService(sl))) : state.endpointSlices,
    epOpts,
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
    epsMap = endpointsByServicePort(state.endpointSlices, epOpts);
  }
  return { reuse, epsMap, largeCluster, totalEndpoints };
}

// ── What every port's steps read from the build ──────────────────────────────────────────

/** The build-wide facts a port's steps read. */
interface BuildScope {
  opts: BuildOptions;
  topo: Topology;
  /** Localhost NodePorts in effect (IPv4 only). */
  lnp: boolean;
  /** Above LARGE_CLUSTER_THRESHOLD endpoints: SVC/SVL/SEP rules go without comments. */
  largeCluster: boolean;
  wantSummaries: boolean;
  /** The local detector's match for traffic from outside the pods, and from them. */
  notLocal: string | undefined;
  isLocal: string | undefined;
  nodeIP: IP | undefined;
}

function buildScope(opts: BuildOptions, largeCluster: boolean, wantSummaries: boolean): BuildScope {
  return {
    opts,
    topo: { nodeName: opts.nodeName, zone: opts.zone, preferSameNode: opts.preferSameTrafficDistribution },
    lnp: opts.localhostNodePorts && opts.family === "IPv4",
    largeCluster,
    wantSummaries,
    notLocal: detectorArgs(opts.localDetector, false),
    isLocal: detectorArgs(opts.localDetector, true),
    nodeIP: parseIP(opts.nodeIP),
  };
}

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

// ── The fixed chains ──────────────────────────────────────────────────────────────────────

/** filter's fixed chains, and kubelet's localnet rule when localhost NodePorts are on. */
function fixedFilter(b: BuildScope): TableRules {
  const chains: string[] = [...FIXED_CHAINS.filter];
  const rules: string[] = [];
  if (b.lnp) {
    chains.push(KUBE_FIREWALL);
    rules.push(
      `-A ${KUBE_FIREWALL} -m comment --comment "${LOCALNET_COMMENT}" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
    );
  }
  return { chains, rules };
}

/** nat's fixed chains: masquerade what KUBE-MARK-MASQ marked. */
function fixedNat(opts: BuildOptions, mark: string): TableRules {
  return {
    chains: [...FIXED_CHAINS.nat],
    rules: [
      `-A ${KUBE_POSTROUTING} -m mark ! --mark ${mark}/${mark} -j RETURN`,
      `-A ${KUBE_POSTROUTING} -j MARK --xor-mark ${mark}`,
      `-A ${KUBE_POSTROUTING} -m comment --comment "${SNAT_COMMENT}" -j MASQUERADE${opts.randomFully ? " --random-fully" : ""}`,
      `-A ${KUBE_MARK_MASQ} -j MARK --or-mark ${mark}`,
    ],
  };
}

/** Stale service chains left on the host by earlier syncs get `-X` (spec §8.2), sorted (spec §16). */
function deleteStaleChains(nat: TableRules, active: Set<string>, existing: Iterable<string> | undefined): string[] {
  if (!existing) return [];
  const stale: string[] = [];
  for (const c of existing) if (!active.has(c) && isServiceChain(c)) stale.push(c);
  stale.sort();
  for (const c of stale) nat.chains.push(c);
  for (const c of stale) nat.rules.push(`-X ${c}`);
  return stale;
}

/** KUBE-SERVICES → KUBE-NODEPORTS, always the chain's last rule (spec §7.3). */
function nodePortsTail(b: BuildScope): string[] {
  const { opts, lnp } = b;
  const ipv4 = opts.family === "IPv4";
  const tail = `-A ${KUBE_SERVICES} -m comment --comment "${NODEPORTS_TAIL_COMMENT}"`;
  if (opts.nodePortCIDRs.length === 0) {
    if (!ipv4) return [`${tail} -m addrtype --dst-type LOCAL ! -d ::1/128 -j ${KUBE_NODEPORTS}`];
    if (lnp) return [`${tail} -m addrtype --dst-type LOCAL -j ${KUBE_NODEPORTS}`];
    return [`${tail} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j ${KUBE_NODEPORTS}`];
  }
  const cidrs = opts.nodePortCIDRs.map(parseCIDR).filter((c) => c !== undefined);
  const ips = new Set<string>();
  for (const text of opts.hostIPs) {
    const ip = parseIP(text);
    if (!ip || !cidrs.some((c) => cidrContains(c, ip))) continue;
    // Loopback NodePorts only for IPv4 with localhost NodePorts in effect.
    if (isLoopback(ip) && !(ipv4 && lnp)) continue;
    ips.add(ip.text);
  }
  return [...ips].sort().map((ip) => `${tail} -d ${ip} -j ${KUBE_NODEPORTS}`);
}

/** KUBE-FORWARD, always last in filter. */
function forwardRules(opts: BuildOptions, mark: string): string[] {
  const rules: string[] = [];
  if (!opts.conntrackTCPBeLiberal)
    rules.push(
      `-A ${KUBE_FORWARD} -m conntrack --ctstate INVALID${opts.nfacct ? " -m nfacct --nfacct-name ct_state_invalid_dropped_pkts" : ""} -j DROP`,
    );
  rules.push(
    `-A ${KUBE_FORWARD} -m comment --comment "${FORWARD_COMMENT}" -m mark --mark ${mark}/${mark} -j ACCEPT`,
    `-A ${KUBE_FORWARD} -m comment --comment "${FORWARD_CONNTRACK_COMMENT}" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
  );
  return rules;
}

// ── One Service port ──────────────────────────────────────────────────────────────────────

type Verdict = "" | "REJECT" | "DROP";

/** One Service port's facts, decided once and read by every step; `o` grows step by step. */
interface PortContext extends Categorized {
  b: BuildScope;
  sp: ServicePortInfo;
  spn: string;
  /** `-m tcp -p tcp`: the protocol match of every destination rule. */
  P: string;
  /** Traffic to the cluster IP has an endpoint (under a Local policy, a local one). */
  hasInternal: boolean;
  /** Traffic to external destinations has one. */
  hasExternal: boolean;
  /** SVC or SVL, per internalTrafficPolicy / externalTrafficPolicy. */
  internalChain: string;
  externalChain: string;
  /** The EXT chain is written: there are endpoints and external destinations. */
  usesEXT: boolean;
  /** The FW chain is written: LB VIPs with loadBalancerSourceRanges. */
  usesFW: boolean;
  /** REJECT (no endpoints) or DROP (no local ones) where !hasInternal / !hasExternal, and its comment. */
  internalVerdict: Verdict;
  internalComment: string;
  externalVerdict: Verdict;
  externalComment: string;
  o: PortOutput;
  /** The port's chains for its summary (SVC/SVL/EXT/FW), when summaries are wanted. */
  summaryChains: string[];
  summaryEndpoints: ServicePortSummary["endpoints"];
  /** Each endpoint's chain name, hashed once (SVC, SVL and SEP rules all use it). */
  sepNames: Map<string, string>;
}

/** One Service port's rules (spec §5.2), into a fresh PortOutput, in kube-proxy's order. */
function emitPort(b: BuildScope, sp: ServicePortInfo, eps: EndpointInfo[]): PortOutput {
  const p = portContext(b, sp, eps);
  clusterIPRules(p);
  externalIPRules(p);
  loadBalancerRules(p);
  nodePortRules(p);
  externalChain(p);
  firewallChain(p);
  policyChains(p);
  endpointChains(p);
  if (b.wantSummaries) p.o.summary = portSummary(p);
  return p.o;
}

function portContext(b: BuildScope, sp: ServicePortInfo, eps: EndpointInfo[]): PortContext {
  const categorized = categorize(sp, eps, b.topo);
  const { hasEndpoints, localEps } = categorized;
  const spn = sp.spn;
  const p: PortContext = {
    ...categorized,
    b,
    sp,
    spn,
    P: `-m ${sp.proto} -p ${sp.proto}`,
    hasInternal: hasEndpoints && !(sp.internalPolicyLocal && localEps.length === 0),
    hasExternal: hasEndpoints && !(sp.externalPolicyLocal && localEps.length === 0),
    internalChain: sp.internalPolicyLocal ? sp.chains.svl : sp.chains.svc,
    externalChain: sp.externalPolicyLocal ? sp.chains.svl : sp.chains.svc,
    usesEXT: hasEndpoints && sp.externallyAccessible,
    usesFW: hasEndpoints && sp.loadBalancerVIPs.length > 0 && sp.loadBalancerSourceRanges.length > 0,
    internalVerdict: "",
    internalComment: "",
    externalVerdict: "",
    externalComment: "",
    o: {
      filter: [],
      entry: [],
      chains: [],
      rules: [],
      noLocal: { internal: 0, external: 0 },
      endpointCount: eps.length,
      summary: undefined,
    },
    summaryChains: [],
    summaryEndpoints: [],
    sepNames: new Map(),
  };
  if (!hasEndpoints) {
    p.internalVerdict = p.externalVerdict = "REJECT";
    p.internalComment = p.externalComment = noEndpointsComment(spn, false);
    return p;
  }
  if (!p.hasInternal) {
    p.internalVerdict = "DROP";
    p.internalComment = noEndpointsComment(spn, true);
    p.o.noLocal.internal++;
  }
  if (!p.hasExternal) {
    p.externalVerdict = "DROP";
    p.externalComment = noEndpointsComment(spn, true);
    p.o.noLocal.external++;
  }
  return p;
}

/** A chain of the port's own: declared, and named in its summary. */
function declare(p: PortContext, chain: string): void {
  p.o.chains.push(chain);
  if (p.b.wantSummaries) p.summaryChains.push(chain);
}

function sepName(p: PortContext, e: EndpointInfo): string {
  let n = p.sepNames.get(e.ipPort);
  if (n === undefined) p.sepNames.set(e.ipPort, (n = endpointChain(p.spn, p.sp.protocol, e.ipPort)));
  return n;
}

/**
 * Cluster IP: KUBE-SERVICES jumps to the internal policy's chain, where off-cluster sources
 * are marked for masquerade first; without endpoints, filter rejects or drops.
 */
function clusterIPRules(p: PortContext): void {
  const { sp, spn, P, o, b } = p;
  const comment = destinationComment(spn, "cluster IP");
  if (!p.hasInternal) {
    o.filter.push(
      `-A ${KUBE_SERVICES} -m comment --comment "${p.internalComment}" ${P} -d ${sp.clusterIP} --dport ${sp.port} -j ${p.internalVerdict}`,
    );
    return;
  }
  o.entry.push(
    `-A ${KUBE_SERVICES} -m comment --comment "${comment}" ${P} -d ${sp.clusterIP} --dport ${sp.port} -j ${p.internalChain}`,
  );
  const base = `-A ${p.internalChain} -m comment --comment "${comment}" ${P} -d ${sp.clusterIP} --dport ${sp.port}`;
  if (b.opts.masqueradeAll) o.rules.push(`${base} -j ${KUBE_MARK_MASQ}`);
  else if (b.notLocal) o.rules.push(`${base} ${b.notLocal} -j ${KUBE_MARK_MASQ}`);
}

/** External IPs: KUBE-SERVICES jumps to EXT; without usable endpoints, filter rejects or drops. */
function externalIPRules(p: PortContext): void {
  const { sp, spn, P, o } = p;
  for (const x of sp.externalIPs) {
    if (p.hasEndpoints)
      o.entry.push(
        `-A ${KUBE_SERVICES} -m comment --comment "${destinationComment(spn, "external IP")}" ${P} -d ${x} --dport ${sp.port} -j ${sp.chains.ext}`,
      );
    if (!p.hasExternal)
      o.filter.push(
        `-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment "${p.externalComment}" ${P} -d ${x} --dport ${sp.port} -j ${p.externalVerdict}`,
      );
  }
}

/**
 * Load balancer VIPs: KUBE-SERVICES jumps to FW (source ranges) or EXT; KUBE-PROXY-FIREWALL
 * drops what FW did not accept; without usable endpoints, filter rejects or drops.
 */
function loadBalancerRules(p: PortContext): void {
  const { sp, spn, P, o } = p;
  const { ext, fw } = sp.chains;
  const target = p.usesFW ? fw : ext;
  for (const l of sp.loadBalancerVIPs) {
    if (p.hasEndpoints)
      o.entry.push(
        `-A ${KUBE_SERVICES} -m comment --comment "${destinationComment(spn, "loadbalancer IP")}" ${P} -d ${l} --dport ${sp.port} -j ${target}`,
      );
    if (p.usesFW)
      o.filter.push(
        `-A ${KUBE_PROXY_FIREWALL} -m comment --comment "${firewallDropComment(spn, fw)}" ${P} -d ${l} --dport ${sp.port} -j DROP`,
      );
  }
  if (!p.hasExternal)
    for (const l of sp.loadBalancerVIPs)
      o.filter.push(
        `-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment "${p.externalComment}" ${P} -d ${l} --dport ${sp.port} -j ${p.externalVerdict}`,
      );
}

/** NodePort: KUBE-NODEPORTS jumps to EXT (or filter rejects/drops); the health check port is accepted. */
function nodePortRules(p: PortContext): void {
  const { sp, spn, P, o, b } = p;
  if (sp.nodePort !== 0) {
    if (p.hasEndpoints) {
      if (b.lnp && b.opts.nfacct)
        o.entry.push(
          `-A ${KUBE_NODEPORTS} -m comment --comment ${spn} ${P} -d 127.0.0.0/8 --dport ${sp.nodePort} -m nfacct --nfacct-name localhost_nps_accepted_pkts -j ${sp.chains.ext}`,
        );
      o.entry.push(`-A ${KUBE_NODEPORTS} -m comment --comment ${spn} ${P} --dport ${sp.nodePort} -j ${sp.chains.ext}`);
    }
    if (!p.hasExternal)
      o.filter.push(
        `-A ${KUBE_EXTERNAL_SERVICES} -m comment --comment "${p.externalComment}" -m addrtype --dst-type LOCAL ${P} --dport ${sp.nodePort} -j ${p.externalVerdict}`,
      );
  }
  // Independent of endpoints: the health check answers "no local endpoints" itself.
  if (sp.healthCheckNodePort !== 0)
    o.filter.push(
      `-A ${KUBE_NODEPORTS} -m comment --comment "${healthCheckNodePortComment(spn)}" -m tcp -p tcp --dport ${sp.healthCheckNodePort} -j ACCEPT`,
    );
}

/**
 * EXT chain, externalTrafficPolicy's: Cluster masquerades everything; Local short-circuits
 * pods and the node itself to SVC (masquerading the node's own traffic) and keeps the rest
 * local.
 */
function externalChain(p: PortContext): void {
  if (!p.usesEXT) return;
  const { sp, spn, o, b } = p;
  const { ext, svc } = sp.chains;
  const rules = o.rules;
  declare(p, ext);
  if (!sp.externalPolicyLocal) {
    rules.push(`-A ${ext} -m comment --comment "${externalComment(spn, "masquerade")}" -j ${KUBE_MARK_MASQ}`);
  } else {
    if (b.isLocal) rules.push(`-A ${ext} -m comment --comment "${externalComment(spn, "pod")}" ${b.isLocal} -j ${svc}`);
    rules.push(
      `-A ${ext} -m comment --comment "${externalComment(spn, "masquerade LOCAL")}" -m addrtype --src-type LOCAL -j ${KUBE_MARK_MASQ}`,
    );
    rules.push(
      `-A ${ext} -m comment --comment "${externalComment(spn, "route LOCAL")}" -m addrtype --src-type LOCAL -j ${svc}`,
    );
  }
  if (p.hasExternal) rules.push(`-A ${ext} -j ${p.externalChain}`);
}

/**
 * FW chain: loadBalancerSourceRanges (and the VIPs themselves when a range holds the node's
 * IP) go on to EXT; the rest falls through to KUBE-PROXY-FIREWALL's drop.
 */
function firewallChain(p: PortContext): void {
  if (!p.usesFW) return;
  const { sp, spn, o, b } = p;
  const { ext, fw } = sp.chains;
  const rules = o.rules;
  declare(p, fw);
  const C = `-m comment --comment "${destinationComment(spn, "loadbalancer IP")}"`;
  for (const r of sp.loadBalancerSourceRanges) rules.push(`-A ${fw} ${C} -s ${r} -j ${ext}`);
  const nodeIP = b.nodeIP;
  const fromNode =
    nodeIP !== undefined &&
    sp.loadBalancerSourceRanges.some((r) => {
      const c = parseCIDR(r);
      return c !== undefined && cidrContains(c, nodeIP);
    });
  if (fromNode) for (const l of sp.loadBalancerVIPs) rules.push(`-A ${fw} ${C} -s ${l} -j ${ext}`);
  rules.push(`-A ${fw} -m comment --comment "${firewallFallThroughComment(spn)}"`);
}

/** SVC (cluster policy, all endpoints) and SVL (local policy, this node's): pick an endpoint. */
function policyChains(p: PortContext): void {
  const { sp } = p;
  if (p.clusterEps.length > 0 && sp.usesClusterEndpoints) dispatch(p, sp.chains.svc, p.clusterEps);
  if (p.localEps.length > 0 && sp.usesLocalEndpoints) dispatch(p, sp.chains.svl, p.localEps);
}

/** Affinity first (a recent client goes back to its endpoint), then 1/n, 1/(n-1), … to each. */
function dispatch(p: PortContext, chain: string, list: EndpointInfo[]): void {
  const { sp, spn, b } = p;
  const rules = p.o.rules;
  declare(p, chain);
  const sepOf = list.map((e) => sepName(p, e));
  const cmt = (e: EndpointInfo) => (b.largeCluster ? "" : ` -m comment --comment "${endpointComment(spn, e.ipPort)}"`);
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
}

/** SEP chains: hairpin masquerade, then DNAT to the endpoint (recording affinity). */
function endpointChains(p: PortContext): void {
  const { sp, spn, P, o, b } = p;
  const sepCmt = b.largeCluster ? "" : ` -m comment --comment ${spn}`;
  for (const e of p.reachableEps) {
    const sep = sepName(p, e);
    o.chains.push(sep);
    o.rules.push(`-A ${sep}${sepCmt} -s ${e.ip} -j ${KUBE_MARK_MASQ}`);
    const affinity = sp.affinitySeconds > 0 ? ` -m recent --name ${sep} --set` : "";
    o.rules.push(`-A ${sep}${sepCmt}${affinity} ${P} -j DNAT --to-destination ${e.ipPort}`);
    if (b.wantSummaries)
      p.summaryEndpoints.push({
        address: e.ipPort,
        chain: sep,
        ready: e.ready,
        serving: e.serving,
        terminating: e.terminating,
        local: e.isLocal,
      });
  }
}

function portSummary(p: PortContext): ServicePortSummary {
  const { sp } = p;
  return {
    service: sp.serviceKey,
    servicePortName: p.spn,
    protocol: sp.protocol,
    port: sp.port,
    clusterIP: sp.clusterIP,
    nodePort: sp.nodePort,
    externalIPs: sp.externalIPs,
    loadBalancerIPs: sp.loadBalancerVIPs,
    chains: p.summaryChains,
    endpoints: p.summaryEndpoints,
    internalVerdict: p.internalVerdict,
    externalVerdict: p.externalVerdict,
  };
}
