/**
 * A stateful fake iptables that keeps the real tool's rules, so code that drives iptables can
 * be tested without root: restore input is applied line by line, a rule may only jump to a
 * chain that exists when the rule is added, a chain still referenced cannot be deleted, and
 * each table commits on its own (as both real backends do: a failure in *nat keeps an earlier
 * *filter). Tests in tests/iptables/fake_runner.test.ts prove it against the real tools.
 */
import type { IPFamily } from "../model/ip.ts";
import { normalizeArgs } from "./normalize.ts";
import { quoteArg, ruleTarget, tokenize as splitArgs } from "./rule.ts";
import { type Backend, type CommandResult, CommandRunner, RestoreError, type RestoreOptions } from "./runner.ts";

const BUILTIN: Record<string, string[]> = {
  filter: ["INPUT", "FORWARD", "OUTPUT"],
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
  raw: ["PREROUTING", "OUTPUT"],
};

/** Targets that are extensions, not chains. */
const TARGETS = new Set([
  "ACCEPT",
  "DROP",
  "REJECT",
  "RETURN",
  "DNAT",
  "SNAT",
  "MASQUERADE",
  "MARK",
  "CONNMARK",
  "LOG",
  "REDIRECT",
  "NOTRACK",
  "CT",
  "QUEUE",
  "NFQUEUE",
  "TCPMSS",
  "NFLOG",
  "SET",
  "TRACE",
  "CHECKSUM",
  "TPROXY",
  "AUDIT",
  "CLASSIFY",
  "DSCP",
  "ECN",
  "HMARK",
  "NETMAP",
  "SECMARK",
  "CONNSECMARK",
  "SYNPROXY",
  "TEE",
  "TOS",
  "TTL",
  "HL",
  "IDLETIMER",
  "LED",
]);

interface Chain {
  builtin: boolean;
  policy: string;
  rules: string[][];
}

type Tables = Map<string, Map<string, Chain>>;

function fresh(): Tables {
  const t: Tables = new Map();
  for (const [name, chains] of Object.entries(BUILTIN))
    t.set(name, new Map(chains.map((c) => [c, { builtin: true, policy: "ACCEPT", rules: [] }])));
  return t;
}

function clone(t: Tables): Tables {
  const out: Tables = new Map();
  for (const [name, chains] of t) {
    const m = new Map<string, Chain>();
    for (const [c, v] of chains) m.set(c, { builtin: v.builtin, policy: v.policy, rules: v.rules.map((r) => [...r]) });
    out.set(name, m);
  }
  return out;
}

class Fail extends Error {}

/** One recorded call, for tests that assert what was sent. */
export type FakeCall =
  | { kind: "restore"; input: string; opts: RestoreOptions }
  | { kind: "save"; table?: string }
  | { kind: "run"; args: string[] };

export class FakeRunner extends CommandRunner {
  private tables: Tables = fresh();
  readonly calls: FakeCall[] = [];
  /** Make the next restore whose input matches fail with this message (then forget it). */
  failNextRestore?: { match?: (input: string) => boolean; message: string };

  constructor(
    readonly family: IPFamily = "IPv4",
    readonly backend: Backend = "nft",
  ) {
    super();
  }

  private same(a: string[], b: string[]): boolean {
    const x = normalizeArgs(a, this.family).join("\u0000");
    return x === normalizeArgs(b, this.family).join("\u0000");
  }

  private table(t: Tables, name: string): Map<string, Chain> {
    const tab = t.get(name);
    if (!tab) throw new Fail(`can't initialize iptables table \`${name}': Table does not exist`);
    return tab;
  }

  private chain(tab: Map<string, Chain>, name: string): Chain {
    const c = tab.get(name);
    if (!c) throw new Fail(`Chain '${name}' does not exist`);
    return c;
  }

  /** A rule's target must be an extension or a user chain that exists now. */
  private checkTarget(tab: Map<string, Chain>, rule: string[]): void {
    const target = ruleTarget(rule);
    if (!target || TARGETS.has(target)) return;
    const c = tab.get(target);
    if (!c || c.builtin) throw new Fail(`Couldn't load target \`${target}':No such file or directory`);
  }

  /** Every rule of the table jumps to something that exists. */
  private checkJumps(tab: Map<string, Chain>): void {
    for (const [name, c] of tab)
      for (const r of c.rules) {
        const target = ruleTarget(r);
        if (target && !TARGETS.has(target) && !tab.has(target))
          throw new Fail(`Couldn't load target \`${target}':No such file or directory (in chain ${name})`);
      }
  }

