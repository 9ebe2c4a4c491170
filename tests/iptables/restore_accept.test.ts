/**
 * Every golden output is real iptables-restore input: accepted by `--test` and loaded for real
 * (`--noflush`, as kube-proxy does) on both the nft and the legacy backend, IPv4 and IPv6,
 * each in a network namespace of its own.
 */
import { describe, expect, test } from "bun:test";
import { goldenRestores } from "../support/fixtures.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";

const skip = skipRealIptables();

describe.skipIf(skip)("iptables-restore accepts every golden output", () => {
  const cases = goldenRestores();
  test("there are golden outputs to check", () => {
    expect(cases.length).toBeGreaterThan(0);
  });
  for (const backend of ["nft", "legacy"] as const) {
    for (const c of cases) {
      test(`${backend}: ${c.name}`, async () => {
        const tool = `${c.family === "IPv6" ? "ip6tables" : "iptables"}-${backend}-restore`;
        await withNetns((_ns, run) => {
          const t = run([tool, "--test"], c.text);
          expect(t.stderr).toBe("");
          expect(t.code).toBe(0);
          // nfacct objects are created by kube-proxy over netlink; without them a real load
          // fails by design (pitfalls), so those cases stop at --test.
          if (c.nfacct) return;
          const load = run([tool, "--noflush", "--counters"], c.text);
          expect(load.stderr).toBe("");
          expect(load.code).toBe(0);
          const save = run([`${c.family === "IPv6" ? "ip6tables" : "iptables"}-${backend}-save`]);
          for (const line of c.text.split("\n").filter((l) => l.startsWith(":")))
            expect(save.stdout).toContain(`${line.split(" ")[0]} `);
        });
      });
    }
  }
});
