/**
 * kip diff and kip cleanup as a user runs them: exit codes, messages, offline modes.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { kip } from "../support/binary.ts";
import { exec } from "../support/netns.ts";
import { tempDir } from "../support/tempdir.ts";

const SEED = ["examples/seed", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];
const V6 = ["tests/fixtures/ipv6-nodeport-local", "--hostname-override", "test-node", "--ip-family", "IPv6"];
const live = (name: string) => `tests/fixtures-live/${name}.rules`;

function tmpFile(name: string, text: string): string {
  const p = join(tempDir("kip-diff-"), name);
  writeFileSync(p, text);
  return p;
}

describe("kip diff --live FILE (offline)", () => {
  for (const backend of ["nft", "legacy"]) {
    test(`a dump from the ${backend} backend matches what kip renders`, () => {
      expect(kip(["diff", ...SEED, "--live", live(`seed-iptables-${backend}`)])).toEqual({
        code: 0,
        stdout: "kip diff: IPv4: no drift\n",
        stderr: "",
      });
      expect(kip(["diff", ...V6, "--live", live(`ipv6-nodeport-local-ip6tables-${backend}`)]).stdout).toBe(
        "kip diff: IPv6: no drift\n",
      );
    });
  }

  test("drift: exit 1, a unified diff per chain, then the summary", () => {
    const dump = readFileSync(live("seed-iptables-nft"), "utf8")
      .split("\n")
      .filter((l) => !l.includes("default/nginx-svc -> 10.244.1.16:80"))
      .join("\n");
    const r = kip(["diff", ...SEED, "--live", tmpFile("node1.rules", dump)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("--- live nat/KUBE-SVC-HL5LMXD5JFHQZ6LN\n+++ desired nat/KUBE-SVC-HL5LMXD5JFHQZ6LN\n");
    expect(r.stdout).toContain(
      '+-A KUBE-SVC-HL5LMXD5JFHQZ6LN -m comment --comment "default/nginx-svc -> 10.244.1.16:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-DUL3TOEKR4Q7XNNH\n',
    );
    expect(r.stdout.trimEnd().split("\n").at(-1)).toBe(
      "kip diff: IPv4: 0 chains missing, 0 extra, 1 changed; rules +1 -0",
    );
    const j = JSON.parse(kip(["diff", ...SEED, "--live", tmpFile("n.rules", dump), "-o", "json"]).stdout);
    expect(j).toMatchObject({ family: "IPv4", drift: true, summary: { changed: 1, rulesAdded: 1, rulesRemoved: 0 } });
    expect(j.chains[0]).toMatchObject({
      table: "nat",
      chain: "KUBE-SVC-HL5LMXD5JFHQZ6LN",
      status: "changed",
      removed: [],
    });
  });

  test("stale chains on the node are extra, chains the node lacks are missing", () => {
    const dump = readFileSync(live("seed-iptables-legacy"), "utf8")
      .replace("*nat\n", "*nat\n:KUBE-SEP-STALEXXXXXXXXXXX - [0:0]\n")
      .split("\n")
      .filter((l) => !l.includes("KUBE-SEP-OJQRYVIILJUTFXOB") || l.includes("-j KUBE-SEP-OJQRYVIILJUTFXOB"))
      .join("\n");
    const r = kip(["diff", ...SEED, "--live", tmpFile("n.rules", dump), "-o", "json"]);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout);
    const status = Object.fromEntries(j.chains.map((c: { chain: string; status: string }) => [c.chain, c.status]));
    expect(status).toEqual({ "KUBE-SEP-OJQRYVIILJUTFXOB": "missing", "KUBE-SEP-STALEXXXXXXXXXXX": "extra" });
  });

  test("rules of other programs are not drift", () => {
    const dump = readFileSync(live("seed-iptables-nft"), "utf8").replace(
      "*filter\n",
      "*filter\n:DOCKER - [0:0]\n-A FORWARD -j DOCKER\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n",
    );
    expect(kip(["diff", ...SEED, "--live", tmpFile("n.rules", dump)]).code).toBe(0);
  });

  test("a dump of the other family than --ip-family, or not a dump at all, is trouble (exit 2)", () => {
    expect(kip(["diff", ...SEED, "--ip-family", "IPv4", "--live", live("ipv6-nodeport-local-ip6tables-nft")])).toEqual({
      code: 2,
      stdout: "",
      stderr: `kip: ${live("ipv6-nodeport-local-ip6tables-nft")} was written by ip6tables-nft-save: compare it with --ip-family IPv6\n`,
    });
    const bad = tmpFile("x.rules", "hello\n");
    expect(kip(["diff", ...SEED, "--live", bad]).stderr).toBe(
      `kip: ${bad}:1: outside a table (no *table line before it) (is it iptables-save output?)\n`,
    );
    expect(kip(["diff", ...SEED, "--live", "/no/such/file"]).code).toBe(2);
  });

  test("one dump is one family: without --ip-family, the dump's generator line picks it", () => {
    const v6 = V6.filter((a) => a !== "--ip-family" && a !== "IPv6");
    const same = kip(["diff", ...v6, "--live", live("ipv6-nodeport-local-ip6tables-legacy")]);
    expect([same.code, same.stdout]).toEqual([0, "kip diff: IPv6: no drift\n"]);
    // The seed's manifests have no IPv6 Service: against an IPv6 node, its chains are extra.
    const r = kip(["diff", ...SEED, "--live", live("ipv6-nodeport-local-ip6tables-nft")]);
    expect(r.code).toBe(1);
    expect(r.stdout.trimEnd().split("\n").at(-1)).toMatch(/^kip diff: IPv6: 0 chains missing, \d+ extra/);
    // No generator line (restore input, a hand-made file): --ip-family, else IPv4.
    const bare = readFileSync(live("seed-iptables-nft"), "utf8").replace(/^# .*\n/gm, "");
    expect(kip(["diff", ...SEED, "--live", tmpFile("bare.rules", bare)]).stdout).toBe("kip diff: IPv4: no drift\n");
  });

  test("diff(1) hunk ranges, and a chain that appears or goes away shows its declaration", () => {
    const dump = readFileSync(live("seed-iptables-legacy"), "utf8")
      .replace("*nat\n", "*nat\n:KUBE-SEP-STALEXXXXXXXXXXX - [0:0]\n")
      .split("\n")
      .filter((l) => !l.includes("KUBE-SEP-OJQRYVIILJUTFXOB") || l.includes("-j KUBE-SEP-OJQRYVIILJUTFXOB"))
      .join("\n");
    const r = kip(["diff", ...SEED, "--live", tmpFile("n.rules", dump)]);
    expect(r.code).toBe(1);
    // An empty extra chain: one line, not bare ---/+++ headers; an empty side is -0,0 / +0,0.
    expect(r.stdout).toContain(
      "--- live nat/KUBE-SEP-STALEXXXXXXXXXXX\n+++ desired nat/KUBE-SEP-STALEXXXXXXXXXXX\n@@ -1 +0,0 @@\n-:KUBE-SEP-STALEXXXXXXXXXXX - [0:0]\n",
    );
    expect(r.stdout).toContain(
      "--- live nat/KUBE-SEP-OJQRYVIILJUTFXOB\n+++ desired nat/KUBE-SEP-OJQRYVIILJUTFXOB\n@@ -0,0 +1,3 @@\n+:KUBE-SEP-OJQRYVIILJUTFXOB - [0:0]\n+-A KUBE-SEP-OJQRYVIILJUTFXOB ",
    );
    expect(r.stdout).not.toMatch(/^@@ -[1-9]\d*,0 |^@@ .* \+[1-9]\d*,0 @@/m);
    // -o json lists rules only, never the declaration line.
    const j = JSON.parse(kip(["diff", ...SEED, "--live", tmpFile("n.rules", dump), "-o", "json"]).stdout);
    for (const c of j.chains) for (const rule of [...c.added, ...c.removed]) expect(rule).toStartWith("-A ");
  });

  test("bad manifests are trouble too, never drift", () => {
    const dir = tempDir("kip-diff-");
    writeFileSync(
      join(dir, "s.yaml"),
      "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: 1.2.3, ports: [{port: 80}]}\n",
    );
    const r = kip(["diff", dir, "--live", live("seed-iptables-nft")]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('spec.clusterIP: "1.2.3" is not a valid IP address');
  });
});

describe("kip diff --from --to (what a PR changes)", () => {
  test("same manifests: no drift; a new endpoint: the SVC chain changes and a SEP chain appears", () => {
    const flags = ["--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];
    expect(kip(["diff", "--from", "examples/seed", "--to", "examples/seed", ...flags]).stdout).toBe(
      "kip diff: IPv4: no drift\n",
    );
    const dir = tempDir("kip-pr-");
    // One more nginx endpoint, in the first slice only (nginx-svc).
    const slices = readFileSync("examples/seed/endpointslices.yaml", "utf8").replace(
      /^(\s*- \{ ?addresses: \[10\.244\.1\.17\].*)$/m,
      "$1\n  - {addresses: [10.244.1.18], conditions: {ready: true}, nodeName: node1}",
    );
    writeFileSync(join(dir, "endpointslices.yaml"), slices);
    writeFileSync(join(dir, "services.yaml"), readFileSync("examples/seed/services.yaml", "utf8"));
    const r = kip(["diff", "--from", "examples/seed", "--to", dir, ...flags, "-o", "json"]);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout);
    const byChain = Object.fromEntries(j.chains.map((c: { chain: string; status: string }) => [c.chain, c.status]));
    expect(byChain["KUBE-SVC-HL5LMXD5JFHQZ6LN"]).toBe("changed");
    expect(Object.values(byChain).filter((s) => s === "missing")).toHaveLength(1);
    expect(kip(["diff", "--from", "examples/seed", ...flags]).stderr).toBe("kip: --from and --to go together\n");
  });
});

describe("kip cleanup: refusing clearly", () => {
  // Not being root is refused first (the test below), so this one needs root.
  test.skipIf(process.getuid?.() !== 0)("no iptables on PATH: exit 2, one line", () => {
    const r = kip(["cleanup"], { env: { PATH: "/nonexistent" } });
    expect(r).toEqual({
      code: 2,
      stdout: "",
      stderr: "kip: no iptables binaries found (install the iptables package)\n",
    });
  });

  test("not root: exit 2, one line, nothing touched", () => {
    if (exec(["which", "setpriv"]).code !== 0 || process.getuid?.() !== 0) return;
    const r = exec(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "dist/kip", "cleanup"]);
    expect(r).toEqual({
      code: 2,
      stdout: "",
      stderr: "kip: cleanup reads and changes iptables: run kip cleanup as root\n",
    });
    const d = exec(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "dist/kip", "diff", ...SEED]);
    expect(d.code).toBe(2);
    expect(d.stderr).toContain("reading the live tables needs root");
  });
});
