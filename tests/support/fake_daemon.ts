/**
 * A Daemon over the fake iptables runner and a fake clock, for one IPv4 node "node1": the
 * setup the daemon, hardening and probing tests share. Override what a test is about.
 */
import { FakeRunner } from "../../lib/iptables/fake_runner.ts";
import { defaultConfig, type ProxyConfig } from "../../lib/proxy/options.ts";
import { ChangeTracker } from "../../lib/proxy/tracker.ts";
import type { Source } from "../../lib/sources/source.ts";
import { Daemon, type DaemonOptions } from "../../lib/sync/daemon.ts";
import type { Logger } from "../../lib/sync/log.ts";
import { Proxier, type SyncOutcome } from "../../lib/sync/proxier.ts";
import type { FakeClock } from "./clock.ts";

export interface FakeDaemonOptions {
  source: Source;
  clock: FakeClock;
  log: Logger;
  runner?: FakeRunner;
  /** Merged over the defaults and hostname "node1". */
  config?: Partial<ProxyConfig>;
  /** Merged over the daemon options (canary off, 1 s / 30 s periods). */
  daemon?: Partial<DaemonOptions>;
}

/** A started daemon; `outcomes` collects every sync's outcomes. */
export async function startFakeDaemon(o: FakeDaemonOptions) {
  const runner = o.runner ?? new FakeRunner("IPv4", "nft");
  const outcomes: SyncOutcome[][] = [];
  const proxier = new Proxier({
    family: "IPv4",
    runner,
    config: { ...defaultConfig(), hostname: "node1", ...o.config },
    syncPeriodMs: 30_000,
    now: () => o.clock.now(),
  });
  const daemon = new Daemon({
    source: o.source,
    tracker: new ChangeTracker("node1"),
    proxiers: [proxier],
    clock: o.clock,
    minSyncPeriodMs: 1000,
    syncPeriodMs: 30_000,
    log: o.log,
    canary: false,
    onSync: (out) => outcomes.push(out),
    ...o.daemon,
  });
  await daemon.start();
  return { daemon, proxier, runner, outcomes };
}
