/**
 * One family's sync (spec §8): build the rules for the current state, full or partial, ensure
 * kube-proxy's jump rules on full syncs, delete stale service chains, and apply with
 * iptables-restore --noflush (in consistent batches on nft). A failure leaves the tables as the
 * last good restore left them and makes the next sync a full one.
 *
 * Stale chains without a save in the hot path: kip knows which service chains it wrote and
 * deleted, so a Service or endpoint that goes away has its chains deleted in the same sync.
 * Chains kip did not write (an earlier kip, kube-proxy before the takeover, someone else) are
 * found by reading the live nat table: inside the sync only at start, after a failure, and on
 * every sync of a small cluster (cheap there, as kube-proxy does); in a large cluster in the
 * background (readLive(), once per sync period), whose finds the next sync deletes.
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { CommandError, RestoreError, type Runner } from "../iptables/runner.ts";
import { savedChainNames } from "../iptables/save_parser.ts";
import type { IPFamily } from "../model/ip.ts";
import type { ClusterState } from "../model/types.ts";
import { buildRules, newBuildCache } from "../proxy/build.ts";
import { FIXED_CHAINS, isServiceChain } from "../proxy/chains.ts";
import { JUMP_RULES, jumpRuleArgs } from "../proxy/jumps.ts";
import { type ProxyConfig, resolveBuildOptions } from "../proxy/options.ts";
import { countRules, type Ruleset, toRestore } from "../proxy/ruleset.ts";
import { type BatchOptions, batchRestore, DEFAULT_BATCH, needsBatches } from "./batch.ts";

/** kube-proxy forces a full sync at least this often (spec §8.1). */
export const FULL_SYNC_PERIOD_MS = 3600_000;

export interface RestoreRecord {
  ok: boolean;
  at: number;
  full: boolean;
  /**
   * The restore input(s), in order. A large payload is kept gzipped and unpacked on each read
   * (keptRecord): read it once per use.
   */
  readonly inputs: string[];
  error?: string;
  /** The input line iptables-restore named, when it did. */
  failedLine?: number;
  failedLineText?: string;
}

export interface SyncOutcome {
  family: IPFamily;
  ok: boolean;
  full: boolean;
  /** Milliseconds spent building rules, and applying them (jumps, save, restores). */
  buildMs: number;
  applyMs: number;
  restores: number;
  filterRules: number;
  natRules: number;
  natChains: number;
  staleChains: number;
  skippedNatRules: number;
  ruleset?: Ruleset;
  error?: string;
}

export interface ProxierOptions {
  family: IPFamily;
  runner: Runner;
  config: ProxyConfig;
  /** Batches on nft (default DEFAULT_BATCH); false: always one transaction. */
  batch?: BatchOptions | false;
  syncPeriodMs: number;
  now: () => number;
  /** Only print what would be restored. */
  /**
   * --dry-run: receives what a sync would apply instead of applying it: on a full sync the
   * jump rules it would ensure (`-t TABLE -N CHAIN`, `-t TABLE -I FROM …`), then the
   * iptables-restore inputs.
   */
  dryRun?: (family: IPFamily, inputs: string[], jumps: string[][]) => void;
  /**
   * The live table's chain names, read without holding the whole save (live_chains.ts);
   * default: the runner's save, parsed.
   */
  liveChains?: (table: "nat") => Promise<string[]>;
  /**
   * A full garbage collection (Bun.gc), run before a full build that follows an earlier
   * build: the last build's rules are garbage by then, and collecting them first lets the new
   * build reuse their memory instead of growing the heap past the first sync's peak.
   */
  collect?: () => void;
}

/** nat chains kube-proxy rewrites on every sync, partial ones included (spec §8.1): its fixed ones. */
const ENTRY_NAT: ReadonlySet<string> = new Set(FIXED_CHAINS.nat);

const chainOf = (rule: string) => {
  const sp = rule.indexOf(" ", 3);
  return rule.slice(3, sp < 0 ? undefined : sp);
};

/** The filter table and nat's entry chains, as one comparable text. */
function entryContent(rs: Ruleset): string {
  const nat = rs.nat.rules.filter((r) => r.startsWith("-A ") && ENTRY_NAT.has(chainOf(r)));
  return `${rs.filter.chains.join(",")}\n${rs.filter.rules.join("\n")}\n${nat.join("\n")}`;
}

/**
 * A partial sync's restore without the chains it would rewrite unchanged: the filter table and
 * nat's entry chains. kube-proxy rewrites them on every sync (about 4% of a large ruleset
 * each time); kip skips them when they are byte-identical to the last successful write, which
 * leaves the kernel in the same state for a fraction of the work.
 */
function withoutEntry(rs: Ruleset): Pick<Ruleset, "filter" | "nat"> {
  return {
    filter: { chains: [], rules: [] },
    nat: {
      chains: rs.nat.chains.filter((c) => !ENTRY_NAT.has(c)),
      rules: rs.nat.rules.filter((r) => !ENTRY_NAT.has(chainOf(r))),
    },
  };
}

