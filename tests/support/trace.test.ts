import { describe, expect, test } from "bun:test";
import { type Outcome, tokenize, trace } from "./trace.ts";

const HOST = { localAddresses: ["192.168.0.10"] };

const HEAD = `*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
`;
const FORWARD = `-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
`;
const POST = `-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
`;
const TAIL = `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`;

/** One ClusterIP service 172.30.0.41:80 with three endpoints, `ns1/svc1:p80`. */
const THREE = `${HEAD}${FORWARD}:KUBE-SVC-A - [0:0]
:KUBE-SEP-1 - [0:0]
:KUBE-SEP-2 - [0:0]
:KUBE-SEP-3 - [0:0]
${POST}-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-A -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:8080" -m recent --name KUBE-SEP-1 --rcheck --seconds 10800 --reap -j KUBE-SEP-1
-A KUBE-SVC-A -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:8080" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-1
-A KUBE-SVC-A -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-2
-A KUBE-SVC-A -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:8080" -j KUBE-SEP-3
-A KUBE-SEP-1 -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-1 -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-1 --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:8080
-A KUBE-SEP-2 -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-2 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:8080
-A KUBE-SEP-3 -m comment --comment ns1/svc1:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-3 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:8080
${TAIL}`;

const byDest = (outs: Outcome[]) => Object.fromEntries(outs.map((o) => [o.dnat ?? o.verdict, o.probability]));

describe("tokenize", () => {
  test("keeps quoted comments as one token", () => {
    expect(tokenize('-A X -m comment --comment "a b: c" -j Y')).toEqual([
      "-A",
      "X",
      "-m",
      "comment",
      "--comment",
      "a b: c",
      "-j",
      "Y",
    ]);
  });
});

