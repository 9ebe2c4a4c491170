/**
 * Manifest texts + node settings → the rules for one family: the pipeline `kip render`,
 * `kip diff` and the library share. Pure: the caller reads the files.
 */
import type { IPFamily } from "./model/ip.ts";
import { type LoadResult, loadManifests, type Problem } from "./model/load.ts";
import { simulateEndpoints } from "./model/simulate.ts";
import { buildRules } from "./proxy/build.ts";
import { type BuildOptions, type ProxyConfig, resolveBuildOptions } from "./proxy/options.ts";
import { type Ruleset, toRestore } from "./proxy/ruleset.ts";

export interface RenderOptions {
  family: IPFamily;
  /** Synthesize endpoints for Services with a selector and no EndpointSlice. */
  simulateEndpoints?: boolean;
}

export interface RenderResult {
  /** undefined when errors stopped the render. */
  ruleset?: Ruleset;
  restore: string;
  options?: BuildOptions;
  loaded: LoadResult;
  errors: Problem[];
  warnings: Problem[];
}

export function renderManifests(
  files: { file: string; text: string }[],
  config: ProxyConfig,
  opts: RenderOptions,
): RenderResult {
  const loaded = loadManifests(files, { nodeName: config.hostname, workloads: opts.simulateEndpoints });
  const errors = [...loaded.errors];
  const warnings = [...loaded.warnings];
  if (errors.length > 0) return { restore: "", loaded, errors, warnings };
  const state = loaded.state;
  if (opts.simulateEndpoints) {
    const cidrs = config.clusterCIDR ? config.clusterCIDR.split(",") : [];
    const sim = simulateEndpoints(state.services, state.endpointSlices, loaded.workloads, cidrs);
    state.endpointSlices = [...state.endpointSlices, ...sim.slices];
    for (const w of sim.warnings)
      warnings.push({ file: w.origin?.file ?? "", line: w.origin?.line ?? 0, message: w.message });
  }
  const options = resolveBuildOptions(config, opts.family, state.node);
  const ruleset = buildRules(state, options);
  return { ruleset, restore: toRestore(ruleset), options, loaded, errors, warnings };
}
