/**
 * In-process command runs: main() with captured stdout/stderr.
 */
import { readFileSync } from "node:fs";
import type { IO } from "../../cli/io.ts";
import { main } from "../../cli/main.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runKip(argv: string[], opts: { stdin?: string; stderrIsTTY?: boolean } = {}): Promise<RunResult> {
  let stdout = "";
  let stderr = "";
  const io: IO = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    readStdin: () => opts.stdin ?? "",
    readFile: (p) => readFileSync(p, "utf8"),
    hostname: () => "test-host",
    stdoutIsTTY: false,
    stderrIsTTY: opts.stderrIsTTY ?? false,
    env: {},
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}
