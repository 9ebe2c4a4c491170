/**
 * `kip diff [PATH...]`: the rules kube-proxy would write for PATH vs what a node has, over
 * kube-proxy's own chains and jump rules only. Exit status as diff(1): 0 same, 1 drift, 2 trouble.
 */
import { compareDumps, type DiffResult, summaryLine } from "../lib/iptables/compare.ts";
import { availableBackends, ExecRunner } from "../lib/iptables/exec_runner.ts";
import { type Backend, IptablesUnavailable } from "../lib/iptables/runner.ts";
import { dumpOfTables, parseSave, type SaveDump } from "../lib/iptables/save_parser.ts";
import type { IPFamily } from "../lib/model/ip.ts";
import type { Ruleset } from "../lib/proxy/ruleset.ts";
import { type Review, reviewChanges } from "../lib/review.ts";
import { reviewMarkdown } from "./diff_markdown.ts";
import { type IO, readFlagFile, UsageError } from "./io.ts";
import type { ClusterFlagValues, NodeFlagValues } from "./node_flags.ts";
import { renderPaths } from "./render.ts";

export interface DiffFlags extends NodeFlagValues, ClusterFlagValues {
  live?: string;
  from?: string[];
  to?: string[];
  ipFamily: string;
  backend?: Backend;
  output: string;
  color?: boolean;
}

/** The desired side straight from the engine's rules: no restore text round trip. */
function dumpOf(rs: Ruleset): SaveDump {
  return dumpOfTables({ filter: rs.filter, nat: rs.nat });
}

async function liveDump(
  family: IPFamily,
  backend: Backend | undefined,
  io: IO,
): Promise<{ dump: SaveDump; source: string }> {
  const runner = await ExecRunner.create(family, backend);
  const dump = parseSave(await runner.save());
  // A node whose rules were written through the other backend looks empty through this one.
  for (const other of await availableBackends(family)) {
    if (other === runner.backend) continue;
    try {
      const r = await ExecRunner.create(family, other);
      const text = await r.save("nat");
      if (/^:KUBE-SERVICES /m.test(text))
        io.stderr(
          `kip: warning: the ${other} backend also holds KUBE-* chains; this diff reads ${runner.describe()}, the host's default\n`,
        );
    } catch {}
  }
  return { dump, source: runner.describe() };
}

const paint = (on: boolean, code: string, s: string) => (on ? `\x1b[${code}m${s}\x1b[0m` : s);

function printText(r: DiffResult, io: IO, color: boolean): void {
  for (const c of r.chains) {
    for (const line of c.patch.split("\n")) {
      if (line.startsWith("---") || line.startsWith("+++")) io.stdout(`${paint(color, "1", line)}\n`);
      else if (line.startsWith("@@")) io.stdout(`${paint(color, "36", line)}\n`);
      else if (line.startsWith("+")) io.stdout(`${paint(color, "32", line)}\n`);
      else if (line.startsWith("-")) io.stdout(`${paint(color, "31", line)}\n`);
      else io.stdout(`${line}\n`);
    }
  }
  io.stdout(`kip diff: ${summaryLine(r)}\n`);
}

export async function runDiff(paths: string[], opts: DiffFlags, io: IO): Promise<number> {
  const family: IPFamily = opts.ipFamily === "IPv6" ? "IPv6" : "IPv4";
  try {
    let old: SaveDump;
    let desired: SaveDump;
    let jumps = true;
    let labels = { oldLabel: "live", newLabel: "desired" };
    let review: Review | undefined;
    if (opts.output === "markdown" && !(opts.from || opts.to))
      throw new UsageError("-o markdown reviews a change: give --from BASE --to HEAD");
    if (opts.from || opts.to) {
      if (!opts.from || !opts.to) throw new UsageError("--from and --to go together");
      if (paths.length > 0 || opts.live)
        throw new UsageError("--from/--to compare two manifest sets: no PATH or --live with them");
      const before = renderPaths(opts.from, opts, io, family);
      const after = renderPaths(opts.to, opts, io, family);
      old = dumpOf(before.ruleset);
      desired = dumpOf(after.ruleset);
      jumps = false;
      labels = { oldLabel: "from", newLabel: "to" };
      review = reviewChanges(
        { services: before.loaded.state.services, ports: before.ruleset.services },
        { services: after.loaded.state.services, ports: after.ruleset.services },
      );
    } else {
      // Reading the host's tables needs root: say so before any other work.
      if (!opts.live && process.getuid?.() !== 0)
        throw new IptablesUnavailable(
          "reading the live tables needs root (iptables-save): run kip diff as root, or give --live FILE",
        );
      desired = dumpOf(renderPaths(paths, opts, io, family).ruleset);
      if (opts.live) {
        old = parseSave(readFlagFile(io, "--live", opts.live));
        if (old.errors.length > 0) {
          const e = old.errors[0];
          throw new UsageError(`${opts.live}:${e.line}: ${e.message} (is it iptables-save output?)`);
        }
        const v6dump = old.generator?.startsWith("ip6tables");
        if (v6dump !== undefined && v6dump !== (family === "IPv6"))
          throw new UsageError(
            `${opts.live} was written by ${old.generator}: compare it with --ip-family ${v6dump ? "IPv6" : "IPv4"}`,
          );
      } else {
        const live = await liveDump(family, opts.backend, io);
        old = live.dump;
        io.stderr(`kip: live rules from ${live.source}\n`);
      }
    }
    const result = compareDumps(old, desired, { family, jumps, ...labels });
    if (opts.output === "markdown" && review) {
      const simulated = opts.simulate === true || opts.simulateEndpoints === true;
      io.stdout(
        reviewMarkdown(review, result, { from: (opts.from ?? []).join(" "), to: (opts.to ?? []).join(" ") }, simulated),
      );
    } else if (opts.output === "json") {
      const { chains, summary } = result;
      io.stdout(
        `${JSON.stringify(
          {
            family,
            drift: chains.length > 0,
            summary,
            chains: chains.map(({ patch: _patch, ...c }) => c),
            ...(review ? { review } : {}),
          },
          null,
          2,
        )}\n`,
      );
    } else printText(result, io, opts.color !== false && io.stdoutIsTTY && !io.env.NO_COLOR);
    return result.chains.length > 0 ? 1 : 0;
  } catch (e) {
    // diff(1): any trouble is 2, so a script never mistakes a failure for drift.
    io.stderr(`kip: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
}
