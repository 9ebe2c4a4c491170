/**
 * `npm run package` (scripts/package.ts): the .deb, inspected with dpkg-deb --info/--contents,
 * extracted, and installed into a throwaway root with dpkg --root (never onto this machine's
 * /usr): the files and modes, the conffiles, a unit that is not enabled, and the unit's
 * command line (as systemd would expand it from /etc/default/kip) accepted by kip. A failed
 * build leaves no staging directory behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBinary } from "../support/binary.ts";
import { removeTempDir, tempDir } from "../support/tempdir.ts";

const ROOT = join(import.meta.dir, "..", "..");
const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
const haveDpkg = spawnSync("dpkg-deb", ["--version"]).status === 0;
if (!haveDpkg && process.env.CI === "true") throw new Error("dpkg-deb is not installed (CI installs it)");
const isRoot = process.getuid?.() === 0;

const run = (argv: string[], input?: string) => {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", input, maxBuffer: 1 << 28 });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
};

/**
 * systemd's view of the unit: Environment= and EnvironmentFile= assignments (later wins), then
 * ExecStart with `${VAR}` as one word and a bare `$VAR` split at whitespace, `%H` the host.
 */
function execStart(unit: string, envFile: string, host: string): string[] {
  const env = new Map<string, string>();
  const assign = (a: string) => {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(a);
    if (m) env.set(m[1], m[2].replace(/^"(.*)"$/, "$1").replace(/%H/g, host));
  };
  const lines = unit.replace(/\\\n\s*/g, " ").split("\n");
  for (const l of lines) {
    const m = /^Environment=(.*)$/.exec(l);
    if (m) for (const a of m[1].match(/"[^"]*"|\S+/g) ?? []) assign(a.replace(/^"(.*)"$/, "$1"));
    if (l.startsWith("EnvironmentFile=")) {
      for (const e of envFile.split("\n")) if (!e.startsWith("#") && e.trim() !== "") assign(e.trim());
    }
  }
  const exec = lines.find((l) => l.startsWith("ExecStart="))?.slice("ExecStart=".length) ?? "";
  return exec
    .split(/\s+/)
    .filter(Boolean)
    .flatMap((w) => {
      const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(w);
      if (whole) return (env.get(whole[1]) ?? "").split(/\s+/).filter(Boolean);
      return [w.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, k) => env.get(k) ?? "")];
    });
}

