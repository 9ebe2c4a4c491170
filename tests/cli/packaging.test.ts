/**
 * What ships: the image (Containerfile) and the DaemonSet that runs it must agree, since the
 * image cannot be built here (no registry); the DaemonSet must be a valid apps/v1 object; the
 * release build writes only the executable into dist/; the Deno task runs as README says.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { kip } from "../support/binary.ts";
import { removeTempDir, tempDir } from "../support/tempdir.ts";

type Obj = Record<string, any>;

const containerfile = readFileSync("Containerfile", "utf8");
const docs: Obj[] = parseAllDocuments(readFileSync("deploy/daemonset.yaml", "utf8")).map((d) => {
  expect(d.errors).toEqual([]);
  return d.toJS() as Obj;
});
const daemonSet = docs.find((d) => d.kind === "DaemonSet") as Obj;
const pod = daemonSet?.spec?.template?.spec as Obj;
const kipContainer = (pod?.containers as Obj[] | undefined)?.find((c) => c.name === "kip") as Obj;
const version = JSON.parse(readFileSync("package.json", "utf8")).version as string;

/** Containerfile instructions of the last stage (the image that runs). */
function finalStage(): string[] {
  const lines = containerfile.replace(/\\\n\s*/g, " ").split("\n");
  const from = lines.findLastIndex((l) => /^FROM\s/i.test(l));
  return lines.slice(from).filter((l) => l.trim() !== "" && !l.startsWith("#"));
}

/** `--flag=value` / `--flag value` from an argv. */
function flagValue(argv: string[], flag: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === flag) return argv[i + 1];
    if (argv[i].startsWith(`${flag}=`)) return argv[i].slice(flag.length + 1);
  }
  return undefined;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

describe("deploy/daemonset.yaml is a valid set of objects", () => {
  test("every document has apiVersion, kind and a valid name", () => {
    for (const d of docs) {
      expect(typeof d.apiVersion).toBe("string");
      expect(typeof d.kind).toBe("string");
      expect(d.metadata?.name).toMatch(DNS1123_SUBDOMAIN);
    }
    expect(docs.map((d) => `${d.apiVersion} ${d.kind}`)).toContain("apps/v1 DaemonSet");
  });

  test("the DaemonSet passes apps/v1 validation: selector, template, containers, volumes, probes", () => {
    expect(daemonSet.apiVersion).toBe("apps/v1");
    expect(daemonSet.metadata.namespace).toMatch(DNS1123_LABEL);
    // apps/v1 requires a selector, and it must match the template's labels.
    const selector = daemonSet.spec.selector?.matchLabels as Record<string, string>;
    expect(Object.keys(selector ?? {}).length).toBeGreaterThan(0);
    for (const [k, v] of Object.entries(selector)) expect(daemonSet.spec.template.metadata.labels[k]).toBe(v);
    expect(["RollingUpdate", "OnDelete"]).toContain(daemonSet.spec.updateStrategy?.type ?? "RollingUpdate");
    // Containers: unique DNS-1123 names, an image, ports and probes in range.
    const all = [...(pod.initContainers ?? []), ...pod.containers] as Obj[];
    expect(new Set(all.map((c) => c.name)).size).toBe(all.length);
    const volumes = new Set((pod.volumes ?? []).map((v: Obj) => v.name));
    expect(volumes.size).toBe((pod.volumes ?? []).length);
    for (const c of all) {
      expect(c.name).toMatch(DNS1123_LABEL);
      expect(typeof c.image).toBe("string");
      for (const m of c.volumeMounts ?? []) {
        expect(volumes.has(m.name)).toBe(true);
        expect(m.mountPath).toStartWith("/");
      }
      for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe].filter(Boolean)) {
        const port = probe.httpGet?.port ?? probe.tcpSocket?.port;
        expect(Number.isInteger(port) && port >= 1 && port <= 65535).toBe(true);
      }
      for (const e of c.env ?? []) expect(e.name).toMatch(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/);
    }
    // A ServiceAccount the pod names is one of the documents.
    expect(docs.some((d) => d.kind === "ServiceAccount" && d.metadata.name === pod.serviceAccountName)).toBe(true);
  });
});

