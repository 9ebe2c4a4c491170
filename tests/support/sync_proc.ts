/**
 * A running `kip sync` (the compiled binary) inside a test namespace: its log lines, waiting
 * for conditions with deadlines, and a clean SIGTERM stop.
 */
import { afterEach } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { ensureBinary } from "./binary.ts";
import type { Exec } from "./netns.ts";

/** Quick syncs and rescans, for tests that wait on them. */
export const FAST = ["--iptables-min-sync-period", "100ms", "--iptables-sync-period", "1s", "--rescan-period", "200ms"];
/** HTTP servers on free loopback ports (the log line "serving healthz=… metrics=…" says which). */
export const LOOPBACK_PORTS = ["--healthz-bind-address", "127.0.0.1:0", "--metrics-bind-address", "127.0.0.1:0"];

/**
 * `kip sync` over the manifests in `dir` for node `host`, IPv4, the FAST periods, its state in
 * `dir/state`; `extra` flags in between.
 */
export function manifestsSyncArgs(dir: string, host: string, ...extra: string[]): string[] {
  return [
    "--manifests",
    dir,
    "--hostname-override",
    host,
    "--ip-families",
    "IPv4",
    ...FAST,
    ...extra,
    "--state-dir",
    join(dir, "state"),
  ];
}

export interface SyncProc {
  lines: string[];
  /** Wait until a log line matches, with a deadline. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
  child: ChildProcess;
}

export interface StartOptions {
  /** Runs kip through this argv inside the namespace (e.g. `prlimit --nofile=…`). */
  wrap?: string[];
  /** Extra environment. */
  env?: Record<string, string>;
  /** Another executable (KIP_TEST_BINARY, e.g. an older build to reproduce a bug with). */
  binary?: string;
}

export function startSync(ns: string, args: string[], opts: StartOptions = {}): SyncProc {
  const binary = opts.binary ?? process.env.KIP_TEST_BINARY ?? ensureBinary();
  const child = spawn("ip", ["netns", "exec", ns, ...(opts.wrap ?? []), binary, "sync", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  const lines: string[] = [];
  const listeners: (() => void)[] = [];
  let buf = "";
  const onData = (b: Buffer) => {
    buf += b.toString("utf8");
    const parts = buf.split("\n");
    buf = parts.pop() ?? "";
    lines.push(...parts);
    for (const l of listeners.splice(0)) l();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      exited = code;
      for (const l of listeners.splice(0)) l();
      resolve(code);
    }),
  );
  return {
    lines,
    child,
    async waitForLog(re, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = lines.find((l) => re.test(l));
        if (hit) return hit;
        if (exited !== undefined)
          throw new Error(`kip sync exited (${exited}) before logging ${re}:\n${lines.join("\n")}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no log line matched ${re} within ${timeoutMs} ms:\n${lines.join("\n")}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          listeners.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    async stop() {
      if (exited === undefined) child.kill("SIGTERM");
      return exit;
    },
  };
}

/** Poll `check` until it returns true, at most `timeoutMs` (for states with no event to wait on). */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `kip diff` run in the namespace: 0 once the live rules equal what the manifests render. */
export function diffIn(run: (argv: string[]) => Exec, args: string[]): Exec {
  return run([ensureBinary(), "diff", ...args, "--no-color"]);
}

/** Daemons a test file starts: each test's are stopped after it, even when it fails. */
export function stopAfterEach(): SyncProc[] {
  const procs: SyncProc[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) await p.stop();
  });
  return procs;
}
