/**
 * Golden cases: tests/fixtures/<case>/ holds manifests (*.yaml, *.json), `args` (one argument
 * per line, `#` comments) and the expected stdout (`expected.txt`), stderr (`expected.stderr`)
 * and exit code (`exit`, default 0). `UPDATE_GOLDEN=1 bun test tests/golden.test.ts` rewrites
 * the expectations; a normal run never writes.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, fixtureArgs, fixtureCases } from "./support/fixtures.ts";
import { runKip } from "./support/io.ts";

const update = process.env.UPDATE_GOLDEN === "1";

describe("golden", () => {
  for (const name of fixtureCases()) {
    test(name, async () => {
      const r = await runKip(fixtureArgs(name));
      const files = { "expected.txt": r.stdout, "expected.stderr": r.stderr, exit: `${r.code}\n` };
      for (const [file, actual] of Object.entries(files)) {
        const path = join(FIXTURES, name, file);
        if (update) {
          if (file === "exit" && r.code === 0) continue;
          if (file === "expected.stderr" && actual === "") continue;
          writeFileSync(path, actual);
          continue;
        }
        const expected = existsSync(path) ? readFileSync(path, "utf8") : file === "exit" ? "0\n" : "";
        expect(actual).toBe(expected);
      }
    });
  }
});
