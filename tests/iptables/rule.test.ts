/**
 * lib/iptables/rule.ts: the one tokenizer (quotes and backslash escapes as iptables-save
 * writes them), the quoting back, and the parsed rule every reader shares.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ParsedRule, parseRule, quoteArg, ruleComment, targetOption, tokenize } from "../../lib/iptables/rule.ts";

const LIVE = join(import.meta.dir, "..", "fixtures-live");

/** Every `-A` line of the real iptables-save dumps (both backends, both families). */
function savedLines(): string[] {
  const out: string[] = [];
  for (const f of readdirSync(LIVE).filter((x) => x.endsWith(".rules")))
    for (const line of readFileSync(join(LIVE, f), "utf8").split("\n")) if (line.startsWith("-A ")) out.push(line);
  return out;
}

/** The arguments a parsed rule stands for, in its order: header and matches, then the target. */
function argsOf(r: ParsedRule): string[] {
  const out: string[] = r.header ? [r.header.command, r.header.chain] : [];
  for (const m of r.matches) {
    if (m.module !== "" && !m.implicit) out.push("-m", m.module);
    for (const o of m.options) out.push(...(o.negated ? ["!"] : []), o.name, ...o.values);
  }
  if (r.target !== undefined) out.push(r.goto ? "-g" : "-j", r.target);
  for (const o of r.targetOptions) out.push(...(o.name ? [o.name] : []), ...o.values);
  return out;
}

describe("tokenize", () => {
  test("white space separates; double quotes group and are removed", () => {
    expect(tokenize("-A X  -j\tACCEPT ")).toEqual(["-A", "X", "-j", "ACCEPT"]);
    expect(tokenize('-m comment --comment "ns1/svc1:p80 cluster IP" -j Y')).toEqual([
      "-m",
      "comment",
      "--comment",
      "ns1/svc1:p80 cluster IP",
      "-j",
      "Y",
    ]);
    expect(tokenize('--comment ""')).toEqual(["--comment", ""]);
    expect(tokenize('a"b c"d e')).toEqual(["ab cd", "e"]);
    expect(tokenize("")).toEqual([]);
  });

  test("a backslash inside quotes escapes the next character; outside it is itself", () => {
    expect(tokenize('--comment "say \\"hi\\" C:\\\\x\\\\"')).toEqual(["--comment", 'say "hi" C:\\x\\']);
    expect(tokenize('--comment "it\\\'s"')).toEqual(["--comment", "it's"]);
    expect(tokenize("back\\slash")).toEqual(["back\\slash"]);
  });

  test("negation is a token of its own", () => {
    expect(tokenize("! -s 10.0.0.0/8 -m conntrack ! --ctstate NEW")).toEqual([
      "!",
      "-s",
      "10.0.0.0/8",
      "-m",
      "conntrack",
      "!",
      "--ctstate",
      "NEW",
    ]);
  });

  test("an unterminated quote is no line", () => {
    expect(tokenize('--comment "open')).toBeUndefined();
    expect(tokenize('--comment "ends in \\"')).toBeUndefined();
  });

  test("quoteArg round-trips any argument (property)", () => {
    const alphabet = ["a", "-", " ", "\t", '"', "\\", "'", "!", ":", "é", "\u00a0"];
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 2000; i++) {
      const args = Array.from({ length: 1 + rand(4) }, () =>
        Array.from({ length: rand(6) }, () => alphabet[rand(alphabet.length)]).join(""),
      );
      expect(tokenize(args.map(quoteArg).join(" "))).toEqual(args);
    }
  });

  test("iptables-save lines: split, quoted back and split again give the same arguments", () => {
    const lines = savedLines();
    expect(lines.length).toBeGreaterThan(50);
    for (const line of lines) {
      const args = tokenize(line);
      expect(args).toBeDefined();
      expect(tokenize((args ?? []).map(quoteArg).join(" "))).toEqual(args);
    }
  });
});

