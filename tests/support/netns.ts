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

/** Whether a process with this id exists (EPERM: it does, and is someone else's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Namespaces tests name `<prefix><pid>-…`: withNetns's and the e2e topology's. */
const TEST_NETNS = /^(?:kip-t|kipe2e-)(\d+)-/;

/** Namespaces this process created and has not deleted yet. */
const live = new Set<string>();
let exitHook = false;

/** Delete a namespace after killing the processes left in it (a test's servers). */
export function deleteNetns(ns: string): void {
  const pids = exec(["ip", "netns", "pids", ns]).stdout.split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  exec(["ip", "netns", "del", ns]);
  live.delete(ns);
}

/** Delete every namespace this process created: after the last test (preload.ts), or at exit. */
export function deleteLiveNetns(): void {
  for (const n of live) deleteNetns(n);
}

/**
 * `ip netns add ns`, remembered until deleteNetns: a test that times out never reaches its
 * `finally`, so whatever is left is deleted after the last test (or when a script exits), and
 * by the next run (cleanupLeftovers) if it was killed.
 */
export function addNetns(ns: string): Exec {
  if (!exitHook) {
    exitHook = true;
    cleanupLeftovers();
    // `bun test` emits no "exit" (the preload's afterAll calls deleteLiveNetns); a script does.
    process.once("exit", deleteLiveNetns);
  }
  const r = exec(["ip", "netns", "add", ns]);
  if (r.code === 0) live.add(ns);
  return r;
}

/** Remove the namespaces of earlier test runs whose process is gone; returns their names. */
export function cleanupLeftovers(): string[] {
  const removed: string[] = [];
  for (const line of exec(["ip", "netns", "list"]).stdout.split("\n")) {
    const ns = line.trim().split(/\s+/)[0];
    const m = ns ? TEST_NETNS.exec(ns) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid ? live.has(ns) : pidAlive(pid)) continue;
    deleteNetns(ns);
    removed.push(ns);
  }
  return removed;
}

/** Create a namespace, run fn inside its lifetime, delete it afterwards whatever happens. */
export async function withNetns<T>(
  fn: (ns: string, run: (argv: string[], input?: string) => Exec) => T | Promise<T>,
): Promise<T> {
  const ns = `kip-t${process.pid}-${++counter}`;
  const add = addNetns(ns);
  if (add.code !== 0) throw new Error(`ip netns add ${ns}: ${add.stderr}`);
  try {
    return await fn(ns, (argv, input) => exec(["ip", "netns", "exec", ns, ...argv], input));
  } finally {
    deleteNetns(ns);
  }
}
