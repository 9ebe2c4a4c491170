/**
 * normalize.ts: a rule as kip writes it and the same rule as iptables-save prints it back must
 * normalise to one string; different rules must not. Every "saved" form below was taken from
 * iptables-nft-save and iptables-legacy-save 1.8.9, and the REAL tests re-check them against
 * the tools in network namespaces, together with every golden output.
 */
import { describe, expect, test } from "bun:test";
import { kernelProbability, normalizeArgs, normalizeRule } from "../../lib/iptables/normalize.ts";
import { tokenize as splitArgs } from "../../lib/iptables/rule.ts";
import { parseSave } from "../../lib/iptables/save_parser.ts";
import type { IPFamily } from "../../lib/model/ip.ts";
import { goldenRestores } from "../support/fixtures.ts";
import { type Exec, skipRealIptables, withNetns } from "../support/netns.ts";

function args(text: string): string[] {
  const a = splitArgs(text);
  if (!a) throw new Error(`cannot split ${text}`);
  return a;
}

const norm = (text: string, family: IPFamily = "IPv4", chain = "KIP-NORM") => normalizeRule(chain, args(text), family);

interface Rewrite {
  what: string;
  family: IPFamily;
  table: "filter" | "nat";
  /** The rule as restore input (kip's spelling). */
  restore: string;
  /** The same rule as iptables-save prints it (both backends agree). */
  saved: string;
  /** Set when normalize.ts does not (yet) treat both as one rule: why it matters. */
  gap?: string;
}

const V4: IPFamily = "IPv4";
const V6: IPFamily = "IPv6";

