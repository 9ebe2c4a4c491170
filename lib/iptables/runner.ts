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

export interface Runner {
  readonly family: IPFamily;
  readonly backend: Backend;
  /** `iptables-save [-t table]`. */
  save(table?: string): Promise<string>;
  /** `iptables-restore [wait flags] --noflush [--counters] [-T table]`, input on stdin. Throws RestoreError. */
  restore(input: string, opts: RestoreOptions): Promise<void>;
  /** `iptables [wait flags] <args>`: for -N, -C, -I, -D, -X, -S. Never throws on a non-zero exit. */
  run(args: string[]): Promise<CommandResult>;
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

/** iptables' "nothing to act on" answers, which callers may treat as done (spec §9.1). */
export function isNotFound(stderr: string): boolean {
  return /No chain\/target\/match by that name|No such file or directory|does a matching rule exist|does not exist/.test(
    stderr,
  );
}
