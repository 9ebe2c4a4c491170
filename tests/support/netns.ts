/**
 * Network namespaces for tests that touch iptables: the host's own tables are never touched,
 * and every namespace is removed even when the test fails.
 */
import { spawnSync } from "node:child_process";

let counter = 0;

export interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run argv (never a shell), optionally with stdin. */
export function exec(argv: string[], input?: string): Exec {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: "utf8", maxBuffer: 1 << 30 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? (r.error ? String(r.error) : "") };
}

/** Why real-iptables tests cannot run here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "not root";
  for (const tool of ["ip", "iptables-nft-restore", "iptables-legacy-restore"])
    if (exec(["which", tool]).code !== 0) return `${tool} is not installed`;
  return undefined;
}

/**
 * Whether to skip real-iptables tests: on a developer machine without root or tools, yes;
 * under CI (CI=true) never — a missing tool there must fail loudly, not pass quietly.
 */
export function skipRealIptables(): boolean {
  const why = netnsUnavailable();
  if (why && process.env.CI === "true") throw new Error(`real iptables tests cannot run in CI: ${why}`);
  return why !== undefined;
}

/** Create a namespace, run fn inside its lifetime, delete it afterwards whatever happens. */
export async function withNetns<T>(
  fn: (ns: string, run: (argv: string[], input?: string) => Exec) => T | Promise<T>,
): Promise<T> {
  const ns = `kip-t${process.pid}-${++counter}`;
  const add = exec(["ip", "netns", "add", ns]);
  if (add.code !== 0) throw new Error(`ip netns add ${ns}: ${add.stderr}`);
  try {
    return await fn(ns, (argv, input) => exec(["ip", "netns", "exec", ns, ...argv], input));
  } finally {
    exec(["ip", "netns", "del", ns]);
  }
}
