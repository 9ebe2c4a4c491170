/**
 * kip as a library: Kubernetes Services and EndpointSlices in, the iptables rules kube-proxy
 * (iptables mode) writes out, for one IP family at a time. Pure functions, no I/O.
 *
 * @example
 * ```ts
 * import { defaultConfig, renderManifests } from "./mod.ts";
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
 * ```
 * @module
 */

/** Follow one packet through the rules: destinations, probabilities, masquerade, verdict. */
export { type Explanation, explain, type Packet } from "./lib/explain/explain.ts";
/** iptables-save text → tables, chains, rules; and the engine's output as the same shape. */
export { dumpOfTables, parseSave, type SaveDump } from "./lib/iptables/save_parser.ts";
/** What kip cleanup would remove from a dump, as restore inputs. */
/** Desired vs live rules over what kube-proxy owns (kip diff). */
export { compareDumps, type DiffResult, planCleanup } from "./lib/kube_iptables.ts";
/** What `--simulate` allocates as the API server would (cluster IPs, node ports), and the cluster's ranges. */
export {
  type Allocated,
  allocateServices,
  type ClusterPolicy,
  defaultClusterPolicy,
  type PortRange,
  parsePortRange,
  parseServiceCIDRs,
} from "./lib/model/allocate.ts";
/** IP and CIDR parsing with kube-proxy's rules (leading zeros, canonical text). */
export { type CIDR, type IP, type IPFamily, parseCIDR, parseIP } from "./lib/model/ip.ts";
/** Parse and validate manifest texts into the engine's model; problems carry file:line. */
export { type LoadResult, loadManifests, type Problem } from "./lib/model/load.ts";
/** Ready endpoints made up from workloads, for Services without EndpointSlices. */
export { simulateEndpoints } from "./lib/model/simulate.ts";
/** The engine's input types. */
export type { ClusterState, EndpointSlice, Node, Service } from "./lib/model/types.ts";
/** The rule builder: ClusterState + per-family options → Ruleset. */
export { buildRules, type SyncContext } from "./lib/proxy/build.ts";
/** Canonical ordering of restore text, as upstream's golden tests compare (spec §16). */
export { canonicalize } from "./lib/proxy/canonical.ts";
/** KubeProxyConfiguration files. */
export { parseKubeProxyConfiguration } from "./lib/proxy/config.ts";
/** kube-proxy's jump rules from the built-in chains (spec §3.1). */
export { JUMP_RULES } from "./lib/proxy/jumps.ts";
/** Chain names: `KUBE-SVC-…`, `KUBE-SEP-…` (SHA-256 → base32 → 16 chars). */
export { endpointChain, hash16, serviceChains, servicePortName } from "./lib/proxy/names.ts";
/** Node settings and their resolution into one family's build options. */
export { type BuildOptions, defaultConfig, type ProxyConfig, resolveBuildOptions } from "./lib/proxy/options.ts";
/** The engine's output and its iptables-restore / JSON forms. */
export { type Ruleset, summarize, toJSON, toRestore } from "./lib/proxy/ruleset.ts";
/** The change tracker a sync loop feeds (only what kube-proxy reads counts as a change). */
export { ChangeTracker } from "./lib/proxy/tracker.ts";
/** Manifest texts + config → rules for one family: what `kip render` does. */
export { type RenderOptions, type RenderResult, renderManifests } from "./lib/render.ts";
/** Two renders of a manifest set → what a reviewer needs: exposure changes, Services, endpoints. */
export { type ExposureChange, type Review, type ReviewSide, reviewChanges } from "./lib/review.ts";
export { VERSION } from "./lib/version.ts";
