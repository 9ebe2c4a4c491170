/**
 * The build cache a sync loop keeps: a partial build that reuses it must produce exactly what
 * a build without it produces, over random sequences of changes.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { loadManifests } from "../../lib/model/load.ts";
import type { ClusterState, EndpointSlice } from "../../lib/model/types.ts";
import { buildRules, newBuildCache } from "../../lib/proxy/build.ts";
import { defaultConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";
import { syntheticCluster } from "../../scripts/bench.ts";

const opts = resolveBuildOptions({ ...defaultConfig(), hostname: "node-3", clusterCIDR: "10.128.0.0/9" }, "IPv4");

test("partial builds with the cache equal builds without it", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          svc: fc.nat(29),
          kind: fc.constantFrom("endpoints", "drop-slice", "drop-service", "port"),
          n: fc.nat(400),
        }),
        { minLength: 1, maxLength: 12 },
      ),
      (changes) => {
        const base = loadManifests([{ file: "c.json", text: syntheticCluster(30, 3) }], { nodeName: "node-3" }).state;
        let state: ClusterState = { ...base };
        const cache = newBuildCache();
        buildRules(state, opts, { cache });
        for (const c of changes) {
          const name = `svc-${c.svc}`;
          const ns = `ns${c.svc}`;
          const services = state.services.filter((s) => !(c.kind === "drop-service" && s.name === name));
          let slices: EndpointSlice[] = state.endpointSlices.filter(
            (s) => !(c.kind === "drop-slice" && s.name === `${name}-abcde`),
          );
          if (c.kind === "endpoints")
            slices = slices.map((s) =>
              s.name === `${name}-abcde`
                ? // Sometimes push the total over 1000 endpoints: large-cluster mode flips.
                  {
                    ...s,
                    endpoints: Array.from({ length: (c.n % 5) + (c.n > 380 ? 1000 : 0) }, (_, i) => ({
                      addresses: [`10.200.${c.svc}.${i % 250}`],
                      zoneHints: [],
                      nodeHints: [],
                      nodeName: i % 2 ? "node-3" : undefined,
                    })),
                  }
                : s,
            );
          const ports =
            c.kind === "port"
              ? services.map((s) => (s.name === name ? { ...s, ports: [{ ...s.ports[0], port: 81 + (c.n % 5) }] } : s))
              : services;
          state = { ...state, services: ports, endpointSlices: slices };
          const changed = new Set([`${ns}/${name}`]);
          const withCache = buildRules(state, opts, { changedServices: changed, cache });
          const without = buildRules(state, opts, { changedServices: changed });
          expect(withCache.filter).toEqual(without.filter);
          expect(withCache.nat).toEqual(without.nat);
          expect(withCache.services).toEqual(without.services);
          expect([...withCache.activeNatChains].sort()).toEqual([...without.activeNatChains].sort());
          expect([withCache.totalEndpoints, withCache.largeCluster, withCache.skippedNatRules]).toEqual([
            without.totalEndpoints,
            without.largeCluster,
            without.skippedNatRules,
          ]);
        }
      },
    ),
    { numRuns: 40 },
  );
});
