/**
 * `kip diff` against real tables in a namespace, both backends, IPv4 and IPv6: right after
 * loading what kip renders (with kube-proxy's jumps) it finds no drift; after each kind of
 * tampering it exits 1 and names the chain.
 */
import { describe, expect, test } from "bun:test";
import { symlinkSync } from "node:fs";
import { join } from "node:path";
import type { IPFamily } from "../../lib/model/ip.ts";
import { ensureBinary } from "../support/binary.ts";
import { fixtureArgs } from "../support/fixtures.ts";
import { runKip } from "../support/io.ts";
import { loadLikeKubeProxy, type RunInNs, tool } from "../support/kube_proxy.ts";
import { exec, skipRealIptables, withNetns } from "../support/netns.ts";
import { tempDir } from "../support/tempdir.ts";

const skip = skipRealIptables();

/** A fixture per family whose rules cover SVC/SEP/EXT/FW chains and probabilities. */
const CASES: Record<IPFamily, string> = { IPv4: "seed", IPv6: "ipv6-nodeport-local" };

async function rendered(family: IPFamily): Promise<{ args: string[]; restore: string }> {
  const argv = fixtureArgs(CASES[family]);
  const r = await runKip(argv);
  if (r.code !== 0) throw new Error(r.stderr);
  // Same manifests and node flags for diff: drop "render" and render-only flags.
  return { args: argv.slice(1).filter((a) => a !== "--canonical"), restore: r.stdout };
}

/** `kip diff` of one family (only that family's rules are loaded in these tests). */
function kipDiff(run: RunInNs, args: string[], backend: string, extra: string[] = []) {
  const family = args.includes("IPv6") ? [] : ["--ip-family", "IPv4"];
  return run([ensureBinary(), "diff", ...args, ...family, "--backend", backend, "--no-color", ...extra]);
}

/** The first rule line of a chain whose name starts with `prefix`, from the live dump. */
function firstRule(run: RunInNs, family: IPFamily, backend: "nft" | "legacy", prefix: string, contains = ""): string {
  const save = run([tool(family, backend, "-save"), "-t", "nat"]).stdout;
  const line = save.split("\n").find((l) => l.startsWith(`-A ${prefix}`) && l.includes(contains));
  if (!line) throw new Error(`no rule in ${prefix}* containing ${contains}`);
  return line;
}

const tampering: { name: string; chain: RegExp; apply: (run: RunInNs, f: IPFamily, b: "nft" | "legacy") => void }[] = [
  {
    name: "delete a rule",
    chain: /nat\/KUBE-SVC-/,
    apply: (run, f, b) => {
      const line = firstRule(run, f, b, "KUBE-SVC-", "statistic");
      const chain = line.split(" ")[1];
      expect(run([tool(f, b), "-t", "nat", "-D", chain, "2"]).code).toBe(0);
    },
  },
  {
    name: "add a rule",
    chain: /nat\/KUBE-SERVICES/,
    apply: (run, f, b) => {
      const dst = f === "IPv4" ? "203.0.113.9" : "2001:db8::9";
      expect(run([tool(f, b), "-t", "nat", "-I", "KUBE-SERVICES", "-d", dst, "-j", "RETURN"]).code).toBe(0);
    },
  },
  {
    name: "flush a chain",
    chain: /nat\/KUBE-SEP-/,
    apply: (run, f, b) => {
      const chain = firstRule(run, f, b, "KUBE-SEP-").split(" ")[1];
      expect(run([tool(f, b), "-t", "nat", "-F", chain]).code).toBe(0);
    },
  },
  {
    name: "delete a jump rule",
    chain: /filter\/FORWARD/,
    apply: (run, f, b) => {
      const args = ["-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"];
      expect(run([tool(f, b), "-t", "filter", "-D", "FORWARD", ...args]).code).toBe(0);
    },
  },
  {
    name: "change a probability",
    chain: /nat\/KUBE-SVC-/,
    apply: (run, f, b) => {
      const line = firstRule(run, f, b, "KUBE-SVC-", "statistic");
      const chain = line.split(" ")[1];
      const changed = line.replace(/--probability \S+/, "--probability 0.25000000000");
      const input = `*nat\n:${chain} - [0:0]\n${run([tool(f, b, "-save"), "-t", "nat"])
        .stdout.split("\n")
        .filter((l) => l.startsWith(`-A ${chain} `))
        .map((l) => (l === line ? changed : l))
        .join("\n")}\nCOMMIT\n`;
      const r = run([tool(f, b, "-restore"), "--noflush"], input);
      expect(r.stderr).toBe("");
    },
  },
];

