/**
 * `kip cleanup`: remove every KUBE-* chain and every rule that jumps to one, in nat, filter,
 * mangle and raw, for IPv4 and IPv6, in each backend present; touch nothing else.
 */
import { NFT_BATCH, type TablePlan } from "../lib/iptables/cleanup.ts";
import { availableBackends, ExecRunner } from "../lib/iptables/exec_runner.ts";
import { IptablesUnavailable, RestoreError, type Runner } from "../lib/iptables/runner.ts";
import { parseSave } from "../lib/iptables/save_parser.ts";
import { planCleanup } from "../lib/kube_iptables.ts";
import type { IPFamily } from "../lib/model/ip.ts";
import { plural } from "../lib/util/text.ts";
import type { IO } from "./io.ts";
import { requireRoot } from "./node.ts";

export interface CleanupFlags {
  dryRun?: boolean;
  ownedOnly?: boolean;
}

/** The runners to clean: each family × each backend this host has binaries for. */
export type RunnerFactory = () => Promise<Runner[]>;

async function hostRunners(io: IO): Promise<Runner[]> {
  const out: Runner[] = [];
  for (const family of ["IPv4", "IPv6"] as IPFamily[]) {
    for (const b of await availableBackends(family)) {
      try {
        out.push(await ExecRunner.create(family, b));
      } catch (e) {
        io.stderr(`kip: warning: skipping ${family} ${b}: ${(e as Error).message}\n`);
      }
    }
  }
  if (out.length === 0) throw new IptablesUnavailable("no iptables binaries found (install the iptables package)");
  return out;
}

function describePlan(p: TablePlan): string {
  return `${p.table}: ${plural(p.chains.length, "chain")}, ${plural(p.jumps.length, "jump rule")}`;
}

export async function runCleanup(opts: CleanupFlags, io: IO, runners?: RunnerFactory): Promise<number> {
  if (!runners) requireRoot("cleanup reads and changes iptables: run kip cleanup as root");
  const list = runners ? await runners() : await hostRunners(io);
  let removedChains = 0;
  let removedRules = 0;
  let failed = 0;
  for (const runner of list) {
    const label = `${runner.family} ${runner.backend}`;
    let plans: TablePlan[];
    try {
      const dump = parseSave(await runner.save());
      plans = planCleanup(dump, {
        ownedOnly: opts.ownedOnly === true,
        batchSize: runner.backend === "nft" ? NFT_BATCH : undefined,
      });
    } catch (e) {
      // A backend whose binaries exist but whose kernel side does not (half-present): say so.
      io.stderr(`kip: ${label}: cannot read the tables: ${(e as Error).message}\n`);
      failed++;
      continue;
    }
    if (plans.length === 0) {
      io.stdout(`${label}: nothing to remove\n`);
      continue;
    }
    if (opts.dryRun) {
      io.stdout(`${label}: would remove ${plans.map(describePlan).join("; ")}\n`);
      for (const p of plans)
        for (const input of p.inputs) for (const line of input.trimEnd().split("\n")) io.stdout(`  ${line}\n`);
      continue;
    }
    const done: string[] = [];
    for (const p of plans) {
      let step = 0;
      try {
        for (; step < p.inputs.length; step++) await runner.restore(p.inputs[step], { noflush: true, table: p.table });
        done.push(describePlan(p));
        removedChains += p.chains.length;
        removedRules += p.jumps.length;
      } catch (e) {
        failed++;
        const detail = e instanceof RestoreError && e.lineText ? ` (input line: ${e.lineText})` : "";
        // Steps are whole on their own: after the first, nothing jumps into KUBE-* any more.
        const state =
          step === 0
            ? "that table is unchanged"
            : `after ${step} of ${p.inputs.length} steps no rule jumps into KUBE-* any more but some KUBE-* chains remain; run kip cleanup again`;
        io.stderr(`kip: ${label}: removing ${p.table} failed, ${state}: ${(e as Error).message}${detail}\n`);
      }
    }
    if (done.length > 0) io.stdout(`${label}: removed ${done.join("; ")}\n`);
  }
  if (opts.dryRun) return failed > 0 ? 1 : 0;
  if (failed > 0) {
    io.stderr(`kip: cleanup incomplete: ${plural(failed, "table")} failed; the lines above say what was removed\n`);
    return 1;
  }
  io.stdout(
    removedChains === 0
      ? "kip cleanup: nothing to remove\n"
      : `kip cleanup: removed ${plural(removedChains, "chain")} and ${plural(removedRules, "jump rule")}\n`,
  );
  return 0;
}
