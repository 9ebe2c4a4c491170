/**
 * The compiled binary as a user runs it: argv in; stdout, stderr and exit code out, together.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { VERSION } from "../../lib/version.ts";
import { ensureBinary, kip } from "../support/binary.ts";
import { tempDir } from "../support/tempdir.ts";

const SEED = ["render", "examples/seed", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];

function tmp(files: Record<string, string>): string {
  const dir = tempDir("kip-cli-");
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe("kip render (compiled)", () => {
  test("renders the seed example with the article's chain names", () => {
    const r = kip(SEED);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(readFileSync("tests/fixtures/seed/expected.txt", "utf8"));
    for (const name of ["KUBE-SVC-HL5LMXD5JFHQZ6LN", "KUBE-SEP-U46YXJIMXXUGWXXH", "KUBE-SVC-XKWTKZBTDCMU3FHC"])
      expect(r.stdout).toContain(`:${name} - [0:0]`);
    expect(r.stdout).toContain(
      "-A KUBE-SEP-U46YXJIMXXUGWXXH -m comment --comment default/nginx-svc -m tcp -p tcp -j DNAT --to-destination 10.244.1.14:80",
    );
  });

  test("reads stdin with -", () => {
    const text =
      readFileSync("examples/seed/services.yaml", "utf8") +
      "---\n" +
      readFileSync("examples/seed/endpointslices.yaml", "utf8");
    const r = kip(["render", "-", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"], { input: text });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("KUBE-SVC-HL5LMXD5JFHQZ6LN");
  });

  test("bad manifests: every error with file:line and field, exit 2, nothing on stdout", () => {
    const dir = tmp({
      "bad.yaml": [
        "apiVersion: v1",
        "kind: Service",
        "metadata: {name: web, namespace: default}",
        "spec:",
        "  clusterIP: 10.0.0.1",
        "  externalIPs: ['1.2.3.4 -j ACCEPT']",
        "  ports:",
        "    - port: 70000",
        "      protocol: HTTP",
      ].join("\n"),
    });
    const r = kip(["render", dir, "--hostname-override", "n1"]);
    expect(r.stdout).toBe("");
    expect(r.code).toBe(2);
    const file = join(dir, "bad.yaml");
    expect(r.stderr).toContain(
      `error: ${file}:6: Service default/web: spec.externalIPs[0]: "1.2.3.4 -j ACCEPT" is not a valid IP address`,
    );
    expect(r.stderr).toContain(
      `error: ${file}:8: Service default/web: spec.ports[0].port: 70000 is out of range (1-65535)`,
    );
    expect(r.stderr).toContain(
      `error: ${file}:9: Service default/web: spec.ports[0].protocol: "HTTP" is not one of TCP, UDP, SCTP`,
    );
    expect(r.stderr).toContain("kip: 3 errors in the manifests; nothing rendered");
  });

  test("a JSON file with a duplicate key names its line", () => {
    const dir = tmp({ "x.json": '{\n  "apiVersion": "v1",\n  "kind": "Service",\n  "kind": "Node"\n}\n' });
    const r = kip(["render", dir]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${join(dir, "x.json")}:4: duplicate key "kind"`);
  });

  test("a missing path is a usage error", () => {
    const r = kip(["render", "does/not/exist"]);
    expect(r).toEqual({
      code: 2,
      stdout: "",
      stderr: 'kip: Cannot read "does/not/exist": no such file or directory\n',
    });
  });

  test("an unknown flag is a usage error with a hint", () => {
    const r = kip(["render", "examples/seed", "--no-such-flag"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("unknown option '--no-such-flag'");
  });

  test("several unreadable paths: every line is kip's", () => {
    expect(kip(["render", "no/a", "no/b"])).toEqual({
      code: 2,
      stdout: "",
      stderr:
        'kip: Cannot read "no/a": no such file or directory\nkip: Cannot read "no/b": no such file or directory\n',
    });
  });

  test("a mistyped flag (-0 for -o) is an unknown option, not a path", () => {
    expect(kip(["render", "examples/seed", "-0", "json"])).toEqual({
      code: 2,
      stdout: "",
      stderr: 'kip: unknown option "-0" (did you mean -o?)\n',
    });
    // A file whose name starts with '-' is still a path.
    const dir = tmp({ "-seed.yaml": readFileSync("examples/seed/services.yaml", "utf8") });
    const r = spawnSync(ensureBinary(), ["render", "--hostname-override", "node1", "--", "-seed.yaml"], {
      cwd: dir,
      encoding: "utf8",
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("KUBE-SERVICES");
  });

  test("a name that is not valid says what a valid one is", () => {
    const dir = tmp({
      "s.yaml":
        "apiVersion: v1\nkind: Service\nmetadata: {name: Web_App}\nspec: {clusterIP: 10.96.0.5, ports: [{port: 80}]}\n",
    });
    const r = kip(["render", dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `metadata.name: "Web_App" is not a valid name: at most 63 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (e.g. web-app)\n`,
    );
  });

  test("a flag value that could inject an option is refused", () => {
    const r = kip([...SEED, "--pod-bridge-interface", "br0 -j ACCEPT", "--detect-local-mode", "BridgeInterface"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe('kip: --pod-bridge-interface: interface name "br0 -j ACCEPT" is not valid\n');
  });

  test("kube-proxy's --flag=false form equals --no-flag", () => {
    const a = kip([...SEED, "--random-fully=false"]);
    const b = kip([...SEED, "--no-random-fully"]);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).not.toContain("--random-fully");
    const bad = kip([...SEED, "--masquerade-all=maybe"]);
    expect(bad).toEqual({ code: 2, stdout: "", stderr: 'kip: --masquerade-all takes true or false, not "maybe"\n' });
  });

  test("--config is read and flags override it", () => {
    const dir = tmp({
      "kp.yaml": [
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
        "kind: KubeProxyConfiguration",
        "hostnameOverride: node1",
        "clusterCIDR: 10.244.0.0/16",
        "iptables: {masqueradeBit: 0, masqueradeAll: true}",
      ].join("\n"),
    });
    const cfg = join(dir, "kp.yaml");
    const r = kip(["render", "examples/seed", "--config", cfg]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("-A KUBE-MARK-MASQ -j MARK --or-mark 0x00000001");
    expect(r.stdout).toMatch(/-d 10\.97\.54\.248 --dport 80 -j KUBE-MARK-MASQ/);
    const o = kip([
      "render",
      "examples/seed",
      "--config",
      cfg,
      "--iptables-masquerade-bit",
      "14",
      "--masquerade-all=false",
    ]);
    expect(o.stdout).toContain("--or-mark 0x00004000");
    expect(o.stdout).toContain("! -s 10.244.0.0/16 -j KUBE-MARK-MASQ");
  });

  test("a bad --config names file:line", () => {
    const dir = tmp({
      "kp.yaml":
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n  masqueradeBit: 40\n",
    });
    const r = kip(["render", "examples/seed", "--config", join(dir, "kp.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`kip: ${join(dir, "kp.yaml")}:4: iptables.masqueradeBit: 40 is out of range (0-31)\n`);
  });

  test("-o json gives tables, chains, rules and services", () => {
    const r = kip([...SEED, "-o", "json"]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.family).toBe("IPv4");
    const svc = j.tables.nat.chains.find((c: { name: string }) => c.name === "KUBE-SVC-HL5LMXD5JFHQZ6LN");
    expect(svc.rules).toHaveLength(4);
    expect(svc.rules[1]).toContain("default/nginx-svc -> 10.244.1.14:80");
    const nginx = j.services.find((s: { servicePortName: string }) => s.servicePortName === "default/nginx-svc");
    expect(nginx.endpoints.map((e: { address: string }) => e.address)).toEqual([
      "10.244.1.14:80",
      "10.244.1.16:80",
      "10.244.1.17:80",
    ]);
    expect(j.summary).toEqual({ services: 4, servicePorts: 6, endpoints: 13, chains: 30, rules: 63 });
  });

  test("--simulate with --strict fails on warnings, without it renders (--simulate-endpoints: the older name)", () => {
    const dir = tmp({
      "svc.yaml":
        "apiVersion: v1\nkind: Service\nmetadata: {name: lonely}\nspec:\n  clusterIP: 10.96.0.50\n  selector: {app: nobody}\n  ports: [{port: 80}]\n",
    });
    const args = ["render", "examples/ci-app/k8s", dir, "--simulate", "-n", "shop", "--cluster-cidr", "10.244.0.0/16"];
    const loose = kip(args);
    expect(loose.code).toBe(0);
    expect(loose.stderr).toContain(
      `warning: ${join(dir, "svc.yaml")}:1: Service shop/lonely: selector matches no workload in the manifests`,
    );
    expect(loose.stdout).toContain("shop/frontend:http -> 10.244.");
    const older = kip(args.map((a) => (a === "--simulate" ? "--simulate-endpoints" : a)));
    expect(older.stdout).toBe(loose.stdout);
    const strict = kip([...args, "--strict"]);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toBe("");
    expect(strict.stderr).toContain("1 warning under --strict; nothing rendered");
  });

  test("--version, help, and render --help with examples", () => {
    expect(kip(["--version"])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: "" });
    const help = kip(["help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("render");
    const rh = kip(["render", "--help"]);
    expect(rh.code).toBe(0);
    expect(rh.stdout).toContain("kip render examples/seed --hostname-override node1");
    expect(rh.stdout).toContain("Exit status");
    expect(kip(["help", "render"]).stdout).toBe(rh.stdout);
    expect(kip(["help", "nosuch"])).toEqual({
      code: 2,
      stdout: "",
      stderr: 'kip: no command "nosuch": the commands are render, diff, cleanup, sync, explain\n',
    });
  });

  test("the version matches package.json", () => {
    expect(JSON.parse(readFileSync("package.json", "utf8")).version).toBe(VERSION);
  });
});

describe("large output through a pipe", () => {
  test("every byte arrives (no exit before stdout is drained)", async () => {
    const { syntheticCluster } = await import("../../scripts/bench.ts");
    const input = syntheticCluster(2000);
    const inProcess = await (await import("../support/io.ts")).runKip(
      ["render", "-", "--hostname-override", "node-0"],
      {
        stdin: input,
      },
    );
    expect(inProcess.stdout.length).toBeGreaterThan(4_000_000);
    const r = kip(["render", "-", "--hostname-override", "node-0"], { input });
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(inProcess.stdout.length);
    expect(r.stdout).toBe(inProcess.stdout);
  });
});