describe.skipIf(skip)("kip diff on real tables", () => {
  for (const backend of ["nft", "legacy"] as const)
    for (const family of ["IPv4", "IPv6"] as const) {
      test(`${backend} ${family}: no drift after a kube-proxy-style load`, async () => {
        const { args, restore } = await rendered(family);
        await withNetns((_ns, run) => {
          loadLikeKubeProxy(run, family, backend, restore);
          const r = kipDiff(run, args, backend);
          expect(r.stdout).toBe(`kip diff: ${family}: no drift\n`);
          expect(r.code).toBe(0);
          const j = kipDiff(run, args, backend, ["-o", "json"]);
          expect(JSON.parse(j.stdout).drift).toBe(false);
        });
      });
      for (const t of tampering)
        test(`${backend} ${family}: ${t.name} → exit 1, chain named`, async () => {
          const { args, restore } = await rendered(family);
          await withNetns((_ns, run) => {
            loadLikeKubeProxy(run, family, backend, restore);
            t.apply(run, family, backend);
            const r = kipDiff(run, args, backend);
            expect(r.code).toBe(1);
            expect(r.stdout).toMatch(t.chain);
            expect(r.stdout).toMatch(
              new RegExp(
                `^kip diff: ${family}: \\d+ chains? missing, \\d+ extra, \\d+ changed; rules \\+\\d+ -\\d+$`,
                "m",
              ),
            );
          });
        });
    }
});

const SEED = ["examples/seed", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];

/** The seed's rules in both families, as kube-proxy (or kip sync) leaves a dual-stack-capable node. */
async function loadBothFamilies(run: RunInNs, backend: "nft" | "legacy"): Promise<void> {
  for (const family of ["IPv4", "IPv6"] as const) {
    const r = await runKip(["render", ...SEED, "--ip-family", family]);
    if (r.code !== 0) throw new Error(r.stderr);
    loadLikeKubeProxy(run, family, backend, r.stdout);
  }
}

describe.skipIf(skip)("kip diff on real tables: every family by default", () => {
  test("both families compared, one summary line each; IPv6 drift alone is found (exit 1)", async () => {
    await withNetns(async (_ns, run) => {
      await loadBothFamilies(run, "nft");
      const diff = (extra: string[] = []) =>
        run([ensureBinary(), "diff", ...SEED, "--backend", "nft", "--no-color", ...extra]);
      const same = diff();
      expect([same.code, same.stdout]).toEqual([0, "kip diff: IPv4: no drift\nkip diff: IPv6: no drift\n"]);
      expect(same.stderr).toContain("kip: live IPv6 rules from ip6tables-nft");
      // The issue's case: IPv6 KUBE-POSTROUTING flushed.
      expect(run(["ip6tables-nft", "-t", "nat", "-F", "KUBE-POSTROUTING"]).code).toBe(0);
      const r = diff();
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(
        "--- live IPv6 nat/KUBE-POSTROUTING\n+++ desired IPv6 nat/KUBE-POSTROUTING\n@@ -0,0 +1,",
      );
      expect(r.stdout.trimEnd().split("\n").slice(-2)).toEqual([
        "kip diff: IPv4: no drift",
        "kip diff: IPv6: 0 chains missing, 0 extra, 1 changed; rules +3 -0",
      ]);
      const j = JSON.parse(diff(["-o", "json"]).stdout);
      expect(j.drift).toBe(true);
      expect(j.families.map((f: { family: string; drift: boolean }) => [f.family, f.drift])).toEqual([
        ["IPv4", false],
        ["IPv6", true],
      ]);
      // --ip-family still selects one, with the single-family JSON shape.
      expect(diff(["--ip-family", "IPv4"])).toMatchObject({ code: 0, stdout: "kip diff: IPv4: no drift\n" });
      expect(JSON.parse(diff(["--ip-family", "IPv6", "-o", "json"]).stdout)).toMatchObject({
        family: "IPv6",
        drift: true,
      });
    });
  });

  test("a family whose iptables does not work is skipped with a warning", async () => {
    // A PATH with IPv4's iptables only.
    const bin = tempDir("kip-v4only-");
    for (const tool of ["iptables-nft", "iptables-nft-save", "iptables-nft-restore"])
      symlinkSync(exec(["which", tool]).stdout.trim(), join(bin, tool));
    await withNetns(async (_ns, run) => {
      await loadBothFamilies(run, "nft");
      const r = run(["env", `PATH=${bin}`, ensureBinary(), "diff", ...SEED, "--backend", "nft", "--no-color"]);
      expect(r.stdout).toBe("kip diff: IPv4: no drift\n");
      expect(r.stderr).toContain("kip: warning: skipping IPv6: ip6tables-nft is not installed (or not on PATH)\n");
      expect(r.code).toBe(0);
      // Asked for by name, a missing family is trouble.
      const v6 = run([
        "env",
        `PATH=${bin}`,
        ensureBinary(),
        "diff",
        ...SEED,
        "--ip-family",
        "IPv6",
        "--backend",
        "nft",
      ]);
      expect(v6.code).toBe(2);
    });
  });
});
