/**
 * The Proxier's memory-minded parts: large restore payloads kept gzipped yet read back whole
 * (state file, /debug/last-restore), and sync builds without per-port summaries.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import type { ClusterState } from "../../lib/model/types.ts";
import { buildRules } from "../../lib/proxy/build.ts";
import { defaultConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";
import { ChangeTracker } from "../../lib/proxy/tracker.ts";
import { Daemon } from "../../lib/sync/daemon.ts";
import { cachedDebugBody } from "../../lib/sync/http.ts";
import { createLogger } from "../../lib/sync/log.ts";
import { eachInput, inputCount, keptRecord, PACK_MIN_CHARS, Proxier } from "../../lib/sync/proxier.ts";
import { FakeClock } from "../support/clock.ts";
import { MemorySource } from "../support/memory_source.ts";
import { modelService, modelSlice } from "../support/objects.ts";
import { removeTempDir, tempDir } from "../support/tempdir.ts";

/** `n` Services × 10 endpoints: at 400, a full restore is well over PACK_MIN_CHARS. */
function state(n: number): ClusterState {
  const services = [];
  const endpointSlices = [];
  for (let i = 0; i < n; i++) {
    services.push(modelService("ns", `s${i}`, `10.96.${i >> 8}.${i & 255}`));
    const ips = Array.from({ length: 10 }, (_, e) => `10.244.${(i * 10 + e) >> 8}.${(i * 10 + e) & 255}`);
    endpointSlices.push(modelSlice("ns", `s${i}-1`, `s${i}`, ips));
  }
  return { services, endpointSlices };
}

const config = { ...defaultConfig(), hostname: "node1", clusterCIDR: "10.244.0.0/16" };

describe("kept restore records", () => {
  test("a small payload is kept as text; a large one gzipped, and reads back the same", () => {
    const small = keptRecord({ ok: true, at: 1, full: false }, ["*nat\nCOMMIT\n"]);
    expect(Object.getOwnPropertyDescriptor(small, "inputs")?.value).toEqual(["*nat\nCOMMIT\n"]);
    const big = ["*nat\n", `${"-A KUBE-SEP-X -j DNAT é\n".repeat(PACK_MIN_CHARS / 20)}COMMIT\n`];
    const kept = keptRecord({ ok: false, at: 2, full: true, error: "boom" }, big);
    expect(Object.getOwnPropertyDescriptor(kept, "inputs")?.get).toBeDefined();
    expect(kept.inputs).toEqual(big);
    // What JSON and a spread see: the whole text, as before.
    expect(JSON.parse(JSON.stringify(kept))).toEqual({ ok: false, at: 2, full: true, error: "boom", inputs: big });
    expect({ ...kept }.inputs).toEqual(big);
  });

  test("a large full sync's payload: /debug/last-restore serves exactly what was restored", async () => {
    const runner = new FakeRunner("IPv4", "nft");
    const p = new Proxier({ family: "IPv4", runner, config, syncPeriodMs: 30_000, now: () => 1000 });
    const out = await p.sync(state(400), new Set());
    expect(out.ok).toBe(true);
    const restored = runner.calls.flatMap((c) => (c.kind === "restore" ? [c.input] : []));
    expect(restored.join("").length).toBeGreaterThan(PACK_MIN_CHARS);
    expect(p.lastSuccess?.inputs).toEqual(restored);
    const body = cachedDebugBody(() => ({ IPv4: { lastSuccess: p.lastSuccess, lastFailure: p.lastFailure } }));
    expect(JSON.parse(body()).IPv4.lastSuccess.inputs).toEqual(restored);
  });

  test("sync builds carry no per-port summaries, and write the same rules as a render", async () => {
    const s = state(20);
    const runner = new FakeRunner("IPv4", "nft");
    const p = new Proxier({ family: "IPv4", runner, config, syncPeriodMs: 30_000, now: () => 1000, batch: false });
    const out = await p.sync(s, new Set());
    expect(out.ruleset?.services).toEqual([]);
    const render = buildRules(s, resolveBuildOptions(config, "IPv4", undefined));
    expect(render.services.length).toBe(20);
    expect(out.ruleset?.nat.rules).toEqual(render.nat.rules);
    expect(out.ruleset?.filter.rules).toEqual(render.filter.rules);
  });
});

describe("kept records, one input at a time", () => {
  test("eachInput and inputCount give the inputs of packed and plain records alike", () => {
    const big = ["*nat\n", "x".repeat(PACK_MIN_CHARS), "COMMIT\n"];
    for (const inputs of [["*nat\nCOMMIT\n"], big]) {
      const r = keptRecord({ ok: true, at: 1, full: true }, inputs);
      expect([...eachInput(r)]).toEqual(inputs);
      expect(inputCount(r)).toBe(inputs.length);
    }
  });

  test("the state file of a large full sync holds every input, in order, with its header", async () => {
    const dir = tempDir("kip-kept-");
    try {
      const clock = new FakeClock();
      const runner = new FakeRunner("IPv4", "nft");
      const source = new MemorySource();
      const proxier = new Proxier({ family: "IPv4", runner, config, syncPeriodMs: 30_000, now: () => clock.now() });
      const daemon = new Daemon({
        source,
        tracker: new ChangeTracker("node1"),
        proxiers: [proxier],
        clock,
        minSyncPeriodMs: 1000,
        syncPeriodMs: 30_000,
        log: createLogger("json", () => {}),
        canary: false,
        stateDir: join(dir, "state"),
      });
      await daemon.start();
      const s = state(400);
      for (const svc of s.services)
        source.emit({ kind: "Service", type: "upsert", key: `ns/${svc.name}`, object: svc });
      for (const sl of s.endpointSlices)
        source.emit({ kind: "EndpointSlice", type: "upsert", key: `ns/${sl.name}`, object: sl });
      source.syncedAll();
      await clock.advance(0);
      await daemon.idle();
      const restored = runner.calls.flatMap((c) => (c.kind === "restore" ? [c.input] : []));
      expect(restored.join("").length).toBeGreaterThan(PACK_MIN_CHARS);
      const expected = restored.map((input, i) => `# restore ${i + 1} of ${restored.length}\n${input}`).join("");
      const file = readFileSync(join(dir, "state", "last-restore-IPv4.txt"), "utf8");
      expect(file.replace(/^# kip last-restore .*\n/, "")).toBe(expected);
      await daemon.stop();
    } finally {
      removeTempDir(dir);
    }
  });
});

describe("a later full sync", () => {
  test("collects the last build before building again; the first full sync and partial syncs do not", async () => {
    const runner = new FakeRunner("IPv4", "nft");
    let collections = 0;
    const p = new Proxier({
      family: "IPv4",
      runner,
      config,
      syncPeriodMs: 30_000,
      now: () => 1000,
      collect: () => collections++,
    });
    const s = state(20);
    expect((await p.sync(s, new Set())).full).toBe(true);
    expect(collections).toBe(0);
    expect((await p.sync(s, new Set(["ns/s1"]))).full).toBe(false);
    expect(collections).toBe(0);
    const again = await p.sync(s, new Set(), true);
    expect(again.full).toBe(true);
    expect(collections).toBe(1);
    // The rules are those of a build from scratch, and a partial sync after it reuses them.
    const fresh = buildRules(s, resolveBuildOptions(config, "IPv4"), { summaries: false });
    expect(again.ruleset?.nat.rules).toEqual(fresh.nat.rules);
    expect((await p.sync(s, new Set(["ns/s2"]))).full).toBe(false);
    expect(collections).toBe(1);
  });
});