describe("trace", () => {
  test("three endpoints get 1/3 each, pod traffic is not masqueraded", () => {
    const pkt = { src: "10.1.0.5", dst: "172.30.0.41", dport: 80, proto: "tcp", from: "pod" } as const;
    const { outcomes } = trace(THREE, pkt, HOST);
    expect(outcomes.map((o) => o.verdict)).toEqual(["DNAT", "DNAT", "DNAT"]);
    const d = byDest(outcomes);
    for (const ep of ["10.180.0.1:8080", "10.180.0.2:8080", "10.180.0.3:8080"]) expect(d[ep]).toBeCloseTo(1 / 3, 9);
    expect(outcomes.every((o) => !o.masquerade)).toBe(true);
    expect(outcomes[0].chains).toEqual([
      "nat:KUBE-SERVICES",
      "nat:KUBE-SVC-A",
      "nat:KUBE-SEP-1",
      "filter:KUBE-PROXY-FIREWALL",
      "filter:KUBE-FORWARD",
      "filter:KUBE-SERVICES",
      "filter:KUBE-EXTERNAL-SERVICES",
      "nat:KUBE-POSTROUTING",
    ]);
  });

  test("traffic from outside the cluster CIDR is masqueraded, hairpin traffic too", () => {
    const ext = { src: "192.0.2.7", dst: "172.30.0.41", dport: 80, proto: "tcp", from: "external" } as const;
    const out = trace(THREE, ext, HOST).outcomes;
    expect(out.length).toBe(3);
    expect(out.every((o) => o.masquerade && o.verdict === "DNAT")).toBe(true);
    expect(out.some((o) => o.chains.includes("nat:KUBE-MARK-MASQ"))).toBe(true);

    const hairpin = { src: "10.180.0.2", dst: "172.30.0.41", dport: 80, proto: "tcp", from: "pod" } as const;
    const masq = trace(THREE, hairpin, HOST).outcomes.map((o) => [o.dnat, o.masquerade]);
    expect(masq.sort()).toEqual([
      ["10.180.0.1:8080", false],
      ["10.180.0.2:8080", true],
      ["10.180.0.3:8080", false],
    ]);
  });

  test("other ports, protocols and addresses are untouched", () => {
    for (const pkt of [
      { src: "10.1.0.5", dst: "172.30.0.41", dport: 81, proto: "tcp", from: "pod" },
      { src: "10.1.0.5", dst: "172.30.0.41", dport: 80, proto: "udp", from: "pod" },
      { src: "10.1.0.5", dst: "172.30.0.42", dport: 80, proto: "tcp", from: "pod" },
    ] as const)
      expect(trace(THREE, pkt, HOST).outcomes.map((o) => [o.verdict, o.probability, o.masquerade])).toEqual([
        ["NONE", 1, false],
      ]);
  });

  test("a service without endpoints is rejected in filter KUBE-SERVICES", () => {
    const text = `${HEAD}-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
${FORWARD}${POST}${TAIL}`;
    for (const from of ["pod", "node"] as const) {
      const pkt = {
        src: from === "pod" ? "10.1.0.5" : "192.168.0.10",
        dst: "172.30.0.46",
        dport: 80,
        proto: "tcp",
        from,
      } as const;
      const { outcomes } = trace(text, pkt, HOST);
      expect(outcomes.map((o) => [o.verdict, o.probability, o.masquerade])).toEqual([["REJECT", 1, false]]);
      expect(outcomes[0].chains.at(-1)).toBe("filter:KUBE-SERVICES");
    }
  });

  test("load balancer source ranges: allowed sources are DNATed, others dropped", () => {
    const text = `${HEAD}-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-F" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
${FORWARD}:KUBE-EXT-F - [0:0]
:KUBE-FW-F - [0:0]
:KUBE-SVC-F - [0:0]
:KUBE-SEP-F - [0:0]
${POST}-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-F
-A KUBE-EXT-F -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-F -j KUBE-SVC-F
-A KUBE-FW-F -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-F
-A KUBE-FW-F -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-SVC-F -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-F
-A KUBE-SEP-F -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-F -m comment --comment ns5/svc5:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
${TAIL}`;
    const pkt = (src: string) => ({ src, dst: "5.6.7.8", dport: 80, proto: "tcp", from: "external" }) as const;
    const allowed = trace(text, pkt("203.0.113.100"), HOST).outcomes;
    expect(allowed.map((o) => [o.verdict, o.dnat, o.masquerade, o.probability])).toEqual([
      ["DNAT", "10.180.0.3:80", true, 1],
    ]);
    const denied = trace(text, pkt("203.0.113.200"), HOST).outcomes;
    expect(denied.map((o) => [o.verdict, o.dnat, o.masquerade, o.probability])).toEqual([
      ["DROP", undefined, false, 1],
    ]);
    expect(denied[0].chains).toContain("nat:KUBE-FW-F");
    expect(denied[0].chains.at(-1)).toBe("filter:KUBE-PROXY-FIREWALL");
  });

  test("IPv6 DNAT and NodePort on a local address, ETP=Local short-circuits", () => {
    const text = `${HEAD}${FORWARD}:KUBE-EXT-L - [0:0]
:KUBE-SVC-L - [0:0]
:KUBE-SVL-L - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
${POST}-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-L
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS
-A KUBE-EXT-L -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s fd00:10::/64 -j KUBE-SVC-L
-A KUBE-EXT-L -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-L -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-L
-A KUBE-EXT-L -j KUBE-SVL-L
-A KUBE-SVC-L -m comment --comment "ns1/svc1:p80 -> [ff06::c1]:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-A
-A KUBE-SVC-L -m comment --comment "ns1/svc1:p80 -> [ff06::c2]:80" -j KUBE-SEP-B
-A KUBE-SVL-L -m comment --comment "ns1/svc1:p80 -> [ff06::c2]:80" -j KUBE-SEP-B
-A KUBE-SEP-A -m comment --comment ns1/svc1:p80 -s ff06::c1 -j KUBE-MARK-MASQ
-A KUBE-SEP-A -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [ff06::c1]:80
-A KUBE-SEP-B -m comment --comment ns1/svc1:p80 -s ff06::c2 -j KUBE-MARK-MASQ
-A KUBE-SEP-B -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [ff06::c2]:80
COMMIT
`;
    const host = { localAddresses: ["2001:db8::10"] };
    const ext = trace(
      text,
      { src: "2001:db8:9::1", dst: "2001:db8::10", dport: 3001, proto: "tcp", from: "external" },
      host,
    );
    expect(ext.outcomes.map((o) => [o.verdict, o.dnat, o.masquerade, o.probability])).toEqual([
      ["DNAT", "[ff06::c2]:80", false, 1],
    ]);
    const node = trace(
      text,
      { src: "2001:db8::10", dst: "2001:db8::10", dport: 3001, proto: "tcp", from: "node" },
      host,
    );
    expect(byDest(node.outcomes)).toEqual({ "[ff06::c1]:80": 0.5, "[ff06::c2]:80": 0.5 });
    expect(node.outcomes.every((o) => o.masquerade)).toBe(true);
    // Loopback is excluded from IPv6 NodePorts.
    const lo = trace(text, { src: "::1", dst: "::1", dport: 3001, proto: "tcp", from: "node" }, host);
    expect(lo.outcomes.map((o) => o.verdict)).toEqual(["NONE"]);
  });

  test("unknown match modules and options are errors, not guesses", () => {
    const text = (rule: string) => `*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES ${rule}\nCOMMIT\n`;
    const pkt = { src: "10.1.0.5", dst: "172.30.0.41", dport: 80, proto: "tcp", from: "pod" } as const;
    expect(() => trace(text("-m multiport --dports 80,81 -j DROP"), pkt, HOST)).toThrow(
      "unknown match module: multiport",
    );
    expect(() => trace(text("-m tcp -p tcp --sport 80 -j DROP"), pkt, HOST)).toThrow("--sport");
    expect(() => trace(text("-m statistic --mode nth --every 2 -j DROP"), pkt, HOST)).toThrow("--mode");
    expect(() => trace(text("-j KUBE-NOPE"), pkt, HOST)).toThrow("unknown chain nat:KUBE-NOPE");
  });
});
