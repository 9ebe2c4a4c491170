/**
 * In `kip sync --manifests` kip is the only API server between a file and the host: the
 * cluster's node-port range and service range are enforced, so a manifest cannot put the
 * host's port 22 behind a DNAT of its choosing, nor a cluster IP on the metadata address.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { kip } from "../support/binary.ts";
import { exec } from "../support/netns.ts";
import { tempDir } from "../support/tempdir.ts";

const GOOD = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 10.96.0.80
  ports: [{port: 80, nodePort: 30080}]
`;

function dir(files: Record<string, string>): string {
  const d = tempDir("kip-policy-");
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

const sync = (d: string, extra: string[] = []) =>
  kip([
    "sync",
    "--manifests",
    d,
    "--once",
    "--dry-run",
    "--hostname-override",
    "n1",
    "--ip-families",
    "IPv4",
    ...extra,
  ]);

// --dry-run still asks iptables for its version: needs the binaries on PATH (a non-root
// user's PATH may not have /usr/sbin), not root.
describe.skipIf(exec(["which", "iptables"]).code !== 0)("sync --manifests enforces the cluster's ranges", () => {
  test("nodePort 22 is refused; the other files still sync", () => {
    const d = dir({
      "ok.yaml": GOOD,
      "ssh.yaml": GOOD.replace("name: web", "name: ssh")
        .replace("10.96.0.80", "10.96.0.22")
        .replace("port: 80, nodePort: 30080", "port: 22, nodePort: 22"),
    });
    const r = sync(d);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("--dport 30080");
    expect(r.stdout).not.toMatch(/--dport 22\b/);
    expect(r.stderr).toContain(
      `${join(d, "ssh.yaml")}:7: Service default/ssh: spec.ports[0].nodePort: 22 is outside the node-port range 30000-32767 (--service-node-port-range)`,
    );
    // A cluster whose range includes 22 may have it.
    const wide = sync(d, ["--service-node-port-range", "1-32767"]);
    expect(wide.stdout).toMatch(/--dport 22\b/);
  });

  test("a cluster IP on the metadata address, or outside --service-cluster-ip-range, is refused", () => {
    const d = dir({
      "ok.yaml": GOOD,
      "meta.yaml": GOOD.replace("name: web", "name: meta")
        .replace("10.96.0.80", "169.254.169.254")
        .replace("30080", "30081"),
      "far.yaml": GOOD.replace("name: web", "name: far").replace("10.96.0.80", "192.0.2.10").replace("30080", "30082"),
    });
    const r = sync(d, ["--service-cluster-ip-range", "10.96.0.0/12"]);
    expect(r.stdout).not.toContain("169.254.169.254");
    expect(r.stdout).not.toContain("192.0.2.10");
    expect(r.stdout).toContain("10.96.0.80");
    expect(r.stderr).toContain(
      'spec.clusterIP: "169.254.169.254" may not be loopback, link-local, multicast or unspecified',
    );
    expect(r.stderr).toContain('spec.clusterIP: "192.0.2.10" is outside the service range 10.96.0.0/12');
  });

  test("-n gives objects without a namespace that namespace", () => {
    const r = sync(dir({ "ok.yaml": GOOD }), ["-n", "edge"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('"edge/web has no endpoints"');
  });
});