describe("parseRule", () => {
  test("header, matches with their options and negations, target and its options", () => {
    const r = parseRule(
      tokenize(
        '-A KUBE-SVC-X ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp -m comment --comment "ns/svc:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ',
      ) ?? [],
    );
    expect(r.header).toEqual({ command: "-A", chain: "KUBE-SVC-X" });
    expect(r.matches.map((m) => [m.module, m.options.map((o) => [o.negated ? "!" : "", o.name, ...o.values])])).toEqual(
      [
        ["", [["!", "-s", "10.244.0.0/16"]]],
        ["", [["", "-d", "10.96.0.1/32"]]],
        ["", [["", "-p", "tcp"]]],
        ["comment", [["", "--comment", "ns/svc:http cluster IP"]]],
        ["tcp", [["", "--dport", "80"]]],
      ],
    );
    expect(r.options.map((o) => o.name)).toEqual(["-s", "-d", "-p", "--comment", "--dport"]);
    expect(r.target).toBe("KUBE-MARK-MASQ");
    expect(r.goto).toBe(false);
    expect(ruleComment(r)).toBe("ns/svc:http cluster IP");
  });

  test("-p tcp --dport loads the protocol's match by itself", () => {
    const r = parseRule(["-p", "tcp", "-m", "comment", "--comment", "x", "--dport", "80", "-j", "ACCEPT"]);
    expect(r.matches.map((m) => [m.module, m.implicit])).toEqual([
      ["", false],
      ["comment", false],
      ["tcp", true],
    ]);
    expect(parseRule(["-p", "6", "--dport", "80"]).matches[1]).toMatchObject({ module: "tcp", implicit: true });
    // Not for a negated protocol.
    expect(parseRule(["!", "-p", "tcp", "--dport", "80"]).matches.some((m) => m.implicit)).toBe(false);
  });

  test("an option belongs to the latest module that takes it", () => {
    const r = parseRule(["-m", "tcp", "-m", "comment", "--comment", "x", "--dport", "80", "-m", "tcp", "--sport", "9"]);
    expect(r.matches.map((m) => [m.module, m.options.map((o) => o.name)])).toEqual([
      ["tcp", ["--dport"]],
      ["comment", ["--comment"]],
      ["tcp", ["--sport"]],
    ]);
  });

  test("options of modules kip does not know keep their values, up to the next option", () => {
    const r = parseRule(["-m", "set", "!", "--match-set", "bad", "src", "-m", "tcp", "--foo", "-j", "DROP"]);
    expect(r.matches.map((m) => [m.module, m.options.map((o) => [o.negated, o.name, ...o.values])])).toEqual([
      [
        "set",
        [
          [true, "--match-set", "bad", "src"],
          [false, "--foo"],
        ],
      ],
      ["tcp", []],
    ]);
    // Names that are also Object's own keys are options like any other.
    const odd = parseRule(["constructor", "toString", "-m", "__proto__", "--hasOwnProperty", "1"]);
    expect(odd.options.map((o) => [odd.matches[o.match].module, o.name, ...o.values])).toEqual([
      ["", "constructor", "toString"],
      ["__proto__", "--hasOwnProperty", "1"],
    ]);
  });

  test("targets: -g, options with and without values, counters", () => {
    const dnat = parseRule(["-c", "1", "2", "-g", "DNAT", "--to-destination", "10.0.0.1:80", "--random-fully"]);
    expect(dnat.goto).toBe(true);
    expect(dnat.counters).toEqual(["1", "2"]);
    expect(dnat.targetOptions).toEqual([
      { name: "--to-destination", values: ["10.0.0.1:80"] },
      { name: "--random-fully", values: [] },
    ]);
    expect(targetOption(dnat, "--to-destination")).toEqual(["10.0.0.1:80"]);
    expect(targetOption(dnat, "--to-source")).toBeUndefined();
  });

  test("every iptables-save line parses to a rule that stands for the same arguments", () => {
    for (const line of savedLines()) {
      const args = tokenize(line) ?? [];
      expect(argsOf(parseRule(args))).toEqual(args);
    }
  });
});
