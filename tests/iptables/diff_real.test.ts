/**
 * `kip diff` against real tables in a namespace, both backends, IPv4 and IPv6: right after
 * loading what kip renders (with kube-proxy's jumps) it finds no drift; after each kind of
 * tampering it exits 1 and names the chain.
 */
import { describe, expect, test } from "bun:test";
import type { IPFamily } from "../../lib/model/ip.ts";
import { ensureBinary } from "../support/binary.ts";
import { fixtureArgs } from "../support/fixtures.ts";
import { runKip } from "../support/io.ts";
import { loadLikeKubeProxy, type RunInNs, tool } from "../support/kube_proxy.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";

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

function kipDiff(run: RunInNs, args: string[], backend: string, extra: string[] = []) {
  return run([ensureBinary(), "diff", ...args, "--backend", backend, "--no-color", ...extra]);
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
