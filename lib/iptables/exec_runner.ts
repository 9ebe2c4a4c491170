/**
 * The real iptables: argv arrays and stdin, never a shell. Binary names follow the family and
 * the backend (`ip6tables-nft-restore`…); wait flags follow the version as in spec §9.1.
 */
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmdirSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IPFamily } from "../model/ip.ts";
import {
  type Backend,
  type CommandResult,
  CommandRunner,
  failedLine,
  IptablesUnavailable,
  RestoreError,
  type RestoreOptions,
} from "./runner.ts";

/** Why a program could not be started: not installed (IptablesUnavailable), or anything else. */
function startFailure(program: string, e: NodeJS.ErrnoException): Error {
  return e?.code === "ENOENT"
    ? new IptablesUnavailable(`${program} is not installed (or not on PATH)`)
    : new Error(`Cannot run ${program}: ${e?.message ?? String(e)}`);
}

/**
 * Run argv with stdin; ENOENT becomes IptablesUnavailable. A process that cannot be started
 * (EMFILE, EAGAIN, ENOMEM…) rejects with an Error naming the program: never a throw from an
 * event handler, which would end the daemon. The error handler is attached before any stream
 * is touched, and streams that were not created are not touched at all.
 */
export function execFile(argv: string[], input?: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      reject(startFailure(argv[0], e));
    };
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    } catch (e) {
      fail(e as NodeJS.ErrnoException);
      return;
    }
    child.on("error", fail);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    if (!child.stdout || !child.stderr || !child.stdin) {
      child.kill?.();
      fail(Object.assign(new Error("no pipes to the process (out of file descriptors?)"), { code: "EPIPE" }));
      return;
    }
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.stdout.on("error", () => {});
    child.stderr.on("error", () => {});
    child.on("close", (code) => {
      if (settled) return;
      settled = true;
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
    child.stdin.on("error", () => {}); // the tool may exit before reading everything
    child.stdin.end(input ?? "");
  });
}

/**
 * Start argv with its stdout going to an unlinked scratch file, not a pipe: the tool writes at
 * its own pace while kip is busy elsewhere (a pipe would stall it once 64 KiB were unread).
 * `read` hands the output over as it grows, and ends when the tool has exited.
 */
export function execToFile(argv: string[]): { read(onText: (text: string) => void): Promise<CommandResult> } {
  let fd: number | undefined;
  const exited = new Promise<{ code: number; stderr: string }>((resolve, reject) => {
    let settled = false;
    const fail = (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      reject(startFailure(argv[0], e));
    };
    try {
      const dir = mkdtempSync(join(tmpdir(), "kip-save-"));
      const file = join(dir, "out");
      try {
        fd = openSync(file, "w+", 0o600);
      } finally {
        // Whether the open worked or not (EMFILE, ENOSPC), nothing is left in the temp dir:
        // unlink and rmdir need no descriptor (rmSync's recursion would, and fail on EMFILE).
        try {
          unlinkSync(file);
        } catch {}
        rmdirSync(dir);
      }
    } catch (e) {
      fail(e as NodeJS.ErrnoException);
      return;
    }
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", fd, "pipe"] });
    } catch (e) {
      fail(e as NodeJS.ErrnoException);
      return;
    }
    child.on("error", fail);
    const err: Buffer[] = [];
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.stderr?.on("error", () => {});
    child.on("close", (code) => {
      if (settled) return;
      settled = true;
      resolve({ code: code ?? -1, stderr: Buffer.concat(err).toString("utf8") });
    });
  });
  exited.catch(() => {}); // read() reports it
  return {
    async read(onText) {
      let done = false;
      const end = exited.finally(() => {
        done = true;
      });
      end.catch(() => {});
      try {
        if (fd === undefined) await exited; // throws: the file could not be made
        const buf = Buffer.allocUnsafe(1 << 20);
        const decoder = new TextDecoder();
        let pos = 0;
        for (;;) {
          const n = readSync(fd as number, buf, 0, buf.length, pos);
          if (n > 0) {
            pos += n;
            onText(decoder.decode(buf.subarray(0, n), { stream: true }));
            continue;
          }
          // Nothing new: done if the tool had exited before this read, else wait a little.
          if (done) break;
          await Promise.race([end, new Promise((r) => setTimeout(r, 2))]).catch(() => {});
        }
        const tail = decoder.decode();
        if (tail) onText(tail);
        const r = await exited;
        return { code: r.code, stdout: "", stderr: r.stderr };
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    },
  };
}

/** `iptables v1.8.9 (nf_tables)` → version and backend. */
export function parseVersion(text: string): { version: number[]; backend?: Backend } {
  const m = /v([0-9]+(?:\.[0-9]+)+)/.exec(text);
  const version = m ? m[1].split(".").map(Number) : [1, 4, 11];
  const backend = /nf_tables/.test(text) ? "nft" : /legacy/.test(text) ? "legacy" : undefined;
  return { version, backend };
}

export function atLeast(v: number[], want: number[]): boolean {
  for (let i = 0; i < want.length; i++) {
    const a = v[i] ?? 0;
    if (a !== want[i]) return a > want[i];
  }
  return true;
}

/** Wait flags for `iptables` commands (spec §9.1). */
export function commandWaitFlags(v: number[]): string[] {
  if (atLeast(v, [1, 6, 1])) return ["-w", "5", "-W", "100000"];
  if (atLeast(v, [1, 4, 22])) return ["-w", "5"];
  if (atLeast(v, [1, 4, 20])) return ["-w"];
  return [];
}

/** Wait flags for `iptables-restore` (spec §9.1). */
export function restoreWaitFlags(v: number[]): string[] {
  return atLeast(v, [1, 6, 2]) ? ["-w", "5", "-W", "100000"] : ["-w"];
}

