/**
 * One Service port's rules (spec §5.2), in the steps and order kube-proxy's proxier writes
 * them: cluster IP, external destinations (external IPs, load balancer VIPs, node ports), the
 * EXT chain, firewall, the SVC/SVL policy chains, endpoint chains. Each step reads one
 * PortContext, decided once per port, and appends to the port's PortOutput; build.ts merges
 * the outputs (or reuses cached ones) into the ruleset.
 */
import { cidrContains, type IP, parseCIDR, parseIP } from "../model/ip.ts";
import { type Categorized, categorize, type Topology } from "./categorize.ts";
import {
  destinationComment,
  endpointComment,
  externalComment,
  firewallDropComment,
  firewallFallThroughComment,
  healthCheckNodePortComment,
  KUBE_EXTERNAL_SERVICES,
  KUBE_MARK_MASQ,
  KUBE_NODEPORTS,
  KUBE_PROXY_FIREWALL,
  KUBE_SERVICES,
  noEndpointsComment,
} from "./chains.ts";
import type { EndpointInfo } from "./endpoints.ts";
import { probability } from "./format.ts";
import { endpointChainOf } from "./names.ts";
import type { BuildOptions, LocalDetector } from "./options.ts";
import type { ServicePortSummary } from "./ruleset.ts";
import type { ServicePortInfo } from "./serviceport.ts";

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

// ── What every port's steps read from the build ──────────────────────────────────────────

/** The build-wide facts a port's steps read. */
export interface BuildScope {
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

export function buildScope(opts: BuildOptions, largeCluster: boolean, wantSummaries: boolean): BuildScope {
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
  /** `spn + protocol`: what each endpoint's `ip:port` is appended to for its chain's hash. */
  sepBase: string;
}

/** One Service port's rules (spec §5.2), into a fresh PortOutput, in kube-proxy's order. */
export function emitPort(b: BuildScope, sp: ServicePortInfo, eps: EndpointInfo[]): PortOutput {
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
  const { clusterEps, localEps, reachableEps, hasEndpoints } = categorize(sp, eps, b.topo);
  const spn = sp.spn;
  const p: PortContext = {
    clusterEps,
    localEps,
    reachableEps,
    hasEndpoints,
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
    sepBase: spn + sp.proto,
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

/** The endpoint's KUBE-SEP chain, hashed once (SVC, SVL and SEP rules all use it). */
function sepName(p: PortContext, e: EndpointInfo): string {
  if (e.chain === "") e.chain = endpointChainOf(p.sepBase, e.ipPort);
  return e.chain;
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

// Each rule below is one template literal with as few parts as it can have: JSC makes a
// template of k parts (empty ones count) into a rope of ceil((k-1)/2) 32-byte cells, kept
// as long as the rule is. So what repeats is made once — `-A CHAIN` per chain, the
// statistic match per n, the SEP rules' middles per port — and per endpoint the SVC rule
// is 1 cell and the SEP rules 2 + 2, instead of 3 + 3 + 4 (heap after a 10k Services × 10
// endpoints build: 118 → 105 MB).

/** ` -m statistic --mode random --probability 1/n -j `, made once per n. */
const statisticJumps: string[] = [];
function statisticJump(n: number): string {
  let s = statisticJumps[n];
  if (s === undefined) statisticJumps[n] = s = ` -m statistic --mode random --probability ${probability(n)} -j `;
  return s;
}

const MASQ_JUMP = ` -j ${KUBE_MARK_MASQ}`;

/** Affinity first (a recent client goes back to its endpoint), then 1/n, 1/(n-1), … to each. */
function dispatch(p: PortContext, chain: string, list: EndpointInfo[]): void {
  const { sp, spn, b } = p;
  const rules = p.o.rules;
  declare(p, chain);
  const head = `-A ${chain}`;
  const cmt = (e: EndpointInfo) => ` -m comment --comment "${endpointComment(spn, e.ipPort)}"`;
  if (sp.affinitySeconds > 0)
    for (const e of list) {
      const sep = sepName(p, e);
      rules.push(
        `${head}${b.largeCluster ? "" : cmt(e)} -m recent --name ${sep} --rcheck --seconds ${sp.affinitySeconds} --reap -j ${sep}`,
      );
    }
  const n = list.length;
  for (let i = 0; i < n; i++) {
    const e = list[i];
    const jump = i < n - 1 ? statisticJump(n - i) : " -j ";
    rules.push(b.largeCluster ? `${head}${jump}${sepName(p, e)}` : `${head}${cmt(e)}${jump}${sepName(p, e)}`);
  }
}

/** SEP chains: hairpin masquerade, then DNAT to the endpoint (recording affinity). */
function endpointChains(p: PortContext): void {
  const { sp, spn, P, o, b } = p;
  const sepCmt = b.largeCluster ? "" : ` -m comment --comment ${spn}`;
  const affinity = sp.affinitySeconds > 0;
  const masq = `${sepCmt} -s `;
  const dnat = `${sepCmt} ${P} -j DNAT --to-destination `;
  for (const e of p.reachableEps) {
    const sep = sepName(p, e);
    o.chains.push(sep);
    o.rules.push(
      `-A ${sep}${masq}${e.ip}${MASQ_JUMP}`,
      affinity
        ? `-A ${sep}${sepCmt} -m recent --name ${sep} --set ${P} -j DNAT --to-destination ${e.ipPort}`
        : `-A ${sep}${dnat}${e.ipPort}`,
    );
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
