/**
 * `npm run package`: a Debian package of kip, built with Debian's own `dpkg-deb`.
 *
 *   bun scripts/package.ts [--binary dist/kip] [--out dist] [--compression gzip|xz|none]
 *                                                           → <out>/kip_<version>_<arch>.deb
 *
 * gzip by default: the executable is ~120 MB, and xz (Debian's default) takes ~55 s for it
 * here against ~9 s for gzip, for 42 MB instead of 55 MB. A release can ask for xz.
 *
 * What it installs (packaging/ holds the sources):
 *   /usr/bin/kip                           the executable (npm run build)
 *   /usr/lib/systemd/system/kip.service    deploy/kip.service: not enabled, not started
 *   /etc/default/kip                       the flags, two documented modes   (conffile)
 *   /etc/kip/kube-proxy.yaml               a commented KubeProxyConfiguration (conffile)
 *   /etc/kip/manifests/                    the manifests directory (empty)
 *   /usr/share/doc/kip/                    copyright, README.Debian, examples/web.yaml
 *
 * The package is assembled in a scratch directory with the modes Debian expects (files
 * 0644, programs and directories 0755, owned by root through --root-owner-group), so it
 * builds the same without root. The version is package.json's; the architecture is dpkg's
 * name for the machine the executable was built for.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : dflt;
};
const binary = flag("--binary", join(ROOT, "dist", "kip"));
const outDir = flag("--out", join(ROOT, "dist"));
const compression = flag("--compression", "gzip");
if (!["gzip", "xz", "none"].includes(compression))
  fail(`--compression ${JSON.stringify(compression)} is not gzip, xz or none`);

function fail(message: string): never {
  console.error(`package: ${message}`);
  process.exit(1);
}

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
// Debian versions may not hold "-" without a revision; npm's pre-releases (0.2.0-rc.1) sort
// before the release with "~" (0.2.0~rc.1), as Debian writes them.
const version = pkg.version.replace("-", "~");
const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };
const arch = ARCH[process.arch] ?? fail(`no Debian architecture for ${process.arch}`);

if (spawnSync("dpkg-deb", ["--version"]).status !== 0)
  fail("dpkg-deb is not installed (apt-get install dpkg, or dpkg-dev)");
if (!existsSync(binary)) fail(`${binary} is missing: run npm run build first`);

const stage = mkdtempSync(join(tmpdir(), "kip-deb-"));
const root = join(stage, "kip");
// At exit, not in a `finally`: fail() exits from the middle of the work.
process.once("exit", () => rmSync(stage, { recursive: true, force: true }));

/** Put `text` (or a copy of `from`) at `path` inside the package, with `mode`. */
function put(path: string, mode: number, content: { from: string } | { text: string }): void {
  const to = join(root, path);
  mkdirSync(dirname(to), { recursive: true });
  if ("from" in content) copyFileSync(content.from, to);
  else writeFileSync(to, content.text);
  chmodSync(to, mode);
}

function installedSizeKiB(dir: string): number {
  let bytes = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.name === "DEBIAN") continue;
    bytes += e.isDirectory() ? 1024 * installedSizeKiB(p) : statSync(p).size;
  }
  return Math.ceil(bytes / 1024);
}

put("usr/bin/kip", 0o755, { from: binary });
put("usr/lib/systemd/system/kip.service", 0o644, { from: join(ROOT, "deploy", "kip.service") });
put("etc/default/kip", 0o644, { from: join(ROOT, "packaging", "default") });
put("etc/kip/kube-proxy.yaml", 0o644, { from: join(ROOT, "packaging", "kube-proxy.yaml") });
mkdirSync(join(root, "etc", "kip", "manifests"), { recursive: true });
put("usr/share/doc/kip/examples/web.yaml", 0o644, { from: join(ROOT, "packaging", "examples", "web.yaml") });
put("usr/share/doc/kip/copyright", 0o644, { from: join(ROOT, "packaging", "copyright") });
put("usr/share/doc/kip/README.Debian", 0o644, { from: join(ROOT, "packaging", "README.Debian") });
for (const script of ["postinst", "prerm", "postrm"])
  put(`DEBIAN/${script}`, 0o755, { from: join(ROOT, "packaging", script) });
put("DEBIAN/conffiles", 0o644, { text: "/etc/default/kip\n/etc/kip/kube-proxy.yaml\n" });
put("DEBIAN/control", 0o644, {
  text: `Package: kip
Version: ${version}
Architecture: ${arch}
Maintainer: kip maintainers <kip@localhost>
Installed-Size: ${installedSizeKiB(root)}
Depends: iptables, procps
Recommends: conntrack
Section: net
Priority: optional
Description: kube-proxy's iptables mode, as one executable
 kip renders, diffs, applies and explains the iptables rules kube-proxy would write.
 .
 kip sync keeps a host's service rules true to a directory of Kubernetes Services and
 EndpointSlices, with health-checked backends (kip/readiness-probe), or to an apiserver in
 place of kube-proxy. The kip service is installed but not enabled: choose the mode in
 /etc/default/kip, then run "systemctl enable --now kip".
`,
});
// Every directory 0755, whatever the umask made it.
const dirs = (d: string): void => {
  chmodSync(d, 0o755);
  for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) dirs(join(d, e.name));
};
dirs(root);

mkdirSync(outDir, { recursive: true });
const name = `kip_${version}_${arch}.deb`;
const tmp = join(outDir, `.${name}.tmp-${process.pid}`);
const r = spawnSync("dpkg-deb", ["--root-owner-group", `-Z${compression}`, "--build", root, tmp], {
  encoding: "utf8",
});
if (r.status !== 0) {
  rmSync(tmp, { force: true });
  fail(`dpkg-deb --build failed:\n${r.stdout}${r.stderr}`);
}
renameSync(tmp, join(outDir, name));
console.log(join(outDir, name));
