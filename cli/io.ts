/**
 * What a command may touch of the outside world, injected so tests can run commands in-process.
 */
import { readFileSync, writeSync } from "node:fs";
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

/** One reused buffer for stdout: a render's 32 MB goes out through it, a piece at a time. */
let scratch = Buffer.allocUnsafe(1 << 16);

/** A millisecond's pause, for a descriptor someone else made non-blocking. */
const pause = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);

/**
 * `text` written to `fd` whole before returning: a slow reader (`kip render | iptables-restore`)
 * holds kip back instead of the runtime queueing the output in memory (30+ MB at 10k
 * Services). Partial writes continue; EAGAIN (a descriptor made non-blocking by whoever
 * shares it) waits and retries.
 */
export function writeAllSync(fd: number, text: string, wait: () => void = pause): void {
  const need = Buffer.byteLength(text);
  if (need > scratch.length) scratch = Buffer.allocUnsafe(need);
  const n = scratch.write(text, 0, "utf8");
  for (let off = 0; off < n; ) {
    try {
      off += writeSync(fd, scratch, off, n - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException)?.code !== "EAGAIN") throw e;
      wait();
    }
  }
}

export function processIO(): IO {
  // A reader that went away (`kip … | head`) is not an error: stop writing, quietly.
  let closed = false;
  const gone = (e: unknown) => (e as NodeJS.ErrnoException)?.code === "EPIPE";
  // (Others may still write to process.stdout: commander's help, for one.)
  process.stdout.on("error", (e) => {
    if (gone(e)) closed = true;
    else throw e;
  });
  return {
    stdout: (t) => {
      if (closed) return;
      try {
        writeAllSync(1, t);
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
