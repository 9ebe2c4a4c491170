/**
 * `kip cleanup` on real tables: a node carrying kube-proxy's rules in every backend and family
 * it might have written, plus a sentinel ruleset of other programs. Afterwards no KUBE-* chain
 * is left anywhere, the sentinel is byte-identical, and a second run changes nothing.
 */
import { describe, expect, test } from "bun:test";
import type { IPFamily } from "../../lib/model/ip.ts";
import { ensureBinary } from "../support/binary.ts";
import { fixtureArgs } from "../support/fixtures.ts";
import { runKip } from "../support/io.ts";
import { loadLikeKubeProxy, type RunInNs, tool } from "../support/kube_proxy.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";

const skip = skipRealIptables();
const BACKENDS = ["nft", "legacy"] as const;
const FAMILIES = ["IPv4", "IPv6"] as const;

async function rendered(family: IPFamily): Promise<string> {
  const r = await runKip(fixtureArgs(family === "IPv4" ? "seed" : "ipv6-nodeport-local"));
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
}

/** Other programs' rules: Docker-style chains, commented user rules, a chain named MY-KUBE-X. */
function sentinel(family: IPFamily): string {
  const net = family === "IPv4" ? "172.17.0.0/16" : "fd00:d0c::/64";
  const host = family === "IPv4" ? "172.17.0.2" : "fd00:d0c::2";
  return `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s ${net} ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination ${family === "IPv4" ? host : `[${host}]`}:80
COMMIT
*filter
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:MY-KUBE-X - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "KUBE-SERVICES is mentioned here but not jumped to" -j ACCEPT
-A DOCKER -d ${host} ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -j RETURN
-A MY-KUBE-X -m comment --comment "a user chain with KUBE- inside its name" -j RETURN
-A OUTPUT -j MY-KUBE-X
COMMIT
`;
}

/** A rule added by hand that jumps into kube-proxy's chains with other arguments. */
function handJump(run: RunInNs, family: IPFamily, backend: "nft" | "legacy"): void {
  const r = run([
    tool(family, backend),
    "-t",
    "nat",
    "-A",
    "OUTPUT",
    "-p",
    "udp",
    "--dport",
    "53",
    "-m",
    "comment",
    "--comment",
    "by hand",
    "-j",
    "KUBE-SERVICES",
  ]);
  expect(r.stderr).toBe("");
}

function saveAll(run: RunInNs): Record<string, string> {
  const out: Record<string, string> = {};
  for (const b of BACKENDS)
    for (const f of FAMILIES)
      out[`${f} ${b}`] = run([tool(f, b, "-save")])
        .stdout.split("\n")
        .filter((l) => !l.startsWith("#")) // header comments carry a timestamp
        .join("\n");
  return out;
}

/** A dump minus header comments and everything that is a KUBE-* chain or jumps to one. */
function withoutKube(dump: string): string {
  return dump
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .filter((l) => !/^:KUBE-/.test(l) && !/^-A KUBE-/.test(l) && !/ -j KUBE-\S+$/.test(l))
    .join("\n");
}

function kubeChains(dump: string): string[] {
  return dump.split("\n").filter((l) => /^:KUBE-/.test(l));
}

