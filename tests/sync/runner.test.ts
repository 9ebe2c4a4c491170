import { describe, expect, test } from "bun:test";
import { BoundedFrequencyRunner } from "../../lib/sync/runner.ts";
import { FakeClock } from "../support/clock.ts";

function setup(results: boolean[] = []) {
  const clock = new FakeClock();
  const at: number[] = [];
  const r = new BoundedFrequencyRunner({
    minIntervalMs: 1000,
    maxIntervalMs: 3600_000,
    retryIntervalMs: 30_000,
    clock,
    run: async () => {
      at.push(clock.now());
      return results.shift() ?? true;
    },
  });
  return { clock, at, r, t0: clock.now() };
}

describe("BoundedFrequencyRunner", () => {
  test("the first request runs at once; requests within minInterval coalesce into one run", async () => {
    const { clock, at, r, t0 } = setup();
    r.start();
    r.request();
    await clock.advance(0);
    expect(at).toEqual([t0]);
    r.request();
    r.request();
    r.request();
    await clock.advance(999);
    expect(at).toEqual([t0]);
    await clock.advance(1);
    expect(at).toEqual([t0, t0 + 1000]);
    await clock.advance(10_000);
    expect(at.length).toBe(2);
  });

  test("a failed run is retried after retryInterval, not before", async () => {
    const { clock, at, r, t0 } = setup([false, true]);
    r.request();
    await clock.advance(0);
    await clock.advance(29_999);
    expect(at).toEqual([t0]);
    await clock.advance(1);
    expect(at).toEqual([t0, t0 + 30_000]);
  });

  test("a request after a failure runs after minInterval (cancelling the retry)", async () => {
    const { clock, at, r, t0 } = setup([false, true]);
    r.request();
    await clock.advance(5000);
    r.request();
    await clock.advance(0);
    expect(at).toEqual([t0, t0 + 5000]);
    await clock.advance(60_000);
    expect(at.length).toBe(2);
  });

  test("with no requests it still runs every maxInterval", async () => {
    const { clock, at, r } = setup();
    r.start();
    await clock.advance(3600_000 * 2);
    expect(at.length).toBe(2);
  });

  test("stop() ends the schedule", async () => {
    const { clock, at, r } = setup();
    r.start();
    await r.stop();
    r.request();
    await clock.advance(3600_000 * 3);
    expect(at).toEqual([]);
  });
});

describe("BoundedFrequencyRunner timers", () => {
  test("a timer is never set with a negative delay, even when the clock moves between two reads", async () => {
    const clock = new FakeClock();
    const delays: number[] = [];
    const set = clock.setTimeout.bind(clock);
    clock.setTimeout = (fn, ms) => {
      delays.push(ms);
      return set(fn, ms);
    };
    // A real clock ticks between the read that picks the time and the one that sets the timer.
    clock.now = () => clock.t++;
    const r = new BoundedFrequencyRunner({
      minIntervalMs: 1000,
      maxIntervalMs: 3600_000,
      retryIntervalMs: 30_000,
      clock,
      run: async () => true,
    });
    r.start();
    r.request();
    await clock.advance(0);
    r.request();
    await clock.advance(2000);
    expect(delays.length).toBeGreaterThan(1);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    await r.stop();
  });
});
