/**
 * iptables-save / iptables-restore text → tables, chains and rules, with line numbers.
 *
 * Tolerant: reads what both backends print (header comments, policies and counters, `[p:b]`
 * rule counters from `-c`, quoted comments with backslash escapes) and restore input (`-X`,
 * `-D`, `-I`). Lines it cannot read are reported, not guessed at. Arguments are split by the
 * one tokenizer in rule.ts.
 */
import { quoteArg, tokenize } from "./rule.ts";

/** One rule line of a dump (`-A`, `-I` or `-D`). */
export interface SavedRule {
  /** `-A`, `-I` or `-D`. */
  op: "-A" | "-I" | "-D";
  /** The chain it is in (or inserted into, deleted from). */
  chain: string;
  /** Arguments after the chain, unquoted (split on first use). */
  readonly args: string[];
  /** The rule as written, without a `[p:b]` counters prefix. */
  text: string;
  /** 1-based line in the text; 0 for rendered rules (dumpOfTables). */
  line: number;
}

/** A rule whose arguments are split only when someone reads them: diffs mostly do not. */
class LazyRule implements SavedRule {
  private split?: string[];
  constructor(
    readonly op: "-A" | "-I" | "-D",
    readonly chain: string,
    readonly text: string,
    readonly line: number,
    /** Offset of the first argument in `text`. */
    private readonly at: number,
  ) {}

  get args(): string[] {
    if (!this.split) this.split = tokenize(this.text.slice(this.at)) ?? [];
    return this.split;
  }
}

/** A chain declared in a dump (`:NAME POLICY [p:b]`). */
export interface SavedChain {
  /** The chain's name. */
  name: string;
  /** `ACCEPT`/`DROP` for built-in chains, `-` for user chains. */
  policy: string;
  /** 1-based line in the text; 0 for chains of rendered rules (dumpOfTables). */
  line: number;
}

/** One table of a dump (`*name` … `COMMIT`). */
export interface SavedTable {
  /** `filter`, `nat`, `mangle`, `raw`… */
  name: string;
  /** Declared chains in order of appearance. */
  chains: Map<string, SavedChain>;
  /** Rule lines in order of appearance. */
  rules: SavedRule[];
  /** Chains deleted by `-X` lines (restore input). */
  deletes: string[];
}

/** iptables-save output (or iptables-restore input), read: tables with their chains and rules. */
export interface SaveDump {
  /** The tables by name, in order of appearance. */
  tables: Map<string, SavedTable>;
  /** From the header comment, when there is one: `iptables-save`, `ip6tables-nft-save`… */
  generator?: string;
  /**
   * `message` says what is wrong without quoting the input: a dump may be a file kip was
   * allowed to read through sudo, and its content must not come back in an error.
   * `excerpt` (the start of the line, quoted) is for callers that may show it.
   */
  errors: { line: number; message: string; excerpt?: string }[];
  /**
   * Per table, the chains whose rules were the same as the `settle` rules' (SaveParser's
   * option), line for line and as text, and that the dump declares: their rules were let go
   * while reading, so `rules` does not hold them. A comparison takes them as equal.
   */
  settled?: Map<string, Set<string>>;
}

/**
 * Rules to settle while reading: per table, per chain, the rule lines expected, in order and
 * in iptables-save's own form (compare.ts's DesiredTables has this shape).
 */
export interface SettleAgainst {
  tables: ReadonlyMap<string, { chains: ReadonlyMap<string, readonly string[]> }>;
}

export const BUILTIN_CHAINS = new Set(["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"]);

/** An odd number of unescaped double quotes (checked without splitting the line). */
function unbalancedQuotes(line: string): boolean {
  let q = line.indexOf('"');
  if (q < 0) return false;
  if (line.includes("\\")) return tokenize(line) === undefined;
  let count = 0;
  for (; q >= 0; q = line.indexOf('"', q + 1)) count++;
  return count % 2 === 1;
}

/**
 * A dump of rule lines that are already `-A CHAIN …` strings in one table each (the engine's
 * output), without going through restore text and back.
 */
export function dumpOfTables(
  tables: Record<string, { chains: readonly string[]; rules: readonly string[] }>,
): SaveDump {
  const dump: SaveDump = { tables: new Map(), errors: [] };
  for (const [name, t] of Object.entries(tables)) {
    const table: SavedTable = { name, chains: new Map(), rules: [], deletes: [] };
    for (const c of t.chains) table.chains.set(c, { name: c, policy: "-", line: 0 });
    for (const line of t.rules) {
      const sp = line.indexOf(" ", 3);
      const chain = sp < 0 ? line.slice(3) : line.slice(3, sp);
      const op = line.slice(0, 2);
      if (op === "-X") table.deletes.push(chain);
      else if (op === "-A" || op === "-I" || op === "-D")
        table.rules.push(new LazyRule(op, chain, line, 0, sp < 0 ? line.length : sp + 1));
    }
    dump.tables.set(name, table);
  }
  return dump;
}

