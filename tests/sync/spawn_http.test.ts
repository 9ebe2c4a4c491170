/**
 * Finding 3 of the review: a failed process start killed the daemon (exec_runner attached its
 * error handler after using the child's streams), and idle connections to the HTTP servers
 * were unbounded, so 1,500 of them exhausted file descriptors and the next iptables spawn
 * failed. Now a spawn failure is a rejected promise (a failed, retried sync), and every server
 * caps its connections and closes idle ones.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { HealthState, healthzServer, listen } from "../../lib/sync/http.ts";
import { GOOD } from "../support/hostile.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { eventually, FAST, LOOPBACK_PORTS, startSync, stopAfterEach } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";

const EXEC_RUNNER = join(import.meta.dir, "..", "..", "lib", "iptables", "exec_runner.ts");

/** A script that opens idle connections to `addr` and holds them until its stdin closes. */
const flood = (addr: string, n: number) => `
const net = require("node:net");
const [host, port] = ${JSON.stringify(addr)}.split(":");
const socks = [];
let open = 0;
for (let i = 0; i < ${n}; i++) {
  const s = net.connect(Number(port), host);
  s.on("connect", () => open++);
  s.on("error", () => {});
  socks.push(s);
}
setTimeout(() => console.log("held " + open), 1000);
process.stdin.on("data", () => {});
process.stdin.on("end", () => { for (const s of socks) s.destroy(); process.exit(0); });
`;

describe("process starts", () => {
  test("out of file descriptors (EMFILE): execFile rejects, the process lives on", () => {
    const script = `
      const { openSync } = require("node:fs");
      const { execFile } = await import(${JSON.stringify(EXEC_RUNNER)});
      try { for (;;) openSync("/dev/null", "r"); } catch {}
      try { const r = await execFile(["true"]); console.log("resolved " + r.code); }
      catch (e) { console.log("rejected: " + e.message); }
      console.log("alive");`;
    const r = spawnSync("prlimit", ["--nofile=64:64", process.execPath, "-e", script], { encoding: "utf8" });
    expect(r.stderr).not.toContain("EMFILE");
    expect(r.stdout).toMatch(/^rejected: Cannot run true: .*\nalive\n$/);
    expect(r.status).toBe(0);
  });

  test("a program that is not there: IptablesUnavailable, as before", async () => {
    const { execFile } = await import("../../lib/iptables/exec_runner.ts");
    await expect(execFile(["/nonexistent/iptables-restore"])).rejects.toThrow(/is not installed/);
  });
});

describe("HTTP server limits", () => {
  test("connections over the cap are closed at once; idle ones after the idle timeout", async () => {
    const health = new HealthState(["IPv4"], 60_000, () => Date.now());
    const server = healthzServer(health, undefined, () => Date.now(), { maxConnections: 5, idleTimeoutMs: 300 });
    const addr = await listen(server, "127.0.0.1:0");
    const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
    const closedAt: number[] = [];
    const t0 = Date.now();
    const socks: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = connect(port, host);
      s.on("error", () => {});
      s.on("close", () => closedAt.push(Date.now() - t0));
      socks.push(s);
    }
    await eventually("15 connections over the cap closed", () => closedAt.length >= 15, 5000);
    await eventually("the 5 idle ones closed by the server", () => closedAt.length === 20, 5000);
    expect(Math.max(...closedAt)).toBeGreaterThanOrEqual(250);
    const r = await fetch(`http://${addr}/livez`);
    expect(r.status).toBe(200);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});

const skip = skipRealIptables();
const procs = stopAfterEach();

describe.skipIf(skip)("kip sync under a connection flood", () => {
  test("600 idle connections with 256 file descriptors: syncs go on, the daemon lives", async () => {
    const dir = tempDir("kip-flood-");
    writeFileSync(join(dir, "web.yaml"), GOOD);
    await withNetns(async (ns, run) => {
      expect(run(["ip", "link", "set", "lo", "up"]).code).toBe(0);
      const p = startSync(
        ns,
        [
          "--manifests",
          dir,
          "--hostname-override",
          "node1",
          "--ip-families",
          "IPv4",
          ...FAST,
          ...LOOPBACK_PORTS,
          "--state-dir",
          join(dir, "state"),
        ],
        { wrap: ["prlimit", "--nofile=256:256"] },
      );
      procs.push(p);
      const healthz = /healthz=(\S+)/.exec(await p.waitForLog(/serving healthz=\S+/))?.[1] ?? "";
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
      const holder = Bun.spawn(["ip", "netns", "exec", ns, process.execPath, "-e", flood(healthz, 600)], {
        stdin: "pipe",
        stdout: "pipe",
      });
      const reader = holder.stdout.getReader();
      const held = new TextDecoder().decode((await reader.read()).value);
      expect(held).toMatch(/^held \d+/);
      // A change now needs iptables-save and iptables-restore: new processes, new pipes.
      const before = p.lines.length;
      writeFileSync(join(dir, "web.yaml"), GOOD.replace("10.244.1.5", "10.244.1.6"));
      await eventually(
        "a sync after the change",
        () => p.lines.slice(before).some((l) => /synced family=IPv4 type=\w+ ok=true/.test(l)),
        20_000,
      );
      expect(p.child.exitCode).toBeNull();
      holder.stdin.end();
      await holder.exited;
      const r = run([
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        "-w",
        "%{http_code}",
        `http://${healthz}/livez`,
      ]);
      expect(r.stdout).toBe("200");
      expect(await p.stop()).toBe(0);
    });
  }, 60_000);
});
