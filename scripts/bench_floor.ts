/**
 * The floor under `kip render` in this runtime: read the manifests and JSON.parse them, then
 * write the finished restore text (read from a file, so none of it is built) to stdout in
 * pieces. No validation, no rules: what any render in Bun pays before doing its own work.
 * scripts/bench.ts runs it beside the compiled binary.
 *
 *   bun scripts/bench_floor.ts cluster.json rules.txt > /dev/null
 */
import { readFileSync, writeSync } from "node:fs";

const [input, rules] = process.argv.slice(2);
const parsed = JSON.parse(readFileSync(input, "utf8")) as { items: unknown[] };
const out = readFileSync(rules, "utf8");
const PIECE = 1 << 20;
for (let i = 0; i < out.length; i += PIECE) writeSync(1, out.slice(i, i + PIECE));
if (parsed.items.length === 0) process.exitCode = 1;