const OUTSIDE = "outside a table (no *table line before it)";
const CANNOT_READ = "cannot read the line (not a table, chain, rule or COMMIT line)";
const excerpt = (line: string) => JSON.stringify(line.slice(0, 80));

/**
 * iptables-save text (or restore input) → tables, chains and rules. Never throws: lines it cannot
 * read are in `errors`.
 */
export function parseSave(text: string): SaveDump {
  const p = new SaveParser();
  p.push(text);
  return p.finish();
}

/** A chain being settled: its expected lines, and how many arrived (-1 once one differed). */
interface ChainState {
  readonly want: readonly string[];
  n: number;
}

/** The first `n` expected lines of a chain, matched and let go while settling, as its rules. */
function keepMatched(table: SavedTable, chain: string, want: readonly string[], n: number): void {
  for (let k = 0; k < n; k++) {
    const text = want[k];
    const sp = text.indexOf(" ", 3);
    table.rules.push(new LazyRule("-A", chain, text, 0, sp < 0 ? text.length : sp + 1));
  }
}

/**
 * parseSave fed in pieces, as iptables-save's output arrives: a diff parses the live tables
 * while the tool is still writing them. Pieces may end mid-line; finish() reads the rest.
 */
export class SaveParser {
  private readonly dump: SaveDump = { tables: new Map(), errors: [] };
  private cur: SavedTable | undefined;
  private lineNo = 0;
  private carry = "";
  /**
   * When settling, per table, per expected chain: its expected lines and how many arrived so
   * far (-1 once one differed). Made in the constructor, before the dump comes: a chain
   * starting then costs one lookup, and a line that is its next expected one a comparison.
   */
  private readonly states = new Map<string, Map<string, ChainState>>();
  /** The current table's states (when settling). */
  private tableStates: Map<string, ChainState> | undefined;
  /** The chain being read (rules come chain by chain) and its state, if it is expected. */
  private chain = "";
  private state: ChainState | undefined;

  /**
   * With `settle`, a chain whose rules arrive the same as expected (line for line, as text)
   * is not kept: at 10k Services a diff of an unchanged node then holds no live rules, and
   * compares none after the dump ends. The rules of a chain that turns out to differ are kept
   * whole (those matched before the first difference are the expected lines).
   */
  constructor(private readonly settle?: SettleAgainst) {
    for (const [name, t] of settle?.tables ?? []) {
      const states = new Map<string, ChainState>();
      for (const [chain, want] of t.chains) states.set(chain, { want, n: 0 });
      this.states.set(name, states);
    }
  }

  push(text: string): void {
    let at = 0;
    let nl = text.indexOf("\n");
    if (nl < 0) {
      this.carry += text;
      return;
    }
    if (this.carry !== "") {
      this.line(this.carry + text.slice(0, nl));
      this.carry = "";
      at = nl + 1;
      nl = text.indexOf("\n", at);
    }
    for (; nl >= 0; nl = text.indexOf("\n", at)) {
      this.line(text.slice(at, nl));
      at = nl + 1;
    }
    this.carry = text.slice(at);
  }

  finish(): SaveDump {
    // The text after the last newline is a line too (empty when the text ends with one).
    this.line(this.carry);
    this.carry = "";
    if (this.cur)
      this.dump.errors.push({ line: this.lineNo, message: `table ${this.cur.name} has no COMMIT (a cut-off dump?)` });
    if (this.settle) {
      // Settled: every expected line came, nothing more, in a chain the dump declares. Any
      // other chain gets back the lines it matched (a prefix of what was expected).
      const settled = new Map<string, Set<string>>();
      for (const [name, states] of this.states) {
        const table = this.dump.tables.get(name);
        if (!table) continue;
        const set = new Set<string>();
        for (const [chain, st] of states) {
          if (st.n === st.want.length && table.chains.has(chain)) set.add(chain);
          else if (st.n > 0) keepMatched(table, chain, st.want, st.n);
        }
        settled.set(name, set);
      }
      this.dump.settled = settled;
    }
    return this.dump;
  }

  /**
   * Whether a rule line of a settling chain matched the next expected line (and is let go).
   * On the first difference the lines matched so far come back as rules, before this one.
   */
  private settled(op: string, chain: string, line: string, cur: SavedTable): boolean {
    if (chain !== this.chain) {
      this.chain = chain;
      this.state = this.tableStates?.get(chain);
    }
    const st = this.state;
    if (!st || st.n < 0) return false;
    if (op === "-A" && line === st.want[st.n]) {
      st.n++;
      return true;
    }
    keepMatched(cur, chain, st.want, st.n);
    st.n = -1;
    return false;
  }

