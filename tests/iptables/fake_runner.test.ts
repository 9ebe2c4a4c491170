/**
 * FakeRunner: its own semantics first (restore, save, run), then PARITY with the real tools:
 * the same restore inputs and iptables commands, applied in sequence to the fake and to
 * iptables-nft / iptables-legacy in a network namespace, must succeed or fail together and
 * leave the same chains with the same (normalised) rules. Where the fake is known to differ,
 * a `test.failing` says how, next to a passing test that pins what the real tools do.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ExecRunner } from "../../lib/iptables/exec_runner.ts";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import { normalizeRule } from "../../lib/iptables/normalize.ts";
import { quoteArg, ruleTarget } from "../../lib/iptables/rule.ts";
import { CommandError, failedLine, RestoreError, type RestoreOptions, type Runner } from "../../lib/iptables/runner.ts";
import { BUILTIN_CHAINS, parseSave } from "../../lib/iptables/save_parser.ts";
import type { IPFamily } from "../../lib/model/ip.ts";
import { FIXTURES } from "../support/fixtures.ts";
import { type Exec, skipRealIptables, withNetns } from "../support/netns.ts";

const NOFLUSH: RestoreOptions = { noflush: true };

/** iptables' "nothing to act on" answers: the fake's failures read like the real tools'. */
const isNotFound = (stderr: string) =>
  /No chain\/target\/match by that name|No such file or directory|does a matching rule exist|does not exist/.test(
    stderr,
  );

/** Restore and report whether it worked; anything but a RestoreError is a bug in the fake. */
async function attempt(f: FakeRunner, input: string, opts: RestoreOptions = NOFLUSH): Promise<RestoreError | null> {
  try {
    await f.restore(input, opts);
    return null;
  } catch (e) {
    if (e instanceof RestoreError) return e;
    throw e;
  }
}

/** `table/chain` → rules as saved (arguments joined), built-in chains without rules left out. */
async function rulesOf(f: FakeRunner, table?: string): Promise<Record<string, string[]>> {
  const d = parseSave(await f.save(table));
  expect(d.errors).toEqual([]);
  const out: Record<string, string[]> = {};
  for (const t of d.tables.values()) {
    for (const c of t.chains.keys()) out[`${t.name}/${c}`] = [];
    for (const r of t.rules) out[`${t.name}/${r.chain}`].push(r.args.join(" "));
    for (const c of t.chains.keys())
      if (BUILTIN_CHAINS.has(c) && out[`${t.name}/${c}`].length === 0) delete out[`${t.name}/${c}`];
  }
  return out;
}

