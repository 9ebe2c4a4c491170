/**
 * Batched restores (nft): applied one by one, every batch is accepted by a runner that needs
 * each jump target to exist when the rule is read, and the end state equals one transaction.
 */
import { describe, expect, test } from "bun:test";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import { normalizeRule } from "../../lib/iptables/normalize.ts";
import { parseSave } from "../../lib/iptables/save_parser.ts";
import { loadManifests } from "../../lib/model/load.ts";
import { buildRules } from "../../lib/proxy/build.ts";
import { defaultConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";
import { toRestore } from "../../lib/proxy/ruleset.ts";
import { batchRestore, needsBatches } from "../../lib/sync/batch.ts";
import { syntheticCluster } from "../../scripts/bench.ts";

const config = { ...defaultConfig(), hostname: "node-0", clusterCIDR: "10.128.0.0/9" };

function rules(n: number, existing?: string[]) {
  const { state, errors } = loadManifests([{ file: "c.json", text: syntheticCluster(n, 3) }], { nodeName: "node-0" });
  expect(errors).toEqual([]);
  return buildRules(state, resolveBuildOptions(config, "IPv4"), { existingNatChains: existing });
}

async function kubeState(r: FakeRunner): Promise<string[]> {
  const d = parseSave(await r.save());
  const out: string[] = [];
  for (const t of ["filter", "nat"]) {
    const tab = d.tables.get(t);
    for (const c of [...(tab?.chains.keys() ?? [])].filter((c) => c.startsWith("KUBE-")).sort()) out.push(`${t} :${c}`);
    for (const r of tab?.rules ?? [])
      if (r.chain.startsWith("KUBE-")) out.push(`${t} ${normalizeRule(r.chain, r.args, "IPv4")}`);
  }
  return out.sort();
}

describe("batchRestore", () => {
  test("small rulesets stay one transaction", () => {
    const rs = rules(3);
    expect(needsBatches(rs)).toBe(false);
    expect(batchRestore(rs)).toHaveLength(1);
  });

  test("from an empty node: every batch valid on its own, the end state equals one transaction", async () => {
    const rs = rules(40);
    const batches = batchRestore(rs, { chains: 10, rules: 40, threshold: 0 });
    expect(batches.length).toBeGreaterThan(10);
    const a = new FakeRunner();
    for (const [i, b] of batches.entries())
      await expect(a.restore(b, { noflush: true }), `batch ${i}`).resolves.toBeUndefined();
    const b = new FakeRunner();
    await b.restore(toRestore(rs), { noflush: true });
    expect(await kubeState(a)).toEqual(await kubeState(b));
  });

  test("over an older state with stale chains: consistent steps, stale chains gone at the end", async () => {
    const before = rules(40);
    const r = new FakeRunner();
    await r.restore(toRestore(before), { noflush: true });
    // Half the services go away; the other half keep theirs.
    const { state } = loadManifests([{ file: "c.json", text: syntheticCluster(20, 3) }], { nodeName: "node-0" });
    const existing = [
      ...(parseSave(await r.save("nat"))
        .tables.get("nat")
        ?.chains.keys() ?? []),
    ];
    const after = buildRules(state, resolveBuildOptions(config, "IPv4"), { existingNatChains: existing });
    const batches = batchRestore(after, { chains: 10, rules: 40, threshold: 0 });
    for (const b of batches) await r.restore(b, { noflush: true });
    const one = new FakeRunner();
    await one.restore(toRestore(before), { noflush: true });
    await one.restore(toRestore(after), { noflush: true });
    expect(await kubeState(r)).toEqual(await kubeState(one));
    expect((await r.save()).match(/^:KUBE-SVC-/gm)?.length).toBe(20);
  });

  test("the switch-over (KUBE-SERVICES, KUBE-NODEPORTS, filter) is the last non-stale batch", () => {
    const batches = batchRestore(rules(40), { chains: 10, rules: 40, threshold: 0 });
    const last = batches.at(-1) ?? "";
    expect(last.startsWith("*filter\n")).toBe(true);
    expect(last).toContain(":KUBE-SERVICES - [0:0]");
    for (const b of batches.slice(0, -1)) expect(b).not.toContain("-A KUBE-SERVICES ");
  });
});
