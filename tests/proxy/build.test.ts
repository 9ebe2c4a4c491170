/**
 * buildRules' outputs that a render does not read are still there when asked for.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadManifests } from "../../lib/model/load.ts";
import type { ClusterState } from "../../lib/model/types.ts";
import { buildRules, newBuildCache } from "../../lib/proxy/build.ts";
import { isServiceChain } from "../../lib/proxy/chains.ts";
import { defaultConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";
import { syntheticCluster } from "../../scripts/bench.ts";
import { FIXTURES, fixtureCases } from "../support/fixtures.ts";

const config = { ...defaultConfig(), hostname: "node-3", clusterCIDR: "10.128.0.0/9" };

/** Every golden case's manifests that load without errors, and a synthetic cluster. */
function states(): [string, ClusterState][] {
  const out: [string, ClusterState][] = [];
  const synthetic = [{ file: "c.json", text: syntheticCluster(40, 3) }];
  out.push(["synthetic", loadManifests(synthetic, { nodeName: "node-3" }).state]);
  for (const name of fixtureCases()) {
    const dir = join(FIXTURES, name);
    const files = readdirSync(dir)
      .filter((f) => f.endsWith(".yaml") || f.endsWith(".json"))
      .map((f) => ({ file: f, text: readFileSync(join(dir, f), "utf8") }));
    const loaded = loadManifests(files, { nodeName: "node-3" });
    if (loaded.errors.length === 0) out.push([name, loaded.state]);
  }
  return out;
}

test("a render's activeNatChains (made when read) equals the set a sync tracks", () => {
  let chains = 0;
  for (const [name, s] of states())
    for (const family of ["IPv4", "IPv6"] as const) {
      const opts = resolveBuildOptions(config, family, s.node);
      const render = buildRules(s, opts);
      const tracked = buildRules(s, opts, { existingNatChains: [] });
      const cached = buildRules(s, opts, { cache: newBuildCache() });
      expect({ name, family, chains: [...render.activeNatChains] }).toEqual({
        name,
        family,
        chains: [...tracked.activeNatChains],
      });
      expect([...render.activeNatChains]).toEqual([...cached.activeNatChains]);
      expect([...render.activeNatChains].every(isServiceChain)).toBe(true);
      // Read twice: the same set.
      expect(render.activeNatChains).toBe(render.activeNatChains);
      chains += render.activeNatChains.size;
    }
  expect(chains).toBeGreaterThan(200);
});
