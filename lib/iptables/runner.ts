/**
 * How kip talks to iptables: one interface, a real implementation (exec_runner.ts) and a
 * stateful fake (fake_runner.ts) that keeps the real tool's rules.
 */
import type { IPFamily } from "../model/ip.ts";

export type Backend = "nft" | "legacy";

export interface RestoreOptions {
  /** `--noflush`: leave chains not mentioned alone. kip always sets it. */
  noflush: boolean;
  /** `--counters`. */
  counters?: boolean;
  /** `-T table`: restore only this table of the input. */
  table?: string;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Where ensureRule adds a missing rule: at the top of the chain (`-I`) or at its end (`-A`). */
export type RulePosition = "prepend" | "append";

export interface Runner {
  readonly family: IPFamily;
  readonly backend: Backend;
  /** `iptables-save [-t table]`. */
  save(table?: string): Promise<string>;
  /** `iptables-restore [wait flags] --noflush [--counters] [-T table]`, input on stdin. Throws RestoreError. */
  restore(input: string, opts: RestoreOptions): Promise<void>;
  /** Whether `chain` exists in `table`. Throws CommandError when iptables cannot tell. */
  chainExists(table: string, chain: string): Promise<boolean>;
  /** Create `chain` in `table` unless it exists; true when it was created. Throws CommandError. */
  ensureChain(table: string, chain: string): Promise<boolean>;
  /**
   * Add `rule` (arguments after the chain name) to `chain` unless an equal rule is there
   * (`-C`); true when it was added. Throws CommandError when adding fails.
   */
  ensureRule(position: RulePosition, table: string, chain: string, rule: string[]): Promise<boolean>;
}

/** An `iptables` command that failed: its argv and what the tool answered. */
export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly result: CommandResult,
  ) {
    super(result.stderr.trim());
  }
}

/**
 * The typed operations over `iptables <args>`, for runners whose `run` takes iptables' argv and
 * answers with its exit statuses: 0 done, 1 "no such chain or rule" / "chain already exists",
 * 2 a bad argument, 3 no such table, 4 a resource problem (the lock). Callers never read stderr.
 */
export abstract class CommandRunner implements Runner {
  abstract readonly family: IPFamily;
  abstract readonly backend: Backend;
  abstract save(table?: string): Promise<string>;
  abstract restore(input: string, opts: RestoreOptions): Promise<void>;
  /** `iptables [wait flags] <args>`: for -N, -C, -I, -D, -X, -S. Never rejects on a non-zero exit. */
  abstract run(args: string[]): Promise<CommandResult>;

  async chainExists(table: string, chain: string): Promise<boolean> {
    // `-S CHAIN 1` prints one rule at most: cheap on a chain of 10k rules, and 0 on an empty one.
    const argv = ["-t", table, "-S", chain, "1"];
    const r = await this.run(argv);
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    throw new CommandError(argv, r);
  }

  async ensureChain(table: string, chain: string): Promise<boolean> {
    const argv = ["-t", table, "-N", chain];
    const r = await this.run(argv);
    if (r.code === 0) return true;
    if (r.code === 1) return false; // "Chain already exists"; a bad name is 2, no such table 3
    throw new CommandError(argv, r);
  }

  async ensureRule(position: RulePosition, table: string, chain: string, rule: string[]): Promise<boolean> {
    if ((await this.run(["-t", table, "-C", chain, ...rule])).code === 0) return false;
    // Any other answer to -C (no such rule, no such chain, a match -C cannot compare): add it,
    // and let the add say what is wrong.
    const argv = ["-t", table, position === "prepend" ? "-I" : "-A", chain, ...rule];
    const r = await this.run(argv);
    if (r.code !== 0) throw new CommandError(argv, r);
    return true;
  }
}

/** A failed restore: the tool's message and, when it names one, the input line that failed. */
export class RestoreError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    readonly line?: number,
    readonly lineText?: string,
  ) {
    super(message);
  }
}

/** Something about the host stops kip from using iptables at all (not root, not installed, lock). */
export class IptablesUnavailable extends Error {}

/** `Error occurred at line: 12` → 12. */
export function failedLine(stderr: string): number | undefined {
  const m = /line:? (\d+)/i.exec(stderr);
  return m ? Number(m[1]) : undefined;
}
