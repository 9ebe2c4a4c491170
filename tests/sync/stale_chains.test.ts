/**
 * Stale chains without a save in the sync's path (large clusters, > 1000 endpoints): kip
 * deletes the chains it wrote and no longer needs in the same sync, reads the live nat table
 * only at start, after a failure and in the background, and stays correct when someone else
 * adds KUBE-* chains: a service-like one is deleted once seen, any other is left alone.
 */
import { describe, expect, test } from "bun:test";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import { savedChainNames } from "../../lib/iptables/save_parser.ts";
import { defaultConfig } from "../../lib/proxy/options.ts";
import { ChangeTracker } from "../../lib/proxy/tracker.ts";
import { Daemon } from "../../lib/sync/daemon.ts";
import { createLogger } from "../../lib/sync/log.ts";
import { Proxier, type SyncOutcome } from "../../lib/sync/proxier.ts";
import { FakeClock } from "../support/clock.ts";
import { MemorySource } from "../support/memory_source.ts";
import { modelService, modelSlice } from "../support/objects.ts";

/** 120 Services × 10 endpoints: large-cluster mode (spec §8.3). */
const N = 120;
const service = (i: number) => modelService("ns", `s${i}`, `10.96.${i >> 8}.${i & 255}`);
const slice = (i: number, first = 1) =>
  modelSlice(
    "ns",
    `s${i}-1`,
    `s${i}`,
    Array.from({ length: 10 }, (_, e) => `10.244.${i}.${e + first}`),
  );

// Someone else's chains: one named like a service chain (kube-proxy's GC deletes those), one not.
const OTHERS = "*nat\n:KUBE-SVC-SOMEONEELSE00001 - [0:0]\n:KUBE-CUSTOM - [0:0]\n-A KUBE-CUSTOM -j RETURN\nCOMMIT\n";
const LATER = "*nat\n:KUBE-SEP-SOMEONEELSE00002 - [0:0]\nCOMMIT\n";

async function live(runner: FakeRunner): Promise<Set<string>> {
  return new Set(savedChainNames(await runner.save("nat"), "nat"));
}
const saves = (runner: FakeRunner) => runner.calls.filter((c) => c.kind === "save").length;

function setup() {
  const runner = new FakeRunner("IPv4", "nft");
  const tracker = new ChangeTracker("node1");
  for (let i = 0; i < N; i++) {
    tracker.upsertService(`ns/s${i}`, service(i));
    tracker.upsertSlice(`ns/s${i}-1`, slice(i));
  }
  tracker.takeChanged();
  let now = 0;
  const proxier = new Proxier({
    family: "IPv4",
    runner,
    config: { ...defaultConfig(), hostname: "node1", clusterCIDR: "10.244.0.0/16" },
    syncPeriodMs: 30_000,
    now: () => now,
  });
  const sync = async (mayFail = false) => {
    now += 1000;
    const out = await proxier.sync(tracker.state(), tracker.takeChanged());
    if (!mayFail) expect(out.error).toBeUndefined();
    return out;
  };
  return { runner, tracker, proxier, sync };
}