describe("the Containerfile and the DaemonSet agree", () => {
  const command = kipContainer.command as string[];

  test("the image is <registry>/kip:<package.json version>, never latest", () => {
    expect(kipContainer.image).toMatch(/^[^:]+\/kip:[^:]+$/);
    expect(kipContainer.image.split(":").at(-1)).toBe(version);
    // The build command the Containerfile documents tags the same name.
    expect(containerfile).toContain(`-t ${kipContainer.image} `);
  });

  test("the binary the DaemonSet runs is the one the image installs, as its entry point", () => {
    const stage = finalStage();
    const copy = stage.find((l) => /^COPY\s+--from=build\s+\S*dist\/kip\s/.test(l));
    expect(copy).toBeDefined();
    const installed = copy?.trim().split(/\s+/).at(-1);
    expect(command[0]).toBe(installed as string);
    expect(stage.find((l) => l.startsWith("ENTRYPOINT"))).toBe(`ENTRYPOINT ["${installed}"]`);
    expect(command[1]).toBe("sync");
    // The tools kip runs are in the image: iptables (with ip6tables) and conntrack.
    const apt = stage.find((l) => l.includes("apt-get install")) ?? "";
    for (const pkg of ["iptables", "conntrack"]) expect(apt.split(/\s+/)).toContain(pkg);
  });

  test("every flag in the DaemonSet is one kip sync knows", () => {
    const help = kip(["sync", "--help"]);
    expect(help.code).toBe(0);
    const known = new Set(help.stdout.match(/--[a-z0-9-]+/g));
    for (const arg of command.slice(2)) {
      expect(arg).toStartWith("--");
      expect(known.has(arg.split("=")[0]), `${arg} in kip sync --help`).toBe(true);
    }
    // $(VAR) in args must be an env var of the container, or Kubernetes passes it literally.
    const env = new Set((kipContainer.env ?? []).map((e: Obj) => e.name));
    for (const arg of command) for (const m of arg.matchAll(/\$\((\w+)\)/g)) expect(env.has(m[1])).toBe(true);
  });

  test("probes hit kip's health port, which the image exposes; the host network and NET_ADMIN are there", () => {
    // kip sync's default --healthz-bind-address is 0.0.0.0:10256, as kube-proxy's.
    const healthz = Number((flagValue(command, "--healthz-bind-address") ?? "0.0.0.0:10256").split(":").at(-1));
    const exposed = (finalStage().find((l) => l.startsWith("EXPOSE")) ?? "").match(/\d+/g)?.map(Number) ?? [];
    expect(exposed).toContain(healthz);
    for (const probe of [kipContainer.livenessProbe, kipContainer.readinessProbe]) {
      expect(probe.httpGet.port).toBe(healthz);
      expect(["/healthz", "/livez"]).toContain(probe.httpGet.path);
    }
    expect(pod.hostNetwork).toBe(true);
    const caps = kipContainer.securityContext?.capabilities?.add ?? [];
    const privileged = kipContainer.securityContext?.privileged === true;
    expect(privileged || caps.includes("NET_ADMIN")).toBe(true);
    // iptables-restore takes the host's xtables lock, so the lock file is the host's.
    const lock = (kipContainer.volumeMounts as Obj[]).find((m) => m.mountPath === "/run/xtables.lock");
    expect(pod.volumes.find((v: Obj) => v.name === lock?.name)?.hostPath?.path).toBe("/run/xtables.lock");
  });
});

describe("build and run", () => {
  test("npm run build writes only the executable into dist/ (source maps are opt-in, elsewhere)", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8"));
    expect(pkg.scripts.build).toBe("bun scripts/build.ts");
    expect(pkg.scripts["build:musl"]).toBe("bun scripts/build.ts --target musl");
    // The real build, in a scratch checkout (links to the sources), so dist/kip is not touched.
    const dir = tempDir("kip-build-test-");
    for (const f of ["cli", "lib", "scripts", "node_modules", "package.json", "tsconfig.json"])
      symlinkSync(resolve(f), join(dir, f));
    const r = spawnSync(process.execPath, ["scripts/build.ts"], { cwd: dir, encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(readdirSync(join(dir, "dist"))).toEqual(["kip"]);
    expect(existsSync(join(dir, "build"))).toBe(false);
    removeTempDir(dir);
  }, 120_000);

  test("the Deno task does not name a bare `deno` (deno task would load node_modules/.bin/deno as JavaScript)", () => {
    const tasks = JSON.parse(readFileSync("deno.json", "utf8")).tasks as Record<string, string>;
    expect(tasks.kip).toBe("./node_modules/.bin/deno run -A cli/main.ts");
    for (const t of Object.values(tasks)) expect(t).not.toMatch(/^deno\s/);
    // README's command, run: `npx deno task kip <args>`.
    const r = spawnSync("node_modules/.bin/deno", ["task", "kip", "--version"], { encoding: "utf8" });
    expect([r.status, r.stdout]).toEqual([0, `${version}\n`]);
  });
});
