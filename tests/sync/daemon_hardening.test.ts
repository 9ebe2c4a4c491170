/**
 * The daemon's hardening, over the fake runner: conntrack cleanup runs beside the syncs, not
 * before the next one, in bounded passes; state files are 0600 and replace a planted symlink
 * instead of writing through it; iptables that cannot even be started (EMFILE) is a logged,
 * retried failure, never a crash.
 */
import { describe, expect, test } from "bun:test";
import { lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import type { CommandResult } from "../../lib/iptables/runner.ts";
import type { DaemonOptions } from "../../lib/sync/daemon.ts";
import { createLogger } from "../../lib/sync/log.ts";
import { FakeClock } from "../support/clock.ts";
import { startFakeDaemon } from "../support/fake_daemon.ts";
import { MemorySource } from "../support/memory_source.ts";
import { modelService, modelSlice } from "../support/objects.ts";
import { eventually } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";

const UDP = { ports: [{ name: "dns", protocol: "UDP" as const, port: 53, nodePort: 0 }] };

async function setup(over: Partial<DaemonOptions> = {}, runner = new FakeRunner("IPv4", "nft")) {
  const clock = new FakeClock();
  const source = new MemorySource();
  const logs: string[] = [];
  const { daemon, outcomes } = await startFakeDaemon({
    source,
    clock,
    runner,
    log: createLogger("json", (l) => logs.push(l)),
    daemon: over,
  });
  const dns = (eps: string[]) => {
    source.emit({
      kind: "Service",
      type: "upsert",
      key: "ns/dns",
      object: modelService("ns", "dns", "10.96.0.10", UDP),
    });
    const slice = modelSlice("ns", "dns-1", "dns", eps);
    slice.ports = [{ name: "dns", protocol: "UDP", port: 53 }];
    source.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/dns-1", object: slice });
  };
  return { clock, source, logs, outcomes, daemon, dns, runner };
}

describe("conntrack cleanup beside the syncs", () => {
  test("a cleanup that has not finished does not hold back the next sync", async () => {
    let calls = 0;
    let finish!: () => void;
    const s = await setup({
      conntrack: () => {
        calls++;
        return new Promise((resolve) => {
          finish = () => resolve(0);
        });
      },
    });
    s.dns(["10.244.0.9"]);
    s.source.syncedAll();
    await s.clock.advance(10);
    await s.daemon.idle();
    expect(s.outcomes).toHaveLength(1);
    expect(calls).toBe(1);
    // The conntrack tool is still busy: a new change is synced all the same.
    s.dns(["10.244.0.8"]);
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(s.outcomes).toHaveLength(2);
    expect(s.outcomes[1].every((o) => o.ok)).toBe(true);
    expect(calls).toBe(1); // one pass at a time; the second waits for the first
    finish();
    await eventually("the second pass", () => calls === 2);
    finish();
    await s.daemon.conntrackIdle();
    await s.daemon.stop();
  });

  test("bounded passes: `more` asks for another pass until the work is done", async () => {
    const results = [
      { deleted: 64, more: true },
      { deleted: 64, more: true },
      { deleted: 3, more: false },
    ];
    let calls = 0;
    const s = await setup({ conntrack: async () => results[calls++] });
    s.dns(["10.244.0.9"]);
    s.source.syncedAll();
    await s.clock.advance(10);
    await s.daemon.idle();
    await s.daemon.conntrackIdle();
    expect(calls).toBe(3);
    const deleted = s.logs.filter((l) => l.includes("stale UDP conntrack")).map((l) => JSON.parse(l).deleted);
    expect(deleted).toEqual([64, 64, 3]);
    await s.daemon.stop();
  });
});

describe("state files", () => {
  test("0600, and a symlink planted at the name is replaced, never written through", async () => {
    const dir = tempDir("kip-state-");
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    const stateDir = join(dir, "state");
    mkdirSync(stateDir);
    symlinkSync(victim, join(stateDir, "last-restore-IPv4.txt"));
    symlinkSync(victim, join(stateDir, ".last-restore-IPv4.txt.tmp"));
    const s = await setup({ stateDir });
    s.dns(["10.244.0.9"]);
    s.source.syncedAll();
    await s.clock.advance(10);
    await s.daemon.idle();
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    const file = join(stateDir, "last-restore-IPv4.txt");
    expect(lstatSync(file).isFile()).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8")).toContain("*nat\n");
    await s.daemon.stop();
  });

  test("a state directory kip creates is 0700", async () => {
    const stateDir = join(tempDir("kip-state-"), "new");
    const s = await setup({ stateDir });
    s.dns(["10.244.0.9"]);
    s.source.syncedAll();
    await s.clock.advance(10);
    await s.daemon.idle();
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    await s.daemon.stop();
  });
});

describe("iptables that cannot be started", () => {
  test("canary checks and syncs fail, are logged and retried; the daemon never throws", async () => {
    class Broken extends FakeRunner {
      broken = true;
      override async run(argv: string[]): Promise<CommandResult> {
        if (this.broken) throw new Error("Cannot run iptables: EMFILE: too many open files, socketpair");
        return super.run(argv);
      }
    }
    const runner = new Broken("IPv4", "nft");
    const s = await setup({ canary: true }, runner);
    s.dns(["10.244.0.9"]);
    s.source.syncedAll();
    await s.clock.advance(10);
    await s.daemon.idle();
    expect(s.outcomes[0][0].ok).toBe(false);
    expect(s.outcomes[0][0].error).toContain("EMFILE");
    await s.clock.advance(30_000); // the canary check's turn, and the retry's
    await s.daemon.idle();
    expect(s.logs.some((l) => l.includes("canary check failed"))).toBe(true);
    runner.broken = false;
    await s.clock.advance(30_000);
    await s.daemon.idle();
    expect(s.outcomes.at(-1)?.[0].ok).toBe(true);
    await s.daemon.stop();
  });
});
