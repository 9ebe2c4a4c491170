/**
 * systemd notify: READY=1 at start, WATCHDOG=1 every half WatchdogSec while healthy, nothing
 * without NOTIFY_SOCKET; each message is one `systemd-notify` argv, never a shell line.
 */
import { expect, test } from "bun:test";
import { startSystemdNotify } from "../../lib/sync/notify.ts";
import { eventually } from "../support/sync_proc.ts";

function fake() {
  const calls: string[][] = [];
  const run = async (argv: string[]) => {
    calls.push(argv);
    return { code: 0, stderr: "" };
  };
  return { calls, run };
}

test("no NOTIFY_SOCKET: nothing is sent", () => {
  const f = fake();
  expect(
    startSystemdNotify(
      {},
      () => true,
      () => {},
      f.run,
    ),
  ).toBeUndefined();
  expect(f.calls).toEqual([]);
});

test("READY=1, then WATCHDOG=1 while healthy; none while not", async () => {
  const f = fake();
  let healthy = true;
  const n = startSystemdNotify(
    { NOTIFY_SOCKET: "/run/systemd/notify", WATCHDOG_USEC: "200000" },
    () => healthy,
    () => {},
    f.run,
  );
  expect(f.calls[0]).toEqual(["systemd-notify", "READY=1"]);
  await eventually("two pings", () => f.calls.filter((c) => c[1] === "WATCHDOG=1").length >= 2, 3000);
  healthy = false;
  const pings = f.calls.length;
  await new Promise((r) => setTimeout(r, 350)); // three periods of 100 ms: no ping may come
  expect(f.calls.length).toBe(pings);
  n?.stop();
});

test("WATCHDOG_PID naming another process: ready, but no pings", async () => {
  const f = fake();
  const n = startSystemdNotify(
    { NOTIFY_SOCKET: "/x", WATCHDOG_USEC: "200000", WATCHDOG_PID: String(process.pid + 1) },
    () => true,
    () => {},
    f.run,
  );
  await new Promise((r) => setTimeout(r, 250));
  expect(f.calls).toEqual([["systemd-notify", "READY=1"]]);
  n?.stop();
});

test("systemd-notify missing: one warning, no throw", async () => {
  const warnings: string[] = [];
  const n = startSystemdNotify(
    { NOTIFY_SOCKET: "/x", WATCHDOG_USEC: "200000" },
    () => true,
    (m) => warnings.push(m),
    async () => {
      throw new Error("systemd-notify is not installed (or not on PATH)");
    },
  );
  await eventually("a warning", () => warnings.length > 0, 2000);
  await new Promise((r) => setTimeout(r, 250));
  expect(warnings).toHaveLength(1);
  n?.stop();
});
