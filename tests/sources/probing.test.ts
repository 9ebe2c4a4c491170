/**
 * lib/sources/probing.ts with the daemon, the fake iptables and an injected clock: probe
 * results become EndpointSlice changes and partial syncs; a dead endpoint leaves the rules
 * within periodSeconds × failureThreshold; it comes back; none left → REJECT; the first sync
 * waits for the first probes; apiserver mode ignores the annotation, saying so once.
 */
import { describe, expect, test } from "bun:test";
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import { PROBE_DEFAULTS } from "../../lib/model/probe.ts";
import type { EndpointSlice, ReadinessProbe, Service } from "../../lib/model/types.ts";
import { ProbeAnnotationIgnored, ProbingSource } from "../../lib/sources/probing.ts";
import type { SourceEvent } from "../../lib/sources/source.ts";
import { createLogger } from "../../lib/sync/log.ts";
import { createMetrics } from "../../lib/sync/metrics.ts";
import type { CheckResult, ProbeTarget } from "../../lib/sync/prober.ts";
import type { SyncOutcome } from "../../lib/sync/proxier.ts";
import { FakeClock } from "../support/clock.ts";
import { startFakeDaemon } from "../support/fake_daemon.ts";
import { MemorySource } from "../support/memory_source.ts";
import { modelService, modelSlice } from "../support/objects.ts";

const IPS = ["10.244.1.1", "10.244.1.2", "10.244.1.3"];
const fast = (over: Partial<ReadinessProbe> = {}): ReadinessProbe => ({
  handler: { type: "tcpSocket" },
  ...PROBE_DEFAULTS,
  periodSeconds: 2,
  failureThreshold: 3,
  ...over,
});
const web = (probe?: ReadinessProbe): Service =>
  modelService("ns", "web", "10.96.0.10", probe ? { readinessProbe: probe } : {});

async function setup(probe: ReadinessProbe | undefined = fast()) {
  const clock = new FakeClock();
  const runner = new FakeRunner("IPv4", "nft");
  const inner = new MemorySource();
  const logs: string[] = [];
  const outcomes: SyncOutcome[][] = [];
  const metrics = createMetrics();
  const log = createLogger("text", (l) => logs.push(l.trim()));
  const down = new Set<string>();
  const probed: ProbeTarget[] = [];
  const source = new ProbingSource(inner, {
    clock,
    log: (level, msg, fields) => log.log(level, msg, fields),
    metrics,
    check: async (t): Promise<CheckResult> => {
      probed.push(t);
      return down.has(t.address) ? { ok: false, reason: "connection refused" } : { ok: true, reason: "connected" };
    },
  });
  const { daemon } = await startFakeDaemon({
    source,
    clock,
    runner,
    log,
    config: { clusterCIDR: "10.244.0.0/16" },
    daemon: { metrics, onSync: (o) => outcomes.push(o) },
  });
  inner.emit({ kind: "Service", type: "upsert", key: "ns/web", object: web(probe) });
  inner.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/web-1", object: modelSlice("ns", "web-1", "web", IPS) });
  /** The endpoints the nat table sends web's traffic to, from the rules as written. */
  const endpoints = async () => {
    const nat = await runner.save("nat");
    return [...nat.matchAll(/-A KUBE-SEP-\S+ .*--to-destination (\S+):/g)].map((m) => m[1]).sort();
  };
  const settle = async (ms: number) => {
    await clock.advance(ms);
    await daemon.idle();
  };
  return { clock, runner, inner, source, daemon, logs, outcomes, metrics, down, probed, endpoints, settle };
}

