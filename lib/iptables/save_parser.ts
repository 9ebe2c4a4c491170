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
  /** Declared chains in order of appearance (a settled dump's: see SaveDump.settle). */
  chains: Map<string, SavedChain>;
  /** Rule lines in order of appearance (a settled dump's: see SaveDump.settle). */
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
   * Set when the dump was read with SaveParser's `settle`, `against` being those very rules
   * (a comparison checks that it compares with them, by identity). A chain of theirs that the
   * dump declares and whose rules were the expected ones, line for line and as text, is
   * settled: its declaration and rules were let go while reading, so neither `chains` nor
   * `rules` holds it, and a comparison takes it as equal. `unsettled` names, per table of
   * `against` that the dump has, the expected chains that did not settle (not declared, or
   * other rules): they are in `rules` as read, and in `chains` when declared (after the other
   * chains, not in order of appearance).
   */
  settle?: { against: object; unsettled: Map<string, Set<string>> };
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
  readonly name: string;
  readonly want: readonly string[];
  n: number;
  /** Its first declaration in the dump (the line and its number), once there is one. */
  decl?: string;
  declLine: number;
  /** Counted in its table's `settled`. */
  counted: boolean;
}

/**
 * One table's expected chains sorted by name, and where the dump is in them: both backends
 * print a table's chain declarations, then its rules, sorted by chain name (after the built-in
 * chains), so the next chain to come is almost always the next one here. `decl` and `rule`
 * are the indexes of the next expected declaration and the next expected chain of rules.
 */
interface TableStates {
  readonly sorted: readonly ChainState[];
  decl: number;
  rule: number;
  /**
   * How many chains would settle if the dump ended here, as of the last time each was
   * recounted: when its declaration came, and when the dump left its rules (see leave()).
   */
  settled: number;
}

/** Count `st` in `t.settled` when it would settle now (declared, every expected line, no other). */
function recount(t: TableStates, st: ChainState): void {
  const now = st.decl !== undefined && st.n === st.want.length;
  if (now === st.counted) return;
  st.counted = now;
  t.settled += now ? 1 : -1;
}

/** The first index of `sorted` whose name is not below `name`. */
function lowerBound(sorted: readonly ChainState[], name: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid].name < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The state of `chain`, when it is expected, from the cursor `at` of `t`. In step with the dump,
 * that is the chain at the cursor; otherwise a binary search finds it (the order only makes
 * it fast, never right), and the cursor moves past it when it is ahead (the chains skipped are
 * missing from the dump), not when it is behind (a chain out of order) or not expected (a
 * built-in chain, another program's).
 */
function stateAt(t: TableStates, at: "decl" | "rule", chain: string): ChainState | undefined {
  const i = t[at];
  const next = t.sorted[i];
  if (next !== undefined && next.name === chain) {
    t[at] = i + 1;
    return next;
  }
  const j = lowerBound(t.sorted, chain);
  const found = t.sorted[j];
  if (found === undefined || found.name !== chain) return undefined;
  if (j > i) t[at] = j + 1;
  return found;
}

/** A chain declaration line (`:NAME POLICY [p:b]`) read. */
function declared(line: string, lineNo: number): SavedChain {
  const parts = line.slice(1).split(/\s+/);
  return { name: parts[0], policy: parts[1] ?? "-", line: lineNo };
}

const SPACE = /\s/;

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
   * When settling, per table, its expected chains' states, sorted by name: their expected lines
   * and how many arrived so far (-1 once one differed), and their declaration. Made in the
   * constructor, before the dump comes: a chain in step with the dump then costs a comparison
   * of names to start, and a line that is its next expected one a comparison of lines.
   */
  private readonly states = new Map<string, TableStates>();
  /** The current table's states (when settling). */
  private tableStates: TableStates | undefined;
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
      // Code unit order is iptables' strcmp order for ASCII names; other names only cost speed.
      // (Sorting the names, then looking each up, is twice as fast as sorting with a comparator.)
      const sorted: ChainState[] = [...t.chains.keys()]
        .sort()
        .map((chain) => ({ name: chain, want: t.chains.get(chain) ?? [], n: 0, declLine: 0, counted: false }));
      this.states.set(name, { sorted, decl: 0, rule: 0, settled: 0 });
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
    this.leave();
    if (this.cur)
      this.dump.errors.push({ line: this.lineNo, message: `table ${this.cur.name} has no COMMIT (a cut-off dump?)` });
    if (this.settle) {
      // Settled: every expected line came, nothing more, in a chain the dump declares. Any
      // other chain is unsettled: it gets back its declaration, if any, and the lines it
      // matched (a prefix of what was expected).
      const unsettled = new Map<string, Set<string>>();
      for (const [name, states] of this.states) {
        const table = this.dump.tables.get(name);
        if (!table) continue;
        const set = new Set<string>();
        unsettled.set(name, set);
        // The usual case, an unchanged node: no chain to look at (and 110k not walked again).
        if (states.settled === states.sorted.length) continue;
        for (const st of states.sorted) {
          if (st.decl !== undefined) {
            if (st.n === st.want.length) continue;
            table.chains.set(st.name, declared(st.decl, st.declLine));
          }
          set.add(st.name);
          if (st.n > 0) keepMatched(table, st.name, st.want, st.n);
        }
      }
      this.dump.settle = { against: this.settle, unsettled };
    }
    return this.dump;
  }

  /**
   * Whether a rule line of a settling chain matched the next expected line (and is let go).
   * On the first difference the lines matched so far come back as rules, before this one.
   */
  private settled(op: string, chain: string, line: string, cur: SavedTable): boolean {
    if (chain !== this.chain) {
      this.leave();
      this.chain = chain;
      this.state = this.tableStates && stateAt(this.tableStates, "rule", chain);
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

  /** The dump leaves the rules of the chain being read (for now: a chain may come back). */
  private leave(): void {
    if (this.state && this.tableStates) recount(this.tableStates, this.state);
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
      this.leave();
      this.cur = dump.tables.get(name);
      if (!this.cur) dump.tables.set(name, (this.cur = { name, chains: new Map(), rules: [], deletes: [] }));
      this.tableStates = this.states.get(name);
      // A table the dump prints twice is walked from the start again.
      if (this.tableStates) this.tableStates.decl = this.tableStates.rule = 0;
      this.chain = "";
      this.state = undefined;
      return;
    }
    if (line === "COMMIT") {
      this.leave();
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
      // `:NAME POLICY [p:b]`; the name ends at the first white space.
      const sp = line.indexOf(" ");
      let name = line.slice(1, sp < 0 ? line.length : sp);
      let chain: SavedChain | undefined;
      if (SPACE.test(name)) {
        chain = declared(line, lineNo);
        name = chain.name;
      }
      if (!name) {
        dump.errors.push({ line: lineNo, message: "chain line without a name" });
        return;
      }
      // Settling, an expected chain's declaration is kept on its state, not in `chains`.
      const t = this.tableStates;
      const st = t && stateAt(t, "decl", name);
      if (t && st) {
        if (st.decl === undefined) {
          st.decl = line;
          st.declLine = lineNo;
          recount(t, st);
        }
        return;
      }
      if (!cur.chains.has(name)) cur.chains.set(name, chain ?? declared(line, lineNo));
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
