#!/usr/bin/env bun
/**
 * kip's command line: parses argv, dispatches to one file per subcommand, and is the only
 * place that calls process.exit.
 */
import { existsSync } from "node:fs";
import { Command, CommanderError } from "@commander-js/extra-typings";
import { VERSION } from "../lib/version.ts";
import { cleanupCommand } from "./cleanup.ts";
import { diffCommand } from "./diff.ts";
import { explainCommand } from "./explain.ts";
import { type IO, processIO, UsageError } from "./io.ts";
import { normalizeBooleanFlags } from "./node_flags.ts";
import { renderCommand } from "./render.ts";
import { syncCommand } from "./sync.ts";

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

/** Run kip with `argv` (without the program name); resolves to the exit code. */
export async function main(argv: string[], io: IO = processIO()): Promise<number> {
  let code = 0;
  const setExit = (c: number) => {
    code = c;
  };
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
    renderCommand(io, setExit),
    diffCommand(io, setExit),
    cleanupCommand(io, setExit),
    syncCommand(io, setExit),
    explainCommand(io, setExit),
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
    for (const arg of action.args) {
      if (!/^-./.test(arg) || existsSync(arg)) continue;
      const near = lookalikeFlag(arg, action);
      throw new UsageError(`unknown option ${quoteArg(arg)}${near ? ` (did you mean ${near}?)` : ""}`);
    }
  });
  try {
    await program.parseAsync(normalizeBooleanFlags(argv), { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end with exit code 0; parse errors were already printed.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof UsageError) {
      // Several problems at once (unreadable paths): every line is kip's.
      for (const line of e.message.split("\n")) io.stderr(`kip: ${line}\n`);
      return 2;
    }
    io.stderr(`kip: ${(e as Error).message ?? String(e)}\n`);
    if (argv.includes("--verbose") && e instanceof Error && e.stack) io.stderr(`${e.stack}\n`);
    return 1;
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