  private deleteChain(tab: Map<string, Chain>, name: string): void {
    const c = this.chain(tab, name);
    if (c.builtin) throw new Fail(`Can't delete built-in chain ${name}`);
    if (c.rules.length > 0) throw new Fail(`Directory not empty: chain ${name} is not empty`);
    for (const [other, oc] of tab)
      if (other !== name && oc.rules.some((r) => ruleTarget(r) === name))
        throw new Fail(`Too many links: chain ${name} is referenced by ${other}`);
    tab.delete(name);
  }

  private applyRule(tab: Map<string, Chain>, op: string, args: string[]): void {
    const name = args[0];
    let rest = args.slice(1);
    const c = this.chain(tab, name);
    if (op === "-A") {
      this.checkTarget(tab, rest);
      c.rules.push(rest);
    } else if (op === "-I") {
      let pos = 1;
      if (/^[0-9]+$/.test(rest[0] ?? "")) {
        pos = Number(rest[0]);
        rest = rest.slice(1);
      }
      if (pos < 1 || pos > c.rules.length + 1) throw new Fail("Index of insertion too big");
      this.checkTarget(tab, rest);
      c.rules.splice(pos - 1, 0, rest);
    } else if (op === "-D") {
      const i =
        /^[0-9]+$/.test(rest[0] ?? "") && rest.length === 1
          ? Number(rest[0]) - 1
          : c.rules.findIndex((r) => this.same(r, rest));
      if (i < 0 || i >= c.rules.length) throw new Fail("Bad rule (does a matching rule exist in that chain?)");
      c.rules.splice(i, 1);
    }
  }

  async restore(input: string, opts: RestoreOptions): Promise<void> {
    this.calls.push({ kind: "restore", input, opts });
    if (this.failNextRestore && (!this.failNextRestore.match || this.failNextRestore.match(input))) {
      const message = this.failNextRestore.message;
      this.failNextRestore = undefined;
      throw new RestoreError(`iptables-restore failed: ${message}`, message);
    }
    // Each table is applied to a copy and committed on its own at COMMIT.
    let work: Tables | undefined;
    let tab: Map<string, Chain> | undefined;
    let tabName = "";
    const lines = input.split("\n");
    for (let i = 0; i < lines.length; i++) {
      let line = lines[i].trim();
      try {
        if (line === "" || line.startsWith("#")) continue;
        if (line.startsWith("*")) {
          tabName = line.slice(1);
          work = clone(this.tables);
          tab = opts.table && opts.table !== tabName ? undefined : this.table(work, tabName);
          if (tab && !opts.noflush) {
            for (const c of tab.values()) if (c.builtin) c.rules = [];
            for (const [name, c] of [...tab]) if (!c.builtin) tab.delete(name);
          }
          continue;
        }
        if (line === "COMMIT") {
          if (tab && work) {
            this.checkJumps(tab);
            this.tables = work;
          }
          tab = undefined;
          work = undefined;
          continue;
        }
        if (!tab) {
          if (opts.table) continue; // another table's lines under -T
          throw new Fail("line outside a table");
        }
        if (line.startsWith(":")) {
          const [name, policy] = line.slice(1).split(/\s+/);
          const c = tab.get(name);
          // Declaring a built-in chain sets its policy; declaring a user chain flushes it.
          if (c?.builtin) {
            if (policy && policy !== "-") c.policy = policy;
          } else if (c) c.rules = [];
          else tab.set(name, { builtin: false, policy: "-", rules: [] });
          continue;
        }
        // `[packets:bytes] -A …` as iptables-save -c prints it.
        if (line.startsWith("[")) line = line.replace(/^\[\d+:\d+\]\s+/, "");
        const args = splitArgs(line);
        if (!args || args.length < 2) throw new Fail(`Bad argument \`${line}'`);
        if (args[0] === "-X") this.deleteChain(tab, args[1]);
        else if (args[0] === "-F") this.chain(tab, args[1]).rules = [];
        else if (args[0] === "-P") {
          const c = this.chain(tab, args[1]);
          if (!c.builtin) throw new Fail(`Bad built-in chain name ${args[1]}`);
          c.policy = args[2] ?? c.policy;
        } else if (args[0] === "-N") {
          if (tab.has(args[1])) throw new Fail("Chain already exists");
          tab.set(args[1], { builtin: false, policy: "-", rules: [] });
        } else if (["-A", "-I", "-D"].includes(args[0])) this.applyRule(tab, args[0], args.slice(1));
        else throw new Fail(`unknown command ${args[0]}`);
      } catch (e) {
        if (!(e instanceof Fail)) throw e;
        const stderr = `iptables-restore: line ${i + 1} failed: ${e.message}\nError occurred at line: ${i + 1}\n`;
        throw new RestoreError(`iptables-restore failed at input line ${i + 1}: ${e.message}`, stderr, i + 1, lines[i]);
      }
    }
    if (tab)
      throw new RestoreError("iptables-restore failed: COMMIT expected at the end of the input", "COMMIT expected");
  }

