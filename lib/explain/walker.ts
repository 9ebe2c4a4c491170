/**
 * The walker: one packet through one chain after another, rule by rule. Matches decide
 * (lib/explain/matches.ts), targets act (lib/explain/targets.ts), `-m statistic` rules split
 * the walk into branches, each with its probability.
 */
import type { Host } from "./host.ts";
import type { Rule, RuleTables } from "./tables.ts";
import { PASSIVE_TARGETS, runTarget } from "./targets.ts";
import type { Branch, Cell, Ctx, Event, HookCtx, Packet, State, UnknownMatch } from "./types.ts";

export class Walker {
  readonly unknown: UnknownMatch[] = [];
  private readonly seenUnknown = new Set<string>();

  constructor(
    readonly tables: RuleTables,
    readonly host: Host,
    readonly pkt: Packet,
  ) {}

  /** Report a rule kip cannot evaluate, once per rule. */
  noteUnknown(table: string, chain: string, r: Rule, matches: string[]): void {
    const key = `${table} ${r.saved.text}`;
    if (this.seenUnknown.has(key)) return;
    this.seenUnknown.add(key);
    this.unknown.push({ table, chain, rule: r.saved.text, line: r.saved.line, matches });
  }

  runChain(ctx: HookCtx, chain: string, st0: State, trail: Cell | undefined, depth: number): Branch[] {
    const c = this.tables.tables.get(ctx.table)?.get(chain);
    if (!c) throw new Error(`${ctx.table} has no chain ${chain}`);
    if (depth > 64) throw new Error(`chain loop through ${ctx.table}/${chain}`);
    const st: State = { ...st0, chains: [...st0.chains, `${ctx.table}:${chain}`] };
    const from = (i: number, s: State, tr: Cell | undefined): Branch[] => {
      // `carry`: the chance of still being here after not taking earlier `statistic` rules.
      // A loop, not recursion, so a Service with thousands of endpoints walks in linear time.
      const out: Branch[] = [];
      let carry = 1;
      for (; i < c.rules.length; i++) {
        const r = c.rules[i];
        const comp = r.compiled;
        const full: Ctx = { ...ctx, st: s };
        const why: string[] = [];
        const unsure = [...comp.unknown];
        let fails = false;
        let seconds: number | undefined;
        for (const cond of comp.conds) {
          const res = cond(full);
          if (res.ok === false) {
            fails = true;
            break;
          }
          if (res.ok === undefined) unsure.push(res.why ?? "?");
          else if (res.why) why.push(res.why);
          if (res.seconds !== undefined) seconds = res.seconds;
        }
        if (fails) continue;
        if (seconds !== undefined) s = { ...s, affinitySeconds: seconds };
        // Options kip does not evaluate, and interfaces it does not know: reported, not guessed.
        if (unsure.length > 0) {
          const matches = [...new Set(unsure)];
          this.noteUnknown(ctx.table, chain, r, matches);
          const passive = comp.target === undefined || PASSIVE_TARGETS.has(comp.target);
          const ev: Event = {
            kind: "unknown",
            table: ctx.table,
            chain,
            rule: r.saved.text,
            line: r.saved.line,
            matches,
            text: passive
              ? "kip cannot tell whether this matches; its target changes nothing kip follows"
              : "kip cannot tell whether this matches, and its target would decide the packet's fate",
          };
          if (passive) {
            tr = { ev, up: tr };
            continue;
          }
          out.push({
            p: carry,
            st: { ...s, decidedBy: { table: ctx.table, chain, rule: r.saved.text, line: r.saved.line } },
            end: "unknown",
            trail: { ev, up: tr },
          });
          return out;
        }
        const chance = comp.chances.reduce((a, b) => a * b, 1);
        if (chance > 0) {
          const taken = runTarget(this, { hook: ctx, chain, rule: r, st: s, why, chance, trail: tr, depth });
          const k = chance * carry;
          for (const b of taken) {
            if (b.end === "continue") for (const x of from(i + 1, b.st, b.trail)) out.push({ ...x, p: x.p * b.p * k });
            else out.push({ ...b, p: b.p * k });
          }
        }
        if (chance >= 1) return out;
        // Not taken: the walk goes on with the next rule, with the remaining chance.
        carry *= 1 - chance;
      }
      out.push({ p: carry, st: s, end: "return", trail: tr });
      return out;
    };
    return from(0, st, trail);
  }

  /** A built-in chain: its rules, then its policy. Tables without the chain let the packet pass. */
  runHook(table: string, chain: string, iif: string | undefined, oif: string | undefined, b: Branch): Branch[] {
    const c = this.tables.tables.get(table)?.get(chain);
    if (!c || (c.rules.length === 0 && c.policy !== "DROP")) return [b];
    const hook: Cell = { ev: { kind: "hook", table, chain, policy: c.policy }, up: b.trail };
    const out: Branch[] = [];
    for (const r of this.runChain({ pkt: this.pkt, host: this.host, iif, oif, table }, chain, b.st, hook, 0)) {
      const p = r.p * b.p;
      if (r.end === "continue" || r.end === "return") {
        if (c.policy === "DROP") {
          const ev: Event = { kind: "policy", table, chain, policy: c.policy };
          out.push({
            p,
            st: { ...r.st, decidedBy: { table, chain, rule: `policy ${c.policy}`, line: 0 } },
            end: "drop",
            trail: { ev, up: r.trail },
          });
        } else out.push({ ...r, p, end: "continue" });
      } else if (r.end === "accept") out.push({ ...r, p, end: "continue" });
      else out.push({ ...r, p });
    }
    return out;
  }
}
