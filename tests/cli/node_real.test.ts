/**
 * The live-node plumbing the commands share (cli/node.ts), on a network namespace standing in
 * for a node: a node whose rules were written through the other backend is named as one.
 */
import { describe, expect, test } from "bun:test";
import { ensureBinary, kip } from "../support/binary.ts";
import { loadLikeKubeProxy } from "../support/kube_proxy.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";

const skip = skipRealIptables();
const SEED = ["examples/seed", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];

describe.skipIf(skip)("rules in the other backend", () => {
  for (const [there, read] of [
    ["legacy", "nft"],
    ["nft", "legacy"],
  ] as const)
    test(`written through ${there}, read through ${read}: diff and explain say where they are`, async () => {
      const rendered = kip(["render", ...SEED]);
      expect(rendered.code).toBe(0);
      await withNetns((_ns, run) => {
        loadLikeKubeProxy(run, "IPv4", there, rendered.stdout);
        const d = run([ensureBinary(), "diff", ...SEED, "--ip-family", "IPv4", "--backend", read]);
        expect(d.code).toBe(1);
        expect(d.stderr).toContain(
          `kip: warning: the ${there} backend also holds IPv4 KUBE-* chains; this diff reads iptables-${read} v`,
        );
        const e = run([ensureBinary(), "explain", "--live", "--backend", read, "--dst", "10.97.54.248:80"]);
        expect(e.code).toBe(2); // no pod CIDR to take a source from: the empty tables name none
        expect(e.stderr).toContain(
          `kip: warning: kube-proxy's chains are in the ${there} backend, not ${read}: try --backend ${there}\n`,
        );
        // Read through the backend that has them: no warning.
        const ok = run([ensureBinary(), "diff", ...SEED, "--ip-family", "IPv4", "--backend", there]);
        expect(ok.code).toBe(0);
        expect(ok.stderr).toMatch(
          new RegExp(`^kip: live IPv4 rules from iptables-${there} v[0-9.]+ \\(${there}\\)\n$`),
        );
      });
    });
});

describe.skipIf(skip)("looking for rules in the other backend changes nothing there", () => {
  test("kip diff and explain through nft leave a legacy backend with no tables without any", async () => {
    const rendered = kip(["render", ...SEED]);
    expect(rendered.code).toBe(0);
    await withNetns((_ns, run) => {
      const tables = () => run(["cat", "/proc/net/ip_tables_names"]).stdout.split("\n").filter(Boolean);
      loadLikeKubeProxy(run, "IPv4", "nft", rendered.stdout);
      expect(tables()).toEqual([]);
      // Differing rules, so the diff looks for them elsewhere (the probe runs on exit 1).
      run(["iptables-nft", "-t", "nat", "-F", "KUBE-SERVICES"]);
      const d = run([ensureBinary(), "diff", ...SEED, "--ip-family", "IPv4", "--backend", "nft"]);
      expect(d.code).toBe(1);
      expect(d.stderr).not.toContain("also holds");
      const e = run([ensureBinary(), "explain", "--live", "--backend", "nft", "--dst", "10.97.54.248:80"]);
      expect(e.stderr).not.toContain("kube-proxy's chains are in");
      // iptables-legacy -t nat -S (what the probe would ask) would have made a nat table here.
      expect(tables()).toEqual([]);
    });
  });
});
