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

/** A golden case whose expected output is iptables-restore input. */
export interface GoldenRestore {
  name: string;
  text: string;
  family: "IPv4" | "IPv6";
  /** Rendered with --nfacct: loads for real only where the nfacct objects exist. */
  nfacct: boolean;
}

/** Every golden case that renders restore text (no error exit, no `-o json`). */
export function goldenRestores(): GoldenRestore[] {
  const out: GoldenRestore[] = [];
  for (const name of fixtureCases()) {
    const file = join(FIXTURES, name, "expected.txt");
    if (existsSync(join(FIXTURES, name, "exit")) || !existsSync(file)) continue;
    const text = readFileSync(file, "utf8");
    if (!text.startsWith("*filter")) continue;
    const args = fixtureArgs(name);
    out.push({ name, text, family: args.includes("IPv6") ? "IPv6" : "IPv4", nfacct: args.includes("--nfacct") });
  }
  return out;
}
