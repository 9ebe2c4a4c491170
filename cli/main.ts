#!/usr/bin/env bun
/**
 * kip's command line: parses argv, dispatches to one file per subcommand, and is the only
 * place where an error becomes a message and an exit status (reportError). It never calls
 * process.exit: the status is set and the runtime exits once output is flushed.
 */
import { existsSync } from "node:fs";
import { Command, CommanderError } from "@commander-js/extra-typings";
import { IptablesUnavailable } from "../lib/iptables/runner.ts";
import { redactURLs } from "../lib/sync/log.ts";
import { VERSION } from "../lib/version.ts";
import * as cleanup from "./cleanup.ts";
import * as diff from "./diff.ts";
import { NeedsRoot, UsageError } from "./errors.ts";
import * as explain from "./explain.ts";
import { type IO, processIO } from "./io.ts";
import { normalizeBooleanFlags } from "./node_flags.ts";
import { renderCommand, runRender } from "./render.ts";
import * as sync from "./sync.ts";

/** A value from the command line, quoted for a message: JSON escapes keep control characters out. */
const quoteArg = (s: string) => JSON.stringify(s);

/** `-0` → `-o`, `-1` → `-l`: a short flag of `cmd` the mistyped one looks like. */
function lookalikeFlag(
  arg: string,
  cmd: { options: readonly { short?: string; long?: string }[] },
): string | undefined {
  const alike: Record<string, string> = { "0": "o", o: "0", "1": "l", l: "1", I: "l" };
  const shorts = cmd.options.map((o) => o.short).filter((f): f is string => f !== undefined);
  if (arg.length === 2)
    return shorts.find((f) => f[1] === alike[arg[1]] || f[1].toLowerCase() === arg[1].toLowerCase());
  return cmd.options.map((o) => o.long).find((f) => f !== undefined && f.toLowerCase() === arg.toLowerCase());
}

/**
 * The one place a thrown error becomes a message and an exit status: a bad flag or input
 * (UsageError, ManifestErrors), not root (NeedsRoot) or an iptables kip cannot use
 * (IptablesUnavailable) is 2 with a short message; anything else is 1 with its message, and
 * its stack under --verbose. `kip diff` says 2 for any trouble, as diff(1) does, so a script
 * never mistakes a failure for drift. `command` is the subcommand that ran, if any.
 */
export function reportError(e: unknown, io: IO, at: { command?: string; verbose: boolean }): number {
  // --help and --version end with exit code 0; parse errors were already printed.
  if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
  // Credentials in a URL (an apiserver's, a kubeconfig's) never reach a terminal or a log.
  const message = redactURLs(e instanceof Error ? e.message : String(e));
  if (e instanceof UsageError || e instanceof NeedsRoot || e instanceof IptablesUnavailable) {
    // Several problems at once (unreadable paths, --config errors): every line is kip's.
    for (const line of message.split("\n")) io.stderr(`kip: ${line}\n`);
    return 2;
  }
  io.stderr(`kip: ${message}\n`);
  if (at.verbose && e instanceof Error && e.stack) io.stderr(`${e.stack}\n`);
  return at.command === "diff" ? 2 : 1;
}

/** Run kip with `argv` (without the program name); resolves to the exit code. */
export async function main(argv: string[], io: IO = processIO()): Promise<number> {
  // What a command's run returned; a thrown error is reportError's.
  let code = 0;
  const ran = (c: number) => {
    code = c;
  };
  let command: string | undefined;
  const program = new Command("kip")
    .description("kube-proxy's iptables mode as one tool: render, diff, sync, cleanup, explain")
    .version(VERSION, "-V, --version")
    .option("--verbose", "show stack traces of unexpected errors")
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) })
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      `
Example:
  kip render examples/seed --hostname-override node1 --cluster-cidr 10.244.0.0/16

Run "kip help <command>" for a command's flags and examples.`,
    );
  const output = { writeOut: (s: string) => io.stdout(s), writeErr: (s: string) => io.stderr(s) };
  for (const cmd of [
    renderCommand().action((paths, opts) => ran(runRender(paths, opts, io))),
    diff.diffCommand().action(async (paths, opts) => ran(await diff.run(paths, opts, io))),
    cleanup.cleanupCommand().action(async (opts) => ran(await cleanup.run(opts, io))),
    sync.syncCommand().action(async (opts) => ran(await sync.run(opts, io))),
    explain.explainCommand().action(async (paths, opts) => ran(await explain.run(paths, opts, io))),
  ])
    program.addCommand(cmd.exitOverride().configureOutput(output));
  program
    .command("help [command]", { isDefault: false })
    .description("show help for kip or a command")
    .action((name) => {
      const sub = program.commands.find((c) => c.name() === name);
      if (name !== undefined && !sub)
        throw new UsageError(
          `no command ${quoteArg(name)}: the commands are ${program.commands
            .map((c) => c.name())
            .filter((n) => n !== "help")
            .join(", ")}`,
        );
      (sub ?? program).outputHelp();
    });
  // An operand that looks like a flag and names no file is a mistyped flag (`-0 json` for
  // `-o json`), not a path to report as unreadable.
  program.hook("preAction", (_program, action) => {
    command = action.name();
    for (const arg of action.args) {
      if (!/^-./.test(arg) || existsSync(arg)) continue;
      const near = lookalikeFlag(arg, action);
      throw new UsageError(`unknown option ${quoteArg(arg)}${near ? ` (did you mean ${near}?)` : ""}`);
    }
  });
  try {
    await program.parseAsync(normalizeBooleanFlags(argv), { from: "user" });
  } catch (e) {
    return reportError(e, io, { command, verbose: argv.includes("--verbose") });
  }
  if (argv.length === 0) {
    program.outputHelp();
    return 2;
  }
  return code;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then((code) => {
    // No process.exit() here: it would drop output a pipe has not taken yet. The runtime
    // exits with this code once stdout is flushed and nothing else is pending.
    process.exitCode = code;
  });
}
