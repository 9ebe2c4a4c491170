/**
 * build(state, options) → the rules kube-proxy writes for one IP family (spec §4, §5, §7, §8).
 * Pure: no I/O. Services are visited in ServicePortName order and endpoints in `ip:port`
 * order, so output is deterministic (spec §16); otherwise the order is kube-proxy's.
 *
 * buildRules is a list of steps: the Service ports and what a sync's cache spares, the fixed
 * chains' rules, every port's rules (port_rules.ts, or the cache's), stale chains, and the
 * rules that must come last.
 */
import { cidrContains, isLoopback, parseCIDR, parseIP } from "../model/ip.ts";
import { type ClusterState, type EndpointSlice, SERVICE_NAME_LABEL } from "../model/types.ts";
import {
  FIXED_CHAINS,
  FORWARD_COMMENT,
  FORWARD_CONNTRACK_COMMENT,
  isServiceChain,
  KUBE_FIREWALL,
  KUBE_FORWARD,
  KUBE_MARK_MASQ,
  KUBE_NODEPORTS,
  KUBE_POSTROUTING,
  KUBE_SERVICES,
  LOCALNET_COMMENT,
  NODEPORTS_TAIL_COMMENT,
  SNAT_COMMENT,
} from "./chains.ts";
import { type EndpointInfo, endpointsByServicePort } from "./endpoints.ts";
import { markString } from "./format.ts";
import type { BuildOptions } from "./options.ts";
import { type BuildScope, buildScope, emitPort, type PortOutput } from "./port_rules.ts";
import type { Ruleset, ServicePortSummary, TableRules } from "./ruleset.ts";
import { type ServicePortInfo, servicePorts } from "./serviceport.ts";

export type { PortOutput };

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
  // A full build over a sync's cache: nothing of the last build is read, so let it go now
  // rather than hold both builds at once (~70 MB of rules at 10k × 10).
  if (cache && !reuse) {
    cache.ports = new Map();
    cache.active = new Set();
  }
  const b = buildScope(opts, plan.largeCluster, sync.summaries !== false);
  const mark = markString(opts.masqueradeBit);
  const filter = fixedFilter(b);
  const nat = fixedNat(opts, mark);

  // Without a reusable cache every chain is added below; with one, only changed ports' chains
  // move in and out of the set the cache keeps. A render (a full build, no cache, no chains on
  // a host to collect) reads no such set: it is made from the nat chains only if asked for.
  const incremental = reuse && cache !== undefined;
  const tracksActive = cache !== undefined || changedSet !== undefined || sync.existingNatChains !== undefined;
  const activeNatChains = incremental && cache ? cache.active : new Set<string>();
  const services: ServicePortSummary[] = [];
  const noLocalEndpoints = { internal: 0, external: 0 };
  let skippedNatRules = 0;
  const nextPorts = new Map<string, PortOutput>();
  for (const sp of ports) {
    const changed = !changedSet || changedSet.has(sp.serviceKey);
    const cached = reuse && !changed ? cache?.ports.get(sp.key) : undefined;
    const o = cached ?? emitPort(b, sp, epsMap.get(sp.key) ?? []);
    if (cache) nextPorts.set(sp.key, o);
    if (incremental && o !== cached) {
      const before = cache?.ports.get(sp.key);
      if (before) for (const c of before.chains) activeNatChains.delete(c);
    }
    for (const r of o.filter) filter.rules.push(r);
    for (const r of o.entry) nat.rules.push(r);
    noLocalEndpoints.internal += o.noLocal.internal;
    noLocalEndpoints.external += o.noLocal.external;
    // Every chain the service could own is active, written or not, so GC never deletes it.
    if (tracksActive && (!incremental || o !== cached)) for (const c of o.chains) activeNatChains.add(c);
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

  // Not tracked: a full build, where every port wrote its chains, after the fixed ones.
  let active: Set<string> | undefined = tracksActive ? activeNatChains : undefined;
  const fixedNatChains = FIXED_CHAINS.nat.length;
  return {
    family: opts.family,
    filter,
    nat,
    services,
    get activeNatChains() {
      active ??= new Set(nat.chains.slice(fixedNatChains));
      return active;
    },
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

/** Every Service's ports in this family, in ServicePortName order. */
function servicePortsOf(state: ClusterState, opts: BuildOptions, sync: SyncContext, optsKey: string) {
  const ports: ServicePortInfo[] = [];
  const spOpts = { family: opts.family, loadBalancerIPMode: opts.loadBalancerIPMode };
  const known =
    sync.cache && sync.cache.optsKey === optsKey ? sync.cache.servicePorts : new WeakMap<object, ServicePortInfo[]>();
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
    for (const sp of ports) if (!changedSet.has(sp.serviceKey) && !cache.ports.has(sp.key)) reuse = false;
  const sliceService = (sl: EndpointSlice) => `${sl.namespace}/${sl.labels[SERVICE_NAME_LABEL] ?? ""}`;
  let epsMap = endpointsByServicePort(
    reuse && changedSet ? state.endpointSlices.filter((sl) => changedSet.has(sliceService(sl))) : state.endpointSlices,
    epOpts,
  );
  const fresh = (sp: ServicePortInfo) => !reuse || !changedSet || changedSet.has(sp.serviceKey);
  const countOf = (sp: ServicePortInfo) =>
    fresh(sp) ? (epsMap.get(sp.key)?.length ?? 0) : (cache?.ports.get(sp.key)?.endpointCount ?? 0);
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
