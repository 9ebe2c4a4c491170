/**
 * kip explain as a user runs it (the compiled dist/kip): the article's walk, --service,
 * -o json, --live FILE, colour, and exit status 2 for bad input.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { IO } from "../../cli/io.ts";
import { main } from "../../cli/main.ts";
import type { Explanation } from "../../lib/explain/types.ts";
import { ensureBinary, kip } from "../support/binary.ts";
import { tempDir } from "../support/tempdir.ts";

const SEED = ["examples/seed", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];
const ARTICLE = ["explain", ...SEED, "--from", "node", "--dst", "10.97.54.248:80"];
const SEPS = {
  "10.244.1.14:80": "KUBE-SEP-U46YXJIMXXUGWXXH",
  "10.244.1.16:80": "KUBE-SEP-DUL3TOEKR4Q7XNNH",
  "10.244.1.17:80": "KUBE-SEP-OJQRYVIILJUTFXOB",
};

// Build dist/kip once if the sources are newer, with time for it (a build takes ~10 s).
beforeAll(() => {
  ensureBinary();
}, 180_000);

/** Index of each needle in `text`, in order; fails when one is missing or out of order. */
function inOrder(text: string, needles: string[]): void {
  let at = 0;
  for (const n of needles) {
    const i = text.indexOf(n, at);
    expect(i, `${JSON.stringify(n)} after offset ${at}`).toBeGreaterThanOrEqual(0);
    at = i + n.length;
  }
}

