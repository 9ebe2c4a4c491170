/**
 * kip as a library: Kubernetes Services and EndpointSlices in, the iptables rules kube-proxy
 * (iptables mode) writes out, for one IP family at a time. Pure functions, no I/O: the caller
 * reads the files and runs iptables.
 *
 * The pipelines, each what a `kip` command does:
 *
 * - **render**: manifest texts → {@link renderManifests} (or {@link loadManifests},
 *   {@link resolveBuildOptions}, {@link buildRules}) → a {@link Ruleset} → {@link toRestore},
 *   {@link toJSON}, {@link summarize}.
 * - **explain**: rules as a dump ({@link dumpOfTables} of a ruleset, or {@link parseSave} of
 *   iptables-save text) → {@link explain} a packet: every destination with its probability.
 *   Over rendered rules, explain adds kube-proxy's jump rules ({@link JUMP_RULES}) itself.
 * - **diff**: a node's iptables-save text and a ruleset → {@link compareDumps} → drift per chain.
 * - **cleanup**: a node's iptables-save text → {@link planCleanup} → iptables-restore inputs.
 * - **review**: two renders → {@link reviewChanges} → what became reachable from outside.
 *
 * @example Render a Service, then follow a packet through its rules
 * ```ts
 * import { defaultConfig, dumpOfTables, explain, type Packet, renderManifests } from "./mod.ts";
 *
 * const manifest = `
 * apiVersion: v1
 * kind: Service
 * metadata: {name: web, namespace: default}
 * spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}
 * ---
 * apiVersion: discovery.k8s.io/v1
 * kind: EndpointSlice
 * metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
 * addressType: IPv4
 * ports: [{port: 8080}]
 * endpoints: [{addresses: [10.244.1.5]}]
 * `;
 * const config = { ...defaultConfig(), hostname: "node1", clusterCIDR: "10.244.0.0/16" };
 * const result = renderManifests([{ file: "web.yaml", text: manifest }], config, { family: "IPv4" });
 * console.log(result.restore); // *filter … COMMIT *nat … -j DNAT --to-destination 10.244.1.5:8080 … COMMIT
 *
 * // Where a pod's connection to the cluster IP goes (explain adds kube-proxy's jump rules).
 * if (!result.ruleset) throw new Error(result.errors.map((e) => `${e.file}:${e.line}: ${e.message}`).join("\n"));
 * const { filter, nat } = result.ruleset;
 * const packet: Packet = { proto: "tcp", src: "10.244.2.9", dst: "10.96.0.20", dport: 80, from: "pod" };
 * const host = { localAddresses: ["192.168.0.10"] };
 * console.log(explain(dumpOfTables({ filter, nat }), packet, host).verdict); // DNAT to 10.244.1.5:8080 (default/web)
 * ```
 * @module
 */

import { compileTables as compileRuleTables, explain as explainRules, type RuleTables } from "./lib/explain/explain.ts";
import type { Explanation, HostFacts, Packet, WalkOptions } from "./lib/explain/types.ts";
import type { DiffResult } from "./lib/iptables/compare.ts";
import type { SaveDump } from "./lib/iptables/save_parser.ts";
import { type CompareOptions, compareDumps as compareKubeDumps } from "./lib/kube_iptables.ts";
import type { ClusterState } from "./lib/model/types.ts";
import { buildRules as buildWithSync } from "./lib/proxy/build.ts";
import type { BuildOptions } from "./lib/proxy/options.ts";
import type { Ruleset } from "./lib/proxy/ruleset.ts";

// ---------------------------------------------------------------------------------------
// Input: manifests, the model, IPs, the cluster's ranges

export {
  type Allocated,
  type AllocationResult,
  allocateServices,
  type ClusterPolicy,
  defaultClusterPolicy,
  type PortRange,
  parsePortRange,
  parseServiceCIDRs,
} from "./lib/model/allocate.ts";
export { type CIDR, type IP, type IPFamily, parseCIDR, parseIP } from "./lib/model/ip.ts";
export { type LoadOptions, type LoadResult, loadManifests, type Problem } from "./lib/model/load.ts";
export type { PolicyCheck } from "./lib/model/policy.ts";
export type { ContainerPort, Workload } from "./lib/model/simulate.ts";
export type {
  ClusterState,
  Endpoint,
  EndpointPort,
  EndpointSlice,
  IPFamilyPolicy,
  LoadBalancerIngress,
  Node,
  NodeAddress,
  Origin,
  Protocol,
  ReadinessProbe,
  Service,
  ServicePort,
  ServiceType,
  TrafficPolicy,
} from "./lib/model/types.ts";

// ---------------------------------------------------------------------------------------
// Settings

export { type ConfigResult, type DaemonConfig, parseKubeProxyConfiguration } from "./lib/proxy/config.ts";
export {
  type BuildOptions,
  type DetectLocalMode,
  defaultConfig,
  type LocalDetector,
  type ProxyConfig,
  resolveBuildOptions,
} from "./lib/proxy/options.ts";

