/**
 * The daemon over the fake runner and a scripted source: what each sync writes, when it runs,
 * how failures and third-party flushes are repaired. Real iptables: tests/sync/sync_real.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import type { EndpointSlice, Service } from "../../lib/model/types.ts";
import { defaultConfig } from "../../lib/proxy/options.ts";
import { ChangeTracker } from "../../lib/proxy/tracker.ts";
import { Collector } from "../../lib/sync/daemon.ts";
import { createLogger } from "../../lib/sync/log.ts";
import { createMetrics } from "../../lib/sync/metrics.ts";
import { Proxier } from "../../lib/sync/proxier.ts";
import { FakeClock } from "../support/clock.ts";
import { startFakeDaemon } from "../support/fake_daemon.ts";
import { MemorySource } from "../support/memory_source.ts";
import { modelService, modelSlice } from "../support/objects.ts";

const svc = (name: string, ip: string): Service => modelService("ns", name, ip);
const slice = (service: string, ips: string[]): EndpointSlice => modelSlice("ns", `${service}-1`, service, ips);

async function setup() {
  const clock = new FakeClock();
  const source = new MemorySource();
  const logs: string[] = [];
  const metrics = createMetrics();
  const { daemon, runner, outcomes } = await startFakeDaemon({
    source,
    clock,
    log: createLogger("json", (l) => logs.push(l)),
    config: { clusterCIDR: "10.244.0.0/16" },
    daemon: { metrics, canary: true },
  });
  for (const [name, ip, eps] of [
    ["a", "10.96.0.10", ["10.244.1.1", "10.244.1.2"]],
    ["b", "10.96.0.11", ["10.244.2.1"]],
  ] as const) {
    source.emit({ kind: "Service", type: "upsert", key: `ns/${name}`, object: svc(name, ip) });
    source.emit({ kind: "EndpointSlice", type: "upsert", key: `ns/${name}-1`, object: slice(name, [...eps]) });
  }
  const restores = () =>
    runner.calls.filter((c) => c.kind === "restore").map((c) => (c.kind === "restore" ? c.input : ""));
  return { clock, runner, source, logs, outcomes, daemon, metrics, restores };
}

describe("Daemon", () => {
  test("nothing is written before every source has synced; then one full sync with jumps and canaries", async () => {
    const s = await setup();
    await s.clock.advance(5000);
    expect(s.restores()).toEqual([]);
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    expect(s.outcomes).toHaveLength(1);
    expect(s.outcomes[0][0]).toMatchObject({ ok: true, full: true });
    const saved = await s.runner.save();
    expect(saved).toContain('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES');
    expect(saved.match(/^:KUBE-PROXY-CANARY /gm)).toHaveLength(3);
    expect(saved.match(/^:KUBE-SEP-/gm)).toHaveLength(3);
    await s.daemon.stop();
  });

  test("a changed endpoint is a partial sync of that Service's chains only", async () => {
    const s = await setup();
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    s.source.emit({
      kind: "EndpointSlice",
      type: "upsert",
      key: "ns/a-1",
      object: slice("a", ["10.244.1.1", "10.244.1.3"]),
    });
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(s.outcomes[1][0]).toMatchObject({ ok: true, full: false });
    const input = s.restores().at(-1) ?? "";
    expect(input).toContain("-A KUBE-SEP-");
    expect(input).toContain("10.244.1.3:8080");
    expect(input).not.toContain("10.244.2.1"); // service b's chains are not written
    expect(input).toContain("-X KUBE-SEP-"); // 10.244.1.2's chain is stale now
    expect(input.length).toBeLessThan((s.restores()[0] ?? "").length);
    const last = await s.metrics.registry.getSingleMetricAsString("kubeproxy_sync_proxy_rules_iptables_last");
    expect(last).toMatch(/table="nat",ip_family="IPv4"} \d+/);
    await s.daemon.stop();
  });

  test("partial syncs skip entry chains that would be rewritten unchanged; the result equals a full sync", async () => {
    const s = await setup();
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    s.source.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/a-1", object: slice("a", ["10.244.1.7"]) });
    await s.clock.advance(1000);
    await s.daemon.idle();
    const endpointOnly = s.restores().at(-1) ?? "";
    expect(endpointOnly).not.toContain("*filter");
    expect(endpointOnly).not.toContain(":KUBE-SERVICES ");
    expect(endpointOnly).toContain("10.244.1.7:8080");
    // A new Service changes KUBE-SERVICES: the entry chains are written again.
    s.source.emit({ kind: "Service", type: "upsert", key: "ns/c", object: svc("c", "10.96.0.12") });
    await s.clock.advance(1000);
    await s.daemon.idle();
    const withService = s.restores().at(-1) ?? "";
    expect(withService).toContain("*filter");
    expect(withService).toContain('-A KUBE-SERVICES -m comment --comment "ns/c:http has no endpoints"');
    // The kernel state equals what one full sync of the same objects writes.
    const fresh = new FakeRunner("IPv4", "nft");
    const p = new Proxier({
      family: "IPv4",
      runner: fresh,
      config: { ...defaultConfig(), hostname: "node1", clusterCIDR: "10.244.0.0/16" },
      syncPeriodMs: 30_000,
      now: () => 0,
    });
    const t = new ChangeTracker("node1");
    t.upsertService("ns/a", svc("a", "10.96.0.10"));
    t.upsertService("ns/b", svc("b", "10.96.0.11"));
    t.upsertService("ns/c", svc("c", "10.96.0.12"));
    t.upsertSlice("ns/a-1", slice("a", ["10.244.1.7"]));
    t.upsertSlice("ns/b-1", slice("b", ["10.244.2.1"]));
    expect((await p.sync(t.state(), new Set())).ok).toBe(true);
    const kube = (dump: string) =>
      dump
        .split("\n")
        .filter((l) => /KUBE-(?!PROXY-CANARY)/.test(l))
        .sort();
    expect(kube(await s.runner.save())).toEqual(kube(await fresh.save()));
    await s.daemon.stop();
  });

  test("an edit of what kube-proxy does not read causes no sync; requests within 1 s coalesce", async () => {
    const s = await setup();
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    s.source.emit({
      kind: "Service",
      type: "upsert",
      key: "ns/a",
      object: { ...svc("a", "10.96.0.10"), labels: { app: "x" } },
    });
    await s.clock.advance(5000);
    expect(s.outcomes).toHaveLength(1);
    for (const ip of ["10.244.1.4", "10.244.1.5", "10.244.1.6"])
      s.source.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/a-1", object: slice("a", [ip]) });
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(s.outcomes).toHaveLength(2);
    expect(s.restores().at(-1)).toContain("10.244.1.6:8080");
    await s.daemon.stop();
  });

  test("a failed restore leaves the rules as they were and is retried as a full sync after syncPeriod", async () => {
    const s = await setup();
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    const before = await s.runner.save();
    s.runner.failNextRestore = { message: "simulated: Another app is currently holding the xtables lock" };
    s.source.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/b-1", object: slice("b", ["10.244.2.9"]) });
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(s.outcomes[1][0]).toMatchObject({ ok: false, full: false });
    expect(await s.runner.save()).toBe(before);
    expect(s.logs.at(-1)).toContain("sync failed; rules left as they were, retrying as a full sync");
    await s.clock.advance(29_000);
    expect(s.outcomes).toHaveLength(2);
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(s.outcomes[2][0]).toMatchObject({ ok: true, full: true });
    expect(await s.runner.save()).toContain("10.244.2.9:8080");
    const failures = await s.metrics.registry.getSingleMetricAsString(
      "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
    );
    expect(failures).toContain('ip_family="IPv4"} 1');
    await s.daemon.stop();
  });

  test("a third party flushing the tables is caught by the canary and repaired by a full sync", async () => {
    const s = await setup();
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    const good = await s.runner.save();
    // Someone runs `iptables -t nat -F; iptables -t nat -X; …` on every table.
    for (const t of ["mangle", "nat", "filter"]) await s.runner.restore(`*${t}\nCOMMIT\n`, { noflush: false });
    expect(await s.runner.save()).not.toContain("KUBE-");
    await s.clock.advance(30_000);
    await s.daemon.idle();
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(s.logs.join("")).toContain("iptables flush detected");
    expect(s.outcomes.at(-1)?.[0]).toMatchObject({ ok: true, full: true });
    expect(await s.runner.save()).toBe(good);
    await s.daemon.stop();
  });

  test("a change of this node's zone forces a full sync", async () => {
    const s = await setup();
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    const node = { name: "node1", labels: { "topology.kubernetes.io/zone": "z1" }, podCIDRs: [], addresses: [] };
    s.source.emit({ kind: "Node", type: "upsert", key: "node1", object: node });
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(s.outcomes.at(-1)?.[0]).toMatchObject({ ok: true, full: true });
    await s.daemon.stop();
  });
});

describe("Collector", () => {
  test("collects after a full sync, and after partial syncs only once RSS grew past the budget", () => {
    let rss = 300;
    let gcs = 0;
    const c = new Collector({
      rss: () => rss,
      gc: () => {
        gcs++;
        rss = 310; // what a collection hands back
      },
      budgetBytes: 64,
      defer: (fn) => fn(),
    });
    c.afterSync(true);
    expect(gcs).toBe(1);
    // Partial syncs: 10 more each; the lowest RSS seen since (310) is the base.
    for (let i = 0; i < 6; i++) {
      rss += 10;
      c.afterSync(false);
    }
    expect(gcs).toBe(1);
    rss += 10; // 380: 70 past 310
    c.afterSync(false);
    expect(gcs).toBe(2);
    expect(c.collections).toBe(2);
  });

  test("without a GC (not Bun) it does nothing; a collection already queued is not queued twice", () => {
    const none = new Collector({ rss: () => 1e9, budgetBytes: 1, defer: () => expect.unreachable() });
    none.afterSync(true);
    const queued: (() => void)[] = [];
    let gcs = 0;
    const c = new Collector({ rss: () => 0, gc: () => gcs++, budgetBytes: 1, defer: (fn) => queued.push(fn) });
    c.afterSync(true);
    c.afterSync(true);
    expect(queued.length).toBe(1);
    queued[0]();
    expect(gcs).toBe(1);
  });

  test("the daemon asks its collector after every sync, with whether it was full", async () => {
    const s = await setup();
    const seen: boolean[] = [];
    s.daemon.collector.afterSync = (full) => {
      seen.push(full);
    };
    s.source.syncedAll();
    await s.clock.advance(0);
    await s.daemon.idle();
    s.source.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/a-1", object: slice("a", ["10.244.1.9"]) });
    await s.clock.advance(1000);
    await s.daemon.idle();
    expect(seen).toEqual([true, false]);
    expect(seen).toEqual(s.outcomes.map((o) => o.some((x) => x.full)));
    await s.daemon.stop();
  });
});