describe.skipIf(skip)("kip cleanup on real tables", () => {
  test("removes every KUBE-* trace in both backends and families, leaves the sentinel byte-identical, then is a no-op", async () => {
    const rules = { IPv4: await rendered("IPv4"), IPv6: await rendered("IPv6") };
    await withNetns((_ns, run) => {
      for (const b of BACKENDS)
        for (const f of FAMILIES) {
          expect(run([tool(f, b, "-restore"), "--noflush"], sentinel(f)).stderr).toBe("");
          loadLikeKubeProxy(run, f, b, rules[f]);
          handJump(run, f, b);
          expect(run([tool(f, b), "-t", "mangle", "-N", "KUBE-PROXY-CANARY"]).code).toBe(0);
          expect(run([tool(f, b), "-t", "raw", "-N", "KUBE-STRAY"]).code).toBe(0);
        }
      const before = saveAll(run);
      for (const d of Object.values(before)) expect(kubeChains(d).length).toBeGreaterThan(5);

      const dry = run([ensureBinary(), "cleanup", "--dry-run"]);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toContain("IPv4 nft: would remove nat:");
      expect(saveAll(run)).toEqual(before);

      const r = run([ensureBinary(), "cleanup"]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      for (const label of Object.keys(before)) expect(r.stdout).toContain(`${label}: removed nat:`);
      expect(r.stdout).toMatch(/^kip cleanup: removed \d+ chains and \d+ jump rules$/m);

      const after = saveAll(run);
      for (const [label, dump] of Object.entries(after)) {
        expect({ label, chains: kubeChains(dump) }).toEqual({ label, chains: [] });
        expect(dump).not.toMatch(/-j KUBE-/);
        expect(withoutKube(dump)).toBe(withoutKube(before[label]));
        expect(dump).toContain(":MY-KUBE-X - [0:0]");
        expect(dump).toContain("KUBE-SERVICES is mentioned here but not jumped to");
      }

      const again = run([ensureBinary(), "cleanup"]);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain("kip cleanup: nothing to remove");
      expect(saveAll(run)).toEqual(after);
    });
  });

  test("--owned-only leaves kubelet's KUBE-FIREWALL and KUBE-KUBELET-CANARY, like kube-proxy --cleanup", async () => {
    const rules = await rendered("IPv4");
    await withNetns((_ns, run) => {
      for (const b of BACKENDS) {
        loadLikeKubeProxy(run, "IPv4", b, rules);
        for (const t of ["nat", "filter", "mangle"])
          expect(run([tool("IPv4", b), "-t", t, "-N", "KUBE-KUBELET-CANARY"]).code).toBe(0);
      }
      const r = run([ensureBinary(), "cleanup", "--owned-only"]);
      expect(r.code).toBe(0);
      for (const b of BACKENDS) {
        const dump = run([tool("IPv4", b, "-save")]).stdout;
        expect(kubeChains(dump).sort()).toEqual([
          ":KUBE-FIREWALL - [0:0]",
          ":KUBE-KUBELET-CANARY - [0:0]",
          ":KUBE-KUBELET-CANARY - [0:0]",
          ":KUBE-KUBELET-CANARY - [0:0]",
        ]);
        expect(dump).toContain("-A INPUT -j KUBE-FIREWALL");
        expect(dump).toContain("-A OUTPUT -j KUBE-FIREWALL");
        expect(dump).not.toMatch(/-j KUBE-(SERVICES|NODEPORTS|FORWARD|POSTROUTING|EXTERNAL-SERVICES|PROXY-FIREWALL)/);
      }
    });
  });
});

describe.skipIf(skip)("kip cleanup while another program holds the xtables lock", () => {
  // The legacy backend serialises on /run/xtables.lock. Holding it (briefly) blocks other
  // legacy iptables users on this machine for the ~5 s kip waits; no table is touched.
  test("waits, then fails that table with a clear message and leaves it unchanged; a retry succeeds", async () => {
    const { spawn } = await import("node:child_process");
    await withNetns(async (_ns, run) => {
      expect(run(["iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"]).code).toBe(0);
      expect(run(["iptables-legacy", "-t", "nat", "-A", "OUTPUT", "-j", "KUBE-SERVICES"]).code).toBe(0);
      const holder = spawn("flock", ["/run/xtables.lock", "cat"], { stdio: ["pipe", "ignore", "ignore"] });
      try {
        const deadline = Date.now() + 10_000;
        while (run(["flock", "-n", "/run/xtables.lock", "true"]).code === 0) {
          if (Date.now() > deadline) throw new Error("the lock holder never took the lock");
          await Bun.sleep(20); // polling for the lock holder to start, with a deadline
        }
        const r = run([ensureBinary(), "cleanup"]);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(
          "kip: IPv4 legacy: removing nat failed, that table is unchanged: iptables-legacy-restore: another program holds the xtables lock (waited 5 s); try again",
        );
        expect(r.stderr).toContain("kip: cleanup incomplete: 1 table failed");
        expect(run(["iptables-legacy-save", "-t", "nat"]).stdout).toContain(":KUBE-SERVICES - [0:0]");
      } finally {
        holder.stdin?.end();
        await new Promise((resolve) => holder.on("exit", resolve));
      }
      const again = run([ensureBinary(), "cleanup"]);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain("IPv4 legacy: removed nat: 1 chain, 1 jump rule");
    });
  }, 30_000);
});