/**
 * Payloads of at least this many characters are kept gzipped (level 1): a 10k × 10 full
 * sync's 32.5 MB of restore text becomes 6.6 MB (measured: 0.17 s once per full sync), read
 * back only for the state file and /debug/last-restore. Smaller ones (partial syncs) stay text.
 */
export const PACK_MIN_CHARS = 256 * 1024;

/** Where a packed record keeps its gzipped inputs (not enumerable). */
const PACKED = Symbol("packed inputs");

/**
 * A RestoreRecord whose `inputs` are gzipped when large. `inputs` stays an own enumerable
 * property (a getter), so JSON.stringify and spreading still see the text.
 * Memory budget: ~20 % of the payload (6.6 MB at 10k × 10) instead of all of it (32.5 MB).
 */
export function keptRecord(base: Omit<RestoreRecord, "inputs">, inputs: string[]): RestoreRecord {
  let chars = 0;
  for (const s of inputs) chars += s.length;
  if (chars < PACK_MIN_CHARS) return { ...base, inputs };
  const packed = inputs.map((s) => gzipSync(s, { level: 1 }));
  const record = {
    ...base,
    get inputs() {
      return packed.map((b) => gunzipSync(b).toString("utf8"));
    },
  };
  // Not enumerable: JSON and spreads see `inputs` only.
  Object.defineProperty(record, PACKED, { value: packed });
  return record;
}

/** The record's inputs one at a time: a packed payload is unpacked input by input, not whole. */
export function* eachInput(r: RestoreRecord): Generator<string> {
  const packed = (r as { [PACKED]?: Buffer[] })[PACKED];
  if (!packed) {
    yield* r.inputs;
    return;
  }
  for (const b of packed) yield gunzipSync(b).toString("utf8");
}

/** How many inputs the record holds, without unpacking them. */
export function inputCount(r: RestoreRecord): number {
  return (r as { [PACKED]?: Buffer[] })[PACKED]?.length ?? r.inputs.length;
}

export class Proxier {
  needFullSync = true;
  /** Entry content of the last successful write (full, or partial that wrote it). */
  private lastEntry?: string;
  /** Per-service-port rules of the last build: partial syncs recompute only what changed. */
  private cache = newBuildCache();
  private lastFullSync = Number.NEGATIVE_INFINITY;
  private wasLargeCluster = false;
  /**
   * Service chains believed present in the kernel: written by kip and not deleted since, plus
   * those a read of the live table found. Stale-chain deletion looks here. Budget: one entry
   * per service nat chain (~110k at 10k × 10, ~6 MB; the strings are the build cache's).
   */
  private present = new Set<string>();
  /** The next sync reads the live table first (start, after a failure). */
  private readLiveInSync = true;
  /** A sync wrote rules since the live table was last read: an idle node reads nothing. */
  private wroteSinceLiveRead = false;
  lastSuccess?: RestoreRecord;
  lastFailure?: RestoreRecord;
  /** Rule counts of the last successful sync, for metrics (spec §8.5). */
  lastCounts = { filter: 0, nat: 0, natTotal: 0 };

  constructor(readonly o: ProxierOptions) {}

  get family(): IPFamily {
    return this.o.family;
  }

  /** kube-proxy's jump rules: -N the target, -C the rule, -I it at the top when missing. */
  // (jumpCommands() below lists the same commands for --dry-run.)
  private async ensureJumps(): Promise<void> {
    const failed = (what: string) => (e: unknown) => {
      throw e instanceof CommandError ? new Error(`${what}: ${e.message}`) : e;
    };
    for (const j of JUMP_RULES) {
      await this.o.runner.ensureChain(j.table, j.to).catch(failed(`creating ${j.table}/${j.to}`));
      await this.o.runner
        .ensureRule("prepend", j.table, j.from, jumpRuleArgs(j))
        .catch(failed(`inserting the ${j.from} → ${j.to} jump`));
    }
  }

  private async liveNatChains(): Promise<string[]> {
    if (this.o.liveChains) return this.o.liveChains("nat");
    return savedChainNames(await this.o.runner.save("nat"), "nat");
  }

  private addPresent(chains: Iterable<string>): void {
    for (const c of chains) if (isServiceChain(c)) this.present.add(c);
  }

  /**
   * The background half of stale-chain deletion (large clusters; small ones read the live
   * table in every sync): read the live nat table, outside any sync, and remember its service
   * chains. Resolves true when one of them is stale (not the rules' any more): a sync should
   * follow to delete it. A chain deleted by a sync that ran meanwhile may be remembered again:
   * the next sync then declares and deletes it once more, which iptables-restore accepts.
   * Only after a sync wrote something (as kube-proxy reads only in a sync): a save of a 10k
   * table costs ~3 s of CPU, which an idle node should not pay every period.
   */
  async readLive(): Promise<boolean> {
    if (this.o.dryRun || !this.wasLargeCluster || this.readLiveInSync || !this.wroteSinceLiveRead) return false;
    this.wroteSinceLiveRead = false;
    const live = await this.liveNatChains();
    const active = this.cache.active;
    let stale = false;
    for (const c of live)
      if (isServiceChain(c)) {
        this.present.add(c);
        if (!active.has(c)) stale = true;
      }
    return stale;
  }