// ---------------------------------------------------------------------------------------
// The engine and its output

/**
 * Build the filter and nat rules kube-proxy writes for `options.family` from the cluster's
 * Services and EndpointSlices: a full sync, every Service written.
 *
 * @param state The cluster as {@link loadManifests} (or your own code) gives it.
 * @param options One family's settings, from {@link resolveBuildOptions}.
 * @returns The rules per table, in kube-proxy's order, with a summary per Service port.
 */
export function buildRules(state: ClusterState, options: BuildOptions): Ruleset {
  return buildWithSync(state, options);
}

export { canonicalize } from "./lib/proxy/canonical.ts";
export { JUMP_RULES, type JumpRule, type Table as JumpTable } from "./lib/proxy/jumps.ts";
export { endpointChain, type ServiceChains, serviceChains, servicePortName } from "./lib/proxy/names.ts";
export {
  type Ruleset,
  type ServicePortSummary,
  type Summary,
  summarize,
  type TableRules,
  toJSON,
  toRestore,
} from "./lib/proxy/ruleset.ts";
export { type RenderOptions, type RenderResult, renderManifests } from "./lib/render.ts";
export {
  type ExposureChange,
  type PortEndpoints,
  type Review,
  type ReviewSide,
  reviewChanges,
  type ServiceReview,
} from "./lib/review.ts";

// ---------------------------------------------------------------------------------------
// iptables text, explain, diff, cleanup

export type {
  Event,
  Explanation,
  From,
  HostFacts,
  Masquerade,
  Outcome,
  Packet,
  Proto,
  Route,
  TreeNode,
  UnknownMatch,
  Verdict,
  WalkOptions,
} from "./lib/explain/types.ts";
export type { SaveDump, SavedChain, SavedRule, SavedTable } from "./lib/iptables/save_parser.ts";
export { dumpOfTables, parseSave } from "./lib/iptables/save_parser.ts";

/**
 * A dump's nat and filter tables compiled once by {@link compileTables}, to walk many packets
 * through the same rules without reading them again.
 */
export interface CompiledTables {
  /** Whether kube-proxy's jump rules were added (the dump had no built-in chains). */
  readonly addedJumps: boolean;
}

/**
 * The nat and filter tables of `dump`, ready for {@link explain}. A dump without built-in
 * chains (rendered rules, restore input) gets kube-proxy's jump rules into them first.
 */
export function compileTables(dump: SaveDump): CompiledTables {
  return compileRuleTables(dump);
}

/**
 * Walk the first packet of a new connection through the nat and filter tables of `rules`, as
 * the node would: every path with its probability (`-m statistic`), where each ends (DNAT to
 * an endpoint, REJECT, DROP, ACCEPT), masquerade, and a one-line verdict. Over rendered rules
 * (no built-in chains) kube-proxy's jump rules are added first (spec §3.1). ClientIP affinity
 * is followed one connection further.
 *
 * @param rules iptables-save text parsed by {@link parseSave}, a ruleset as
 *   {@link dumpOfTables} of its `filter` and `nat`, or tables from {@link compileTables}.
 * @param packet The packet: protocol, addresses, ports and where it comes from.
 * @param facts What the rules refer to on the host: its addresses, routes, pod interface.
 * @param options What the walk already knows (`recent` lists holding the client).
 */
export function explain(
  rules: SaveDump | CompiledTables,
  packet: Packet,
  facts: HostFacts,
  options: WalkOptions = {},
): Explanation {
  // A CompiledTables only ever comes from compileTables: it is the compiled tables' public face.
  return explainRules(rules as SaveDump | RuleTables, packet, facts, options);
}

export type { ChainDiff, DiffResult, DiffSummary } from "./lib/iptables/compare.ts";
export type { CompareOptions } from "./lib/kube_iptables.ts";

/**
 * Compare the live rules with the desired ones over what kube-proxy owns (its chains in
 * filter and nat, and with `options.jumps` its jump rules in the built-in chains), as
 * `kip diff` does. Both sides are normalised first, so iptables-save's rewriting of a rule
 * is not drift.
 *
 * @param live The node's rules ({@link parseSave} of iptables-save text), or an older render.
 * @param desired The rules that should be there: {@link dumpOfTables} of a ruleset, or a dump.
 * @returns The chains that differ (missing, extra, changed), with unified patches, and counts.
 */
export function compareDumps(live: SaveDump, desired: SaveDump, options: CompareOptions): DiffResult {
  return compareKubeDumps(live, desired, options);
}

export type { TablePlan } from "./lib/iptables/cleanup.ts";
export { type CleanupOptions, planCleanup } from "./lib/kube_iptables.ts";

export { VERSION } from "./lib/version.ts";
