/**
 * Golden fixture cases: tests/fixtures/<case>/ with manifests, `args`, and expectations.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const FIXTURES = join(import.meta.dir, "..", "fixtures");

/** Every case directory (those with an `args` file), sorted. */
export function fixtureCases(): string[] {
  return readdirSync(FIXTURES)
    .filter((d) => existsSync(join(FIXTURES, d, "args")))
    .sort();
}

/** The `kip render` argv of a case: its directory, then its `args` lines. */
export function fixtureArgs(name: string): string[] {
  const args = readFileSync(join(FIXTURES, name, "args"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  return ["render", join("tests", "fixtures", name), ...args];
}