describe("kip explain: the article's walk", () => {
  test("OUTPUT → KUBE-SERVICES → KUBE-SVC (1/3 each) → KUBE-SEP → DNAT → POSTROUTING masquerade", () => {
    const r = kip(ARTICLE);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).not.toContain("\x1b[");
    inOrder(out, [
      "kip explain: tcp 192.168.56.11 → 10.97.54.248:80 from the node itself",
      "nat OUTPUT",
      'nat/OUTPUT: -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      'nat/KUBE-SERVICES: -m comment --comment "default/nginx-svc cluster IP" -m tcp -p tcp -d 10.97.54.248 --dport 80 -j KUBE-SVC-HL5LMXD5JFHQZ6LN  ← protocol tcp, dst 10.97.54.248, dport 80',
      "nat/KUBE-SVC-HL5LMXD5JFHQZ6LN: ",
      "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ  ← ",
      "src 192.168.56.11 not in 10.244.0.0/16",
      "nat/KUBE-MARK-MASQ: -j MARK --or-mark 0x00004000  ← every packet; mark 0x0 → 0x4000",
    ]);
    // Three branches of 1/3, one per endpoint chain, each DNAT → routing → filter → POSTROUTING.
    for (const [ep, sep] of Object.entries(SEPS)) {
      const branch = out.slice(out.indexOf(`1/3 (33.3%) → ${ep}`));
      inOrder(branch, [
        `1/3 (33.3%) → ${ep}`,
        `-j ${sep}  ← `,
        `nat/${sep}: -m comment --comment default/nginx-svc -m tcp -p tcp -j DNAT --to-destination ${ep}`,
        `DNAT: dst 10.97.54.248:80 → ${ep}`,
        `routing: ${ep.split(":")[0]} is not a local address`,
        "filter OUTPUT",
        "nat POSTROUTING",
        "nat/KUBE-POSTROUTING: -j MARK --xor-mark 0x00004000",
        "-j MASQUERADE --random-fully  ← every packet; MASQUERADE: src 192.168.56.11 → ",
        `⇒ DNAT to ${ep} (${sep}), masqueraded`,
      ]);
    }
    expect(out.match(/1\/3 \(33\.3%\) → /g)?.length).toBe(3);
    inOrder(out, [
      "Destinations:",
      "1/3 (33.3%)  DNAT to 10.244.1.14:80 (KUBE-SEP-U46YXJIMXXUGWXXH), masqueraded",
      "Masquerade: yes (nat/KUBE-POSTROUTING: MASQUERADE --random-fully",
      "Verdict: DNAT to one of 3 endpoints of default/nginx-svc",
    ]);
  });

  test("README shows the real output of the article's example", () => {
    const readme = readFileSync(join(import.meta.dir, "..", "..", "README.md"), "utf8");
    const m = /```console\n\$ kip explain examples\/seed [^\n]*\n([\s\S]*?)```/.exec(readme);
    expect(m).not.toBeNull();
    const shown = (m?.[1] ?? "").split("\n").filter((l) => l !== "" && !l.includes("…  (the same walk"));
    inOrder(kip(ARTICLE).stdout, shown);
  });

  test("--service default/nginx-svc names the same destination", () => {
    const r = kip(["explain", ...SEED, "--from", "node", "--service", "default/nginx-svc"]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").slice(1)).toEqual(kip(ARTICLE).stdout.split("\n").slice(1));
  });

  test("-o json: packet, tree, outcomes with probabilities, masquerade, verdict", () => {
    const r = kip([...ARTICLE, "-o", "json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as Explanation & { rules: string };
    expect(j.rules).toContain("rendered from examples/seed");
    expect(j.packet).toEqual({ proto: "tcp", src: "192.168.56.11", dst: "10.97.54.248", dport: 80, from: "node" });
    expect(j.outcomes.map((o) => [o.dnat, o.endpointChain, o.verdict, o.service, o.masquerade?.how]).sort()).toEqual(
      Object.entries(SEPS).map(([ep, sep]) => [ep, sep, "DNAT", "default/nginx-svc", "MASQUERADE"]),
    );
    for (const o of j.outcomes) expect(o.probability).toBeCloseTo(1 / 3, 9);
    expect(j.masquerade).toBe("always");
    expect(j.verdict).toBe("DNAT to one of 3 endpoints of default/nginx-svc");
    expect(j.tree.events.map((e) => e.kind === "rule" && e.chain)).toEqual([
      false,
      "OUTPUT",
      "KUBE-SERVICES",
      "KUBE-SVC-HL5LMXD5JFHQZ6LN",
      "KUBE-MARK-MASQ",
    ]);
    expect(j.tree.children.length).toBe(3);
    expect(j.unknown).toEqual([]);
  });

  test("from a pod: not masqueraded; the next connection of an affinity service sticks", () => {
    const r = kip(["explain", ...SEED, "--dst", "10.97.54.248:80", "--src", "10.244.1.20"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Masquerade: no: the endpoint sees the client's own address 10.244.1.20");
    const aff = kip(["explain", "tests/e2e/manifests", ...SEED.slice(1), "--dst", "10.96.100.10:80", "-o", "json"]);
    expect(aff.code).toBe(0);
    const j = JSON.parse(aff.stdout) as Explanation;
    expect(j.packet.src).toBe("10.244.255.254");
    for (const o of j.outcomes) {
      expect(o.affinity?.seconds).toBe(600);
      expect(o.affinity?.next).toEqual([{ probability: 1, verdict: "DNAT", dnat: o.dnat }]);
    }
  });

  test("--live FILE: a node's iptables-save dump gives the same destinations", () => {
    const live = kip([
      "explain",
      "--live",
      "tests/fixtures-live/seed-iptables-legacy.rules",
      "--from",
      "node",
      "--node-ip",
      "192.168.56.11",
      "--dst",
      "10.97.54.248:80",
    ]);
    expect(live.code).toBe(0);
    expect(live.stdout).toContain("rules: tests/fixtures-live/seed-iptables-legacy.rules (iptables-save)");
    for (const [ep, sep] of Object.entries(SEPS))
      expect(live.stdout).toContain(`1/3 (33.3%)  DNAT to ${ep} (${sep}), masqueraded`);
    expect(live.stdout).toContain("-m statistic --mode random --probability 0.33333333349");
  });

  test("--live FILE is one family: the dump's own, so --service finds an IPv6 Service without --ip-family", () => {
    const r = kip([
      "explain",
      "--live",
      "tests/fixtures-live/ipv6-nodeport-local-ip6tables-nft.rules",
      "--service",
      "ns1/svc1",
      "--from",
      "external",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Verdict: DNAT to one of 2 endpoints of ns1/svc1:p80");
  });

  test("--live with no kube-proxy rules at all: still exit 0, but said on stderr and in the notes", () => {
    const dir = tempDir("kip-explain-");
    const file = join(dir, "bare.rules");
    writeFileSync(
      file,
      "# Generated by iptables-nft-save v1.8.9\n*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    );
    const r = kip(["explain", "--live", file, "--dst", "10.96.0.10:53", "--src", "10.244.0.5"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Verdict: no service: no rule translated 10.96.0.10:53");
    const why = `${file} holds no kube-proxy rules (no KUBE-SERVICES chain): kube-proxy or kip sync has not written IPv4 rules there, so no Service is translated`;
    expect(r.stderr).toBe(`kip: warning: ${why}\n`);
    expect(r.stdout).toContain(`No kube-proxy rules: ${why}.`);
    // The seed's dump has them: no such warning.
    const seed = kip(["explain", "--live", "tests/fixtures-live/seed-iptables-nft.rules", "--dst", "10.1.2.3:80"]);
    expect(seed.stderr).not.toContain("no kube-proxy rules");
  });

  test("no service, REJECT and DROP are explained with exit 0", () => {
    const none = kip(["explain", ...SEED, "--dst", "10.1.2.3:80", "--src", "10.244.1.20"]);
    expect(none.code).toBe(0);
    expect(none.stdout).toContain("Verdict: no service: no rule translated 10.1.2.3:80");
    const dir = tempDir("kip-explain-");
    writeFileSync(
      join(dir, "svc.yaml"),
      "apiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: ns1}\nspec:\n  clusterIP: 10.96.7.7\n  ports: [{port: 80}]\n",
    );
    const rej = kip(["explain", dir, "--cluster-cidr", "10.244.0.0/16", "--dst", "10.96.7.7:80"]);
    expect(rej.code).toBe(0);
    expect(rej.stdout).toContain(
      "Verdict: REJECT (icmp-port-unreachable) by filter/KUBE-SERVICES: ns1/empty has no endpoints",
    );
  });
});

describe("kip explain: bad input is exit 2, nothing on stdout", () => {
  const cases: [string, string[], RegExp][] = [
    ["no destination", ["explain", ...SEED], /--dst IP:PORT or --service/],
    ["bad --dst", ["explain", ...SEED, "--dst", "10.97.54.248"], /--dst "10.97.54.248" is not IP:PORT/],
    ["IPv6 without brackets", ["explain", ...SEED, "--dst", "fd00::1:80"], /write IPv6 as \[addr\]:port/],
    ["port out of range", ["explain", ...SEED, "--dst", "10.0.0.1:70000"], /out of range/],
    ["--dst and --service", ["explain", ...SEED, "--dst", "10.0.0.1:80", "--service", "a/b"], /give one/],
    [
      "unknown service",
      ["explain", ...SEED, "--service", "default/nope"],
      /Service "default\/nope" is not in the rules/,
    ],
    ["ambiguous service", ["explain", ...SEED, "--service", "kube-system/kube-dns"], /has 3 ports/],
    [
      "bad --from",
      ["explain", ...SEED, "--dst", "10.0.0.1:80", "--from", "moon"],
      /Allowed choices are pod, node, external/,
    ],
    ["bad --src", ["explain", ...SEED, "--dst", "10.0.0.1:80", "--src", "x"], /--src "x" is not an IP address/],
    ["family mix", ["explain", ...SEED, "--dst", "10.0.0.1:80", "--src", "fd00::1"], /is not IPv4/],
    ["no rules", ["explain", "--dst", "10.0.0.1:80"], /no rules/],
    ["PATH and --live", ["explain", ...SEED, "--live", "x.rules", "--dst", "10.0.0.1:80"], /not both/],
    [
      "missing dump",
      ["explain", "--live", "/nonexistent.rules", "--dst", "10.0.0.1:80", "--src", "10.244.0.5"],
      /Cannot read --live/,
    ],
    [
      "dump of the other family",
      [
        "explain",
        "--live",
        "tests/fixtures-live/seed-iptables-nft.rules",
        "--dst",
        "[fd00::1]:80",
        "--from",
        "external",
      ],
      /has no IPv6 rules/,
    ],
    ["bad manifests", ["explain", "tests/fixtures/bad-port-range", "--dst", "10.0.0.1:80"], /errors? in the manifests/],
    [
      "--in-interface from the node",
      ["explain", ...SEED, "--dst", "10.0.0.1:80", "--from", "node", "--in-interface", "eth0"],
      /do not arrive/,
    ],
  ];
  for (const [name, argv, err] of cases)
    test(name, () => {
      const r = kip(argv);
      expect(r.stderr).toMatch(err);
      expect(r.stdout).toBe("");
      expect(r.code).toBe(2);
    });

  test("--help shows the example", () => {
    const r = kip(["explain", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("--from node --dst 10.97.54.248:80");
    expect(r.stdout).toContain("Exit status: 0 explained");
  });
});

describe("kip explain: colour", () => {
  async function run(argv: string[], tty: boolean, env: Record<string, string> = {}): Promise<string> {
    let out = "";
    const io: IO = {
      stdout: (t) => {
        out += t;
      },
      stderr: () => {},
      readStdin: () => "",
      readFile: (p) => readFileSync(p, "utf8"),
      hostname: () => "test-host",
      stdoutIsTTY: tty,
      stderrIsTTY: false,
      env,
    };
    expect(await main(argv, io)).toBe(0);
    return out;
  }

  test("on a terminal, unless --no-color or NO_COLOR", async () => {
    expect(await run(ARTICLE, true)).toContain("\x1b[1mnat OUTPUT\x1b[0m");
    expect(await run([...ARTICLE, "--no-color"], true)).not.toContain("\x1b[");
    expect(await run(ARTICLE, true, { NO_COLOR: "1" })).not.toContain("\x1b[");
    expect(await run(ARTICLE, false)).not.toContain("\x1b[");
  });
});