  /**
   * Sync `state`. `changed` lists the Services changed since the last sync; a full sync is made
   * anyway when one is due (start, failure, canary, node change, hourly).
   */
  async sync(state: ClusterState, changed: ReadonlySet<string>, forceFull = false): Promise<SyncOutcome> {
    const now = this.o.now();
    const full = forceFull || this.needFullSync || now - this.lastFullSync > FULL_SYNC_PERIOD_MS;
    const t0 = performance.now();
    let buildMs = 0;
    const inputs: string[] = [];
    try {
      if (full && !this.o.dryRun) await this.ensureJumps();
      // Stale service chains: those kip knows of, and the live table's when it is read here.
      const readHere = (this.readLiveInSync || !this.wasLargeCluster) && !this.o.dryRun;
      if (readHere) {
        try {
          this.addPresent(await this.liveNatChains());
          this.readLiveInSync = false;
        } catch {
          // spec §8.2: a failed save skips the live chains this time (what kip wrote still counts)
        }
      }
      if (full && this.cache.ports.size > 0) {
        // A full build reads nothing of the last one (at 10k × 10, ~70 MB of rules): let it
        // go and collect it first. A later full sync (hourly, canary, failure) peaked 150–200
        // MB above the first sync with both builds in the heap.
        this.cache = newBuildCache();
        this.o.collect?.();
      }
      const b0 = performance.now();
      const opts = resolveBuildOptions(this.o.config, this.o.family, state.node);
      const rs = buildRules(state, opts, {
        changedServices: full ? undefined : changed,
        existingNatChains: this.o.dryRun ? undefined : this.present,
        cache: this.cache,
        summaries: false,
      });
      buildMs = performance.now() - b0;
      const entry = entryContent(rs);
      const write = !full && entry === this.lastEntry ? withoutEntry(rs) : rs;
      const batch = this.o.batch === undefined ? DEFAULT_BATCH : this.o.batch;
      if (batch && this.o.runner.backend === "nft" && needsBatches(write, batch))
        inputs.push(...batchRestore(write, batch));
      else inputs.push(write === rs ? toRestore(rs) : toRestore(write).replace("*filter\nCOMMIT\n", ""));
      if (this.o.dryRun) this.o.dryRun(this.o.family, inputs, full ? jumpCommands() : []);
      else for (const input of inputs) await this.o.runner.restore(input, { noflush: true, counters: true });
      const natRules = countRules(rs.nat);
      const deletes = rs.nat.rules.length - natRules;
      this.needFullSync = false;
      this.lastEntry = entry;
      if (full) this.lastFullSync = now;
      for (const c of rs.nat.chains) if (isServiceChain(c)) this.present.add(c);
      for (const c of rs.deletedNatChains) this.present.delete(c);
      // Read just now: the next background read waits for a sync that did not.
      this.wroteSinceLiveRead = !readHere;
      this.wasLargeCluster = rs.largeCluster;
      this.lastCounts = { filter: countRules(rs.filter), nat: natRules, natTotal: natRules + rs.skippedNatRules };
      this.lastSuccess = keptRecord({ ok: true, at: now, full }, inputs);
      return {
        family: this.o.family,
        ok: true,
        full,
        buildMs,
        applyMs: performance.now() - t0 - buildMs,
        restores: inputs.length,
        filterRules: this.lastCounts.filter,
        natRules,
        natChains: rs.nat.chains.length,
        staleChains: deletes,
        skippedNatRules: rs.skippedNatRules,
        ruleset: rs,
      };
    } catch (e) {
      // The change sets were consumed: only a full sync can be sure to repair everything.
      this.needFullSync = true;
      this.readLiveInSync = true;
      this.lastEntry = undefined;
      this.cache = newBuildCache();
      const err = e as Error;
      this.lastFailure = keptRecord(
        {
          ok: false,
          at: now,
          full,
          error: err.message,
          failedLine: e instanceof RestoreError ? e.line : undefined,
          failedLineText: e instanceof RestoreError ? e.lineText : undefined,
        },
        inputs,
      );
      return {
        family: this.o.family,
        ok: false,
        full,
        buildMs,
        applyMs: performance.now() - t0 - buildMs,
        restores: inputs.length,
        filterRules: 0,
        natRules: 0,
        natChains: 0,
        staleChains: 0,
        skippedNatRules: 0,
        error: err.message,
      };
    }
  }
}

/** The commands ensureJumps runs on an empty node: -N each target chain once, -I each jump. */
export function jumpCommands(): string[][] {
  const out: string[][] = [];
  const created = new Set<string>();
  for (const j of JUMP_RULES) {
    if (!created.has(`${j.table} ${j.to}`)) out.push(["-t", j.table, "-N", j.to]);
    created.add(`${j.table} ${j.to}`);
    out.push(["-t", j.table, "-I", j.from, ...jumpRuleArgs(j)]);
  }
  return out;
}
