/**
 * `bun scripts/bench_agent.ts [--mode manifests|apiserver] [--services N] [--files F] [--idle S]
 * [--changes C] [--backend nft|legacy] [--binary PATH] [--trace]` (as root): `kip sync` as a node agent,
 * a real process in a scratch network namespace, N Services × 10 endpoints (default 10000):
 * - the first full sync (start → "synced type=full");
 * - idle CPU (utime+stime of kip and the iptables it waited for, over S seconds (60) from
 *   --settle seconds (10) after the first sync, nothing changing) as a share of one core. About
 *   10 s after a full sync the runtime gives memory back once (~0.2 s of CPU, measured by
 *   sampling every 0.5 s): a 30 s window shows it or not (0.3 % or 1.1 %), 60 s amortises it;
 * - RSS while idle (median and max of samples every 200 ms) and the process's peak (VmHWM);
 * - one endpoint change → rules live (the sync's "synced" line, logged after iptables-restore
 *   returned), C changes spaced 0.5–1.5 s, p50 / p99 / max, default min-sync-period (1 s) and
 *   sync period (30 s): the periodic work (stale-chain check, canaries) falls into this window.
 * - with --later-full-sync: after the changes, the canary chains are deleted in the namespace
 *   (as an iptables flush would), and the full sync that recreates the rules is timed and its
 *   peak RSS sampled: the hourly / after-failure full sync, which runs beside the last build.
 * Manifests mode writes F files (one per namespace group) and changes one of them per change;
 * apiserver mode serves the objects from the in-repo test apiserver (HTTPS) in the namespace.
 * Prints a table; judges nothing. Runs `bun cli/main.ts` unless --binary is given.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const arg = (name: string, d: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : d;
};
const mode = arg("--mode", "manifests");
const N = Number(arg("--services", "10000"));
const FILES = Number(arg("--files", "100"));
const IDLE_S = Number(arg("--idle", "60"));
/** Seconds after the first sync before idle is measured: its garbage is collected meanwhile. */
const SETTLE_S = Number(arg("--settle", "10"));
const CHANGES = Number(arg("--changes", "100"));
const BACKEND = arg("--backend", "nft");
const BINARY = arg("--binary", "");
const LATER_FULL_SYNC = process.argv.includes("--later-full-sync");
/** Runtime flags for `bun cli/main.ts` (e.g. --smol). */
const BUN_FLAGS = arg("--bun-flags", "").split(" ").filter(Boolean);
const ROOT = join(import.meta.dir, "..");

type Obj = Record<string, unknown>;

/** Service i and its EndpointSlice; `gen` moves endpoint 0 (a change). */
export function benchObjects(i: number, gen = 0): [Obj, Obj] {
  const ns = `ns${i % 100}`;
  const name = `svc-${i}`;
  const endpoints = [];
  for (let e = 0; e < 10; e++) {
    const k = i * 10 + e;
    const addr =
      e === 0 && gen > 0
        ? `10.255.${(gen >> 8) & 255}.${gen & 255}`
        : `10.${128 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;
    endpoints.push({ addresses: [addr], conditions: { ready: true }, nodeName: `node-${k % 50}` });
  }
  return [
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: ns },
      spec: {
        clusterIP: `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
        ports: [{ name: "http", port: 80, protocol: "TCP", targetPort: 8080 }],
      },
    },
    {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: `${name}-abcde`, namespace: ns, labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
      endpoints,
    },
  ];
}

/** File f holds Services i ≡ f (mod FILES); `changed` maps a Service to its generation. */
function writeFile(dir: string, f: number, changed: Map<number, number>): void {
  const items: Obj[] = [];
  for (let i = f; i < N; i += FILES) items.push(...benchObjects(i, changed.get(i) ?? 0));
  const path = join(dir, `group-${String(f).padStart(3, "0")}.json`);
  // Written aside and renamed, as a deploy tool would: a rescan never sees half a file.
  writeFileSync(`${path}.tmp`, JSON.stringify({ apiVersion: "v1", kind: "List", items }, null, 1));
  renameSync(`${path}.tmp`, path);
}

function proc(pid: number): { ticks: number; self: number; rssMB: number; hwmMB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime, stime (fields 14–15; f[0] is field 3), and cutime, cstime: its iptables children.
  const self = Number(f[11]) + Number(f[12]);
  const ticks = self + Number(f[13]) + Number(f[14]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN) / 1024;
  return { ticks, self, rssMB: kb("VmRSS"), hwmMB: kb("VmHWM") };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const q = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];

