#!/usr/bin/env bun
/**
 * kip's command line: parses argv, dispatches to one file per subcommand, and is the only
 * place that calls process.exit.
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { VERSION } from "../lib/version.ts";
import { cleanupCommand } from "./cleanup.ts";
import { diffCommand } from "./diff.ts";
import { explainCommand } from "./explain.ts";
import { type IO, processIO, UsageError } from "./io.ts";
import { normalizeBooleanFlags } from "./node_flags.ts";
import { renderCommand } from "./render.ts";
import { syncCommand } from "./sync.ts";

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
      (sub ?? program).outputHelp();
    });
  try {
    await program.parseAsync(normalizeBooleanFlags(argv), { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end with exit code 0; parse errors were already printed.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof UsageError) {
      io.stderr(`kip: ${e.message}\n`);
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
