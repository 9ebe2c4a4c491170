/**
 * What ends a kip command early, as types. Commands throw these (or return an exit status);
 * cli/main.ts alone turns them into a message and an exit status. IptablesUnavailable (a host
 * whose iptables kip cannot use) comes from lib/iptables/runner.ts.
 */

/** A bad flag or bad input: a short message and exit 2, never a stack trace. */
export class UsageError extends Error {}

/** Manifests that do not load: each problem was printed as it was found; this sums them up. Exit 2. */
export class ManifestErrors extends UsageError {}

/** The command reads or changes this host's iptables, and kip does not run as root. Exit 2. */
export class NeedsRoot extends Error {}
