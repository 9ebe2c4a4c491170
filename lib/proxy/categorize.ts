/**
 * Which endpoints a service port uses (spec §6): cluster, local and reachable sets, topology
 * hints and the terminating fallback.
 */
import type { EndpointInfo } from "./endpoints.ts";
import type { ServicePortInfo } from "./serviceport.ts";

export interface Topology {
  nodeName: string;
  /** This node's `topology.kubernetes.io/zone`, "" when absent. */
  zone: string;
  /** Gate PreferSameTrafficDistribution: node hints are honoured. */
  preferSameNode: boolean;
}

export interface Categorized {
  clusterEps: EndpointInfo[];
  localEps: EndpointInfo[];
  reachableEps: EndpointInfo[];
  hasEndpoints: boolean;
}

const servingTerminating = (e: EndpointInfo) => e.serving && e.terminating;

type Mode = "none" | "node" | "zone";

function topologyMode(eps: EndpointInfo[], topo: Topology): Mode {
  // Over the ready endpoints: every one hinted, and one hint for this node (zone).
  let ready = 0;
  let allNode = true;
  let anyNode = false;
  let allZone = true;
  let anyZone = false;
  for (const e of eps) {
    if (!e.ready) continue;
    ready++;
    if (e.nodeHints.length === 0) allNode = false;
    else if (!anyNode && e.nodeHints.includes(topo.nodeName)) anyNode = true;
    if (e.zoneHints.length === 0) allZone = false;
    else if (!anyZone && e.zoneHints.includes(topo.zone)) anyZone = true;
  }
  if (ready === 0) return "none";
  if (topo.preferSameNode && allNode && anyNode) return "node";
  if (allZone && anyZone) return "zone";
  return "none";
}

/** Every endpoint is ready: the list itself is the cluster set (no copy). */
function allReady(eps: EndpointInfo[]): boolean {
  for (const e of eps) if (!e.ready) return false;
  return true;
}

export function categorize(sp: ServicePortInfo, eps: EndpointInfo[], topo: Topology): Categorized {
  if (eps.length === 0) return { clusterEps: [], localEps: [], reachableEps: [], hasEndpoints: false };
  let clusterEps: EndpointInfo[] = [];
  let hasEndpoints = false;
  let mode: Mode = "none";
  if (sp.usesClusterEndpoints) {
    mode = topologyMode(eps, topo);
    clusterEps =
      mode === "none" && allReady(eps)
        ? eps
        : eps.filter(
            (e) =>
              e.ready &&
              (mode === "none" ||
                (mode === "node" ? e.nodeHints.includes(topo.nodeName) : e.zoneHints.includes(topo.zone))),
          );
    if (clusterEps.length === 0) clusterEps = eps.filter(servingTerminating);
    hasEndpoints = clusterEps.length > 0;
  }
  if (!sp.usesLocalEndpoints) return { clusterEps, localEps: [], reachableEps: clusterEps, hasEndpoints };

  if (eps.some((e) => e.ready || servingTerminating(e))) hasEndpoints = true;
  let localEps = eps.filter((e) => e.isLocal && e.ready);
  let useTerminating = false;
  if (localEps.length === 0) {
    localEps = eps.filter((e) => e.isLocal && servingTerminating(e));
    useTerminating = localEps.length > 0;
  }
  if (!sp.usesClusterEndpoints) return { clusterEps, localEps, reachableEps: localEps, hasEndpoints };
  if (mode === "none" && !useTerminating) return { clusterEps, localEps, reachableEps: clusterEps, hasEndpoints };
  // Upstream builds this union from a map (random order); kip sorts it by ip:port (spec §16).
  const union = new Map<string, EndpointInfo>();
  for (const e of clusterEps) union.set(e.ipPort, e);
  for (const e of localEps) union.set(e.ipPort, e);
  const reachableEps = [...union.values()].sort((a, b) => (a.ipPort < b.ipPort ? -1 : a.ipPort > b.ipPort ? 1 : 0));
  return { clusterEps, localEps, reachableEps, hasEndpoints };
}
