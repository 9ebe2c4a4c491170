/**
 * compareDumps knows no KUBE-* chain: what it compares is the owner it is handed. kip's own
 * comparisons (kube-proxy's owner) are covered by the diff tests; this one hands it another.
 */
import { expect, test } from "bun:test";
import { type ChainOwner, compareDumps } from "../../lib/iptables/compare.ts";
import { parseSave } from "../../lib/iptables/save_parser.ts";

const FOO: ChainOwner = {
  name: "foo",
  fixedChains: { filter: ["FOO-MAIN"], nat: [] },
  isKindred: (c) => c.startsWith("FOO-"),
  collects: (c) => c.startsWith("FOO-X-"),
  jumps: [{ table: "filter", from: "INPUT", args: ["-j", "FOO-MAIN"] }],
};

const desired = parseSave(`*filter
:FOO-MAIN - [0:0]
-A FOO-MAIN -j ACCEPT
COMMIT
`);

const live = parseSave(`*filter
:FOO-MAIN - [0:0]
:FOO-X-1 - [0:0]
:FOO-OTHER - [0:0]
:KUBE-SERVICES - [0:0]
-A FOO-MAIN -j ACCEPT
-A FOO-MAIN -j DROP
-A FOO-X-1 -j RETURN
-A KUBE-SERVICES -j RETURN
COMMIT
`);

test("an owner's fixed chains, collected chains and jumps are compared; nothing else", () => {
  const r = compareDumps(live, desired, { family: "IPv4", jumps: true, owner: FOO });
  expect(r.chains.map((c) => [c.table, c.chain, c.status, c.added, c.removed])).toEqual([
    ["filter", "FOO-MAIN", "changed", [], ["-A FOO-MAIN -j DROP"]],
    ["filter", "FOO-X-1", "extra", [], ["-A FOO-X-1 -j RETURN"]],
    ["filter", "INPUT", "changed", ["-A INPUT -j FOO-MAIN"], []],
  ]);
  expect(r.chains[2].patch.split("\n")[0]).toBe("--- live filter/INPUT (foo jumps)");
});
