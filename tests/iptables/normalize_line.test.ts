/**
 * normalizeLine's regex shortcuts must give exactly what the general normaliser gives: checked
 * on every rule of every golden output, on large-cluster renders (no comments) of both
 * families, and on lines built to fall between the shapes.
 */
import { expect, test } from "bun:test";
import { normalizeLine, normalizeRule } from "../../lib/iptables/normalize.ts";
import { tokenize as splitArgs } from "../../lib/iptables/rule.ts";
import type { IPFamily } from "../../lib/model/ip.ts";
import { loadManifests } from "../../lib/model/load.ts";
import { buildRules } from "../../lib/proxy/build.ts";
import { defaultConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";
import { syntheticCluster } from "../../scripts/bench.ts";
import { goldenRestores } from "../support/fixtures.ts";

function general(line: string, family: IPFamily): string {
  const sp = line.indexOf(" ", 3);
  return normalizeRule(line.slice(3, sp), splitArgs(line.slice(sp + 1)) ?? [], family);
}

function check(lines: string[], family: IPFamily): number {
  let n = 0;
  for (const l of lines) {
    if (!l.startsWith("-A ")) continue;
    expect(`${normalizeLine(l, family)}`).toBe(general(l, family));
    n++;
  }
  return n;
}

test("every rule of every golden output", () => {
  let n = 0;
  for (const g of goldenRestores()) n += check(g.text.split("\n"), g.family);
  expect(n).toBeGreaterThan(1000);
});

test("large-cluster renders (no comments on SEP/SVC rules), IPv4 and IPv6", () => {
  const { state } = loadManifests([{ file: "c.json", text: syntheticCluster(120, 10) }], { nodeName: "node-0" });
  const rs = buildRules(
    state,
    resolveBuildOptions({ ...defaultConfig(), hostname: "node-0", clusterCIDR: "10.128.0.0/9" }, "IPv4"),
  );
  expect(rs.largeCluster).toBe(true);
  expect(check(rs.nat.rules, "IPv4")).toBeGreaterThan(3000);
  const v6 = [
    "-A KUBE-SEP-X -s fd00::1 -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-X -m comment --comment ns/a:p -s fd00::1 -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-X -m udp -p udp -j DNAT --to-destination [fd00::1]:53",
    '-A KUBE-SVC-X -m comment --comment "ns/a:p -> [fd00::1]:53" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-X',
  ];
  expect(check(v6, "IPv6")).toBe(4);
});

test("lines between the shapes take the general path and still agree", () => {
  const odd = [
    '-A KUBE-SEP-X -m comment --comment "a \\"quoted\\" b" -s 10.0.0.1 -j KUBE-MARK-MASQ',
    "-A KUBE-SEP-X -m comment --comment ns/a -s 010.0.0.1 -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-X -m comment --comment ns/a -m tcp -p udp -j DNAT --to-destination 10.0.0.1:80",
    '-A KUBE-SVC-X -m comment --comment "x" -j MARK --or-mark 0x00004000',
    "-A KUBE-SVC-X -m statistic --mode random --probability 0.5 -j DROP",
    "-A KUBE-SEP-X -m comment --comment ns/a -m recent --name KUBE-SEP-X --set -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80",
  ];
  expect(check(odd, "IPv4")).toBe(6);
});

test("lines near the large-cluster shapes (no comments) agree too", () => {
  const near = [
    "-A KUBE-SEP-X -s 10.0.0.1 -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-X -s 10.0.0.1/32 -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-X -s 10.0.0.256 -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-X -s 10.0.0.1 -j KUBE-MARK-MASQ2",
    "-A KUBE-SEP-X -s 10.0.0.1 -p tcp -j KUBE-MARK-MASQ",
    "-A KUBE-SEP-X -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80",
    "-A KUBE-SEP-X -m sctp -p sctp -j DNAT --to-destination 10.0.0.1:80",
    "-A KUBE-SEP-X -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80 --random",
    "-A KUBE-SEP-X -m tcp -p udp -j DNAT --to-destination 10.0.0.1:80",
    "-A KUBE-SVC-X -m statistic --mode random --probability 0.0100000000 -j KUBE-SEP-X",
    "-A KUBE-SVC-X -m statistic --mode random --probability 1e-3 -j KUBE-SEP-X",
    "-A KUBE-SVC-X -m statistic --mode random --probability 0.5 -j DROP",
    "-A KUBE-SVC-X -m statistic --mode random --probability 0.5 -j KUBE-",
    "-A KUBE-SVC-X -j KUBE-SEP-X",
    "-A KUBE-SVC-X -j KUBE-SEP-X --extra",
    "-A KUBE-SVC-X\t-j KUBE-SEP-X",
    "-A KUBE-SVC-X -j KUBE-MARK-MASQ",
  ];
  expect(check(near, "IPv4")).toBe(near.length);
});
