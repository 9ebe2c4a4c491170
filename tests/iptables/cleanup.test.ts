/**
 * Cleanup planning and the cleanup command over the fake runner: what is removed, what stays,
 * batching (each step a whole, consistent transaction), and failures reported as they are.
 */
import { describe, expect, test } from "bun:test";
import { runCleanup } from "../../cli/cleanup_run.ts";
import type { IO } from "../../cli/io.ts";
import { planCleanup as planChainCleanup } from "../../lib/iptables/cleanup.ts";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import { parseSave } from "../../lib/iptables/save_parser.ts";
import { planCleanup } from "../../lib/kube_iptables.ts";

const NODE = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-SEP-CCCCCCCCCCCCCCCC - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -p udp -m udp --dport 53 -m comment --comment "added by hand" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -m comment --comment "jump to KUBE-SERVICES? no, just a comment" -j RETURN
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-AAAAAAAAAAAAAAAA
-A KUBE-SVC-AAAAAAAAAAAAAAAA -m statistic --mode random --probability 0.5 -j KUBE-SEP-BBBBBBBBBBBBBBBB
-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-CCCCCCCCCCCCCCCC
-A KUBE-SEP-BBBBBBBBBBBBBBBB -s 10.1.0.2/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-CCCCCCCCCCCCCCCC -s 10.1.0.3/32 -j KUBE-MARK-MASQ
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
COMMIT
*filter
:KUBE-FIREWALL - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-FORWARD - [0:0]
:MY-KUBE-X - [0:0]
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A OUTPUT -j MY-KUBE-X
-A MY-KUBE-X -j RETURN
COMMIT
`;

async function node(): Promise<FakeRunner> {
  const r = new FakeRunner("IPv4", "nft");
  await r.restore(NODE, { noflush: true });
  return r;
}

const nonKube = (dump: string) =>
  dump
    .split("\n")
    .filter((l) => !/^:KUBE-|^-A KUBE-| -j KUBE-\S+$/.test(l))
    .join("\n");

function quietIO(): IO & { out: string; err: string } {
  const io = {
    out: "",
    err: "",
    stdout: (t: string) => {
      io.out += t;
    },
    stderr: (t: string) => {
      io.err += t;
    },
    readStdin: () => "",
    readFile: () => "",
    hostname: () => "h",
    stdoutIsTTY: false,
    stderrIsTTY: false,
    env: {},
  };
  return io;
}

describe("planCleanup", () => {
  test("every KUBE-* chain, and rules elsewhere that jump to them (whatever their arguments)", async () => {
    const plans = planCleanup(parseSave(NODE), { ownedOnly: false });
    expect(plans.map((p) => [p.table, p.chains.length, p.jumps.map((j) => j.chain)])).toEqual([
      ["nat", 6, ["PREROUTING", "OUTPUT", "POSTROUTING"]],
      ["filter", 3, ["INPUT", "FORWARD"]],
    ]);
  });

  test("--owned-only keeps kubelet's chains", () => {
    const plans = planCleanup(parseSave(NODE), { ownedOnly: true });
    const filter = plans.find((p) => p.table === "filter");
    expect(filter?.chains).toEqual(["KUBE-FORWARD"]);
  });

  test("lib/iptables removes what the caller names, kube-proxy's or not", () => {
    const plans = planChainCleanup(parseSave(NODE), { removable: (_table, chain) => chain === "DOCKER" });
    expect(plans.map((p) => [p.table, p.chains, p.jumps.map((j) => j.text)])).toEqual([
      ["nat", ["DOCKER"], ["-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"]],
    ]);
  });

  for (const batchSize of [undefined, 1, 2, 4]) {
    test(`applied step by step (batch ${batchSize ?? "none"}): each step is valid, the rest stays byte for byte`, async () => {
      const r = await node();
      const before = await r.save();
      const plans = planCleanup(parseSave(before), { ownedOnly: false, batchSize });
      if (batchSize === 1) expect(plans[0].inputs.length).toBe(1 + 6 + 6); // jumps, flushes, drops
      for (const p of plans) for (const input of p.inputs) await r.restore(input, { noflush: true, table: p.table });
      const after = await r.save();
      expect(after).not.toMatch(/^:KUBE-|^-A KUBE-| -j KUBE-/m);
      expect(nonKube(after)).toBe(nonKube(before));
      expect(planCleanup(parseSave(after), { ownedOnly: false })).toEqual([]);
    });
  }
});

describe("runCleanup over fake runners", () => {
  test("reports per family and backend, then is a no-op", async () => {
    const runners = [await node(), new FakeRunner("IPv6", "nft")];
    const io = quietIO();
    expect(await runCleanup({}, io, async () => runners)).toBe(0);
    expect(io.out).toBe(
      "IPv4 nft: removed nat: 6 chains, 3 jump rules; filter: 3 chains, 2 jump rules\nIPv6 nft: nothing to remove\nkip cleanup: removed 9 chains and 5 jump rules\n",
    );
    const again = quietIO();
    expect(await runCleanup({}, again, async () => runners)).toBe(0);
    expect(again.out).toBe(
      "IPv4 nft: nothing to remove\nIPv6 nft: nothing to remove\nkip cleanup: nothing to remove\n",
    );
  });

  test("a failed restore: exit 1, the table named, what was done reported, nothing hidden", async () => {
    const r = await node();
    r.failNextRestore = { match: (input) => input.startsWith("*filter"), message: "simulated failure" };
    const io = quietIO();
    expect(await runCleanup({}, io, async () => [r])).toBe(1);
    expect(io.out).toBe("IPv4 nft: removed nat: 6 chains, 3 jump rules\n");
    expect(io.err).toContain("kip: IPv4 nft: removing filter failed, that table is unchanged:");
    expect(io.err).toContain("kip: cleanup incomplete: 1 table failed");
    expect(await r.save()).toContain(":KUBE-FORWARD - [0:0]");
  });

  test("--dry-run changes nothing and prints the restore input", async () => {
    const r = await node();
    const before = await r.save();
    const io = quietIO();
    expect(await runCleanup({ dryRun: true }, io, async () => [r])).toBe(0);
    expect(io.out).toContain("IPv4 nft: would remove nat: 6 chains, 3 jump rules; filter: 3 chains, 2 jump rules");
    expect(io.out).toContain(
      '  -D OUTPUT -p udp -m udp --dport 53 -m comment --comment "added by hand" -j KUBE-SERVICES',
    );
    expect(await r.save()).toBe(before);
  });
});