/** Every rewrite iptables-save does that kip's output can meet (spec §4, §13; pitfalls). */
const REWRITES: Rewrite[] = [
  {
    what: "-p tcp moves to the front, -m tcp after the comment, /32 added",
    family: V4,
    table: "filter",
    restore: '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j ACCEPT',
    saved: '-d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j ACCEPT',
  },
  {
    what: "-p tcp --dport gains its implicit -m tcp",
    family: V4,
    table: "filter",
    restore: "-p tcp --dport 80 -j ACCEPT",
    saved: "-p tcp -m tcp --dport 80 -j ACCEPT",
  },
  {
    what: "-p udp --dport gains its implicit -m udp",
    family: V4,
    table: "filter",
    restore: "-p udp -d 10.0.0.10 --dport 53 -j ACCEPT",
    saved: "-d 10.0.0.10/32 -p udp -m udp --dport 53 -j ACCEPT",
  },
  {
    what: "-m sctp -p sctp",
    family: V4,
    table: "filter",
    restore: "-m sctp -p sctp --dport 3000 -j ACCEPT",
    saved: "-p sctp -m sctp --dport 3000 -j ACCEPT",
  },
  {
    what: "protocol names are lowercased",
    family: V4,
    table: "filter",
    restore: "-p TCP -m tcp --dport 443 -j ACCEPT",
    saved: "-p tcp -m tcp --dport 443 -j ACCEPT",
  },
  {
    what: "header matches in the order -s -d -i -o -p",
    family: V4,
    table: "filter",
    restore: "-p udp -o eth0 -i eth1 -d 10.0.0.2 -s 10.0.0.1 -j ACCEPT",
    saved: "-s 10.0.0.1/32 -d 10.0.0.2/32 -i eth1 -o eth0 -p udp -j ACCEPT",
  },
  {
    what: "long option names",
    family: V4,
    table: "filter",
    restore: "--source 10.0.0.1 --protocol tcp --jump ACCEPT",
    saved: "-s 10.0.0.1/32 -p tcp -j ACCEPT",
  },
  {
    what: "a bare IPv4 address gains /32",
    family: V4,
    table: "filter",
    restore: "-s 10.244.1.14 -j KUBE-MARK-MASQ",
    saved: "-s 10.244.1.14/32 -j KUBE-MARK-MASQ",
  },
  {
    what: "host bits of a CIDR are cleared",
    family: V4,
    table: "filter",
    restore: "-s 10.1.2.3/8 -j ACCEPT",
    saved: "-s 10.0.0.0/8 -j ACCEPT",
  },
  {
    what: "! -s moves to the front with its negation",
    family: V4,
    table: "filter",
    restore:
      '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
    saved:
      '! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ',
  },
  {
    what: "! -d after the matches moves to the front",
    family: V4,
    table: "filter",
    restore:
      '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS',
    saved:
      '! -d 127.0.0.0/8 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  },
  {
    what: "a one-word comment comes back quoted",
    family: V4,
    table: "filter",
    restore: "-m comment --comment ns1/svc1:p80 -j ACCEPT",
    saved: '-m comment --comment "ns1/svc1:p80" -j ACCEPT',
  },
  {
    what: "a comment with quotes, a backslash and an apostrophe",
    family: V4,
    table: "filter",
    restore: '-m comment --comment "a \\"b\\" c\\\\d it\'s" -j ACCEPT',
    saved: '-m comment --comment "a \\"b\\" c\\\\d it\\\'s" -j ACCEPT',
  },
  {
    what: "conntrack states in the kernel's order",
    family: V4,
    table: "filter",
    restore: "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    saved: "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
  },
  {
    what: "KUBE-FIREWALL's localnet rule",
    family: V4,
    table: "filter",
    restore:
      '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    saved:
      '! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
  },
  {
    what: "-m mark --mark 0x00004000/0x00004000 → 0x4000/0x4000",
    family: V4,
    table: "filter",
    restore: "-m mark --mark 0x00004000/0x00004000 -j ACCEPT",
    saved: "-m mark --mark 0x4000/0x4000 -j ACCEPT",
  },
  {
    what: "-m mark ! --mark keeps its negation",
    family: V4,
    table: "filter",
    restore: "-m mark ! --mark 0x00004000/0x00004000 -j RETURN",
    saved: "-m mark ! --mark 0x4000/0x4000 -j RETURN",
  },
  {
    what: "a full mask is left out",
    family: V4,
    table: "filter",
    restore: "-m mark --mark 0x1/0xffffffff -j ACCEPT",
    saved: "-m mark --mark 0x1 -j ACCEPT",
  },
  {
    what: "mark bit 31",
    family: V4,
    table: "filter",
    restore: "-m mark --mark 0x80000000/0x80000000 -j ACCEPT",
    saved: "-m mark --mark 0x80000000/0x80000000 -j ACCEPT",
  },
  {
    what: "MARK --or-mark 0x00004000 → --set-xmark 0x4000/0x4000",
    family: V4,
    table: "filter",
    restore: "-j MARK --or-mark 0x00004000",
    saved: "-j MARK --set-xmark 0x4000/0x4000",
  },
  {
    what: "MARK --xor-mark 0x00004000 → --set-xmark 0x4000/0x0",
    family: V4,
    table: "filter",
    restore: "-j MARK --xor-mark 0x00004000",
    saved: "-j MARK --set-xmark 0x4000/0x0",
  },
  {
    what: "MARK --and-mark → --set-xmark 0x0/~mask",
    family: V4,
    table: "filter",
    restore: "-j MARK --and-mark 0xffffbfff",
    saved: "-j MARK --set-xmark 0x0/0x4000",
  },
  {
    what: "MARK --set-mark without a mask",
    family: V4,
    table: "filter",
    restore: "-j MARK --set-mark 0x4000",
    saved: "-j MARK --set-xmark 0x4000/0xffffffff",
  },
  {
    what: "MARK --set-xmark with a full mask",
    family: V4,
    table: "filter",
    restore: "-j MARK --set-xmark 0x4000/0xffffffff",
    saved: "-j MARK --set-xmark 0x4000/0xffffffff",
  },
  {
    what: "MARK bit 31",
    family: V4,
    table: "filter",
    restore: "-j MARK --or-mark 0x80000000",
    saved: "-j MARK --set-xmark 0x80000000/0x80000000",
  },
  {
    what: "MARK bit 0",
    family: V4,
    table: "filter",
    restore: "-j MARK --or-mark 0x00000001",
    saved: "-j MARK --set-xmark 0x1/0x1",
  },
  {
    what: "REJECT gains --reject-with icmp-port-unreachable",
    family: V4,
    table: "filter",
    restore: '-m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT',
    saved:
      '-d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable',
  },
  {
    what: "REJECT with its own --reject-with keeps it",
    family: V4,
    table: "filter",
    restore: "-p tcp -j REJECT --reject-with tcp-reset",
    saved: "-p tcp -j REJECT --reject-with tcp-reset",
  },
  {
    what: "probability 1/3 comes back as the kernel keeps it",
    family: V4,
    table: "filter",
    restore: "-m statistic --mode random --probability 0.3333333333 -j ACCEPT",
    saved: "-m statistic --mode random --probability 0.33333333349 -j ACCEPT",
  },
  {
    what: "recent --rcheck gains --mask and --rsource, options in the kernel's order",
    family: V4,
    table: "filter",
    restore: "-m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap -j KUBE-SEP-X",
    saved: "-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask 255.255.255.255 --rsource -j KUBE-SEP-X",
  },
  {
    what: "per-rule counters (-c) are not part of the rule",
    family: V4,
    table: "filter",
    restore: "-c 5 10 -j ACCEPT",
    saved: "-j ACCEPT",
  },
  {
    what: "the DNAT rule of an endpoint with session affinity (recent --set)",
    family: V4,
    table: "nat",
    restore:
      "-m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-X --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
    saved:
      '-p tcp -m comment --comment "ns1/svc1:p80" -m recent --set --name KUBE-SEP-X --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.1:80',
  },
  {
    what: "MASQUERADE --random-fully",
    family: V4,
    table: "nat",
    restore: '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    saved: '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  },
  {
    what: "canonical text and /128",
    family: V6,
    table: "filter",
    restore: "-d FD00:0:0:0::10 -j ACCEPT",
    saved: "-d fd00::10/128 -j ACCEPT",
  },
  {
    what: "CIDR in canonical text",
    family: V6,
    table: "filter",
    restore: "-s 2001:DB8:0:0::/64 -j ACCEPT",
    saved: "-s 2001:db8::/64 -j ACCEPT",
  },
  {
    what: "CIDR host bits cleared",
    family: V6,
    table: "filter",
    restore: "-s 2001:db8::1/64 -j ACCEPT",
    saved: "-s 2001:db8::/64 -j ACCEPT",
  },
  {
    what: "! -d ::1 → ! -d ::1/128 at the front",
    family: V6,
    table: "filter",
    restore:
      '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1 -j KUBE-NODEPORTS',
    saved:
      '! -d ::1/128 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
  },
  {
    what: "REJECT gains --reject-with icmp6-port-unreachable",
    family: V6,
    table: "filter",
    restore: '-m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp -d fd00::10 --dport 80 -j REJECT',
    saved:
      '-d fd00::10/128 -p tcp -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp6-port-unreachable',
  },
  {
    what: "recent gains the all-ones IPv6 mask",
    family: V6,
    table: "filter",
    restore: "-m recent --name KUBE-SEP-X --rcheck --seconds 10800 --reap -j KUBE-SEP-X",
    saved:
      "-m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-X --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -j KUBE-SEP-X",
  },
  {
    what: "DNAT to [address]:port",
    family: V6,
    table: "nat",
    restore: "-m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [fd00:1::1]:8080",
    saved: '-p tcp -m comment --comment "ns1/svc1:p80" -m tcp -j DNAT --to-destination [fd00:1::1]:8080',
  },
  {
    what: "masquerade rule of a cluster IP",
    family: V6,
    table: "nat",
    restore:
      '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d fd00::10 --dport 80 ! -s fd00:1::/64 -j KUBE-MARK-MASQ',
    saved:
      '! -s fd00:1::/64 -d fd00::10/128 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ',
  },
  // Rewrites normalize.ts does not model. kip's own output never spells rules these ways,
  // but FakeRunner (-C/-D), compare.ts and cleanup meet other programs' rules and
  // hand-written ones.
  {
    what: "--dport after another match, without -m tcp",
    family: V4,
    table: "filter",
    restore: '-m comment --comment "x y" -p tcp --dport 80 -j ACCEPT',
    saved: '-p tcp -m comment --comment "x y" -m tcp --dport 80 -j ACCEPT',
  },
  {
    what: "MARK --set-mark V/M",
    family: V4,
    table: "filter",
    restore: "-j MARK --set-mark 0x1/0xff00",
    saved: "-j MARK --set-xmark 0x1/0xff01",
  },
  {
    what: "-s 0.0.0.0/0 and -p all are no match at all",
    family: V4,
    table: "filter",
    restore: "-s 0.0.0.0/0 -p all -j ACCEPT",
    saved: "-j ACCEPT",
  },
  {
    what: "-d ::/0 is no match at all",
    family: V6,
    table: "filter",
    restore: "-d ::/0 -j ACCEPT",
    saved: "-j ACCEPT",
  },
  {
    what: "a match written after the target",
    family: V4,
    table: "filter",
    restore: "-j REJECT --reject-with tcp-reset -p tcp",
    saved: "-p tcp -j REJECT --reject-with tcp-reset",
    gap: "iptables takes options in any order; normalize files everything after -j as target options",
  },
  {
    what: "a protocol by number",
    family: V4,
    table: "filter",
    restore: "-p 6 --dport 82 -j ACCEPT",
    saved: "-p tcp -m tcp --dport 82 -j ACCEPT",
  },
  {
    what: "an address with leading zeros is octal to iptables",
    family: V4,
    table: "filter",
    restore: "-s 010.0.0.1 -j ACCEPT",
    saved: "-s 8.0.0.1/32 -j ACCEPT",
    gap: "libxtables reads 010 as octal (8); normalize reads it as decimal 10, as kube-proxy's own parser does",
  },
  {
    what: "an IPv4-mapped address",
    family: V6,
    table: "filter",
    restore: "-s ::ffff:1.2.3.4 -j ACCEPT",
    saved: "-s ::ffff:1.2.3.4/128 -j ACCEPT",
    gap: "parseIP refuses ::ffff:a.b.c.d, so normalize leaves the address without /128",
  },
  {
    what: "LOG's default --log-level",
    family: V4,
    table: "filter",
    restore: '-j LOG --log-prefix "kip: " --log-level 4',
    saved: '-j LOG --log-prefix "kip: "',
    gap: "iptables-save leaves out the default level 4; normalize keeps it",
  },
  {
    what: "--destination-port",
    family: V4,
    table: "filter",
    restore: "-p tcp -m tcp --destination-port 83 -j ACCEPT",
    saved: "-p tcp -m tcp --dport 83 -j ACCEPT",
  },
  {
    what: "REJECT --reject-with alias",
    family: V4,
    table: "filter",
    restore: "-j REJECT --reject-with port-unreach",
    saved: "-j REJECT --reject-with icmp-port-unreachable",
    gap: "REJECT type aliases are not mapped to the names iptables-save prints",
  },
];

describe("normalize: what iptables-save rewrites normalises to one rule", () => {
  for (const r of REWRITES) {
    const name = `${r.family} ${r.what}`;
    const check = () => {
      expect(norm(r.restore, r.family)).toBe(norm(r.saved, r.family));
    };
    if (r.gap) test.failing(`${name} — ${r.gap}`, check);
    else test(name, check);
  }

  test("normalising is idempotent, and the line re-splits to the normalised arguments", () => {
    for (const r of REWRITES)
      for (const text of [r.restore, r.saved]) {
        const once = normalizeArgs(args(text), r.family);
        expect(normalizeArgs(once, r.family)).toEqual(once);
        expect(splitArgs(normalizeRule("KIP-NORM", once, r.family))).toEqual(["-A", "KIP-NORM", ...once]);
      }
  });

  test("comments are always quoted, with quotes and backslashes escaped", () => {
    expect(norm("-m comment --comment ns1/svc1:p80 -j ACCEPT")).toBe(
      '-A KIP-NORM -m comment --comment "ns1/svc1:p80" -j ACCEPT',
    );
    expect(normalizeRule("X", ["-m", "comment", "--comment", 'say "hi" C:\\'], "IPv4")).toBe(
      '-A X -m comment --comment "say \\"hi\\" C:\\\\"',
    );
  });

  test("the spec's read-back values for n = 2..10 (§5.4)", () => {
    const back = [
      "0.50000000000",
      "0.33333333349",
      "0.25000000000",
      "0.20000000019",
      "0.16666666651",
      "0.14285714272",
      "0.12500000000",
      "0.11111111101",
      "0.10000000009",
    ];
    for (let n = 2; n <= 10; n++) expect(kernelProbability((1 / n).toFixed(10))).toBe(back[n - 2]);
  });

  test("0.3333333333 ↔ 0.33333333349 for every n = 2..1000", () => {
    for (let n = 2; n <= 1000; n++) {
      const written = (1 / n).toFixed(10);
      const printed = readBack(written);
      expect({ n, k: kernelProbability(written) }).toEqual({ n, k: printed });
      expect(kernelProbability(printed)).toBe(printed);
      const rule = (p: string) =>
        `-m comment --comment "ns/s:p -> 10.0.0.1:80" -m statistic --mode random --probability ${p} -j KUBE-SEP-X`;
      expect(norm(rule(written))).toBe(norm(rule(printed)));
    }
  });
});

/**
 * What iptables-save prints for a probability written as `0.dddddddddd`, computed exactly and
 * apart from normalize.ts: the kernel keeps lround(p × 2^31); iptables prints that / 2^31 with
 * `%.11f` (glibc: exact value, ties to even). p × 2^31 is never within double error of .5 for
 * 10-digit decimals, so the exact rational gives what strtod-then-lround gives.
 */
function readBack(p: string): string {
  const m = /^0\.(\d{1,10})$/.exec(p);
  if (!m) throw new Error(`not a probability: ${p}`);
  const digits = BigInt(m[1].padEnd(10, "0"));
  const ten10 = 10n ** 10n;
  const two31 = 2n ** 31n;
  const k = (2n * digits * two31 + ten10) / (2n * ten10); // round half up
  const scaled = k * 10n ** 11n;
  let q = scaled / two31;
  const r2 = 2n * (scaled % two31);
  if (r2 > two31 || (r2 === two31 && q % 2n === 1n)) q++;
  const s = q.toString().padStart(12, "0");
  return `${s.slice(0, -11)}.${s.slice(-11)}`;
}

describe("normalize: different rules stay different", () => {
  const pairs: { what: string; a: string; b: string; family?: IPFamily }[] = [
    {
      what: "another port",
      a: "-m tcp -p tcp -d 10.0.0.1 --dport 80 -j ACCEPT",
      b: "-m tcp -p tcp -d 10.0.0.1 --dport 81 -j ACCEPT",
    },
    {
      what: "another protocol, same port",
      a: "-m tcp -p tcp --dport 53 -j ACCEPT",
      b: "-m udp -p udp --dport 53 -j ACCEPT",
    },
    {
      what: "a probability beyond the kernel's rounding",
      a: "-m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-X",
      b: "-m statistic --mode random --probability 0.3333333343 -j KUBE-SEP-X",
    },
    {
      what: "the next n",
      a: "-m statistic --mode random --probability 0.0010010010 -j KUBE-SEP-X",
      b: "-m statistic --mode random --probability 0.0010000000 -j KUBE-SEP-X",
    },
    { what: "! -s vs -s", a: "! -s 10.0.0.0/8 -j KUBE-MARK-MASQ", b: "-s 10.0.0.0/8 -j KUBE-MARK-MASQ" },
    { what: "! -d vs -d (IPv6)", a: "! -d ::1/128 -j X", b: "-d ::1/128 -j X", family: "IPv6" },
    {
      what: "! --mark vs --mark",
      a: "-m mark ! --mark 0x4000/0x4000 -j RETURN",
      b: "-m mark --mark 0x4000/0x4000 -j RETURN",
    },
    {
      what: "! --ctstate vs --ctstate",
      a: "-m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP",
      b: "-m conntrack --ctstate RELATED,ESTABLISHED -j DROP",
    },
    {
      what: "another comment",
      a: '-m comment --comment "ns1/svc1:p80 cluster IP" -j X',
      b: '-m comment --comment "ns1/svc1:p81 cluster IP" -j X',
    },
    { what: "a comment in another case", a: "-m comment --comment abc -j X", b: "-m comment --comment ABC -j X" },
    { what: "a comment vs none", a: "-m comment --comment abc -j X", b: "-j X" },
    { what: "another target chain", a: "-j KUBE-SEP-AAAA", b: "-j KUBE-SEP-BBBB" },
    { what: "-j vs -g", a: "-j KUBE-SVC-X", b: "-g KUBE-SVC-X" },
    { what: "MARK or vs xor", a: "-j MARK --or-mark 0x4000", b: "-j MARK --xor-mark 0x4000" },
    { what: "another MARK mask", a: "-j MARK --set-xmark 0x4000/0x4000", b: "-j MARK --set-xmark 0x4000/0xffffffff" },
    { what: "another mark match mask", a: "-m mark --mark 0x4000/0x4000 -j X", b: "-m mark --mark 0x4000 -j X" },
    { what: "REJECT default vs tcp-reset", a: "-p tcp -j REJECT", b: "-p tcp -j REJECT --reject-with tcp-reset" },
    { what: "/32 vs /31", a: "-s 10.0.0.0/32 -j X", b: "-s 10.0.0.0/31 -j X" },
    { what: "-s vs -d", a: "-s 10.0.0.1 -j X", b: "-d 10.0.0.1 -j X" },
    { what: "another IPv6 address", a: "-d fd00::10 -j X", b: "-d fd00::11 -j X", family: "IPv6" },
    {
      what: "--rsource vs --rdest",
      a: "-m recent --name X --set --rsource -j Y",
      b: "-m recent --name X --set --rdest -j Y",
    },
    {
      what: "another affinity timeout",
      a: "-m recent --name X --rcheck --seconds 10800 --reap -j Y",
      b: "-m recent --name X --rcheck --seconds 10801 --reap -j Y",
    },
    {
      what: "another DNAT destination",
      a: "-m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80",
      b: "-m tcp -p tcp -j DNAT --to-destination 10.0.0.1:8080",
    },
    { what: "--random-fully vs not", a: "-j MASQUERADE --random-fully", b: "-j MASQUERADE" },
    {
      // The kernel keeps matches in the order given: to -C/-D these are two rules.
      what: "matches in another order",
      a: "-m comment --comment x -m mark --mark 0x1 -j X",
      b: "-m mark --mark 0x1 -m comment --comment x -j X",
    },
  ];
  for (const p of pairs)
    test(p.what, () => {
      expect(norm(p.a, p.family)).not.toBe(norm(p.b, p.family));
    });

  test("the same rule in another chain", () => {
    expect(norm("-j ACCEPT", "IPv4", "KUBE-A")).not.toBe(norm("-j ACCEPT", "IPv4", "KUBE-B"));
  });

  test("probabilities within the kernel's resolution are one rule", () => {
    expect(norm("-m statistic --mode random --probability 0.5 -j X")).toBe(
      norm("-m statistic --mode random --probability 0.50000000001 -j X"),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// REAL: the saved forms above, every golden output and every probability, in namespaces.

const skip = skipRealIptables();
const BACKENDS = ["nft", "legacy"] as const;

/** Binary names. Real calls pass `-w 20`: legacy takes the host-wide xtables lock, which
 * another test on this machine may hold for a while. */
function tools(family: IPFamily, backend: (typeof BACKENDS)[number]) {
  const base = family === "IPv4" ? "iptables" : "ip6tables";
  return { restore: `${base}-${backend}-restore`, save: `${base}-${backend}-save` };
}

function ok(r: Exec, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** Golden restore outputs that load for real (no `--nfacct`: its objects would not exist). */
const goldens = () => goldenRestores().filter((g) => !g.nfacct);

/** Normalised rules per `table/chain`, for the chains a restore text declares. */
function normalizedChains(text: string, family: IPFamily, only?: Set<string>): Map<string, string[]> {
  const d = parseSave(text);
  expect(d.errors).toEqual([]);
  const out = new Map<string, string[]>();
  for (const t of d.tables.values()) {
    for (const c of t.chains.keys()) if (!only || only.has(`${t.name}/${c}`)) out.set(`${t.name}/${c}`, []);
    for (const r of t.rules) out.get(`${t.name}/${r.chain}`)?.push(normalizeRule(r.chain, r.args, family));
  }
  return out;
}

describe.skipIf(skip)("REAL: iptables-save prints the saved forms above", () => {
  for (const backend of BACKENDS)
    test(backend, async () => {
      await withNetns((_ns, run) => {
        for (const family of [V4, V6])
          for (const table of ["filter", "nat"] as const) {
            const cases = REWRITES.filter((r) => r.family === family && r.table === table);
            if (cases.length === 0) continue;
            const bin = tools(family, backend);
            const input = [
              `*${table}`,
              ":KIP-NORM - [0:0]",
              ":KUBE-MARK-MASQ - [0:0]",
              ":KUBE-NODEPORTS - [0:0]",
              ":KUBE-SEP-X - [0:0]",
              ...cases.map((c) => `-A KIP-NORM ${c.restore}`),
              "COMMIT",
              "",
            ].join("\n");
            ok(run([bin.restore, "-w", "20", "--noflush"], input), `${family} ${table} load`);
            const d = parseSave(ok(run([bin.save, "-t", table]), "save"));
            expect(d.errors).toEqual([]);
            const saved = d.tables.get(table)!.rules.filter((r) => r.chain === "KIP-NORM");
            expect(saved.map((r) => ({ what: r.args }))).toEqual(cases.map((c) => ({ what: args(c.saved) })));
          }
      });
    });
});

describe.skipIf(skip)("REAL: every golden output normalises to what iptables-save prints back", () => {
  const all = goldens();
  test("there are IPv4 and IPv6 golden outputs", () => {
    expect(all.filter((g) => g.family === "IPv4").length).toBeGreaterThan(10);
    expect(all.filter((g) => g.family === "IPv6").length).toBeGreaterThan(1);
  });
  for (const backend of BACKENDS)
    for (const g of all)
      test(`${backend} ${g.family}: ${g.name}`, async () => {
        const bin = tools(g.family, backend);
        await withNetns((_ns, run) => {
          ok(run([bin.restore, "-w", "20", "--noflush", "--counters"], g.text), "load");
          const want = normalizedChains(g.text, g.family);
          const have = normalizedChains(ok(run([bin.save]), "save"), g.family, new Set(want.keys()));
          // Every declared chain is there, and every chain holds the same rules in order.
          expect([...have.keys()].sort()).toEqual([...want.keys()].sort());
          for (const [chain, rules] of want) expect({ chain, rules: have.get(chain) }).toEqual({ chain, rules });
        });
      });
});

describe.skipIf(skip)("REAL: probabilities 1/n, n = 2..1000, come back as kernelProbability says", () => {
  for (const backend of BACKENDS)
    test(backend, async () => {
      const bin = tools("IPv4", backend);
      const written = Array.from({ length: 999 }, (_, i) => (1 / (i + 2)).toFixed(10));
      const input = [
        "*filter",
        ":KIP-PROB - [0:0]",
        ...written.map((p) => `-A KIP-PROB -m statistic --mode random --probability ${p} -j RETURN`),
        "COMMIT",
        "",
      ].join("\n");
      await withNetns((_ns, run) => {
        ok(run([bin.restore, "-w", "20", "--noflush"], input), "load");
        const rules = parseSave(ok(run([bin.save, "-t", "filter"]), "save"))
          .tables.get("filter")!
          .rules.filter((r) => r.chain === "KIP-PROB");
        const printed = rules.map((r) => r.args[r.args.indexOf("--probability") + 1]);
        expect(printed).toEqual(written.map(kernelProbability));
        expect(printed).toEqual(written.map(readBack));
        for (let i = 0; i < written.length; i++)
          expect(normalizeRule("KIP-PROB", rules[i].args, "IPv4")).toBe(
            norm(`-m statistic --mode random --probability ${written[i]} -j RETURN`, "IPv4", "KIP-PROB"),
          );
      });
    });
});
