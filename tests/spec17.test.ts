/**
 * Spec §17: upstream's TestOverallIPTablesRules vector must come out exactly, after §16's
 * canonical ordering (--canonical). Upstream's fake proxier hard-codes the mark string as
 * `0x4000` where a real kube-proxy (and kip) writes `0x00004000` (spec §7.1): that one
 * substitution is the only difference allowed.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fixtureArgs } from "./support/fixtures.ts";
import { runKip } from "./support/io.ts";

const dir = join(import.meta.dir, "fixtures", "spec17");

test("spec §17 vector, byte for byte", async () => {
  const r = await runKip(fixtureArgs("spec17"));
  expect(r.code).toBe(0);
  const upstream = readFileSync(join(dir, "upstream.txt"), "utf8");
  expect(r.stdout.replaceAll("0x00004000", "0x4000")).toBe(upstream);
  expect(r.stdout).toContain("--or-mark 0x00004000");
});

test("the stored vector is the spec's own", () => {
  // CI runs with shared/ beside the repo; a developer checkout may not have it.
  const spec = join(import.meta.dir, "..", "..", "shared", "spec", "kube-proxy-iptables.md");
  if (!existsSync(spec)) return;
  const text = readFileSync(spec, "utf8");
  const section = text.slice(text.indexOf("## 17."));
  const vector = section.slice(
    section.indexOf("```\n") + 4,
    section.indexOf("\n```", section.indexOf("```\n") + 4) + 1,
  );
  expect(readFileSync(join(dir, "upstream.txt"), "utf8")).toBe(vector);
});