describe("ProbingSource", () => {
  test("the first sync waits for the first probes, and has only the endpoints that passed", async () => {
    const s = await setup();
    s.down.add("10.244.1.3");
    s.inner.syncedAll();
    await s.settle(0);
    expect(s.outcomes).toHaveLength(1);
    expect(s.outcomes[0][0]).toMatchObject({ ok: true, full: true });
    expect(await s.endpoints()).toEqual(["10.244.1.1", "10.244.1.2"]);
    expect(s.probed.map((t) => `${t.address}:${t.port}`).sort()).toEqual(IPS.map((ip) => `${ip}:8080`));
    await s.daemon.stop();
  });

  test("a dead endpoint leaves the rules within periodSeconds × failureThreshold (+ one sync), and comes back", async () => {
    const s = await setup(fast({ periodSeconds: 2, failureThreshold: 3 }));
    s.inner.syncedAll();
    await s.settle(0);
    expect(await s.endpoints()).toEqual(IPS);
    const syncs = s.outcomes.length;
    s.down.add("10.244.1.2");
    await s.settle(2_000 * 2);
    expect(await s.endpoints()).toEqual(IPS); // 2 failures of 3
    await s.settle(2_000);
    expect(await s.endpoints()).toEqual(["10.244.1.1", "10.244.1.3"]);
    expect(s.outcomes.length).toBe(syncs + 1);
    expect(s.outcomes.at(-1)?.[0]).toMatchObject({ ok: true, full: false }); // a partial sync
    expect(s.logs.filter((l) => l.includes("endpoint not ready"))).toEqual([
      expect.stringMatching(
        /WARN endpoint not ready service=ns\/web endpoint=10\.244\.1\.2:8080 reason="connection refused" failures=3$/,
      ),
    ]);
    expect(await s.metrics.registry.metrics()).toContain(
      'kip_endpoint_probe_ready{namespace="ns",service="web",endpoint="10.244.1.2:8080"} 0',
    );
    expect(s.source.endpoints().find((e) => e.endpoint === "10.244.1.2:8080")).toMatchObject({
      namespace: "ns",
      service: "web",
      probe: "tcpSocket",
      ready: false,
      lastResult: "failure",
      consecutive: 3,
      reason: "connection refused",
    });
    // Back: one pass (successThreshold 1) at the next period.
    s.down.delete("10.244.1.2");
    await s.settle(2_000);
    expect(await s.endpoints()).toEqual(IPS);
    expect(s.logs.some((l) => /INFO endpoint ready service=ns\/web endpoint=10\.244\.1\.2:8080/.test(l))).toBe(true);
    const metrics = await s.metrics.registry.metrics();
    expect(metrics).toContain('kip_endpoint_probe_ready{namespace="ns",service="web",endpoint="10.244.1.2:8080"} 1');
    expect(metrics).toMatch(/kip_endpoint_probe_duration_seconds_count\{probe="tcpSocket",result="failure"\} 3/);
    await s.daemon.stop();
  });

  test("every endpoint down: kube-proxy's REJECT for a Service with no endpoints", async () => {
    const s = await setup(fast({ periodSeconds: 1, failureThreshold: 1 }));
    s.inner.syncedAll();
    await s.settle(0);
    for (const ip of IPS) s.down.add(ip);
    await s.settle(1_000);
    expect(await s.endpoints()).toEqual([]);
    expect(s.outcomes.at(-1)?.[0]).toMatchObject({ ok: true, full: false });
    const filter = await s.runner.save("filter");
    expect(filter).toContain(
      '-A KUBE-SERVICES -m comment --comment "ns/web:http has no endpoints" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j REJECT',
    );
    // One back: traffic again, the REJECT gone.
    s.down.delete("10.244.1.3");
    await s.settle(1_000);
    expect(await s.endpoints()).toEqual(["10.244.1.3"]);
    expect(await s.runner.save("filter")).not.toContain("has no endpoints");
    await s.daemon.stop();
  });

  test("an endpoint the file marks not ready stays so whatever its probe says; terminating ones keep serving only while they pass", async () => {
    const s = await setup();
    const slice: EndpointSlice = modelSlice("ns", "web-1", "web", IPS);
    slice.endpoints[0] = { ...slice.endpoints[0], ready: false };
    slice.endpoints[2] = { ...slice.endpoints[2], ready: false, serving: true, terminating: true };
    const seen: SourceEvent[] = [];
    const events = new MemorySource();
    const src = new ProbingSource(events, {
      clock: s.clock,
      log: () => {},
      check: async (t) => ({ ok: t.address !== "10.244.1.3", reason: "x" }),
    });
    await src.start({ onEvent: (e) => seen.push(e), onSynced: () => {}, onProblem: () => {} });
    events.emit({ kind: "Service", type: "upsert", key: "ns/web", object: web(fast()) });
    events.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/web-1", object: slice });
    await s.clock.advance(0);
    const last = seen.filter((e) => e.kind === "EndpointSlice").at(-1);
    const eps = last?.type === "upsert" && last.kind === "EndpointSlice" ? last.object.endpoints : [];
    expect(eps.map((e) => [e.ready ?? true, e.serving ?? e.ready ?? true, e.terminating ?? false])).toEqual([
      [false, false, false], // the file's drain wins over a passing probe
      [true, true, false],
      [false, false, true], // terminating and failing: no longer serving, no fallback to it
    ]);
    // The Service reaches the engine without the probe.
    const svc = seen.find((e) => e.kind === "Service");
    expect(svc?.type === "upsert" && svc.kind === "Service" ? svc.object.readinessProbe : "x").toBeUndefined();
    await src.stop();
    await s.daemon.stop();
  });

  test("port: a number, a name from the slice, or every TCP port of the Service; a missing name keeps the endpoint out", async () => {
    const clock = new FakeClock();
    const inner = new MemorySource();
    const problems: string[] = [];
    const probed = new Set<string>();
    const src = new ProbingSource(inner, {
      clock,
      log: () => {},
      check: async (t) => {
        probed.add(`${t.address}:${t.port}`);
        return { ok: true, reason: "ok" };
      },
    });
    const seen: SourceEvent[] = [];
    await src.start({ onEvent: (e) => seen.push(e), onSynced: () => {}, onProblem: (m) => problems.push(m) });
    const slice = modelSlice("ns", "web-1", "web", ["10.244.1.1"]);
    slice.ports = [
      { name: "http", port: 8080, protocol: "TCP" },
      { name: "admin", port: 9901, protocol: "TCP" },
    ];
    inner.emit({ kind: "EndpointSlice", type: "upsert", key: "ns/web-1", object: slice });
    inner.emit({ kind: "Service", type: "upsert", key: "ns/web", object: web(fast()) });
    await clock.advance(0);
    expect([...probed]).toEqual(["10.244.1.1:8080"]); // the Service's one port, through the slice
    probed.clear();
    inner.emit({
      kind: "Service",
      type: "upsert",
      key: "ns/web",
      object: web(fast({ handler: { type: "tcpSocket", port: "admin" } })),
    });
    await clock.advance(2_000);
    expect([...probed]).toEqual(["10.244.1.1:9901"]);
    probed.clear();
    inner.emit({
      kind: "Service",
      type: "upsert",
      key: "ns/web",
      object: web(fast({ handler: { type: "tcpSocket", port: 7000 } })),
    });
    await clock.advance(2_000);
    expect([...probed]).toEqual(["10.244.1.1:7000"]);
    inner.emit({
      kind: "Service",
      type: "upsert",
      key: "ns/web",
      object: web(fast({ handler: { type: "tcpSocket", port: "nope" } })),
    });
    await clock.advance(2_000);
    expect(problems).toEqual([
      'Service ns/web: kip/readiness-probe port "nope" is not a TCP port of EndpointSlice ns/web-1: its endpoints stay not ready',
    ]);
    const last = seen.filter((e) => e.kind === "EndpointSlice").at(-1);
    expect(last?.type === "upsert" && last.kind === "EndpointSlice" ? last.object.endpoints[0].ready : true).toBe(
      false,
    );
    // The probe removed: the slice goes on as written, probes stop.
    inner.emit({ kind: "Service", type: "upsert", key: "ns/web", object: web() });
    const after = seen.filter((e) => e.kind === "EndpointSlice").at(-1);
    expect(after?.type === "upsert" && after.kind === "EndpointSlice" ? after.object.endpoints[0].ready : false).toBe(
      undefined,
    );
    expect(src.endpoints()).toEqual([]);
    await src.stop();
  });

  test("the first synced is not held past the deadline when a probe hangs", async () => {
    const clock = new FakeClock();
    const inner = new MemorySource();
    const src = new ProbingSource(inner, {
      clock,
      log: () => {},
      check: (_t, signal) =>
        new Promise((resolve) => signal.addEventListener("abort", () => resolve({ ok: false, reason: "aborted" }))),
      firstResultsMs: 5_000,
    });
    const synced: string[] = [];
    await src.start({ onEvent: () => {}, onSynced: (k) => synced.push(k), onProblem: () => {} });
    inner.emit({ kind: "Service", type: "upsert", key: "ns/web", object: web(fast({ timeoutSeconds: 10 })) });
    inner.emit({
      kind: "EndpointSlice",
      type: "upsert",
      key: "ns/web-1",
      object: modelSlice("ns", "web-1", "web", IPS),
    });
    inner.syncedAll();
    await clock.advance(4_999);
    expect(synced).toEqual([]);
    await clock.advance(1);
    expect(synced).toEqual(["Service", "EndpointSlice", "Node"]);
    await src.stop();
  });

  test("apiserver mode: the annotation is dropped, with one log line", async () => {
    const inner = new MemorySource();
    const lines: string[] = [];
    const seen: SourceEvent[] = [];
    const src = new ProbeAnnotationIgnored(inner, (_l, msg) => lines.push(msg));
    await src.start({ onEvent: (e) => seen.push(e), onSynced: () => {}, onProblem: () => {} });
    for (const name of ["a", "b"])
      inner.emit({
        kind: "Service",
        type: "upsert",
        key: `ns/${name}`,
        object: modelService("ns", name, "10.96.0.10", { readinessProbeAnnotation: "tcpSocket: {}" }),
      });
    expect(lines).toEqual([
      "kip/readiness-probe is ignored with an apiserver: the kubelet's readiness probes own endpoint readiness",
    ]);
    expect(
      seen.every((e) => e.kind === "Service" && e.type === "upsert" && !("readinessProbeAnnotation" in e.object)),
    ).toBe(true);
  });
});