describe.skipIf(!haveDpkg)("the Debian package", () => {
  const dir = tempDir("kip-deb-test-");
  let deb = "";

  beforeAll(() => {
    const binary = ensureBinary();
    const r = run([
      process.execPath,
      join(ROOT, "scripts", "package.ts"),
      "--binary",
      binary,
      "--out",
      join(dir, "out"),
      "--compression",
      "none",
    ]);
    if (r.code !== 0) throw new Error(`package: ${r.stderr}`);
    deb = r.stdout.trim();
  }, 120_000);

  afterAll(() => removeTempDir(dir));

  test("named kip_<version>_<arch>.deb; control fields; the two conffiles", () => {
    const arch = run(["dpkg", "--print-architecture"]).stdout.trim() || (process.arch === "arm64" ? "arm64" : "amd64");
    expect(deb).toBe(join(dir, "out", `kip_${version}_${arch}.deb`));
    const field = (name: string) => run(["dpkg-deb", "--field", deb, name]).stdout.trim();
    expect(field("Package")).toBe("kip");
    expect(field("Version")).toBe(version);
    expect(field("Architecture")).toBe(arch);
    expect(field("Depends")).toBe("iptables, procps");
    expect(Number(field("Installed-Size"))).toBeGreaterThan(10_000);
    expect(run(["dpkg-deb", "--info", deb, "conffiles"]).stdout).toBe("/etc/default/kip\n/etc/kip/kube-proxy.yaml\n");
    expect(readdirSync(join(dir, "out"))).toEqual([`kip_${version}_${arch}.deb`]); // no temp file left
  });

  test("the contents, owned by root, with Debian's modes", () => {
    const rows = run(["dpkg-deb", "--contents", deb])
      .stdout.trim()
      .split("\n")
      .map((l) => {
        const f = l.split(/\s+/);
        return `${f[0]} ${f[1]} ${f[5]}`;
      });
    expect(rows).toEqual(
      expect.arrayContaining([
        "-rwxr-xr-x root/root ./usr/bin/kip",
        "-rw-r--r-- root/root ./usr/lib/systemd/system/kip.service",
        "-rw-r--r-- root/root ./etc/default/kip",
        "-rw-r--r-- root/root ./etc/kip/kube-proxy.yaml",
        "drwxr-xr-x root/root ./etc/kip/manifests/",
        "-rw-r--r-- root/root ./usr/share/doc/kip/copyright",
        "-rw-r--r-- root/root ./usr/share/doc/kip/examples/web.yaml",
      ]),
    );
    // Nothing enables or starts the unit: no .wants link, no "enable" or "start" in postinst.
    expect(rows.some((r) => r.includes(".wants"))).toBe(false);
    const ctl = join(dir, "control");
    expect(run(["dpkg-deb", "--control", deb, ctl]).code).toBe(0);
    const postinst = readFileSync(join(ctl, "postinst"), "utf8")
      .split("\n")
      .filter((l) => !l.trimStart().startsWith("#"))
      .join("\n");
    expect(postinst).toContain("systemctl daemon-reload");
    expect(postinst).not.toMatch(/systemctl (enable|start)|deb-systemd-invoke/);
  });

  test("extracted: the unit's command line, from /etc/default/kip, is one kip accepts; the example renders", () => {
    const x = join(dir, "x");
    expect(run(["dpkg-deb", "-x", deb, x]).code).toBe(0);
    const kipBin = join(x, "usr", "bin", "kip");
    expect(run([kipBin, "--version"]).stdout.trim()).toBe(version);
    const unit = readFileSync(join(x, "usr/lib/systemd/system/kip.service"), "utf8");
    expect(unit).toContain("EnvironmentFile=-/etc/default/kip");
    expect(unit.split("\n")).toContain("WantedBy=multi-user.target");
    const argv = execStart(unit, readFileSync(join(x, "etc/default/kip"), "utf8"), "node1");
    expect(argv).toEqual([
      "/usr/bin/kip",
      "sync",
      "--manifests",
      "/etc/kip/manifests",
      "--config",
      "/etc/kip/kube-proxy.yaml",
      "--hostname-override",
      "node1",
      "--state-dir",
      "/var/lib/kip",
    ]);
    // The same flags against the extracted tree: accepted (an empty manifests directory, so
    // nothing is probed; --dry-run, so nothing is applied).
    const inTree = argv.slice(1).map((a) => (a.startsWith("/etc/") ? join(x, a) : a));
    const r = run([kipBin, ...inTree, "--once", "--dry-run", "--ip-families", "IPv4"]);
    expect(r.stderr).not.toContain("error");
    expect(r.code).toBe(0);
    // Mode 2, as documented in /etc/default/kip: the kubeconfig flag replaces --manifests.
    const apiserver = readFileSync(join(x, "etc/default/kip"), "utf8").replace(
      /^KIP_SOURCE=.*$/m,
      'KIP_SOURCE="--kubeconfig /etc/kip/kubeconfig"',
    );
    expect(execStart(unit, apiserver, "node1").slice(2, 4)).toEqual(["--kubeconfig", "/etc/kip/kubeconfig"]);
    // The example manifests (Service + probe + EndpointSlice) load cleanly with the shipped config.
    const rendered = run([
      kipBin,
      "render",
      join(x, "usr/share/doc/kip/examples/web.yaml"),
      "--config",
      join(x, "etc/kip/kube-proxy.yaml"),
      "--hostname-override",
      "node1",
    ]);
    expect(rendered.stderr).toBe("");
    expect(rendered.stdout).toContain("--to-destination 192.168.1.13:8080");
  });

  test.skipIf(!isRoot)("dpkg --root: installed into a throwaway root, conffiles kept on remove, gone on purge", () => {
    const root = join(dir, "root");
    for (const d of ["var/lib/dpkg/info", "var/lib/dpkg/updates"]) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, "var/lib/dpkg/status"), "");
    writeFileSync(join(root, "var/lib/dpkg/available"), "");
    // Chrootless: the maintainer scripts run here with DPKG_ROOT set (and do nothing outside it).
    const dpkg = (args: string[]) =>
      run(["dpkg", `--root=${root}`, "--force-script-chrootless", "--force-depends", "--log=/dev/null", ...args]);
    const i = dpkg(["-i", deb]);
    expect(i.code).toBe(0);
    expect(run(["dpkg", `--root=${root}`, "-s", "kip"]).stdout).toContain("Status: install ok installed");
    expect(existsSync(join(root, "usr/bin/kip"))).toBe(true);
    expect(existsSync(join(root, "etc/kip/manifests"))).toBe(true);
    expect(existsSync(join(root, "etc/systemd"))).toBe(false); // not enabled
    // An admin's edit of a conffile survives removal; purge takes it.
    writeFileSync(join(root, "etc/default/kip"), 'KIP_SOURCE="--manifests /srv/kip"\n');
    expect(dpkg(["-r", "kip"]).code).toBe(0);
    expect(existsSync(join(root, "usr/bin/kip"))).toBe(false);
    expect(readFileSync(join(root, "etc/default/kip"), "utf8")).toContain("/srv/kip");
    expect(dpkg(["-P", "kip"]).code).toBe(0);
    expect(existsSync(join(root, "etc/default/kip"))).toBe(false);
  });
});

test("a failing dpkg-deb: exit 1 with its output, and no staging directory or partial .deb left", () => {
  // A stand-in dpkg-deb that answers --version and fails --build after writing part of a file.
  const dir = tempDir("kip-deb-fail-");
  const bin = join(dir, "bin");
  const scratch = join(dir, "tmp");
  for (const d of [bin, scratch]) mkdirSync(d);
  writeFileSync(
    join(bin, "dpkg-deb"),
    '#!/bin/sh\n[ "$1" = --version ] && exit 0\nfor a; do last="$a"; done\necho partial >"$last"\necho "dpkg-deb: error: no" >&2\nexit 2\n',
    { mode: 0o755 },
  );
  const r = spawnSync(
    process.execPath,
    [join(ROOT, "scripts", "package.ts"), "--binary", join(ROOT, "package.json"), "--out", join(dir, "out")],
    { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, TMPDIR: scratch } },
  );
  expect(r.stderr).toBe("package: dpkg-deb --build failed:\ndpkg-deb: error: no\n\n");
  expect(r.status).toBe(1);
  expect(readdirSync(scratch)).toEqual([]);
  expect(readdirSync(join(dir, "out"))).toEqual([]);
});