describe("stale chains in a large cluster", () => {
  test("read at start; kip's own stale chains go in the same sync, without a save", async () => {
    const { runner, tracker, sync } = setup();
    await runner.restore(OTHERS, { noflush: true, counters: false });
    const first = await sync();
    expect(first.full).toBe(true);
    expect(saves(runner)).toBe(1);
    let chains = await live(runner);
    expect(chains.has("KUBE-SVC-SOMEONEELSE00001")).toBe(false);
    expect(chains.has("KUBE-CUSTOM")).toBe(true);
    const s7 = [...chains].filter((c) => c.startsWith("KUBE-SEP-")).length;
    expect(s7).toBe(N * 10);

    // s7 goes away, s8 loses its endpoints to new ones: partial syncs, no save.
    const before = saves(runner);
    tracker.deleteService("ns/s7");
    tracker.deleteSlice("ns/s7-1");
    tracker.upsertSlice("ns/s8-1", slice(8, 100));
    const partial = await sync();
    expect(partial.full).toBe(false);
    expect(partial.staleChains).toBe(10 + 1 + 10); // s7's SEPs and SVC, s8's old SEPs
    expect(saves(runner) - before).toBe(0);
    chains = await live(runner);
    expect([...chains].filter((c) => c.startsWith("KUBE-SEP-")).length).toBe((N - 1) * 10);
    expect(chains.has("KUBE-CUSTOM")).toBe(true);
  });

  test("someone adds KUBE-* chains later: the background read finds them, the next sync deletes the service-like one", async () => {
    const { runner, tracker, proxier, sync } = setup();
    await sync();
    await runner.restore(LATER + OTHERS, { noflush: true, counters: false });
    // A sync that does not know of them leaves them, and is not disturbed by them.
    tracker.upsertSlice("ns/s3-1", slice(3, 50));
    await sync();
    expect((await live(runner)).has("KUBE-SEP-SOMEONEELSE00002")).toBe(true);
    const before = saves(runner);
    expect(await proxier.readLive()).toBe(true);
    expect(saves(runner) - before).toBe(1);
    // Nothing written since that read: an idle node reads nothing.
    expect(await proxier.readLive()).toBe(false);
    expect(saves(runner) - before).toBe(1);
    const out = await sync();
    expect(out.full).toBe(false);
    expect(out.staleChains).toBe(2);
    const chains = await live(runner);
    expect(chains.has("KUBE-SEP-SOMEONEELSE00002")).toBe(false);
    expect(chains.has("KUBE-SVC-SOMEONEELSE00001")).toBe(false);
    expect(chains.has("KUBE-CUSTOM")).toBe(true);
    expect(saves(runner) - before).toBe(2); // the live() just above: the sync itself read nothing
  });

  test("after a failure the next (full) sync reads the live table again", async () => {
    const { runner, tracker, sync } = setup();
    await sync();
    await runner.restore(LATER, { noflush: true, counters: false });
    runner.failNextRestore = { message: "iptables-restore: line 3 failed" };
    tracker.upsertSlice("ns/s3-1", slice(3, 50));
    const failed = await sync(true);
    expect(failed.ok).toBe(false);
    const before = saves(runner);
    const out = await sync();
    expect(out).toMatchObject({ ok: true, full: true });
    expect(saves(runner) - before).toBe(1);
    expect((await live(runner)).has("KUBE-SEP-SOMEONEELSE00002")).toBe(false);
  });

  test("the daemon reads in the background once per sync period after a sync, and a sync deletes what it found", async () => {
    const { runner, tracker, proxier } = setup();
    const clock = new FakeClock();
    const source = new MemorySource();
    const outcomes: SyncOutcome[][] = [];
    const daemon = new Daemon({
      source,
      tracker,
      proxiers: [proxier],
      clock,
      minSyncPeriodMs: 1000,
      syncPeriodMs: 30_000,
      log: createLogger("json", () => {}),
      canary: false,
      onSync: (o) => outcomes.push(o),
    });
    await daemon.start();
    source.syncedAll();
    await clock.advance(0);
    await daemon.idle();
    expect(outcomes).toHaveLength(1);
    // Idle since a sync that read the live table itself: no background read is due.
    expect(await proxier.readLive()).toBe(false);
    // A change is synced; then someone adds a chain.
    source.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/s3-1", object: slice(3, 50) });
    await clock.advance(1000);
    await daemon.idle();
    expect(outcomes).toHaveLength(2);
    await runner.restore(LATER, { noflush: true, counters: false });
    const before = saves(runner);
    await clock.advance(29_000);
    await daemon.idle();
    await clock.advance(1000);
    await daemon.idle();
    expect(saves(runner) - before).toBe(1);
    expect(outcomes).toHaveLength(3);
    expect(outcomes[2][0]).toMatchObject({ ok: true, full: false, staleChains: 1 });
    expect((await live(runner)).has("KUBE-SEP-SOMEONEELSE00002")).toBe(false);
    // Idle: the next periods read nothing more than the one after that sync.
    await clock.advance(120_000);
    await daemon.idle();
    // The read at 30 s, live() above, one read after the deleting sync; then none.
    expect(saves(runner) - before).toBe(3);
    await daemon.stop();
  });
});
