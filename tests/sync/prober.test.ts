/**
 * lib/sync/prober.ts on an injected clock: the kubelet's defaults and thresholds, initial
 * delay, recovery, timeouts, one probe in flight per target, and the concurrency cap.
 */
import { describe, expect, test } from "bun:test";
import { PROBE_DEFAULTS } from "../../lib/model/probe.ts";
import type { ReadinessProbe } from "../../lib/model/types.ts";
import { type CheckResult, Prober, type ProbeTarget, type TargetState } from "../../lib/sync/prober.ts";
import { FakeClock } from "../support/clock.ts";

const probe = (over: Partial<ReadinessProbe> = {}): ReadinessProbe => ({
  handler: { type: "tcpSocket" },
  ...PROBE_DEFAULTS,
  ...over,
});

const target = (address: string, p = probe(), port = 80): ProbeTarget => ({
  key: `default/web ${address}:${port}`,
  namespace: "default",
  service: "web",
  address,
  port,
  probe: p,
});

/** A check whose answers the test sets per address: up, down, or hanging (never answers). */
function harness(maxConcurrent = 8) {
  const clock = new FakeClock();
  const up = new Map<string, "up" | "down" | "hang">();
  const calls: string[] = [];
  const transitions: { key: string; ready: boolean; reason: string; at: number }[] = [];
  const pending: ((r: CheckResult) => void)[] = [];
  const prober = new Prober({
    clock,
    maxConcurrent,
    check: (t, signal) => {
      calls.push(t.address);
      const s = up.get(t.address) ?? "up";
      if (s === "hang")
        return new Promise((resolve) => {
          pending.push(resolve);
          signal.addEventListener("abort", () => resolve({ ok: false, reason: "aborted" }));
        });
      return Promise.resolve(
        s === "up" ? { ok: true, reason: "connected" } : { ok: false, reason: "connection refused" },
      );
    },
    onTransition: (s: TargetState) =>
      transitions.push({ key: s.target.key, ready: s.ready, reason: s.reason, at: clock.now() - 1_000_000 }),
  });
  return { clock, up, calls, transitions, prober, pending };
}