const LOCK = /xtables lock|holding the lock|Resource temporarily unavailable/i;

export class ExecRunner extends CommandRunner {
  private constructor(
    readonly family: IPFamily,
    readonly backend: Backend,
    private readonly bin: { cmd: string; save: string; restore: string },
    readonly version: number[],
    /** Prepended to every argv, e.g. `ip netns exec NS` (tests and benchmarks). */
    private readonly prefix: string[],
  ) {
    super();
  }

  private exec(argv: string[], input?: string): Promise<CommandResult> {
    return execFile([...this.prefix, ...argv], input);
  }

  /**
   * A runner for one family. `backend` picks `iptables-nft*` / `iptables-legacy*`; without it
   * the host's default `iptables*` is used and its backend read from `iptables --version`.
   */
  static async create(family: IPFamily, backend?: Backend, opts: { prefix?: string[] } = {}): Promise<ExecRunner> {
    const base = family === "IPv4" ? "iptables" : "ip6tables";
    const cmd = backend ? `${base}-${backend}` : base;
    const prefix = opts.prefix ?? [];
    const v = await execFile([...prefix, cmd, "--version"]);
    if (v.code !== 0) throw new IptablesUnavailable(`${cmd} --version failed: ${v.stderr.trim() || v.stdout.trim()}`);
    const parsed = parseVersion(v.stdout + v.stderr);
    return new ExecRunner(
      family,
      backend ?? parsed.backend ?? "legacy",
      { cmd, save: `${cmd}-save`, restore: `${cmd}-restore` },
      parsed.version,
      prefix,
    );
  }

  describe(): string {
    return `${this.bin.cmd} v${this.version.join(".")} (${this.backend})`;
  }

  async save(table?: string): Promise<string> {
    const r = await this.exec([this.bin.save, ...(table ? ["-t", table] : [])]);
    if (r.code !== 0)
      throw this.unavailable(this.bin.save, r) ?? new Error(`${this.bin.save} failed: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** The argv of this runner's save (prefix included), for readers that stream it themselves. */
  saveArgv(table?: string): string[] {
    return [...this.prefix, this.bin.save, ...(table ? ["-t", table] : [])];
  }

  /**
   * save(), started now and read as it is written: `read` hands the text over in pieces while
   * the tool still runs, and rejects as save() would.
   */
  startSave(table?: string): { read(onText: (text: string) => void): Promise<void> } {
    const run = execToFile(this.saveArgv(table));
    return {
      read: async (onText) => {
        const r = await run.read(onText);
        if (r.code !== 0)
          throw this.unavailable(this.bin.save, r) ?? new Error(`${this.bin.save} failed: ${r.stderr.trim()}`);
      },
    };
  }

  async restore(input: string, opts: RestoreOptions): Promise<void> {
    const argv = [
      this.bin.restore,
      ...restoreWaitFlags(this.version),
      ...(opts.table ? ["-T", opts.table] : []),
      ...(opts.noflush ? ["--noflush"] : []),
      ...(opts.counters ? ["--counters"] : []),
    ];
    const r = await this.exec(argv, input);
    if (r.code === 0) return;
    const hard = this.unavailable(this.bin.restore, r);
    if (hard) throw hard;
    const line = failedLine(r.stderr);
    const lineText = line ? input.split("\n")[line - 1] : undefined;
    throw new RestoreError(
      `${this.bin.restore} failed${line ? ` at input line ${line}` : ""}: ${r.stderr.trim().split("\n")[0]}`,
      r.stderr,
      line,
      lineText,
    );
  }

  async run(args: string[]): Promise<CommandResult> {
    const r = await this.exec([this.bin.cmd, ...commandWaitFlags(this.version), ...args]);
    const hard = r.code === 0 ? undefined : this.unavailable(this.bin.cmd, r);
    if (hard) throw hard;
    return r;
  }

  /** Not root, lock held, kernel support missing: errors no retry of the same call fixes. */
  private unavailable(tool: string, r: CommandResult): IptablesUnavailable | undefined {
    const msg = r.stderr.trim();
    if (/Permission denied|must be root/i.test(msg))
      return new IptablesUnavailable(`${tool}: permission denied: run kip as root`);
    if (LOCK.test(msg))
      return new IptablesUnavailable(`${tool}: another program holds the xtables lock (waited 5 s); try again`);
    if (/can't initialize|Could not fetch rule set|Table does not exist|Failed to initialize nft/i.test(msg))
      return new IptablesUnavailable(`${tool}: ${this.backend} backend not usable here: ${msg.split("\n")[0]}`);
    return undefined;
  }
}

/**
 * Whether the legacy backend holds `table` in this network namespace: the kernel lists the
 * legacy tables in use in /proc/net/ip_tables_names (ip6_tables_names), the file iptables-nft
 * reads for its "legacy tables present" warning. Asking iptables-legacy about a table creates
 * the table, so a probe that must leave a node as it found it looks here first.
 */
export function legacyTableExists(family: IPFamily, table: string): boolean {
  const file = family === "IPv4" ? "/proc/net/ip_tables_names" : "/proc/net/ip6_tables_names";
  try {
    return readFileSync(file, "utf8").split("\n").includes(table);
  } catch {
    return false; // no such file: the legacy modules are not loaded, so it holds no table
  }
}

/** Which backends this host has binaries for, for a family. */
export async function availableBackends(family: IPFamily): Promise<Backend[]> {
  const base = family === "IPv4" ? "iptables" : "ip6tables";
  const out: Backend[] = [];
  for (const b of ["nft", "legacy"] as const) {
    try {
      const r = await execFile([`${base}-${b}-save`, "--version"]);
      if (r.code === 0) out.push(b);
    } catch {}
  }
  return out;
}