  async save(table?: string): Promise<string> {
    this.calls.push({ kind: "save", table });
    const out: string[] = [
      `# Generated by fake ${this.family === "IPv4" ? "iptables" : "ip6tables"}-${this.backend}-save`,
    ];
    for (const [name, tab] of this.tables) {
      if (table && table !== name) continue;
      out.push(`*${name}`);
      for (const [c, v] of tab) out.push(`:${c} ${v.builtin ? v.policy : "-"} [0:0]`);
      for (const [c, v] of tab) for (const r of v.rules) out.push(["-A", c, ...r.map(quoteArg)].join(" "));
      out.push("COMMIT");
    }
    return `${out.join("\n")}\n`;
  }

  async run(argv: string[]): Promise<CommandResult> {
    this.calls.push({ kind: "run", args: argv });
    const args: string[] = [];
    let table = "filter";
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === "-t") table = argv[++i];
      else if (argv[i] === "-w" || argv[i] === "-W") {
        if (/^[0-9]+$/.test(argv[i + 1] ?? "")) i++;
      } else args.push(argv[i]);
    }
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    // Exit statuses as the real tool's: 1 no such chain or rule (or one already there), 3 no such table.
    const fail = (msg: string, code = 1): CommandResult => ({ code, stdout: "", stderr: `iptables: ${msg}.\n` });
    const work = clone(this.tables);
    if (!work.has(table)) return fail(`can't initialize iptables table \`${table}': Table does not exist`, 3);
    try {
      const tab = this.table(work, table);
      const [op, chain, ...rest] = args;
      switch (op) {
        case "-N":
          if (chain === undefined || chain.length > 28 || chain.startsWith("-"))
            return fail(`chain name \`${chain}' not allowed (under 29 chars, not starting with \`-')`, 2);
          if (tab.has(chain)) return fail("Chain already exists");
          tab.set(chain, { builtin: false, policy: "-", rules: [] });
          break;
        case "-X":
          if (!tab.has(chain)) return fail("No chain/target/match by that name");
          this.deleteChain(tab, chain);
          break;
        case "-F":
          if (!tab.has(chain)) return fail("No chain/target/match by that name");
          this.chain(tab, chain).rules = [];
          break;
        case "-C": {
          const c = tab.get(chain);
          if (!c) return fail("No chain/target/match by that name");
          return c.rules.some((r) => this.same(r, rest))
            ? ok()
            : fail("Bad rule (does a matching rule exist in that chain?)");
        }
        case "-S": {
          const c = tab.get(chain);
          if (!c) return fail("No chain/target/match by that name");
          const line = (r: string[]) => ["-A", chain, ...r.map(quoteArg)].join(" ");
          // `-S CHAIN N`: rule N alone, nothing past the end (as the real tools).
          if (/^[0-9]+$/.test(rest[0] ?? "")) {
            if (Number(rest[0]) === 0) return fail(`Invalid rule number \`${rest[0]}'`, 2);
            const r = c.rules[Number(rest[0]) - 1];
            return ok(r ? `${line(r)}\n` : "");
          }
          const lines = [c.builtin ? `-P ${chain} ${c.policy}` : `-N ${chain}`, ...c.rules.map(line)];
          return ok(`${lines.join("\n")}\n`);
        }
        case "-A":
        case "-I":
        case "-D":
          if (!tab.has(chain)) return fail("No chain/target/match by that name");
          this.applyRule(tab, op, [chain, ...rest]);
          this.checkJumps(tab);
          break;
        default:
          return fail(`unknown command ${op}`);
      }
    } catch (e) {
      if (e instanceof Fail) return fail(e.message);
      throw e;
    }
    this.tables = work;
    return ok();
  }
}