describe("Prober", () => {
  test("kubelet defaults: probed at once, every 10 s; ready after 1 pass, not ready after 3 failures", async () => {
    const { clock, up, transitions, prober, calls } = harness();
    const t = target("10.0.0.1");
    prober.set([t]);
    expect(prober.get(t.key)?.ready).toBe(false); // not ready until the first pass, as a Pod
    await clock.advance(0);
    expect(prober.get(t.key)?.ready).toBe(true);
    expect(transitions).toEqual([{ key: t.key, ready: true, reason: "connected", at: 0 }]);
    up.set("10.0.0.1", "down");
    await clock.advance(10_000); // failure 1
    await clock.advance(10_000); // failure 2
    expect(prober.get(t.key)?.ready).toBe(true);
    await clock.advance(10_000); // failure 3: out
    expect(prober.get(t.key)?.ready).toBe(false);
    expect(transitions[1]).toEqual({ key: t.key, ready: false, reason: "connection refused", at: 30_000 });
    expect(calls.length).toBe(4);
    // Not ready meanwhile: a 9.9 s advance makes no probe.
    await clock.advance(9_900);
    expect(calls.length).toBe(4);
  });

  test("recovery needs successThreshold passes in a row; a failure in between starts over", async () => {
    const { clock, up, prober } = harness();
    const t = target("10.0.0.1", probe({ periodSeconds: 1, successThreshold: 3, failureThreshold: 1 }));
    up.set("10.0.0.1", "down");
    prober.set([t]);
    await clock.advance(0);
    expect(prober.get(t.key)).toMatchObject({ ready: false, probes: 1, last: "failure" });
    up.set("10.0.0.1", "up");
    await clock.advance(1_000);
    await clock.advance(1_000);
    expect(prober.get(t.key)?.ready).toBe(false); // 2 of 3
    up.set("10.0.0.1", "down");
    await clock.advance(1_000);
    up.set("10.0.0.1", "up");
    await clock.advance(1_000);
    await clock.advance(1_000);
    expect(prober.get(t.key)?.ready).toBe(false); // 2 of 3 again
    await clock.advance(1_000);
    expect(prober.get(t.key)?.ready).toBe(true);
  });

  test("initialDelaySeconds: no probe before it", async () => {
    const { clock, prober, calls } = harness();
    const t = target("10.0.0.1", probe({ initialDelaySeconds: 5 }));
    prober.set([t]);
    await clock.advance(4_999);
    expect(calls).toEqual([]);
    expect(prober.get(t.key)?.reason).toBe("not probed yet");
    await clock.advance(1);
    expect(calls).toEqual(["10.0.0.1"]);
    expect(prober.get(t.key)?.ready).toBe(true);
  });

  test("a probe that does not answer within timeoutSeconds fails, and is aborted", async () => {
    const { clock, up, prober, transitions } = harness();
    const t = target("10.0.0.1", probe({ periodSeconds: 2, timeoutSeconds: 1, failureThreshold: 1 }));
    prober.set([t]);
    await clock.advance(0);
    expect(prober.get(t.key)?.ready).toBe(true);
    up.set("10.0.0.1", "hang");
    await clock.advance(2_000);
    expect(prober.get(t.key)?.inFlight).toBe(true);
    await clock.advance(999);
    expect(prober.get(t.key)?.ready).toBe(true);
    await clock.advance(1);
    expect(prober.get(t.key)).toMatchObject({ ready: false, inFlight: false, reason: "timeout after 1s" });
    expect(transitions.at(-1)).toMatchObject({ ready: false, at: 3_000 });
    expect(prober.inFlight).toBe(0);
  });

  test("one probe in flight per target: a slow probe delays the next, never doubles it", async () => {
    const { clock, up, prober, calls } = harness();
    const t = target("10.0.0.1", probe({ periodSeconds: 1, timeoutSeconds: 5 }));
    up.set("10.0.0.1", "hang");
    prober.set([t]);
    await clock.advance(4_000);
    expect(calls.length).toBe(1);
    await clock.advance(1_000); // timed out at 5 s; the next one starts at once
    expect(calls.length).toBe(2);
  });

  test("at most maxConcurrent probes in flight; the rest wait their turn", async () => {
    const { clock, up, prober, calls, pending } = harness(2);
    const targets = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"].map((a) => {
      up.set(a, "hang");
      return target(a, probe({ timeoutSeconds: 3 }));
    });
    prober.set(targets);
    await clock.advance(0);
    expect(prober.inFlight).toBe(2);
    expect(calls.length).toBe(2);
    for (const a of ["10.0.0.3", "10.0.0.4", "10.0.0.5"]) up.set(a, "up");
    pending[0]({ ok: true, reason: "late" });
    await clock.advance(0);
    expect(prober.inFlight).toBe(2); // one freed a slot, the next took it
    await clock.advance(3_000); // the hanging one times out
    expect(calls.length).toBe(5);
    expect(prober.get(targets[4].key)?.ready).toBe(true);
    expect(prober.list().every((s) => s.probes >= 1 || s.inFlight)).toBe(true);
  });

  test("set(): removed targets stop (and their probe is aborted); a changed spec keeps the state", async () => {
    const { clock, up, prober, calls } = harness();
    const a = target("10.0.0.1", probe({ periodSeconds: 1 }));
    const b = target("10.0.0.2", probe({ periodSeconds: 1 }));
    prober.set([a, b]);
    await clock.advance(0);
    expect(prober.list().map((s) => s.ready)).toEqual([true, true]);
    up.set("10.0.0.2", "hang");
    await clock.advance(1_000);
    expect(prober.inFlight).toBe(1);
    prober.set([{ ...a, probe: probe({ periodSeconds: 5 }) }]);
    await clock.advance(0); // the aborted check settles, and frees its slot
    expect(prober.inFlight).toBe(0);
    expect(prober.get(b.key)).toBeUndefined();
    expect(prober.get(a.key)?.ready).toBe(true);
    const before = calls.length;
    await clock.advance(4_999);
    expect(calls.length).toBe(before); // the new period applies from now
    await clock.advance(1);
    expect(calls.length).toBe(before + 1);
    await clock.advance(5_000);
    expect(calls.length).toBe(before + 2);
  });

  test("stop(): no more probes", async () => {
    const { clock, prober, calls } = harness();
    prober.set([target("10.0.0.1", probe({ periodSeconds: 1 }))]);
    await clock.advance(0);
    prober.stop();
    await clock.advance(10_000);
    expect(calls.length).toBe(1);
    expect(prober.list()).toEqual([]);
  });
});
