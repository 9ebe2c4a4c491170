/**
 * What a command may touch of the outside world, injected so tests can run commands in-process.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { UsageError } from "./errors.ts";

export interface IO {
  stdout(text: string): void;
  stderr(text: string): void;
  readStdin(): string;
  readFile(path: string): string;
  /** kube-proxy's default node name: the OS hostname, lowercased. */
  hostname(): string;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  env: Record<string, string | undefined>;
}

export function processIO(): IO {
  // A reader that went away (`kip … | head`) is not an error: stop writing, quietly.
  let closed = false;
  const gone = (e: unknown) => (e as NodeJS.ErrnoException)?.code === "EPIPE";
  process.stdout.on("error", (e) => {
    if (gone(e)) closed = true;
    else throw e;
  });
  return {
    stdout: (t) => {
      if (closed) return;
      try {
        process.stdout.write(t);
      } catch (e) {
        if (gone(e)) closed = true;
        else throw e;
      }
    },
    stderr: (t) => process.stderr.write(t),
    readStdin: () => readFileSync(0, "utf8"),
    readFile: (p) => readFileSync(p, "utf8"),
    hostname: () => hostname().toLowerCase(),
    stdoutIsTTY: process.stdout.isTTY === true,
    stderrIsTTY: process.stderr.isTTY === true,
    env: process.env,
  };
}

/** Colour on a terminal, unless --no-color (`flag` false) or NO_COLOR says otherwise. */
export function useColor(flag: boolean | undefined, io: IO): boolean {
  return flag !== false && io.stdoutIsTTY && !io.env.NO_COLOR;
}

/** The text of a file a flag names; an unreadable one is a usage error naming the flag. */
export function readFlagFile(io: IO, flag: string, path: string): string {
  try {
    return io.readFile(path);
  } catch (e) {
    throw new UsageError(`Cannot read ${flag} ${JSON.stringify(path)}: ${(e as Error).message}`);
  }
}
