/**
 * Manifest texts + node settings → the rules for one family: the pipeline `kip render`,
 * `kip diff` and the library share. Pure: the caller reads the files.
 */
import { type Allocated, allocateServices, type ClusterPolicy, defaultClusterPolicy } from "./model/allocate.ts";
import type { IPFamily } from "./model/ip.ts";
import { type LoadResult, loadManifests, type Problem } from "./model/load.ts";
import { simulateEndpoints } from "./model/simulate.ts";
import { buildRules } from "./proxy/build.ts";
import { type BuildOptions, type ProxyConfig, resolveBuildOptions } from "./proxy/options.ts";
import { type Ruleset, toRestore } from "./proxy/ruleset.ts";

/** Pod CIDRs simulated pods are placed in when `--cluster-cidr` names none. */
export const DEFAULT_SIMULATED_POD_CIDRS = ["10.244.0.0/16", "fd00:10:244::/56"];

/** How renderManifests renders. */
export interface RenderOptions {
  /** The family to render (one ruleset per family, as kube-proxy runs one proxier per family). */
  family: IPFamily;
  /**
   * Do what the cluster would: allocate missing cluster IPs and node ports (from `cluster`),
   * and make endpoints for Services with a selector and no EndpointSlice.
   */
  simulate?: boolean;
  /** The namespace of objects that name none (default `default`). */
  namespace?: string;
  /** The cluster's ranges: what allocation draws from and what the policy checks warn about (default: kubeadm's). */
  cluster?: ClusterPolicy;
  /** The service range was given, so cluster IPs outside it are warned about. */
  checkServiceCIDRs?: boolean;
  /**
   * false: the ruleset carries no per-port summaries (`Ruleset.services` empty), for a caller
   * that only writes the rules: at 10k Services × 10 they are ~12 MB of heap and ~25 ms.
   */
  summaries?: boolean;
}

/** What renderManifests made: the ruleset, or the errors that stopped it, and everything it noticed. */
export interface RenderResult {
  /** undefined when errors stopped the render. */
  ruleset?: Ruleset;
  /**
   * The restore text (toRestore of the ruleset), made when first read: 30+ MB in a large
   * cluster, which `kip diff` never needs and `kip render` writes in pieces instead.
   */
  readonly restore: string;
  /** The build options resolved from the config and this node; undefined when errors stopped the render. */
  options?: BuildOptions;
  /** What loadManifests read (the cluster state, Nodes, skipped kinds, notes). */
  loaded: LoadResult;
  /** Problems that stopped the render; empty when `ruleset` is there. */
  errors: Problem[];
  /** Problems worth a look that did not stop it. */
  warnings: Problem[];
  /** What the simulation made up (cluster IPs, node ports); empty without `simulate`. */
  allocated: Allocated[];
  /** Services that got simulated endpoints (`namespace/name`). */
  simulatedEndpoints: Set<string>;
}

/**
 * Load the manifests, simulate what `simulate` asks for, resolve the config for one family and
 * build its rules: what `kip render` does. Pure: the caller reads the files.
 */
export function renderManifests(
  files: { file: string; text: string }[],
  config: ProxyConfig,
  opts: RenderOptions,
): RenderResult {
  const cluster = opts.cluster ?? defaultClusterPolicy();
  const loaded = loadManifests(files, {
    nodeName: config.hostname,
    workloads: opts.simulate,
    namespace: opts.namespace,
    allocates: opts.simulate,
    policy: { cluster, checkServiceCIDRs: opts.checkServiceCIDRs === true, enforce: false },
  });
  const errors = [...loaded.errors];
  const warnings = [...loaded.warnings];
  const allocated: Allocated[] = [];
  const simulatedEndpoints = new Set<string>();
  if (errors.length > 0) return { restore: "", loaded, errors, warnings, allocated, simulatedEndpoints };
  const state = loaded.state;
  if (opts.simulate) {
    const alloc = allocateServices(state.services, cluster);
    state.services = alloc.services;
    allocated.push(...alloc.allocated);
    for (const w of alloc.warnings)
      warnings.push({
        file: w.service.origin?.file ?? "",
        line: w.service.origin?.line ?? 0,
        message: `Service ${w.service.namespace}/${w.service.name}: ${w.message}`,
      });
    const cidrs = config.clusterCIDR ? config.clusterCIDR.split(",") : DEFAULT_SIMULATED_POD_CIDRS;
    const sim = simulateEndpoints(state.services, state.endpointSlices, loaded.workloads, {
      clusterCIDRs: cidrs,
      nodes: loaded.nodes.map((n) => n.name),
      nodeName: config.hostname,
    });
    state.endpointSlices = [...state.endpointSlices, ...sim.slices];
    for (const s of sim.slices) simulatedEndpoints.add(`${s.namespace}/${s.labels["kubernetes.io/service-name"]}`);
    for (const w of sim.warnings)
      warnings.push({ file: w.origin?.file ?? "", line: w.origin?.line ?? 0, message: w.message });
  }
  const options = resolveBuildOptions(config, opts.family, state.node);
  const ruleset = buildRules(state, options, { summaries: opts.summaries });
  let restore: string | undefined;
  return {
    ruleset,
    get restore() {
      restore ??= toRestore(ruleset);
      return restore;
    },
    options,
    loaded,
    errors,
    warnings,
    allocated,
    simulatedEndpoints,
  };
}

/** The same manifests' rules for another family, from what renderManifests loaded (not loaded again). */
export function renderFamily(result: RenderResult, config: ProxyConfig, family: IPFamily): Ruleset {
  const state = result.loaded.state;
  return buildRules(state, resolveBuildOptions(config, family, state.node));
}
