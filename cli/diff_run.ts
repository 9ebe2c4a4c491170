/**
 * `kip diff [PATH...]`: the rules kube-proxy would write for PATH vs what a node has, over
 * kube-proxy's own chains and jump rules only. On the host every family whose iptables works
 * is compared, as kip sync writes them all. Exit status as diff(1), the worst over the
 * families: 0 same, 1 drift, 2 trouble.
 */
import { type DesiredTables, type DiffResult, normalizeDesired, summaryLine } from "../lib/iptables/compare.ts";
import type { ExecRunner } from "../lib/iptables/exec_runner.ts";
import type { Backend } from "../lib/iptables/runner.ts";
import { dumpOfTables, type SaveDump } from "../lib/iptables/save_parser.ts";
import { compareDumps } from "../lib/kube_iptables.ts";
import type { IPFamily } from "../lib/model/ip.ts";
import type { Ruleset } from "../lib/proxy/ruleset.ts";
import { renderFamily } from "../lib/render.ts";
import { type Review, reviewChanges } from "../lib/review.ts";
import { reviewMarkdown } from "./diff_markdown.ts";
import { UsageError } from "./errors.ts";
import { type IO, useColor } from "./io.ts";
import { familyRunners, kubeChainsElsewhere, readDumpFile, requireRoot, startLiveDump } from "./node.ts";
import { type ClusterFlagValues, type NodeFlagValues, resolveProxyConfig } from "./node_flags.ts";
import { renderPaths } from "./render.ts";

export interface DiffFlags extends NodeFlagValues, ClusterFlagValues {
  live?: string;
  from?: string[];
  to?: string[];
  ipFamily?: IPFamily;
  backend?: Backend;
  output: "text" | "json" | "markdown";
  color?: boolean;
}

/** One family's outcome: compared, or trouble reading its tables. */
interface FamilyDiff {
  family: IPFamily;
  source?: string;
  result?: DiffResult;
  error?: string;
}

const FAMILIES: readonly IPFamily[] = ["IPv4", "IPv6"];

/** The desired side straight from the engine's rules: no restore text round trip. */
function dumpOf(rs: Ruleset): SaveDump {
  return dumpOfTables({ filter: rs.filter, nat: rs.nat });
}

/** The engine's rules in the comparer's canonical form, one string per rule. */
function desiredOf(rs: Ruleset): DesiredTables {
  return normalizeDesired({ filter: rs.filter, nat: rs.nat }, rs.family);
}

/**
 * The IO a second render of the same PATHs gets: stdin is read once and kept, and a message
 * the first render already printed is not printed again.
 */
function renderIO(io: IO): IO {
  let stdin: string | undefined;
  const said = new Set<string>();
  return {
    ...io,
    readStdin: () => {
      stdin ??= io.readStdin();
      return stdin;
    },
    stderr: (text) => {
      if (said.has(text)) return;
      said.add(text);
      io.stderr(text);
    },
  };
}

/**
 * One family's live tables, the save started now so that it and the render overlap; read
 * once the desired rules are there, settling what matches them as it arrives. `warning` says
 * when the other backend also holds KUBE-* chains.
 */
function startLive(runner: ExecRunner): {
  dump: { read(settle: DesiredTables): Promise<SaveDump> };
  warning: Promise<string | undefined>;
} {
  const warning = kubeChainsElsewhere(runner).then((other) =>
    other
      ? `kip: warning: the ${other} backend also holds ${runner.family} KUBE-* chains; this diff reads ${runner.describe()}, the host's default\n`
      : undefined,
  );
  return { dump: startLiveDump(runner), warning };
}

/** The engine's rules of PATH for each family: the manifests are read and loaded once. */
function rulesetsFor(paths: string[], opts: DiffFlags, io: IO, families: IPFamily[]): Ruleset[] {
  const first = renderPaths(paths, opts, io, families[0]);
  const out = [first.ruleset];
  if (families.length > 1) {
    const config = resolveProxyConfig(opts, io);
    for (const family of families.slice(1)) out.push(renderFamily(first, config, family));
  }
  return out;
}

/**
 * The desired rules of PATH for each family, normalised. The loaded objects are let go (and
 * collected) before the rules are normalised, and each family's engine output once it is:
 * at 10k Services each of these is 100+ MB.
 */
