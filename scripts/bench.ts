/**
 * `npm run bench`: render cost on synthetic clusters (N Services × 10 endpoints, one JSON
 * List, as `kubectl get svc,endpointslices -A -o json` prints), split into load (parse +
 * validate), build (engine) and write (restore text) — build and write as the median of three
 * runs after a warm-up — plus peak RSS; the compiled binary's render start to finish at each
 * size, beside the floor of this runtime (scripts/bench_floor.ts: read + JSON.parse the input
 * and write the same text, no validation, no rules) and the rules' floor
 * (scripts/bench_floor_rules.ts: the same bytes formatted from the parsed input, no
 * validation); and its time on examples/seed. Each size runs in a child process so its peak
 * RSS is its own. A benchmark, not a test: it prints, it does not judge.
 *
 *   bun scripts/bench.ts                 # 1k, 10k, 30k
 *   bun scripts/bench.ts --sizes 1000    # a quick look (--runs K: compiled render runs, 2)
 *   bun scripts/bench.ts --live 10000    # as root: kip diff and kip cleanup against real
 *                                        # tables (nft and legacy) in a scratch namespace;
 *                                        # --runs K diff runs per backend (2); --kip PATH
 *                                        # measures another build (before/after);
 *                                        # --backends nft measures one backend; ends
 *                                        # with each backend's median diff / save
 *   bun scripts/bench.ts --sync 10000    # as root: kip sync's apply, partial syncs and
 *                                        # latency (scripts/bench_sync.ts)
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dumpOfTables, parseSave } from "../lib/iptables/save_parser.ts";
import { compareDumps } from "../lib/kube_iptables.ts";
import { loadManifests } from "../lib/model/load.ts";
import { buildRules } from "../lib/proxy/build.ts";
import { JUMP_RULES, jumpRuleLine } from "../lib/proxy/jumps.ts";
import { defaultConfig, resolveBuildOptions } from "../lib/proxy/options.ts";
import { type Ruleset, toRestore } from "../lib/proxy/ruleset.ts";

/** N Services, each with one port and an EndpointSlice of `eps` ready endpoints. */
export function syntheticCluster(n: number, eps = 10): string {
  const items: object[] = [];
  for (let i = 0; i < n; i++) {
    const ns = `ns${i % 100}`;
    const name = `svc-${i}`;
    const ip = `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    items.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: ns },
      spec: { clusterIP: ip, ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }] },
    });
    const endpoints = [];
    for (let e = 0; e < eps; e++) {
      const k = i * eps + e;
      endpoints.push({
        addresses: [`10.${128 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`],
        conditions: { ready: true },
        nodeName: `node-${k % 50}`,
      });
    }
    items.push({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `${name}-abcde`, namespace: ns, labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      endpoints,
    });
  }
  return JSON.stringify({ apiVersion: "v1", kind: "List", items }, null, 1);
}

function vmHWM(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

interface Row {
  services: number;
  inputMB: number;
  loadMs: number;
  buildMs: number;
  writeMs: number;
  natRules: number;
  outputMB: number;
  peakMB: number;
}

function one(n: number): Row {
  const text = syntheticCluster(n);
  const config = { ...defaultConfig(), hostname: "node-0", clusterCIDR: "10.128.0.0/9" };
  const t0 = performance.now();
  const loaded = loadManifests([{ file: "bench.json", text }], { nodeName: config.hostname });
  if (loaded.errors.length > 0) throw new Error(loaded.errors[0].message);
  const t1 = performance.now();
  // The machine is small and shared: build and write three times and keep the median.
  const builds: number[] = [];
  const writes: number[] = [];
  let rs = buildRules(loaded.state, resolveBuildOptions(config, "IPv4"));
  let out = toRestore(rs);
  // What one render needs at its peak (the repeated timing runs below only add garbage).
  const peakMB = vmHWM();
  for (let i = 0; i < 3; i++) {
    const a = performance.now();
    rs = buildRules(loaded.state, resolveBuildOptions(config, "IPv4"));
    const b = performance.now();
    out = toRestore(rs);
    writes.push(performance.now() - b);
    builds.push(b - a);
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[1];
  return {
    services: n,
    inputMB: text.length / 1e6,
    loadMs: t1 - t0,
    buildMs: median(builds),
    writeMs: median(writes),
    natRules: rs.nat.rules.length,
    outputMB: out.length / 1e6,
    peakMB,
  };
}

function seedTiming(runs = 20): number | undefined {
  const bin = "dist/kip";
  const args = ["render", "examples/seed", "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16"];
  if (spawnSync(bin, ["--version"]).status !== 0) return undefined;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    spawnSync(bin, args);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * Wall time and peak RSS of one child process, its stdout sent to `out` (a file) or kept for
 * an error message. The peak is GNU time's (`%M`), not the spawn's own rusage: Bun starts
 * children with vfork, so a child's ru_maxrss starts at this (large) process's RSS.
 */
function timed(
  argv: string[],
  out?: string,
): { ms: number; peakMB: number; cpuS: number; status: number | null; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), "kip-bench-time-"));
  const rss = join(dir, "rss");
  try {
    const t = performance.now();
    const r = Bun.spawnSync(["/usr/bin/time", "-f", "%M %U %S", "-o", rss, ...argv], {
      stdout: out ? Bun.file(out) : "pipe",
      stderr: "pipe",
    });
    const ms = performance.now() - t;
    const fields = (readFileSync(rss, "utf8").trim().split("\n").pop() ?? "").split(" ");
    return {
      ms,
      peakMB: Number(fields[0]) / 1024,
      // User + system CPU: steadier than wall time on a machine shared with other work.
      cpuS: Number(fields[1]) + Number(fields[2]),
      status: r.exitCode,
      stderr: `${r.stdout?.toString().slice(0, 2000) ?? ""}${r.stderr?.toString() ?? ""}`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The kip binary measured: dist/kip, or `--kip PATH` (an older build, for before/after). */
const KIP = (() => {
  const i = process.argv.indexOf("--kip");
  return i > 0 ? process.argv[i + 1] : "dist/kip";
})();

/** `--backends nft,legacy` (default both): the backends `--live` measures. */
const BACKENDS = (() => {
  const i = process.argv.indexOf("--backends");
  return i > 0 ? process.argv[i + 1].split(",") : ["nft", "legacy"];
})();

const NODE_FLAGS = ["--hostname-override", "node-0", "--cluster-cidr", "10.128.0.0/9"];

interface Timed {
  ms: number;
  peakMB: number;
  cpuS: number;
}

/**
 * The compiled `kip render` of an N × 10 cluster, start to finish, its output written to a
 * file; each run beside two floors: scripts/bench_floor.ts (read + JSON.parse the input, write
 * the same output text: this runtime's floor, no validation and no rules) and
 * scripts/bench_floor_rules.ts (the same bytes formatted from the parsed input the shortest
 * way, no validation: the rules' floor), whose output must equal kip's.
 */
function renderE2E(n: number, runs: number): { kip: Timed; floor: Timed; rules: Timed }[] {
  const dir = mkdtempSync(join(tmpdir(), "kip-bench-"));
  try {
    const file = join(dir, "cluster.json");
    writeFileSync(file, syntheticCluster(n));
    const rules = join(dir, "out.txt");
    const out: { kip: Timed; floor: Timed; rules: Timed }[] = [];
    for (let i = 0; i < runs; i++) {
      const kip = timed([KIP, "render", file, ...NODE_FLAGS], rules);
      if (kip.status !== 0) throw new Error(`kip render: ${kip.stderr}`);
      const floor = timed(
        [process.execPath, join(import.meta.dir, "bench_floor.ts"), file, rules],
        join(dir, "floor.txt"),
      );
      if (floor.status !== 0) throw new Error(`bench_floor: ${floor.stderr}`);
      const formatted = join(dir, "floor-rules.txt");
      const script = join(import.meta.dir, "bench_floor_rules.ts");
      const rulesFloor = timed([process.execPath, script, file, NODE_FLAGS[3]], formatted);
      if (rulesFloor.status !== 0) throw new Error(`bench_floor_rules: ${rulesFloor.stderr}`);
      // The same work, or it is no floor: its bytes are kip's.
      if (!readFileSync(formatted).equals(readFileSync(rules)))
        throw new Error("bench_floor_rules: its output is not kip render's (the input or kip changed: update it)");
      out.push({ kip, floor, rules: rulesFloor });
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function sh(argv: string[], input?: string): { ms: number; stdout: string } {
  const t = performance.now();
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: "utf8", maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return { ms: performance.now() - t, stdout: r.stdout };
}

/** Restore text of a ruleset plus kube-proxy's jump rules, their targets created (as kip sync leaves a node). */
function withJumps(rs: Ruleset): string {
  const table = (name: "filter" | "nat") => {
    const t = rs[name];
    const jumps = JUMP_RULES.filter((j) => j.table === name);
    const chains = [...new Set([...t.chains, ...jumps.map((j) => j.to)])];
    return { chains, rules: [...t.rules, ...jumps.map(jumpRuleLine)] };
  };
  return toRestore({ filter: table("filter"), nat: table("nat") });
}

/**
 * diff and cleanup of an N × 10 table loaded in a scratch namespace, per backend. `kip diff`
 * is the compiled binary, start to finish, over every family (the IPv6 tables hold kip's
 * fixed chains), beside `iptables-save`'s own wall time measured in the same run.
 */
function live(n: number, runs: number): void {
  const text = syntheticCluster(n);
  const config = { ...defaultConfig(), hostname: "node-0", clusterCIDR: "10.128.0.0/9" };
  const loaded = loadManifests([{ file: "bench.json", text }], { nodeName: config.hostname });
  const rs = buildRules(loaded.state, resolveBuildOptions(config, "IPv4"));
  const restore = withJumps(rs);
  const restore6 = withJumps(buildRules(loaded.state, resolveBuildOptions(config, "IPv6")));
  const desired = dumpOfTables({ filter: rs.filter, nat: rs.nat });
  const dir = mkdtempSync(join(tmpdir(), "kip-bench-"));
  const file = join(dir, "cluster.json");
  writeFileSync(file, text);
  const f = (ms: number) => (ms / 1000).toFixed(2);
  console.log(
    `| backend (${n} × 10) | run | load s | iptables-save s | kip diff s | diff / save | kip diff CPU s (user + sys) | kip diff peak RSS MB | in-process parse + normalise + compare s | kip cleanup s |`,
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  // Per backend, every run's diff / save: two separately timed processes swing by ±20 % on a
  // small shared machine, so the summary after the table gives the median and the spread.
  const ratios = new Map<string, number[]>();
  try {
    for (const backend of BACKENDS) {
      const ns = `kip-bench-${process.pid}`;
      sh(["ip", "netns", "add", ns]);
      try {
        const inNs = (argv: string[], input?: string) => sh(["ip", "netns", "exec", ns, ...argv], input);
        // A fresh namespace has nothing to keep, so the load may flush (fast on nft).
        const load = inNs([`iptables-${backend}-restore`], restore);
        inNs([`ip6tables-${backend}-restore`], restore6);
        let cmp = 0;
        for (let run = 1; run <= runs; run++) {
          const save = inNs([`iptables-${backend}-save`]);
          const diff = timed(["ip", "netns", "exec", ns, KIP, "diff", file, "--backend", backend, ...NODE_FLAGS]);
          if (diff.status !== 0) throw new Error(`kip diff exited ${diff.status}: ${diff.stderr}`);
          if (run === 1) {
            const t = performance.now();
            const result = compareDumps(parseSave(save.stdout), desired, { family: "IPv4", jumps: false });
            cmp = performance.now() - t;
            if (result.chains.length !== 0) throw new Error(`unexpected drift: ${result.chains.length} chains`);
          }
          const last = run === runs;
          // kip cleanup reads every backend; the other one is empty here.
          const clean = last ? inNs(["dist/kip", "cleanup"]) : undefined;
          if (last && /:KUBE-/.test(inNs([`iptables-${backend}-save`]).stdout))
            throw new Error("cleanup left KUBE chains");
          let list = ratios.get(backend);
          if (!list) ratios.set(backend, (list = []));
          list.push(diff.ms / save.ms);
          console.log(
            `| ${backend} | ${run} | ${run === 1 ? f(load.ms) : ""} | ${f(save.ms)} | ${f(diff.ms)} | ${(diff.ms / save.ms).toFixed(2)}× | ${diff.cpuS.toFixed(2)} | ${diff.peakMB.toFixed(0)} | ${run === 1 ? f(cmp) : ""} | ${clean ? f(clean.ms) : ""} |`,
          );
        }
      } finally {
        spawnSync("ip", ["netns", "del", ns]);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const [backend, list] of ratios) {
    const sorted = [...list].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    const within = sorted.filter((r) => r <= 1.3).length;
    console.log(
      `\n${backend}: kip diff / iptables-save, median ${median.toFixed(2)}× of ${sorted.length} runs (${sorted[0].toFixed(2)}–${sorted[sorted.length - 1].toFixed(2)}×), ${within} of ${sorted.length} at or under 1.3×`,
    );
  }
}

const runsArg = () => {
  const i = process.argv.indexOf("--runs");
  return i > 0 ? Number(process.argv[i + 1]) : 2;
};

if (process.argv[2] === "--sync") {
  const { benchSync } = await import("./bench_sync.ts");
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  await benchSync(Number(process.argv[3] ?? 10000), {
    batches: (arg("--batches") ?? "500,1000,2000").split(",").map(Number),
    single: process.argv.includes("--single"),
  });
} else if (process.argv[2] === "--live") {
  live(Number(process.argv[3] ?? 10000), runsArg());
} else if (process.argv[2] === "--one") {
  process.stdout.write(JSON.stringify(one(Number(process.argv[3]))));
} else if (import.meta.main) {
  const i = process.argv.indexOf("--sizes");
  const sizes = i > 0 ? process.argv[i + 1].split(",").map(Number) : [1000, 10000, 30000];
  const rows: Row[] = [];
  for (const n of sizes) {
    process.stderr.write(`bench: ${n} services × 10 endpoints…\n`);
    const r = spawnSync(process.execPath, [import.meta.path, "--one", String(n)], {
      encoding: "utf8",
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) throw new Error(r.stderr);
    rows.push(JSON.parse(r.stdout));
  }
  const f = (x: number, d = 0) => x.toFixed(d);
  console.log(
    "| services × 10 eps | input MB | load ms | build ms | write ms | render total ms | nat rules | output MB | peak RSS MB |",
  );
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of rows)
    console.log(
      `| ${r.services} | ${f(r.inputMB, 1)} | ${f(r.loadMs)} | ${f(r.buildMs)} | ${f(r.writeMs)} | ${f(r.buildMs + r.writeMs)} | ${r.natRules} | ${f(r.outputMB, 1)} | ${f(r.peakMB)} |`,
    );
  if (spawnSync(KIP, ["--version"]).status === 0) {
    console.log(
      `\ncompiled \`kip render\` (${KIP}), start to finish, output to a file; runtime floor: read + JSON.parse + write the same text (scripts/bench_floor.ts); rules floor: the same bytes formatted from the parsed input, no validation (scripts/bench_floor_rules.ts):\n`,
    );
    console.log(
      "| services × 10 eps | run | wall ms | CPU ms (user + sys) | peak RSS MB | runtime floor ms / MB | rules floor ms / CPU ms / MB | wall / runtime floor | wall / rules floor |",
    );
    console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const n of sizes)
      for (const [i, { kip: r, floor, rules }] of renderE2E(n, runsArg()).entries())
        console.log(
          `| ${n} | ${i + 1} | ${f(r.ms)} | ${f(r.cpuS * 1000)} | ${f(r.peakMB)} | ${f(floor.ms)} / ${f(floor.peakMB)} | ${f(rules.ms)} / ${f(rules.cpuS * 1000)} / ${f(rules.peakMB)} | ${(r.ms / floor.ms).toFixed(2)}× | ${(r.ms / rules.ms).toFixed(2)}× |`,
        );
  }
  const seed = seedTiming();
  console.log(
    seed === undefined
      ? "\ncompiled `kip render examples/seed`: dist/kip not built (npm run build)"
      : `\ncompiled \`kip render examples/seed\`: ${f(seed)} ms (median of 20 runs)`,
  );
}