  private line(text: string): void {
    this.lineNo++;
    this.read(text.endsWith("\r") ? text.slice(0, -1) : text, this.lineNo);
  }

  private read(line: string, lineNo: number): void {
    // Settling, the hot path: the next expected line of the chain being read (past its end
    // or after a difference, `want[n]` is undefined).
    const st = this.state;
    if (st !== undefined && line === st.want[st.n]) {
      st.n++;
      return;
    }
    const dump = this.dump;
    const cur = this.cur;
    const first = line.charCodeAt(0);
    if (first === 45 /* - */) {
      // The hot path: `-A CHAIN args…`.
      if (!cur) {
        dump.errors.push({ line: lineNo, message: OUTSIDE, excerpt: excerpt(line) });
        return;
      }
      const op = line.slice(0, 2);
      const sp = line.indexOf(" ", 3);
      const chain = sp < 0 ? line.slice(3) : line.slice(3, sp);
      if (line.charCodeAt(2) !== 32 || chain === "") {
        dump.errors.push({ line: lineNo, message: CANNOT_READ, excerpt: excerpt(line) });
        return;
      }
      if (op === "-A" || op === "-I" || op === "-D") {
        if (this.tableStates && this.settled(op, chain, line, cur)) return;
        if (unbalancedQuotes(line)) {
          dump.errors.push({ line: lineNo, message: "unterminated quote", excerpt: excerpt(line) });
          return;
        }
        cur.rules.push(new LazyRule(op, chain, line, lineNo, sp < 0 ? line.length : sp + 1));
      } else if (op === "-X") cur.deletes.push(chain);
      else
        dump.errors.push({
          line: lineNo,
          message: "unknown command (not -A, -I, -D or -X)",
          excerpt: JSON.stringify(op),
        });
      return;
    }
    if (line === "" || /^\s*$/.test(line)) return;
    if (first === 35 /* # */) {
      const m = /^# Generated by (\S+)/.exec(line);
      if (m && !dump.generator) dump.generator = m[1];
      return;
    }
    if (first === 42 /* * */) {
      const name = line.slice(1).trim();
      this.cur = dump.tables.get(name);
      if (!this.cur) dump.tables.set(name, (this.cur = { name, chains: new Map(), rules: [], deletes: [] }));
      this.tableStates = this.states.get(name);
      this.chain = "";
      this.state = undefined;
      return;
    }
    if (line === "COMMIT") {
      this.cur = undefined;
      this.tableStates = undefined;
      this.chain = "";
      this.state = undefined;
      return;
    }
    if (!cur) {
      dump.errors.push({ line: lineNo, message: OUTSIDE, excerpt: excerpt(line) });
      return;
    }
    if (first === 58 /* : */) {
      const parts = line.slice(1).split(/\s+/);
      if (!parts[0]) {
        dump.errors.push({ line: lineNo, message: "chain line without a name" });
        return;
      }
      if (!cur.chains.has(parts[0]))
        cur.chains.set(parts[0], { name: parts[0], policy: parts[1] ?? "-", line: lineNo });
      return;
    }
    if (first === 91 /* [ */) {
      // `[packets:bytes] -A …` from iptables-save -c: read the rest as a rule line.
      const rest = line.replace(/^\[\d+:\d+\]\s+/, "");
      if (rest !== line && rest.startsWith("-")) {
        this.read(rest, lineNo);
        return;
      }
    }
    dump.errors.push({ line: lineNo, message: CANNOT_READ, excerpt: excerpt(line) });
  }
}

/** A rule back as one restore line. */
export function ruleLine(r: Pick<SavedRule, "op" | "chain" | "args">): string {
  return [r.op, r.chain, ...r.args.map(quoteArg)].join(" ");
}

/**
 * The chains declared in one table of iptables-save text, without parsing its rules: a
 * background stale-chain check needs the names only, and a 10k-Service nat table is 430k
 * lines, of which the declarations are the first ~110k of the table's section.
 */
export function savedChainNames(text: string, table: string): string[] {
  const out: string[] = [];
  const head = `*${table}\n`;
  let at = text.startsWith(head.slice(0, -1)) ? 0 : text.indexOf(`\n${head}`);
  if (at < 0) return out;
  at = text.indexOf("\n", at + 1) + 1;
  while (at > 0 && at < text.length) {
    const c = text.charCodeAt(at);
    // Declarations come first; the first rule, COMMIT or next table ends them (comments do not).
    if (c !== 58 /* : */ && c !== 35 /* # */) break;
    const eol = text.indexOf("\n", at);
    const end = eol < 0 ? text.length : eol;
    if (c === 58) {
      const sp = text.indexOf(" ", at);
      out.push(text.slice(at + 1, sp < 0 || sp > end ? end : sp));
    }
    at = end + 1;
  }
  return out;
}
