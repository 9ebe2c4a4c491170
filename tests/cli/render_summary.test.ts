/**
 * kip render builds per-port summaries only for what reads them (-o json, the summary line on
 * a terminal): the rules are the same either way, and the summary line counts them right.
 */
import { expect, test } from "bun:test";
import { runKip } from "../support/io.ts";

const ARGS = ["render", "examples/seed", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];

test("the summary line on a terminal, the same rules without one", async () => {
  const tty = await runKip(ARGS, { stderrIsTTY: true });
  const pipe = await runKip(ARGS);
  expect(tty.code).toBe(0);
  expect(pipe.code).toBe(0);
  expect(tty.stdout).toBe(pipe.stdout);
  expect(pipe.stderr).not.toContain("services (");
  const m = /kip: IPv4: (\d+) services \((\d+) ports\), (\d+) endpoints, (\d+) chains, (\d+) rules/.exec(tty.stderr);
  expect(m).not.toBeNull();
  const json = JSON.parse((await runKip([...ARGS, "-o", "json"])).stdout) as { services: { service: string }[] };
  // The counts come from the summaries: as many ports as -o json lists, Services among them.
  expect(Number(m?.[2])).toBe(json.services.length);
  expect(Number(m?.[1])).toBe(new Set(json.services.map((s) => s.service)).size);
  expect(Number(m?.[2])).toBeGreaterThan(0);
  const rules = pipe.stdout.split("\n").filter((l) => l.startsWith("-A ")).length;
  expect(Number(m?.[5])).toBe(rules);
});