class Lines {
  lines: string[] = [];
  /** When each line arrived (performance.now()). */
  times: number[] = [];
  private wake?: () => void;
  constructor(child: ChildProcess) {
    let buf = "";
    const on = (b: Buffer) => {
      buf += b.toString("utf8");
      const parts = buf.split("\n");
      buf = parts.pop() ?? "";
      for (const l of parts) {
        this.lines.push(l);
        this.times.push(performance.now());
      }
      this.wake?.();
    };
    child.stdout?.on("data", on);
    child.stderr?.on("data", on);
  }
  /** The first line from index `from` matching `re`, waiting up to `ms`. */
  async wait(re: RegExp, from: number, ms: number): Promise<{ line: string; index: number; at: number }> {
    const deadline = performance.now() + ms;
    for (let i = from; ; ) {
      for (; i < this.lines.length; i++)
        if (re.test(this.lines[i])) return { line: this.lines[i], index: i, at: performance.now() };
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no line matched ${re} in ${ms} ms:\n${this.lines.slice(-20).join("\n")}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }
}

async function main(): Promise<void> {
  const ns = `kip-bagent-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), "kip-bench-agent-"));
  const ipns = (argv: string[]) => spawnSync("ip", ["netns", "exec", ns, ...argv], { encoding: "utf8" });
  spawnSync("ip", ["netns", "add", ns]);
  ipns(["ip", "link", "set", "lo", "up"]);
  let kip: ChildProcess | undefined;
  let api: ChildProcess | undefined;
  try {
    const common = [
      "--hostname-override",
      "node-0",
      "--cluster-cidr",
      "10.128.0.0/9",
      "--ip-families",
      "IPv4",
      "--backend",
      BACKEND,
    ];
    const http = ["--healthz-bind-address", "127.0.0.1:0", "--metrics-bind-address", "127.0.0.1:0"];
    const changed = new Map<number, number>();
    let source: string[];
    let change: (i: number, gen: number) => void;
    process.stderr.write(`bench-agent: ${mode}, ${N} × 10, ${BACKEND}…\n`);
    if (mode === "manifests") {
      const mdir = join(dir, "manifests");
      spawnSync("mkdir", ["-p", mdir]);
      for (let f = 0; f < FILES; f++) writeFile(mdir, f, changed);
      source = ["--manifests", mdir];
      change = (i, gen) => {
        changed.set(i, gen);
        writeFile(mdir, i % FILES, changed);
      };
    } else {
      // The stand-in apiserver runs in the namespace, fed over its stdin.
      api = spawn(
        "ip",
        ["netns", "exec", ns, process.execPath, join(import.meta.dir, "bench_apiserver.ts"), String(N)],
        {
          stdio: ["pipe", "pipe", "inherit"],
        },
      );
      const apiLines = new Lines(api);
      const ready = await apiLines.wait(/^kubeconfig /, 0, 120_000);
      source = ["--kubeconfig", ready.line.slice("kubeconfig ".length)];
      change = (i, gen) => api?.stdin?.write(`${i} ${gen}\n`);
    }
    const argv = BINARY ? [BINARY] : [process.execPath, ...BUN_FLAGS, join(ROOT, "cli/main.ts")];
    const t0 = performance.now();
    kip = spawn(
      "ip",
      ["netns", "exec", ns, ...argv, "sync", ...source, ...common, ...http, "--state-dir", join(dir, "state")],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const out = new Lines(kip);
    const pid = kip.pid as number;
    const first = await out.wait(/ synced .*type=full/, 0, 600_000);
    const firstS = (first.at - t0) / 1000;
    const hwmFirst = proc(pid).hwmMB;
    // After the first sync, RSS every 50 ms, to say when the peak came and what the daemon
    // had just logged (samples taken only after each change miss a peak between them).
    const after = { rss: 0, at: 0, phase: "idle", line: "" };
    let phase = "idle";
    /** The highest RSS sampled in each phase. */
    const phaseMax = new Map<string, number>();
    /** The first 5 s after the first sync, every sample (--trace: printed with the log lines). */
    const trace: [number, number][] = [];
    const sampler = setInterval(() => {
      const r = proc(pid).rssMB;
      phaseMax.set(phase, Math.max(phaseMax.get(phase) ?? 0, r));
      if (performance.now() - first.at < 5000) trace.push([performance.now(), r]);
      if (r > after.rss)
        Object.assign(after, { rss: r, at: (performance.now() - t0) / 1000, phase, line: out.lines.at(-1) ?? "" });
    }, 50);

    // Idle: nothing changes.
    await sleep(SETTLE_S * 1000); // the first sync's garbage is collected first
    const a = proc(pid);
    const rss: number[] = [];
    const idleStart = performance.now();
    while (performance.now() - idleStart < IDLE_S * 1000) {
      rss.push(proc(pid).rssMB);
      await sleep(200);
    }
    const b = proc(pid);
    const hz = 100; // USER_HZ
    const idleS = (performance.now() - idleStart) / 1000;
    const idleCPU = ((b.ticks - a.ticks) / hz / idleS) * 100;
    const idleSelf = ((b.self - a.self) / hz / idleS) * 100;

    // Changes: one endpoint of one Service each, spaced 0.5–1.5 s.
    phase = "changes";
    const lat: number[] = [];
    let from = out.lines.length;
    const rssBusy: number[] = [];
    for (let c = 1; c <= CHANGES; c++) {
      await sleep(500 + Math.random() * 1000);
      const i = (c * 7919) % N;
      const t = performance.now();
      change(i, c);
      const hit = await out.wait(/ synced /, from, 60_000);
      from = hit.index + 1;
      lat.push(hit.at - t);
      rssBusy.push(proc(pid).rssMB);
    }
    // A later full sync: the canary chains go, the daemon notices at its next check and
    // recreates everything with a full build while the last build is still cached.
    let later: { s: number; peakMB: number } | undefined;
    if (LATER_FULL_SYNC) {
      await sleep(2000);
      phase = "later full sync";
      const iptables = BACKEND === "legacy" ? "iptables-legacy" : "iptables-nft";
      const t = performance.now();
      for (const table of ["mangle", "nat", "filter"]) ipns([iptables, "-t", table, "-X", "KUBE-PROXY-CANARY"]);
      const full = await out.wait(/ synced .*type=full/, out.lines.length, 180_000);
      await sleep(1000);
      later = { s: (full.at - t) / 1000, peakMB: phaseMax.get(phase) ?? Number.NaN };
    }
    const end = proc(pid);
    clearInterval(sampler);
    if (lat.length === 0) lat.push(Number.NaN);
    if (rssBusy.length === 0) rssBusy.push(Number.NaN);
    const warnings = out.lines.filter((l) => / WARN /.test(l)).length;
    const f0 = (x: number) => x.toFixed(0);
    console.log(
      `\n### kip sync, ${mode} mode, ${N} × 10, ${BACKEND}${mode === "manifests" ? `, ${FILES} files` : ""}\n`,
    );
    console.log(
      "| first full sync s | idle CPU % of a core (kip alone) | idle RSS MB median / max | RSS MB during changes max | peak RSS MB (first sync / whole run) | change → live ms p50 / p99 / max | warnings |",
    );
    console.log("|---:|---:|---:|---:|---:|---:|---:|");
    console.log(
      `| ${firstS.toFixed(1)} | ${idleCPU.toFixed(2)} (${idleSelf.toFixed(2)}) | ${f0(q(rss, 0.5))} / ${f0(Math.max(...rss))} | ${f0(Math.max(...rssBusy))} | ${f0(hwmFirst)} / ${f0(end.hwmMB)} | ${f0(q(lat, 0.5))} / ${f0(q(lat, 0.99))} / ${f0(Math.max(...lat))} | ${warnings} |`,
    );
    const slow = lat.filter((x) => x > 1500).length;
    console.log(`\nchanges over 1.5 s: ${slow} of ${lat.length}`);
    if (later)
      console.log(
        `later full sync (canary chains deleted): synced ${later.s.toFixed(1)} s after, RSS at most ${f0(later.peakMB)} MB while it ran (first sync's peak ${f0(hwmFirst)} MB)`,
      );
    if (process.argv.includes("--trace")) {
      const events: [number, string][] = [
        ...trace.map(([t, r]): [number, string] => [t, `RSS ${f0(r)} MB`]),
        ...out.times.map((t, i): [number, string] => [t, out.lines[i].slice(0, 160)]),
      ].filter(([t]) => t >= first.at - 2000 && t < first.at + 5000);
      events.sort((x, y) => x[0] - y[0]);
      for (const [t, what] of events) console.log(`${((t - first.at) / 1000).toFixed(2)} s  ${what}`);
    }
    console.log(
      `highest RSS sampled after the first sync (every 50 ms): ${f0(after.rss)} MB at ${after.at.toFixed(1)} s (${after.phase}), after: ${after.line.slice(0, 300)}`,
    );
  } finally {
    kip?.kill("SIGTERM");
    api?.kill("SIGTERM");
    await sleep(300);
    spawnSync("ip", ["netns", "del", ns]);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await main();
