/**
 * deploy/: the DaemonSet runs unprivileged and hardened as shipped, its ClusterRole grants
 * only what kip uses, the systemd unit is sandboxed and watched; and kip runs with /proc/sys
 * read-only (as in an unprivileged container) when route_localnet is already 1.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { ensureBinary } from "../support/binary.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { tempDir } from "../support/tempdir.ts";

const ROOT = join(import.meta.dir, "..", "..");
const docs = () =>
  parseAllDocuments(readFileSync(join(ROOT, "deploy", "daemonset.yaml"), "utf8")).map((d) => d.toJS()) as any[];

describe("deploy/daemonset.yaml", () => {
  test("the kip container: no privilege, all capabilities dropped but NET_ADMIN/NET_RAW, read-only root, seccomp, a memory limit", () => {
    const ds = docs().find((d) => d.kind === "DaemonSet");
    const c = ds.spec.template.spec.containers.find((x: any) => x.name === "kip");
    expect(c.securityContext).toMatchObject({
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["NET_ADMIN", "NET_RAW"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(c.resources.limits.memory).toBeDefined();
    // The only privileged step is the init container's one sysctl, which then exits.
    const init = ds.spec.template.spec.initContainers;
    expect(init.map((x: any) => x.command)).toEqual([["sysctl", "-w", "net.ipv4.conf.all.route_localnet=1"]]);
  });

  test("resources come from measurements: the request covers the steady state under churn, the limit a later full sync", () => {
    const ds = docs().find((d) => d.kind === "DaemonSet");
    const c = ds.spec.template.spec.containers.find((x: any) => x.name === "kip");
    const bytes = (q: string) => {
      const m = /^(\d+)(Mi|Gi)$/.exec(q);
      if (!m) throw new Error(`unexpected quantity ${q}`);
      return Number(m[1]) * (m[2] === "Gi" ? 2 ** 30 : 2 ** 20);
    };
    // README, "kip sync: measured" (10k × 10, nft): at most 402 MB over one-endpoint changes;
    // 449–501 MB at the first sync or a later full one.
    expect(bytes(c.resources.requests.memory)).toBeGreaterThanOrEqual(402e6);
    expect(bytes(c.resources.limits.memory)).toBeGreaterThanOrEqual(2 * 501e6);
    const text = readFileSync(join(ROOT, "deploy", "daemonset.yaml"), "utf8");
    expect(text).toContain("# Measured at 10,000 Services × 10 endpoints on nft");
  });

  test("RBAC: list and watch of Services, Nodes and EndpointSlices, nothing else (no Events)", () => {
    const role = docs().find((d) => d.kind === "ClusterRole");
    const grants = role.rules.flatMap((r: any) =>
      r.apiGroups.flatMap((g: string) =>
        r.resources.flatMap((res: string) => r.verbs.map((v: string) => `${g}/${res}:${v}`)),
      ),
    );
    expect(grants.sort()).toEqual(
      [
        "/nodes:list",
        "/nodes:watch",
        "/services:list",
        "/services:watch",
        "discovery.k8s.io/endpointslices:list",
        "discovery.k8s.io/endpointslices:watch",
      ].sort(),
    );
  });
});

describe("deploy/kip.service", () => {
  test("sandboxed, memory-capped, umask 0077, and watched (Type=notify + WatchdogSec)", () => {
    const unit = readFileSync(join(ROOT, "deploy", "kip.service"), "utf8");
    for (const line of [
      "Type=notify",
      "NotifyAccess=all",
      "WatchdogSec=60s",
      "MemoryMax=1G",
      "UMask=0077",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
      "ProtectKernelTunables=true",
      "ProtectKernelModules=true",
      "ProtectKernelLogs=true",
      "NoNewPrivileges=true",
    ])
      expect(unit.split("\n")).toContain(line);
  });
});

const skip = skipRealIptables() || spawnSync("which", ["unshare"]).status !== 0;

/** `kip sync --once` in `ns` with /proc/sys mounted read-only (a private mount namespace). */
function onceReadOnlyProcSys(ns: string, manifests: string, state: string) {
  const script = `
    const { spawnSync } = require("node:child_process");
    const m = spawnSync("mount", ["--bind", "-o", "ro", "/proc/sys", "/proc/sys"], { encoding: "utf8" });
    if (m.status !== 0) { console.log(JSON.stringify({ code: -1, stderr: "mount: " + m.stderr })); process.exit(0); }
    const r = spawnSync("ip", ["netns", "exec", ${JSON.stringify(ns)}, ${JSON.stringify(ensureBinary())}, "sync", "--once",
      "--manifests", ${JSON.stringify(manifests)}, "--hostname-override", "node1", "--ip-families", "IPv4",
      "--state-dir", ${JSON.stringify(state)}], { encoding: "utf8" });
    console.log(JSON.stringify({ code: r.status, stderr: r.stderr }));`;
  const r = spawnSync("unshare", ["--mount", "--propagation", "private", process.execPath, "-e", script], {
    encoding: "utf8",
  });
  return JSON.parse(r.stdout) as { code: number; stderr: string };
}

describe.skipIf(skip)("route_localnet with /proc/sys read-only", () => {
  test("already 1: kip does not write it and syncs; 0: a clear message naming the node prerequisite", async () => {
    const dir = tempDir("kip-ro-");
    cpSync(join(ROOT, "examples", "seed"), join(dir, "m"), { recursive: true });
    await withNetns((ns, run) => {
      expect(run(["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"]).code).toBe(0);
      const ok = onceReadOnlyProcSys(ns, join(dir, "m"), join(dir, "state"));
      expect(ok.stderr).toContain("synced family=IPv4 type=full ok=true");
      expect(ok.code).toBe(0);
      expect(run(["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=0"]).code).toBe(0);
      const bad = onceReadOnlyProcSys(ns, join(dir, "m"), join(dir, "state"));
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain("set it on the node (sysctl -w net.ipv4.conf.all.route_localnet=1)");
    });
  }, 30_000);
});