function desiredFor(paths: string[], opts: DiffFlags, io: IO, families: IPFamily[]): Map<IPFamily, DesiredTables> {
  const rulesets: (Ruleset | undefined)[] = rulesetsFor(paths, opts, io, families);
  collectGarbage();
  const out = new Map<IPFamily, DesiredTables>();
  for (let i = 0; i < families.length; i++) {
    out.set(families[i], desiredOf(rulesets[i] as Ruleset));
    rulesets[i] = undefined;
  }
  collectGarbage();
  return out;
}

/**
 * A full collection right after a large structure was let go (the loaded manifests, the
 * engine's rules): left to itself the runtime grows the heap first, and at 10k Services the
 * peak RSS was 640 MB instead of ~450. About 50 ms each, while iptables-save still runs.
 * Only Bun has the call; elsewhere this does nothing.
 */
function collectGarbage(): void {
  (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true);
}

/**
 * The host's families to compare: the one --ip-family names, else each whose iptables binary
 * works (as kip sync picks them). A family that does not work is skipped with a warning.
 */
function hostRunners(opts: DiffFlags, io: IO): Promise<ExecRunner[]> {
  const none = "no usable iptables binary for IPv4 or IPv6 (install the iptables package)";
  if (opts.ipFamily) return familyRunners([opts.ipFamily], opts.backend, none);
  return familyRunners(FAMILIES, opts.backend, none, (family, e) =>
    io.stderr(`kip: warning: skipping ${family}: ${e.message}\n`),
  );
}

/** A --live FILE: parsed, and its family from the generator line (`# Generated by ip6tables-save`). */
function liveFile(opts: DiffFlags, io: IO): { dump: SaveDump; family: IPFamily } {
  const file = opts.live as string;
  const { dump, family: fromDump } = readDumpFile(io, file);
  if (opts.ipFamily && fromDump && fromDump !== opts.ipFamily)
    throw new UsageError(`${file} was written by ${dump.generator}: compare it with --ip-family ${fromDump}`);
  // A dump without a generator line (restore input, hand-made): --ip-family, else IPv4.
  return { dump, family: fromDump ?? opts.ipFamily ?? "IPv4" };
}

const paint = (on: boolean, code: string, s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);

function printPatches(r: DiffResult, io: IO, color: boolean): void {
  for (const c of r.chains) {
    for (const line of c.patch.split("\n")) {
      if (line.startsWith("---") || line.startsWith("+++")) io.stdout(`${paint(color, "1", line)}\n`);
      else if (line.startsWith("@@")) io.stdout(`${paint(color, "36", line)}\n`);
      else if (line.startsWith("+")) io.stdout(`${paint(color, "32", line)}\n`);
      else if (line.startsWith("-")) io.stdout(`${paint(color, "31", line)}\n`);
      else io.stdout(`${line}\n`);
    }
  }
}

/** diff(1)'s status for one family: 0 same, 1 drift, 2 trouble. */
const statusOf = (f: FamilyDiff) => (f.error !== undefined || !f.result ? 2 : f.result.chains.length > 0 ? 1 : 0);

const familyJSON = (f: FamilyDiff) =>
  f.result
    ? {
        family: f.family,
        ...(f.source ? { source: f.source } : {}),
        drift: f.result.chains.length > 0,
        summary: f.result.summary,
        chains: f.result.chains.map(({ patch: _patch, ...c }) => c),
      }
    : { family: f.family, error: f.error };

/** --from/--to: two renders of one family, and a review of the change. */
function diffManifestSets(opts: DiffFlags, io: IO): { diff: FamilyDiff; review: Review } {
  if (!opts.from || !opts.to) throw new UsageError("--from and --to go together");
  const family: IPFamily = opts.ipFamily ?? "IPv4";
  const rio = renderIO(io);
  const before = renderPaths(opts.from, opts, rio, family);
  const after = renderPaths(opts.to, opts, rio, family);
  const labels = { oldLabel: "from", newLabel: "to" };
  const result = compareDumps(dumpOf(before.ruleset), dumpOf(after.ruleset), { family, jumps: false, ...labels });
  const review = reviewChanges(
    { services: before.loaded.state.services, ports: before.ruleset.services },
    { services: after.loaded.state.services, ports: after.ruleset.services },
  );
  // A review reads one family's rules: a dual-stack Service's change would show twice. The
  // other family is still checked, so a change only it sees is not passed over in silence.
  if (!opts.ipFamily) {
    const other: IPFamily = family === "IPv4" ? "IPv6" : "IPv4";
    const quiet: IO = { ...rio, stderr: () => {} };
    try {
      const b = renderPaths(opts.from, opts, quiet, other);
      const a = renderPaths(opts.to, opts, quiet, other);
      const r = compareDumps(dumpOf(b.ruleset), dumpOf(a.ruleset), { family: other, jumps: false, ...labels });
      if (r.chains.length > 0)
        io.stderr(
          `kip: note: the ${other} rules change too (${summaryLine(r)}); this diff shows ${family}: run it again with --ip-family ${other}\n`,
        );
    } catch {}
  }
  return { diff: { family, result }, review };
}

