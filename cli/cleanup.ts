/**
 * `kip cleanup`: remove every KUBE-* chain and the rules that jump to them. This file only declares the command; its implementation
 * (cleanup_run.ts) loads when the command runs, so `kip render` never pays for it.
 */
import { Command } from "@commander-js/extra-typings";
import type { CleanupFlags } from "./cleanup_run.ts";
import type { IO } from "./io.ts";

const EXAMPLES = `
Examples:
  # What would go? (nothing is changed)
  kip cleanup --dry-run

  # Remove every trace of kube-proxy (and of anything else that made KUBE-* chains)
  kip cleanup

  # Only what kube-proxy itself owns, like "kube-proxy --cleanup": kubelet's
  # KUBE-FIREWALL and KUBE-KUBELET-CANARY stay
  kip cleanup --owned-only

Each table of each family and backend is changed in one iptables-restore --noflush call that
names only KUBE-* chains and the rules jumping to them: every other chain and rule stays as it
was. A second run finds nothing and says so.

Exit status: 0 done (or nothing to do), 1 a removal failed (what was done is reported),
2 cannot run (not root, iptables missing).`;

export function cleanupCommand() {
  return new Command("cleanup")
    .description("Remove every KUBE-* chain and the rules that jump to them (IPv4, IPv6, nft and legacy)")
    .option("--dry-run", "print what would be removed, change nothing")
    .option("--owned-only", "remove only kube-proxy's own chains, like kube-proxy --cleanup")
    .addHelpText("after", EXAMPLES);
}

/** Run `kip cleanup`: its implementation (cleanup_run.ts) loads now. */
export async function run(opts: CleanupFlags, io: IO): Promise<number> {
  return (await import("./cleanup_run.ts")).runCleanup(opts, io);
}
