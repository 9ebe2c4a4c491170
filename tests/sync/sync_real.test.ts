/**
 * `kip sync` against real iptables in a namespace, both backends: the live rules converge to
 * exactly what `kip render` gives for the manifests (kip diff exit 0) after every change of a
 * watched directory; a malformed file keeps the previous rules; a third party flushing the
 * nat table is repaired; a held xtables lock fails a sync that is then retried.
 */
import { describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { JUMP_RULES } from "../../lib/proxy/jumps.ts";
import { ensureBinary } from "../support/binary.ts";
import { tool } from "../support/kube_proxy.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { diffIn, eventually, FAST, LOOPBACK_PORTS, startSync, stopAfterEach } from "../support/sync_proc.ts";
import { tempDir } from "../support/tempdir.ts";

const skip = skipRealIptables();
const NODE = ["--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];

const procs = stopAfterEach();

function manifestsDir(): string {
  const dir = tempDir("kip-sync-");
  cpSync("examples/seed", join(dir, "m"), { recursive: true });
  return dir;
}

/** The seed's nginx slice with one more endpoint, or one fewer. */
function editSlices(dir: string, edit: (text: string) => string): void {
  const p = join(dir, "m", "endpointslices.yaml");
  writeFileSync(p, edit(readFileSync(p, "utf8")));
}

describe.skipIf(skip)("kip sync against real iptables", () => {
  for (const backend of ["nft", "legacy"] as const) {
    const flags = (dir: string) => [
      ...NODE,
      "--backend",
      backend,
      "--ip-families",
      "IPv4",
      "--state-dir",
      join(dir, "state"),
    ];

    test(`${backend}: --once makes one full sync and exits 0; the live rules equal the render`, async () => {
      const dir = manifestsDir();
      await withNetns((_ns, run) => {
        const r = run([ensureBinary(), "sync", "--once", "--manifests", join(dir, "m"), ...flags(dir)]);
        expect(r.code).toBe(0);
        expect(r.stderr).toMatch(/INFO synced family=IPv4 type=full ok=true/);
        const d = diffIn(run, [join(dir, "m"), ...NODE, "--ip-family", "IPv4", "--backend", backend]);
        expect(d.stdout).toBe("kip diff: IPv4: no drift\n");
        expect(readFileSync(join(dir, "state", "last-restore-IPv4.txt"), "utf8")).toContain("*nat\n");
        const dry = run([ensureBinary(), "sync", "--once", "--dry-run", "--manifests", join(dir, "m"), ...flags(dir)]);
        expect(dry.code).toBe(0);
        // Exactly what the real sync applied: every jump rule it ensured, then its restore input.
        expect(dry.stderr).toMatch(/INFO dry run family=IPv4 type=full ok=true/);
        expect(dry.stderr).not.toMatch(/INFO synced/);
        expect(dry.stdout.startsWith("# IPv4: jump rules")).toBe(true);
        const save = run([`iptables-${backend}-save`]).stdout;
        for (const j of JUMP_RULES) {
          expect(dry.stdout).toContain(`# iptables -t ${j.table} -I ${j.from} `);
          expect(save).toContain(`-A ${j.from} `);
        }
        // The state file is the applied input under a header of `# ` lines.
        const applied = readFileSync(join(dir, "state", "last-restore-IPv4.txt"), "utf8").replace(/^(# .*\n)+/, "");
        expect(dry.stdout.includes(`# IPv4: iptables-restore --noflush --counters\n${applied}`)).toBe(true);
      });
    }, 30_000);

    test(`${backend}: a running sync follows every change of the directory`, async () => {
      const dir = manifestsDir();
      await withNetns(async (ns, run) => {
        const p = startSync(ns, ["--manifests", join(dir, "m"), ...flags(dir), ...FAST, ...LOOPBACK_PORTS]);
        procs.push(p);
        await p.waitForLog(/synced family=IPv4 type=full ok=true/);
        const converged = () =>
          diffIn(run, [join(dir, "m"), ...NODE, "--ip-family", "IPv4", "--backend", backend]).code === 0;
        expect(converged()).toBe(true);

        // Add an endpoint: a partial sync.
        editSlices(dir, (t) =>
          t.replace(
            /^(\s*- \{ ?addresses: \[10\.244\.1\.17\].*)$/m,
            "$1\n  - {addresses: [10.244.1.18], conditions: {ready: true}, nodeName: node1}",
          ),
        );
        await p.waitForLog(/synced family=IPv4 type=partial ok=true/);
        await eventually("the new endpoint to be live", converged);
        expect(run([tool("IPv4", backend, "-save"), "-t", "nat"]).stdout).toContain("10.244.1.18:80");

        // Delete a Service: its chains go.
        const services = join(dir, "m", "services.yaml");
        const text = readFileSync(services, "utf8");
        writeFileSync(
          services,
          text.slice(0, text.indexOf("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: kube-dns")),
        );
        await eventually("kube-dns to be gone", converged);
        expect(run([tool("IPv4", backend, "-save"), "-t", "nat"]).stdout).not.toContain("kube-dns");

        // A malformed file: reported, and its previous content (and every rule) kept.
        const before = run([tool("IPv4", backend, "-save"), "-t", "nat"]).stdout.replace(/^#.*\n/gm, "");
        writeFileSync(services, "apiVersion: v1\nkind: Service\nmetadata: {name: broken\nspec: [\n");
        await p.waitForLog(/services\.yaml:\d+: invalid YAML.*keeping the file's previous content/);
        expect(run([tool("IPv4", backend, "-save"), "-t", "nat"]).stdout.replace(/^#.*\n/gm, "")).toBe(before);

        // A third party flushes and deletes the nat table's chains: the canary sees it.
        writeFileSync(services, text);
        await eventually("kube-dns to be back", converged);
        expect(run([tool("IPv4", backend), "-t", "nat", "-F"]).code).toBe(0);
        expect(run([tool("IPv4", backend), "-t", "nat", "-X"]).code).toBe(0);
        expect(converged()).toBe(false);
        await p.waitForLog(/iptables flush detected/);
        await eventually("the flushed rules to be repaired", converged);

        expect(await p.stop()).toBe(0);
        // SIGTERM leaves the rules in place, as kube-proxy does.
        expect(converged()).toBe(true);
        expect(p.lines.join("\n")).toMatch(/SIGTERM: stopping; the rules stay in place/);
      });
    }, 60_000);
  }

  test("legacy: a held xtables lock fails a sync, which is retried as a full sync once it is free", async () => {
    const dir = manifestsDir();
    await withNetns(async (ns, run) => {
      const p = startSync(ns, [
        "--manifests",
        join(dir, "m"),
        ...NODE,
        "--backend",
        "legacy",
        "--ip-families",
        "IPv4",
        ...FAST,
        ...LOOPBACK_PORTS,
        "--state-dir",
        join(dir, "state"),
      ]);
      procs.push(p);
      await p.waitForLog(/synced family=IPv4 type=full ok=true/);
      const holder = spawn("flock", ["/run/xtables.lock", "cat"], { stdio: ["pipe", "ignore", "ignore"] });
      try {
        await eventually(
          "the lock holder to take the lock",
          () => run(["flock", "-n", "/run/xtables.lock", "true"]).code !== 0,
        );
        editSlices(dir, (t) => t.replace("10.244.1.17", "10.244.1.19"));
        await p.waitForLog(/sync failed; rules left as they were, retrying as a full sync/, 20_000);
        expect(readFileSync(join(dir, "state", "last-failed-restore-IPv4.txt"), "utf8")).toContain("# error: ");
      } finally {
        holder.stdin?.end();
        await new Promise((r) => holder.on("exit", r));
      }
      const failedAt = p.lines.findIndex((l) => /sync failed/.test(l));
      await eventually(
        "a full sync after the failure",
        () => p.lines.slice(failedAt).some((l) => /type=full ok=true/.test(l)),
        20_000,
      );
      expect(diffIn(run, [join(dir, "m"), ...NODE, "--ip-family", "IPv4", "--backend", "legacy"]).code).toBe(0);
    });
  }, 60_000);
});