/** Trouble (a thrown error) is exit status 2 here, as diff(1) says: cli/main.ts maps it. */
export async function runDiff(paths: string[], opts: DiffFlags, io: IO): Promise<number> {
  if (opts.output === "markdown" && !(opts.from || opts.to))
    throw new UsageError("-o markdown reviews a change: give --from BASE --to HEAD");
  const color = useColor(opts.color, io);
  if (opts.from || opts.to) {
    if (paths.length > 0 || opts.live)
      throw new UsageError("--from/--to compare two manifest sets: no PATH or --live with them");
    const { diff, review } = diffManifestSets(opts, io);
    const result = diff.result as DiffResult;
    if (opts.output === "markdown") {
      const simulated = opts.simulate === true || opts.simulateEndpoints === true;
      io.stdout(
        reviewMarkdown(review, result, { from: (opts.from ?? []).join(" "), to: (opts.to ?? []).join(" ") }, simulated),
      );
    } else if (opts.output === "json") io.stdout(`${JSON.stringify({ ...familyJSON(diff), review }, null, 2)}\n`);
    else {
      printPatches(result, io, color);
      io.stdout(`kip diff: ${summaryLine(result)}\n`);
    }
    return statusOf(diff);
  }

  const diffs: FamilyDiff[] = [];
  // One family asked for (--ip-family, or a --live dump, which holds one) gives the single
  // shape in -o json; the host's every family gives { drift, families }.
  let single = true;
  if (opts.live) {
    const { dump, family } = liveFile(opts, io);
    const desired = desiredOf(renderPaths(paths, opts, io, family).ruleset);
    diffs.push({ family, result: compareDumps(dump, desired, { family, jumps: true }) });
  } else {
    requireRoot("reading the live tables needs root (iptables-save): run kip diff as root, or give --live FILE");
    if (paths.length === 0) throw new UsageError("no manifests given: name files or directories, or - for stdin");
    const runners = await hostRunners(opts, io);
    single = opts.ipFamily !== undefined;
    // Every family's iptables-save starts first and runs while kip renders (~2 s at 10k
    // Services); each dump is then parsed as it arrives, chains that are as desired settled
    // on the way (SaveParser's settle), so little is left to compare when the save ends.
    const lives = runners.map(startLive);
    const desired = desiredFor(
      paths,
      opts,
      renderIO(io),
      runners.map((r) => r.family),
    );
    // Patch headers name the family when there is more than one.
    const tag = (f: IPFamily) => (runners.length > 1 ? ` ${f}` : "");
    for (const [i, runner] of runners.entries()) {
      const family = runner.family;
      const source = runner.describe();
      const want = desired.get(family) as DesiredTables;
      let live: SaveDump;
      try {
        live = await lives[i].dump.read(want);
      } catch (e) {
        io.stderr(`kip: ${family}: cannot read the tables (${source}): ${(e as Error).message}\n`);
        diffs.push({ family, source, error: (e as Error).message });
        continue;
      }
      const warning = await lives[i].warning;
      if (warning) io.stderr(warning);
      io.stderr(`kip: live ${family} rules from ${source}\n`);
      const labels = { oldLabel: `live${tag(family)}`, newLabel: `desired${tag(family)}` };
      diffs.push({ family, source, result: compareDumps(live, want, { family, jumps: true, ...labels }) });
    }
  }

  if (opts.output === "json") {
    const drift = diffs.some((d) => (d.result?.chains.length ?? 0) > 0);
    io.stdout(
      `${JSON.stringify(single && diffs.length === 1 ? familyJSON(diffs[0]) : { drift, families: diffs.map(familyJSON) }, null, 2)}\n`,
    );
  } else {
    for (const d of diffs) if (d.result) printPatches(d.result, io, color);
    for (const d of diffs)
      io.stdout(
        `kip diff: ${d.result ? summaryLine(d.result) : `${d.family}: not compared (cannot read the tables)`}\n`,
      );
  }
  return Math.max(...diffs.map(statusOf));
}