const BASE = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A1 - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-SERVICES -m comment --comment "ns/a:p cluster IP" -m tcp -p tcp -d 10.96.0.1 --dport 80 -j KUBE-SVC-A
-A KUBE-SVC-A -m comment --comment "ns/a:p -> 10.0.0.1:80" -j KUBE-SEP-A1
-A KUBE-SEP-A1 -m comment --comment ns/a:p -s 10.0.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-A1 -m comment --comment ns/a:p -m tcp -p tcp -j DNAT --to-destination 10.0.0.1:80
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
COMMIT
`;

async function based(): Promise<FakeRunner> {
  const f = new FakeRunner();
  expect(await attempt(f, BASE)).toBeNull();
  return f;
}

describe("FakeRunner.restore", () => {
  test("--noflush keeps the chains it does not name", async () => {
    const f = await based();
    expect(await attempt(f, "*nat\n:KUBE-NODEPORTS - [0:0]\n-A KUBE-NODEPORTS -j RETURN\nCOMMIT\n")).toBeNull();
    const r = await rulesOf(f, "nat");
    expect(r["nat/KUBE-SVC-A"]).toEqual(["-m comment --comment ns/a:p -> 10.0.0.1:80 -j KUBE-SEP-A1"]);
    expect(r["nat/KUBE-SEP-A1"]).toHaveLength(2);
    expect(r["nat/KUBE-NODEPORTS"]).toEqual(["-j RETURN"]);
  });

  test("without --noflush the named table is replaced, others are kept", async () => {
    const f = await based();
    await f.restore("*filter\n:KUBE-FORWARD - [0:0]\n-A KUBE-FORWARD -j ACCEPT\nCOMMIT\n", NOFLUSH);
    expect(await attempt(f, "*nat\n:KUBE-NEW - [0:0]\nCOMMIT\n", { noflush: false })).toBeNull();
    const r = await rulesOf(f);
    expect(Object.keys(r).filter((k) => k.startsWith("nat/"))).toEqual(["nat/KUBE-NEW"]);
    expect(r["filter/KUBE-FORWARD"]).toEqual(["-j ACCEPT"]);
  });

  test("a chain line flushes an existing chain, and only that one", async () => {
    const f = await based();
    expect(await attempt(f, "*nat\n:KUBE-SEP-A1 - [0:0]\nCOMMIT\n")).toBeNull();
    const r = await rulesOf(f, "nat");
    expect(r["nat/KUBE-SEP-A1"]).toEqual([]);
    expect(r["nat/KUBE-SVC-A"]).toHaveLength(1);
    expect(r["nat/KUBE-MARK-MASQ"]).toHaveLength(1);
  });

  test("-A to a chain that does not exist fails, naming the line", async () => {
    const f = await based();
    const e = await attempt(f, "*nat\n-A KUBE-SVC-NOPE -j RETURN\nCOMMIT\n");
    expect(e).toBeInstanceOf(RestoreError);
    expect(e!.line).toBe(2);
    expect(e!.lineText).toBe("-A KUBE-SVC-NOPE -j RETURN");
    expect(isNotFound(e!.stderr)).toBe(true);
  });

  test("a jump to a chain missing at COMMIT fails, and the call changes nothing", async () => {
    const f = await based();
    const before = await f.save();
    const e = await attempt(
      f,
      [
        "*nat",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-SVC-B - [0:0]",
        "-D KUBE-SEP-A1 -p tcp -m comment --comment ns/a:p -m tcp -j DNAT --to-destination 10.0.0.1:80",
        "-A KUBE-SERVICES -j KUBE-SVC-B",
        "-A KUBE-SVC-B -j KUBE-SEP-GONE",
        "COMMIT",
        "",
      ].join("\n"),
    );
    expect(e).toBeInstanceOf(RestoreError);
    expect(e!.message).toContain("KUBE-SEP-GONE");
    expect(await f.save()).toBe(before);
  });

  test("-X of a chain still referenced fails", async () => {
    const f = await based();
    const before = await f.save();
    expect(await attempt(f, "*nat\n:KUBE-SEP-A1 - [0:0]\n-X KUBE-SEP-A1\nCOMMIT\n")).toBeInstanceOf(RestoreError);
    expect(await f.save()).toBe(before);
  });

  test("-X of a chain whose referrer is flushed in the same call works (stale-chain deletion)", async () => {
    const f = await based();
    const input = "*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-A1 - [0:0]\n-X KUBE-SEP-A1\nCOMMIT\n";
    expect(await attempt(f, input)).toBeNull();
    expect(Object.keys(await rulesOf(f, "nat"))).not.toContain("nat/KUBE-SEP-A1");
  });

  test("-X of a built-in chain fails; -X of a chain with rules fails", async () => {
    const f = await based();
    expect(await attempt(f, "*nat\n-X PREROUTING\nCOMMIT\n")).toBeInstanceOf(RestoreError);
    expect(await attempt(f, "*nat\n-X KUBE-MARK-MASQ\nCOMMIT\n")).toBeInstanceOf(RestoreError);
    expect(await attempt(f, "*nat\n-X KUBE-NEVER\nCOMMIT\n")).toBeInstanceOf(RestoreError);
  });

  test("-D by the rule as written in restore input deletes it", async () => {
    const f = await based();
    const input = '*nat\n-D KUBE-SVC-A -m comment --comment "ns/a:p -> 10.0.0.1:80" -j KUBE-SEP-A1\nCOMMIT\n';
    expect(await attempt(f, input)).toBeNull();
    expect((await rulesOf(f, "nat"))["nat/KUBE-SVC-A"]).toEqual([]);
  });

  test("-D by the rule as iptables-save prints it deletes it", async () => {
    const f = await based();
    const input = [
      "*nat",
      '-D KUBE-SEP-A1 -s 10.0.0.1/32 -m comment --comment "ns/a:p" -j KUBE-MARK-MASQ',
      '-D KUBE-SEP-A1 -p tcp -m comment --comment "ns/a:p" -m tcp -j DNAT --to-destination 10.0.0.1:80',
      "-D KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
      "COMMIT",
      "",
    ].join("\n");
    expect(await attempt(f, input)).toBeNull();
    const r = await rulesOf(f, "nat");
    expect(r["nat/KUBE-SEP-A1"]).toEqual([]);
    expect(r["nat/KUBE-MARK-MASQ"]).toEqual([]);
  });

  test("-D by position deletes that rule", async () => {
    const f = await based();
    expect(await attempt(f, "*nat\n-D KUBE-SEP-A1 2\nCOMMIT\n")).toBeNull();
    expect((await rulesOf(f, "nat"))["nat/KUBE-SEP-A1"]).toEqual([
      "-m comment --comment ns/a:p -s 10.0.0.1 -j KUBE-MARK-MASQ",
    ]);
  });

  test("-D of a rule that does not exist fails, and changes nothing", async () => {
    const f = await based();
    const before = await f.save();
    const e = await attempt(f, "*nat\n:KUBE-SVC-A - [0:0]\n-D KUBE-SEP-A1 -j DROP\nCOMMIT\n");
    expect(e).toBeInstanceOf(RestoreError);
    expect(e!.line).toBe(3);
    expect(isNotFound(e!.stderr)).toBe(true);
    expect(await attempt(f, "*nat\n-D KUBE-SEP-A1 3\nCOMMIT\n")).toBeInstanceOf(RestoreError);
    expect(await f.save()).toBe(before);
  });

  test("-I inserts at the top, or at a position", async () => {
    const f = await based();
    expect(await attempt(f, "*nat\n-I KUBE-SEP-A1 -j RETURN\n-I KUBE-SEP-A1 2 -j ACCEPT\nCOMMIT\n")).toBeNull();
    const r = (await rulesOf(f, "nat"))["nat/KUBE-SEP-A1"];
    expect(r[0]).toBe("-j RETURN");
    expect(r[1]).toBe("-j ACCEPT");
    expect(r).toHaveLength(4);
  });

  test("-T restores one table of the input and skips the others", async () => {
    const f = new FakeRunner();
    const input = "*filter\n:KUBE-F - [0:0]\nCOMMIT\n*nat\n:KUBE-N - [0:0]\nCOMMIT\n";
    expect(await attempt(f, input, { noflush: true, table: "nat" })).toBeNull();
    const r = await rulesOf(f);
    expect(r["nat/KUBE-N"]).toEqual([]);
    expect(r["filter/KUBE-F"]).toBeUndefined();
  });

  test("an input that ends inside a table fails", async () => {
    const f = new FakeRunner();
    expect(await attempt(f, "*nat\n:KUBE-N - [0:0]\n")).toBeInstanceOf(RestoreError);
    expect((await rulesOf(f))["nat/KUBE-N"]).toBeUndefined();
  });

  test("failNextRestore fails the next matching restore once, then is forgotten", async () => {
    const f = await based();
    const before = await f.save();
    f.failNextRestore = { match: (input) => input.includes("*filter"), message: "injected" };
    // A restore that does not match goes through and leaves the injection armed.
    expect(await attempt(f, "*nat\n:KUBE-OTHER - [0:0]\nCOMMIT\n")).toBeNull();
    expect(f.failNextRestore).toBeDefined();
    const e = await attempt(f, "*filter\n:KUBE-F - [0:0]\nCOMMIT\n");
    expect(e).toBeInstanceOf(RestoreError);
    expect(e!.stderr).toBe("injected");
    expect(f.failNextRestore).toBeUndefined();
    expect((await rulesOf(f))["filter/KUBE-F"]).toBeUndefined();
    expect(await attempt(f, "*filter\n:KUBE-F - [0:0]\nCOMMIT\n")).toBeNull();
    expect((await rulesOf(f))["filter/KUBE-F"]).toEqual([]);
    // Without a predicate it takes the very next restore.
    f.failNextRestore = { message: "again" };
    expect(await attempt(f, "*nat\nCOMMIT\n")).toBeInstanceOf(RestoreError);
    expect(await attempt(f, "*nat\nCOMMIT\n")).toBeNull();
    expect(before).not.toBe(await f.save());
  });

  test("every call is recorded", async () => {
    const f = new FakeRunner("IPv6", "legacy");
    await f.restore("*nat\nCOMMIT\n", { noflush: true, counters: true });
    await f.save("nat");
    await f.run(["-t", "nat", "-N", "KUBE-X"]);
    expect(f.calls).toEqual([
      { kind: "restore", input: "*nat\nCOMMIT\n", opts: { noflush: true, counters: true } },
      { kind: "save", table: "nat" },
      { kind: "run", args: ["-t", "nat", "-N", "KUBE-X"] },
    ]);
    expect(await f.save()).toStartWith("# Generated by fake ip6tables-legacy-save");
  });
});

describe("FakeRunner.run", () => {
  test("-N twice: the second fails with 'Chain already exists'", async () => {
    const f = new FakeRunner();
    expect((await f.run(["-w", "20", "-W", "100000", "-t", "nat", "-N", "KUBE-X"])).code).toBe(0);
    const again = await f.run(["-t", "nat", "-N", "KUBE-X"]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("Chain already exists");
    // The chain was made in nat, not filter.
    expect((await f.run(["-t", "filter", "-N", "KUBE-X"])).code).toBe(0);
  });

  test("-C finds a rule written in another argument order", async () => {
    const f = new FakeRunner();
    await f.run(["-t", "nat", "-N", "KUBE-X"]);
    const rule = ["-m", "comment", "--comment", "a b", "-m", "tcp", "-p", "tcp", "-d", "10.0.0.1", "--dport", "80"];
    expect((await f.run(["-t", "nat", "-A", "KUBE-X", ...rule, "-j", "RETURN"])).code).toBe(0);
    const reordered = [
      "-d",
      "10.0.0.1/32",
      "-p",
      "tcp",
      "-m",
      "comment",
      "--comment",
      "a b",
      "-m",
      "tcp",
      "--dport",
      "80",
    ];
    expect((await f.run(["-t", "nat", "-C", "KUBE-X", ...reordered, "-j", "RETURN"])).code).toBe(0);
    const other = await f.run(["-t", "nat", "-C", "KUBE-X", ...reordered.slice(0, -1), "81", "-j", "RETURN"]);
    expect(other.code).not.toBe(0);
    expect(isNotFound(other.stderr)).toBe(true);
    expect(isNotFound((await f.run(["-t", "nat", "-C", "KUBE-NOPE", "-j", "RETURN"])).stderr)).toBe(true);
  });

  test("-I inserts at the top, -S lists in order, -D deletes", async () => {
    const f = new FakeRunner();
    await f.run(["-N", "KUBE-X"]);
    await f.run(["-A", "KUBE-X", "-j", "DROP"]);
    await f.run(["-I", "KUBE-X", "-m", "comment", "--comment", "first one", "-j", "ACCEPT"]);
    expect((await f.run(["-S", "KUBE-X"])).stdout).toBe(
      '-N KUBE-X\n-A KUBE-X -m comment --comment "first one" -j ACCEPT\n-A KUBE-X -j DROP\n',
    );
    expect((await f.run(["-S", "INPUT"])).stdout).toBe("-P INPUT ACCEPT\n");
    expect((await f.run(["-D", "KUBE-X", "-j", "DROP"])).code).toBe(0);
    expect((await f.run(["-D", "KUBE-X", "-j", "DROP"])).code).not.toBe(0);
  });

  test("-X: referenced, built-in, non-empty and missing chains fail; a free one goes", async () => {
    const f = new FakeRunner();
    await f.run(["-N", "KUBE-X"]);
    await f.run(["-A", "INPUT", "-j", "KUBE-X"]);
    expect((await f.run(["-X", "KUBE-X"])).code).not.toBe(0);
    expect((await f.run(["-X", "INPUT"])).code).not.toBe(0);
    expect((await f.run(["-X", "KUBE-NOPE"])).code).not.toBe(0);
    await f.run(["-D", "INPUT", "-j", "KUBE-X"]);
    await f.run(["-A", "KUBE-X", "-j", "RETURN"]);
    expect((await f.run(["-X", "KUBE-X"])).code).not.toBe(0);
    expect((await f.run(["-F", "KUBE-X"])).code).toBe(0);
    expect((await f.run(["-X", "KUBE-X"])).code).toBe(0);
    expect((await f.run(["-S", "KUBE-X"])).code).not.toBe(0);
  });

  test("-A with a jump to a missing chain fails and adds nothing", async () => {
    const f = new FakeRunner();
    expect((await f.run(["-A", "INPUT", "-j", "KUBE-NOPE"])).code).not.toBe(0);
    expect((await f.run(["-S", "INPUT"])).stdout).toBe("-P INPUT ACCEPT\n");
  });
});

describe("FakeRunner typed operations", () => {
  test("chainExists: built-in and made chains exist, others not; a table that does not exist is an error", async () => {
    const f = new FakeRunner();
    expect(await f.chainExists("nat", "PREROUTING")).toBe(true);
    expect(await f.chainExists("nat", "KUBE-X")).toBe(false);
    await f.run(["-t", "nat", "-N", "KUBE-X"]);
    expect(await f.chainExists("nat", "KUBE-X")).toBe(true);
    expect(await f.chainExists("filter", "KUBE-X")).toBe(false);
    await expect(f.chainExists("nope", "KUBE-X")).rejects.toBeInstanceOf(CommandError);
    // One rule at most is listed: cheap on a long chain.
    expect(f.calls.at(-2)).toEqual({ kind: "run", args: ["-t", "filter", "-S", "KUBE-X", "1"] });
  });

  test("ensureChain: true when made, false when it was there; a bad name is an error", async () => {
    const f = new FakeRunner();
    expect(await f.ensureChain("nat", "KUBE-X")).toBe(true);
    expect(await f.ensureChain("nat", "KUBE-X")).toBe(false);
    expect(await f.ensureChain("filter", "KUBE-X")).toBe(true);
    const e = await f.ensureChain("nat", "KUBE-A-NAME-FAR-TOO-LONG-FOR-IPTABLES").catch((e) => e);
    expect(e).toBeInstanceOf(CommandError);
    expect(e.argv).toEqual(["-t", "nat", "-N", "KUBE-A-NAME-FAR-TOO-LONG-FOR-IPTABLES"]);
    expect(e.result.code).toBe(2);
  });

  test("ensureRule: added once, at the top or the end; an equal rule in another order counts", async () => {
    const f = new FakeRunner();
    await f.ensureChain("nat", "KUBE-X");
    expect(await f.ensureRule("append", "nat", "KUBE-X", ["-j", "RETURN"])).toBe(true);
    const rule = ["-m", "comment", "--comment", "kip x", "-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT"];
    expect(await f.ensureRule("prepend", "nat", "KUBE-X", rule)).toBe(true);
    const reordered = [
      "-p",
      "tcp",
      "-m",
      "comment",
      "--comment",
      "kip x",
      "-m",
      "tcp",
      "--dport",
      "80",
      "-j",
      "ACCEPT",
    ];
    expect(await f.ensureRule("append", "nat", "KUBE-X", reordered)).toBe(false);
    expect(await f.ensureRule("append", "nat", "KUBE-X", ["-j", "RETURN"])).toBe(false);
    expect((await rulesOf(f, "nat"))["nat/KUBE-X"]).toEqual([
      "-m comment --comment kip x -p tcp -m tcp --dport 80 -j ACCEPT",
      "-j RETURN",
    ]);
  });

  test("ensureRule: a missing chain or jump target is an error that says so, and nothing changes", async () => {
    const f = new FakeRunner();
    const before = await f.save();
    const noChain = await f.ensureRule("prepend", "nat", "KUBE-NOPE", ["-j", "RETURN"]).catch((e) => e);
    expect(noChain).toBeInstanceOf(CommandError);
    expect(noChain.argv).toEqual(["-t", "nat", "-I", "KUBE-NOPE", "-j", "RETURN"]);
    expect(noChain.message).toBe("iptables: No chain/target/match by that name.");
    const noTarget = await f.ensureRule("append", "nat", "PREROUTING", ["-j", "KUBE-NOPE"]).catch((e) => e);
    expect(noTarget).toBeInstanceOf(CommandError);
    expect(await f.save()).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------
// PARITY with the real tools.

const skip = skipRealIptables();
const BACKENDS = ["nft", "legacy"] as const;
type Backend = (typeof BACKENDS)[number];

/** Binary names. Real calls pass `-w 20`: legacy takes the host-wide xtables lock, which
 * another test on this machine may hold for a while. */
function bin(family: IPFamily, backend: Backend) {
  const base = family === "IPv4" ? "iptables" : "ip6tables";
  return { cmd: `${base}-${backend}`, restore: `${base}-${backend}-restore`, save: `${base}-${backend}-save` };
}

function ok(r: Exec, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/**
 * What both sides are compared on: every chain of filter and nat with its normalised rules,
 * plus built-in policies other than ACCEPT. Built-in chains without rules are left out (the
 * real nat table only exists once something used it).
 */
function state(text: string, family: IPFamily): Record<string, string[]> {
  const d = parseSave(text);
  expect(d.errors).toEqual([]);
  const out: Record<string, string[]> = {};
  for (const name of ["filter", "nat"]) {
    const t = d.tables.get(name);
    if (!t) continue;
    for (const c of t.chains.values()) {
      out[`${name}/${c.name}`] = [];
      if (BUILTIN_CHAINS.has(c.name) && c.policy !== "ACCEPT") out[`${name}/${c.name} policy`] = [c.policy];
    }
    for (const r of t.rules) out[`${name}/${r.chain}`].push(normalizeRule(r.chain, r.args, family));
    for (const c of t.chains.keys())
      if (BUILTIN_CHAINS.has(c) && out[`${name}/${c}`].length === 0) delete out[`${name}/${c}`];
  }
  return out;
}

interface Step {
  what: string;
  /** Whether the real tools accept it (asserted, so the sequence means what it says). */
  ok: boolean;
  /** The restore input; may use the real tool's current save output. */
  input: string | ((realSave: string) => string);
  /** What must hold on the real side afterwards, so that agreement is not vacuous. */
  after?: (s: Record<string, string[]>) => void;
}

const golden = (name: string) => readFileSync(join(FIXTURES, name, "expected.txt"), "utf8");

/** The restore sequence, built from a golden output so that chain names are real ones. */
function paritySteps(goldenText: string): Step[] {
  const d = parseSave(goldenText);
  expect(d.errors).toEqual([]);
  const nat = d.tables.get("nat")!;
  const filterLines = goldenText.slice(0, goldenText.indexOf("*nat"));
  const referrers = (chain: string) =>
    new Set(nat.rules.filter((r) => ruleTarget(r.args) === chain).map((r) => r.chain));
  const sepsOf = (svc: string) =>
    nat.rules
      .filter((r) => r.chain === svc && ruleTarget(r.args)?.startsWith("KUBE-SEP-"))
      .map((r) => ruleTarget(r.args)!);
  // The service chain with the most endpoints whose last endpoint only it jumps to.
  const svc = [...nat.chains.keys()]
    .filter((c) => c.startsWith("KUBE-SVC-") && sepsOf(c).length > 0)
    .filter((c) => {
      const r = referrers(sepsOf(c).at(-1)!);
      return r.size === 1 && r.has(c);
    })
    .sort((a, b) => sepsOf(b).length - sepsOf(a).length)[0];
  expect(svc).toBeDefined();
  const dropped = sepsOf(svc).at(-1)!;
  const fixed = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"];
  const partial = [
    filterLines.trimEnd(),
    "*nat",
    ...[...fixed, svc, dropped].map((c) => `:${c} - [0:0]`),
    ...nat.rules
      .filter((r) => fixed.includes(r.chain) || (r.chain === svc && ruleTarget(r.args) !== dropped))
      .map((r) => ["-A", r.chain, ...r.args.map(quoteArg)].join(" ")),
    `-X ${dropped}`,
    "COMMIT",
    "",
  ].join("\n");
  // An endpoint chain referenced from a service chain the input does not declare.
  const pinned = [...nat.chains.keys()].find(
    (c) => c.startsWith("KUBE-SEP-") && c !== dropped && referrers(c).size > 0 && !referrers(c).has(svc),
  );
  const mark = nat.rules.find((r) => r.chain === "KUBE-MARK-MASQ")!;
  const steps: Step[] = [
    {
      what: "the full golden output",
      ok: true,
      input: goldenText,
      after: (s) => {
        expect(s["nat/KUBE-SERVICES"].length).toBeGreaterThan(0);
        expect(s[`nat/${dropped}`]?.length).toBeGreaterThan(0);
      },
    },
    {
      what: "a partial update declaring only some chains, deleting a stale endpoint",
      ok: true,
      input: partial,
      after: (s) => {
        expect(s[`nat/${dropped}`]).toBeUndefined();
        expect(s[`nat/${svc}`].length).toBe(nat.rules.filter((r) => r.chain === svc).length - 1);
      },
    },
    {
      what: "flush a service chain by declaring it",
      ok: true,
      input: `*nat\n:${svc} - [0:0]\nCOMMIT\n`,
      after: (s) => expect(s[`nat/${svc}`]).toEqual([]),
    },
    {
      what: "a jump to a chain that does not exist",
      ok: false,
      input: "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-DOESNOTEXIST0\nCOMMIT\n",
    },
    {
      what: "-A to a chain that does not exist",
      ok: false,
      input: "*nat\n-A KUBE-SVC-DOESNOTEXIST0 -j RETURN\nCOMMIT\n",
    },
    {
      what: "delete a referenced chain",
      ok: false,
      input: "*nat\n:KUBE-MARK-MASQ - [0:0]\n-X KUBE-MARK-MASQ\nCOMMIT\n",
    },
    { what: "delete a chain that has rules", ok: false, input: "*filter\n-X KUBE-FORWARD\nCOMMIT\n" },
    { what: "delete a built-in chain", ok: false, input: "*filter\n-X INPUT\nCOMMIT\n" },
    { what: "delete a rule that does not exist", ok: false, input: "*nat\n-D KUBE-POSTROUTING -j DROP\nCOMMIT\n" },
    {
      what: "-D by the rule as iptables-save printed it",
      ok: true,
      input: (realSave) => {
        const r = parseSave(realSave)
          .tables.get("nat")!
          .rules.find((x) => x.chain.startsWith("KUBE-SEP-") && x.args.includes("DNAT"))!;
        return `*nat\n${["-D", r.chain, ...r.args.map(quoteArg)].join(" ")}\nCOMMIT\n`;
      },
    },
    {
      what: "-D by the rule as kip wrote it",
      ok: true,
      input: `*nat\n${["-D", mark.chain, ...mark.args.map(quoteArg)].join(" ")}\nCOMMIT\n`,
    },
    {
      what: "-I at the top and -A at the end",
      ok: true,
      input: `*nat\n-I KUBE-POSTROUTING -m comment --comment "kip parity: first" -j RETURN\n${["-A", mark.chain, ...mark.args.map(quoteArg)].join(" ")}\nCOMMIT\n`,
      after: (s) => {
        expect(s["nat/KUBE-POSTROUTING"][0]).toContain("kip parity: first");
        expect(s["nat/KUBE-MARK-MASQ"]).toHaveLength(1);
      },
    },
    { what: "-N a new chain", ok: true, input: "*filter\n-N KUBE-KIP-TEMP\n-A KUBE-KIP-TEMP -j RETURN\nCOMMIT\n" },
    { what: "-N a chain that exists", ok: false, input: "*filter\n-N KUBE-FORWARD\nCOMMIT\n" },
    {
      what: "declare and delete a chain",
      ok: true,
      input: "*filter\n:KUBE-KIP-TEMP - [0:0]\n-X KUBE-KIP-TEMP\nCOMMIT\n",
    },
    {
      what: "a failure in the first table: the second is never applied",
      ok: false,
      input:
        "*filter\n:KUBE-FORWARD - [0:0]\n-A KUBE-FORWARD -j KUBE-KIP-NOPE\nCOMMIT\n*nat\n:KUBE-NODEPORTS - [0:0]\nCOMMIT\n",
    },
    ...(pinned
      ? [
          {
            what: "delete an endpoint chain its (undeclared) service chain still jumps to",
            ok: false,
            input: `*nat\n:${pinned} - [0:0]\n-X ${pinned}\nCOMMIT\n`,
          },
        ]
      : []),
    { what: "the full golden output again", ok: true, input: goldenText },
  ];
  return steps;
}

describe.skipIf(skip)("PARITY: restore sequences, fake vs real", () => {
  for (const [family, name] of [
    ["IPv4", "seed"],
    ["IPv6", "dual-stack-ipv6"],
  ] as const)
    for (const backend of BACKENDS)
      test(`${backend} ${family} (${name})`, async () => {
        const steps = paritySteps(golden(name));
        expect(steps.length).toBeGreaterThanOrEqual(12);
        const b = bin(family, backend);
        const fake = new FakeRunner(family, backend);
        await withNetns(async (_ns, run) => {
          let realSave = ok(run([b.save]), "save");
          for (const [i, step] of steps.entries()) {
            const input = typeof step.input === "string" ? step.input : step.input(realSave);
            const real = run([b.restore, "-w", "20", "--noflush"], input);
            const fakeErr = await attempt(fake, input);
            const label = `step ${i + 1}: ${step.what}`;
            expect({ label, real: real.code === 0 }).toEqual({ label, real: step.ok });
            expect({ label, fake: fakeErr === null }).toEqual({ label, fake: real.code === 0 });
            realSave = ok(run([b.save]), "save");
            const realState = state(realSave, family);
            step.after?.(realState);
            expect({ label, state: state(await fake.save(), family) }).toEqual({ label, state: realState });
          }
        });
      });
});

describe.skipIf(skip)("PARITY: iptables commands, fake.run vs real", () => {
  const R = ["-m", "comment", "--comment", "kip run", "-m", "tcp", "-p", "tcp", "--dport", "80", "-j", "RETURN"];
  const commands: { argv: string[]; ok: boolean; stderr?: string }[] = [
    { argv: ["-t", "nat", "-N", "KUBE-KIP-X"], ok: true },
    { argv: ["-t", "nat", "-N", "KUBE-KIP-X"], ok: false, stderr: "Chain already exists" },
    { argv: ["-t", "nat", "-A", "KUBE-KIP-X", ...R], ok: true },
    // -p/-m swapped: the same rule. Matches swapped: another rule to the kernel.
    {
      argv: [
        "-t",
        "nat",
        "-C",
        "KUBE-KIP-X",
        "-m",
        "comment",
        "--comment",
        "kip run",
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "80",
        "-j",
        "RETURN",
      ],
      ok: true,
    },
    {
      argv: [
        "-t",
        "nat",
        "-C",
        "KUBE-KIP-X",
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "80",
        "-m",
        "comment",
        "--comment",
        "kip run",
        "-j",
        "RETURN",
      ],
      ok: false,
    },
    { argv: ["-t", "nat", "-C", "KUBE-KIP-X", "-m", "comment", "--comment", "kip run", "-j", "RETURN"], ok: false },
    { argv: ["-t", "nat", "-I", "KUBE-KIP-X", "-j", "ACCEPT"], ok: true },
    { argv: ["-t", "nat", "-I", "KUBE-KIP-X", "2", "-j", "MARK", "--or-mark", "0x00004000"], ok: true },
    { argv: ["-t", "nat", "-D", "KUBE-KIP-X", "-j", "MARK", "--set-xmark", "0x4000/0x4000"], ok: true },
    { argv: ["-t", "nat", "-X", "KUBE-KIP-X"], ok: false },
    { argv: ["-t", "nat", "-A", "PREROUTING", "-j", "KUBE-KIP-X"], ok: true },
    { argv: ["-t", "nat", "-F", "KUBE-KIP-X"], ok: true },
    { argv: ["-t", "nat", "-X", "KUBE-KIP-X"], ok: false },
    { argv: ["-t", "nat", "-D", "PREROUTING", "-j", "KUBE-KIP-X"], ok: true },
    { argv: ["-t", "nat", "-D", "PREROUTING", "-j", "KUBE-KIP-X"], ok: false },
    { argv: ["-t", "nat", "-X", "KUBE-KIP-X"], ok: true },
    { argv: ["-X", "INPUT"], ok: false },
    { argv: ["-A", "KUBE-KIP-NOPE", "-j", "RETURN"], ok: false },
    { argv: ["-A", "INPUT", "-j", "KUBE-KIP-NOPE"], ok: false },
    { argv: ["-N", "KUBE-KIP-Y"], ok: true },
    {
      argv: [
        "-A",
        "INPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        "kip y",
        "-j",
        "KUBE-KIP-Y",
      ],
      ok: true,
    },
    {
      argv: [
        "-C",
        "INPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        "kip y",
        "-j",
        "KUBE-KIP-Y",
      ],
      ok: true,
    },
  ];
  for (const backend of BACKENDS)
    test(backend, async () => {
      const b = bin("IPv4", backend);
      const fake = new FakeRunner("IPv4", backend);
      await withNetns(async (_ns, run) => {
        for (const [i, c] of commands.entries()) {
          const real = run([b.cmd, "-w", "20", ...c.argv]);
          const f = await fake.run(c.argv);
          const label = `command ${i + 1}: ${c.argv.join(" ")}`;
          expect({ label, real: real.code === 0 }).toEqual({ label, real: c.ok });
          expect({ label, fake: f.code === 0 }).toEqual({ label, fake: real.code === 0 });
          if (c.stderr) {
            expect(real.stderr).toContain(c.stderr);
            expect(f.stderr).toContain(c.stderr);
          }
          expect({ label, state: state(await fake.save(), "IPv4") }).toEqual({
            label,
            state: state(ok(run([b.save]), "save"), "IPv4"),
          });
        }
      });
    });
});

describe.skipIf(skip)("PARITY: typed operations, FakeRunner vs ExecRunner", () => {
  // Each step's answer (a value, or the error's class), on both sides, then the tables.
  const steps: { what: string; op: (r: Runner) => Promise<unknown>; real: unknown }[] = [
    { what: "a chain not there", op: (r) => r.chainExists("nat", "KUBE-KIP-T"), real: false },
    { what: "a built-in chain", op: (r) => r.chainExists("nat", "POSTROUTING"), real: true },
    { what: "make it", op: (r) => r.ensureChain("nat", "KUBE-KIP-T"), real: true },
    { what: "make it again", op: (r) => r.ensureChain("nat", "KUBE-KIP-T"), real: false },
    { what: "now there", op: (r) => r.chainExists("nat", "KUBE-KIP-T"), real: true },
    { what: "not in filter", op: (r) => r.chainExists("filter", "KUBE-KIP-T"), real: false },
    { what: "an empty chain exists", op: (r) => r.ensureChain("filter", "KUBE-KIP-T"), real: true },
    { what: "a bad chain name", op: (r) => r.ensureChain("nat", "KUBE-KIP-A-NAME-FAR-TOO-LONG-X"), real: CommandError },
    {
      what: "a jump at the top",
      op: (r) =>
        r.ensureRule("prepend", "nat", "PREROUTING", ["-m", "comment", "--comment", "kip t", "-j", "KUBE-KIP-T"]),
      real: true,
    },
    {
      what: "the same jump again",
      op: (r) =>
        r.ensureRule("prepend", "nat", "PREROUTING", ["-m", "comment", "--comment", "kip t", "-j", "KUBE-KIP-T"]),
      real: false,
    },
    { what: "a rule at the end", op: (r) => r.ensureRule("append", "nat", "KUBE-KIP-T", ["-j", "RETURN"]), real: true },
    {
      what: "a rule at the top",
      op: (r) =>
        r.ensureRule("prepend", "nat", "KUBE-KIP-T", ["-p", "tcp", "-m", "tcp", "--dport", "80", "-j", "ACCEPT"]),
      real: true,
    },
    {
      what: "the same rule, -m and -p swapped",
      op: (r) =>
        r.ensureRule("append", "nat", "KUBE-KIP-T", ["-m", "tcp", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"]),
      real: false,
    },
    {
      what: "a chain that is not there",
      op: (r) => r.ensureRule("append", "nat", "KUBE-KIP-NOPE", ["-j", "RETURN"]),
      real: CommandError,
    },
    {
      what: "a jump to nowhere",
      op: (r) => r.ensureRule("append", "nat", "KUBE-KIP-T", ["-j", "KUBE-KIP-NOPE"]),
      real: CommandError,
    },
  ];
  const answer = (p: Promise<unknown>) => p.catch((e) => (e instanceof CommandError ? CommandError : e));

  for (const family of ["IPv4", "IPv6"] as const)
    for (const backend of BACKENDS)
      test(`${backend} ${family}`, async () => {
        const fake = new FakeRunner(family, backend);
        await withNetns(async (ns, run) => {
          const real = await ExecRunner.create(family, backend, { prefix: ["ip", "netns", "exec", ns] });
          for (const [i, step] of steps.entries()) {
            const label = `step ${i + 1}: ${step.what}`;
            const got = await answer(step.op(real));
            expect({ label, real: got }).toEqual({ label, real: step.real });
            expect({ label, fake: await answer(step.op(fake)) }).toEqual({ label, fake: got });
            expect({ label, state: state(await fake.save(), family) }).toEqual({
              label,
              state: state(ok(run([bin(family, backend).save]), "save"), family),
            });
          }
        });
      });
});

// ---------------------------------------------------------------------------------------------
// Where the fake and the real tools part. Each case: setup inputs, then a probe, in a fresh
// namespace and a fresh fake. The passing test pins what the real tools do (both backends
// agree unless said); the second pins that the fake does the same (each `bug` is what the fake
// got wrong before it was fixed).

interface Divergence {
  what: string;
  setup: string[];
  probe: string;
  opts?: RestoreOptions;
  /** What iptables-nft-restore and iptables-legacy-restore 1.8.9 do with the probe. */
  real: boolean;
  /** Why the fake is wrong, and where. */
  bug: string;
}

const DIVERGENCES: Divergence[] = [
  {
    what: "declaring a built-in chain does not flush it",
    setup: ['*filter\n-A INPUT -m comment --comment "kip sentinel" -j ACCEPT\nCOMMIT\n'],
    probe: "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
    real: true,
    bug: "FakeRunner.restore empties every chain named on a `:` line; with --noflush both real tools only set a built-in chain's policy and keep its rules",
  },
  {
    what: "tables commit one by one: a failing *nat leaves an earlier *filter applied",
    setup: [],
    probe:
      "*filter\n:KUBE-KIP-A - [0:0]\n-A KUBE-KIP-A -j ACCEPT\nCOMMIT\n*nat\n:KUBE-KIP-B - [0:0]\n-A KUBE-KIP-B -j KUBE-KIP-NOPE\nCOMMIT\n",
    real: false,
    bug: "FakeRunner.restore rolls back the whole call; both real tools keep every table committed before the failing one (so spec §4's 'one transaction' holds per table only)",
  },
  {
    what: "a jump to a chain declared later in the same table fails",
    setup: [],
    probe: "*filter\n:KUBE-KIP-D - [0:0]\n-A KUBE-KIP-D -j KUBE-KIP-E\n:KUBE-KIP-E - [0:0]\nCOMMIT\n",
    real: false,
    bug: "FakeRunner checks jumps only at COMMIT; both real tools need the target chain to exist when the rule line is read",
  },
  {
    what: "`[p:b]` counters in front of a rule are read",
    setup: [],
    probe: "*filter\n:KUBE-KIP-F - [0:0]\n[5:100] -A KUBE-KIP-F -j ACCEPT\nCOMMIT\n",
    opts: { noflush: true, counters: true },
    real: true,
    bug: "FakeRunner.restore fails with `unknown command [5:100]`: it cannot load what `iptables-save -c` prints",
  },
  {
    what: "targets that are extensions, not chains (NFLOG)",
    setup: [],
    probe: "*filter\n:KUBE-KIP-G - [0:0]\n-A KUBE-KIP-G -j NFLOG --nflog-group 3\nCOMMIT\n",
    real: true,
    bug: "FakeRunner's TARGETS list misses NFLOG (and SET, TRACE, CHECKSUM, TPROXY, CLASSIFY, DSCP, TOS, TTL, HL, NETMAP, AUDIT, SECMARK, CONNSECMARK, TEE, SYNPROXY…), so it calls them missing chains",
  },
  {
    what: "a jump to a built-in chain fails",
    setup: [],
    probe: "*filter\n:KUBE-KIP-M - [0:0]\n-A KUBE-KIP-M -j INPUT\nCOMMIT\n",
    real: false,
    bug: "FakeRunner.checkJumps accepts any chain of the table, built-in ones included",
  },
  {
    what: "-I past the end of a chain fails",
    setup: ["*filter\n:KUBE-KIP-I - [0:0]\nCOMMIT\n"],
    probe: "*filter\n-I KUBE-KIP-I 5 -j ACCEPT\nCOMMIT\n",
    real: false,
    bug: "FakeRunner.applyRule splices at any position (appends); the real tools say `Index of insertion too big` (fake.run too)",
  },
  {
    what: "-P in restore input sets a policy",
    setup: [],
    probe: "*filter\n-P FORWARD DROP\nCOMMIT\n",
    real: true,
    bug: "FakeRunner.restore knows -A -I -D -N -X -F only and fails `unknown command -P`",
  },
];

async function probe(
  d: Divergence,
  family: IPFamily,
  backend: Backend,
): Promise<{ real: boolean; fake: boolean; realState: Record<string, string[]>; fakeState: Record<string, string[]> }> {
  const b = bin(family, backend);
  const fake = new FakeRunner(family, backend);
  const counters = d.opts?.counters ? ["--counters"] : [];
  return await withNetns(async (_ns, run) => {
    for (const s of d.setup) {
      ok(run([b.restore, "-w", "20", "--noflush"], s), "setup");
      expect(await attempt(fake, s)).toBeNull();
    }
    const real = run([b.restore, "-w", "20", "--noflush", ...counters], d.probe).code === 0;
    const fakeOk = (await attempt(fake, d.probe, d.opts ?? NOFLUSH)) === null;
    return {
      real,
      fake: fakeOk,
      realState: state(ok(run([b.save]), "save"), family),
      fakeState: state(await fake.save(), family),
    };
  });
}

describe.skipIf(skip)("PARITY: known differences", () => {
  for (const d of DIVERGENCES)
    for (const backend of BACKENDS) {
      test(`real ${backend}: ${d.what}`, async () => {
        expect((await probe(d, "IPv4", backend)).real).toBe(d.real);
      });
      test(`fake follows ${backend}: ${d.what} (was: ${d.bug})`, async () => {
        const r = await probe(d, "IPv4", backend);
        expect(r.real).toBe(d.real); // a failure here would be an environment problem, not the bug
        expect({ ok: r.fake, state: r.fakeState }).toEqual({ ok: r.real, state: r.realState });
      });
    }

  test("nft and legacy disagree on where a missing jump target fails; the fake follows legacy", async () => {
    const input = "*filter\n:KUBE-KIP-J - [0:0]\n-A KUBE-KIP-J -j KUBE-KIP-NOPE\nCOMMIT\n";
    const at = (backend: Backend) =>
      withNetns((_ns, run) => {
        const r = run([bin("IPv4", backend).restore, "-w", "20", "--noflush"], input);
        expect(r.code).not.toBe(0);
        return failedLine(r.stderr);
      });
    // iptables-nft-restore: "Error occurred at line: 4" (the COMMIT); legacy: line 3 (the rule).
    expect({ nft: await at("nft"), legacy: await at("legacy") }).toEqual({ nft: 4, legacy: 3 });
    // The fake checks a target when the rule is read, as legacy reports it.
    expect((await attempt(new FakeRunner(), input))?.line).toBe(3);
  });

  test("nft and legacy disagree on a policy for a user chain; the fake follows nft", async () => {
    const d: Divergence = {
      what: "policy on a user chain",
      setup: [],
      probe: "*filter\n:KUBE-KIP-P ACCEPT [0:0]\nCOMMIT\n",
      real: true,
      bug: "",
    };
    const nft = await probe(d, "IPv4", "nft");
    const legacy = await probe(d, "IPv4", "legacy");
    // iptables-nft-restore makes the chain and ignores the policy; iptables-legacy-restore
    // fails: "Can't set policy `ACCEPT' on `KUBE-KIP-P' line 2: Bad built-in chain name".
    expect({ nft: nft.real, legacy: legacy.real }).toEqual({ nft: true, legacy: false });
    expect({ ok: nft.fake, state: nft.fakeState }).toEqual({ ok: nft.real, state: nft.realState });
    expect(legacy.fake).toBe(true);
  });
});
