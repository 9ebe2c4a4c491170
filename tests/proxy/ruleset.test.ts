/**
 * restorePieces (what `kip render` writes, piece by piece) is toRestore's text exactly, for any
 * piece size, and no piece holds more than the lines asked for.
 */
import { expect, test } from "bun:test";
import { loadManifests } from "../../lib/model/load.ts";
import { buildRules } from "../../lib/proxy/build.ts";
import { defaultConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";
import { restorePieces, toRestore } from "../../lib/proxy/ruleset.ts";
import { syntheticCluster } from "../../scripts/bench.ts";

const { state } = loadManifests([{ file: "c.json", text: syntheticCluster(150, 10) }], { nodeName: "node-0" });
const config = { ...defaultConfig(), hostname: "node-0", clusterCIDR: "10.128.0.0/9" };

test("the pieces join to toRestore's text, for any piece size", () => {
  for (const family of ["IPv4", "IPv6"] as const) {
    const rs = buildRules(state, resolveBuildOptions(config, family));
    const text = toRestore(rs);
    for (const lines of [1, 7, 1000, 8192, 1 << 20]) expect([...restorePieces(rs, lines)].join("")).toBe(text);
  }
});

test("a piece holds at most the lines asked for", () => {
  const rs = buildRules(state, resolveBuildOptions(config, "IPv4"));
  expect(rs.nat.rules.length).toBeGreaterThan(3000);
  for (const piece of restorePieces(rs, 500)) expect(piece.split("\n").length - 1).toBeLessThanOrEqual(500);
});

test("empty tables: header and COMMIT only, as toRestore", () => {
  const empty = { filter: { chains: [], rules: [] }, nat: { chains: ["KUBE-X"], rules: [] } };
  expect([...restorePieces(empty)].join("")).toBe(toRestore(empty));
  expect(toRestore(empty)).toBe("*filter\nCOMMIT\n*nat\n:KUBE-X - [0:0]\nCOMMIT\n");
});
