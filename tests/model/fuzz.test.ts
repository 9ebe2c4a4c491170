/**
 * Property test: random bytes and random mutations of valid manifests never break the
 * contract. In process: the loader never throws, finishes quickly, and no message carries a
 * raw control character. Through the compiled binary (fewer runs, each is a process): exit 0
 * or 2 (1 only for --strict warnings), no stack trace, no raw control character on stderr,
 * nothing on stdout unless the exit is 0.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { loadManifests } from "../../lib/model/load.ts";
import { hasUnsafeCharacter } from "../../lib/util/quote.ts";
import { kip } from "../support/binary.ts";
import { tempDir } from "../support/tempdir.ts";

const SEEDS = [
  readFileSync("examples/seed/services.yaml", "utf8"),
  readFileSync("examples/seed/endpointslices.yaml", "utf8"),
  readFileSync("tests/fixtures/list-and-json/list.json", "utf8"),
  readFileSync("tests/fixtures/endpoints-v1/input.yaml", "utf8"),
];

/** Pieces a hostile or careless author might put anywhere. */
const TOKENS = [
  "*a",
  "&a ",
  "*a\n",
  "[",
  "]",
  "{",
  "}",
  ": ",
  "- ",
  "? ",
  "<<: *a\n",
  "null",
  "~",
  '"',
  "'",
  "#",
  "\n",
  "\n  ",
  "\u0000",
  "\u001b[2J",
  "\n-A INPUT -j ACCEPT\n",
  "\u202e",
  "\u0085",
  "!!binary ",
  "!custom ",
  "---\n",
  "...\n",
  "169.254.169.254",
  "::1",
  '"8080"',
  "DualStack",
  "discovery.k8s.io/v1beta1",
  "targetport: 1\n",
  "__proto__: ",
  "constructor: ",
  "[[[[[[[[",
  "- - - - - - ",
  "\t",
  "\r\n",
  "0x1F",
  "1e400",
  "-0",
  ".nan",
];

type Edit = { at: number; kind: number; token: number; len: number; ch: number };
const edit = fc.record({
  at: fc.nat(),
  kind: fc.nat({ max: 3 }),
  token: fc.nat({ max: TOKENS.length - 1 }),
  len: fc.nat({ max: 40 }),
  ch: fc.nat({ max: 0x3000 }),
});

function mutate(text: string, edits: Edit[]): string {
  let t = text;
  for (const e of edits) {
    const at = t.length === 0 ? 0 : e.at % t.length;
    if (e.kind === 0) t = t.slice(0, at) + TOKENS[e.token] + t.slice(at);
    else if (e.kind === 1) t = t.slice(0, at) + t.slice(at + e.len);
    else if (e.kind === 2) t = t.slice(0, at) + String.fromCharCode(e.ch) + t.slice(at + 1);
    else t = t.slice(0, at) + t.slice(at, at + e.len) + t.slice(at);
  }
  return t;
}

const input = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.nat({ max: SEEDS.length - 1 }), fc.array(edit, { minLength: 1, maxLength: 6 }))
      .map(([s, e]) => mutate(SEEDS[s], e)),
  },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 300 }) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }).map((a) => a.join("")) },
);

describe("fuzz: the loader", () => {
  test("never throws, stays fast, and escapes what it quotes", () => {
    fc.assert(
      fc.property(input, fc.boolean(), fc.boolean(), (text, json, workloads) => {
        const t0 = performance.now();
        const r = loadManifests([{ file: json ? "f.json" : "f.yaml", text }], { nodeName: "node1", workloads });
        expect(performance.now() - t0).toBeLessThan(1000);
        for (const p of [...r.errors, ...r.warnings]) {
          expect(hasUnsafeCharacter(p.message) || p.message.includes("\n")).toBe(false);
          expect(Number.isInteger(p.line) && p.line >= 1).toBe(true);
        }
        for (const k of r.skipped.keys()) expect(hasUnsafeCharacter(k)).toBe(false);
      }),
      { numRuns: 400, seed: Number(process.env.FUZZ_SEED ?? 10) },
    );
  });
});

describe("fuzz: the compiled binary", () => {
  test("exit 0/1/2 only, no stack trace, no raw control character, stdout only on success", () => {
    const dir = tempDir("kip-fuzz-");
    fc.assert(
      fc.property(input, fc.boolean(), fc.boolean(), (text, json, strict) => {
        const file = join(dir, json ? "in.json" : "in.yaml");
        writeFileSync(file, text);
        const args = ["render", file, "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];
        const r = kip(strict ? [...args, "--strict", "--simulate-endpoints"] : args);
        expect(strict ? [0, 1, 2] : [0, 2]).toContain(r.code);
        if (r.code !== 0) expect(r.stdout).toBe("");
        expect(hasUnsafeCharacter(r.stderr)).toBe(false);
        expect(r.stderr).not.toMatch(/\n\s+at .*\(|Warning: |error: .*Error:/);
      }),
      { numRuns: 16, seed: Number(process.env.FUZZ_SEED ?? 10) },
    );
  }, 30_000);
});
