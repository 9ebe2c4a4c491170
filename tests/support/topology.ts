/**
 * A Kubernetes node made of network namespaces, for end-to-end packet tests of the rules kip
 * renders (the article's node1):
 *
 *   ext  192.168.56.1/24 ──eth0── node 192.168.56.11/24 (eth0), default route via ext
 *   ext2 192.168.57.1/24 ──eth1── node 192.168.57.11/24 (eth1)
 *                                 node cni0 (bridge) 10.244.1.1/24, ip_forward=1,
 *                                 bridge-nf-call-iptables=1, hairpin on every pod port
 *   pod1 10.244.1.14, pod2 10.244.1.16, pod3 10.244.1.17, client 10.244.1.20 (veths on cni0)
 *
 * The LoadBalancer VIP 192.168.56.200 is a local address of the node (on lo); ext routes it and
 * the external IP 192.168.56.100 via the node. pod1–pod3 run tests/support/pod_server.ts on
 * ports 80 and 8080 (answer: `<pod> <client-ip>`).
 *
 * Every namespace is named `kipe2e-<pid>-<tag>-<role>`; nothing is created in the host's own
 * namespace and the host's iptables are never touched. `stop()` kills the servers and deletes
 * the namespaces; `startTopology` cleans up after itself when it fails half-way, and removes
 * leftovers of earlier runs whose process is gone.
 *
 * One backend per topology ("nft" or "legacy"): every iptables command of the run uses
 * `iptables-<backend>`, `iptables-<backend>-restore`, `iptables-<backend>-save`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { JUMP_RULES, jumpRuleArgs } from "../../lib/proxy/jumps.ts";
import { kip } from "./binary.ts";
import { addNetns, deleteNetns, type Exec, exec } from "./netns.ts";

export type Backend = "nft" | "legacy";
export const BACKENDS: readonly Backend[] = ["nft", "legacy"];

export type Role = "node" | "pod1" | "pod2" | "pod3" | "client" | "ext" | "ext2";

const ROOT = join(import.meta.dir, "..", "..");
const POD_SERVER = join(import.meta.dir, "pod_server.ts");
const PREFIX = "kipe2e-";

/** The e2e manifests and the node flags that match this topology. */
export const E2E_MANIFESTS = join(ROOT, "tests", "e2e", "manifests");
export const NODE_FLAGS = [
  "--hostname-override",
  "node1",
  "--cluster-cidr",
  "10.244.0.0/16",
  "--node-ip",
  "192.168.56.11",
  "--no-nfacct",
];

/** Addresses of the topology. */
export const ADDR = {
  nodeEth0: "192.168.56.11",
  nodeEth1: "192.168.57.11",
  nodeBridge: "10.244.1.1",
  ext: "192.168.56.1",
  ext2: "192.168.57.1",
  pod1: "10.244.1.14",
  pod2: "10.244.1.16",
  pod3: "10.244.1.17",
  client: "10.244.1.20",
  lbVIP: "192.168.56.200",
  externalIP: "192.168.56.100",
} as const;

/** The pods that run a server, and the ports they listen on. */
export const SERVER_PODS = ["pod1", "pod2", "pod3"] as const;
export const POD_PORTS = [80, 8080];

const POD_ADDR: Record<"pod1" | "pod2" | "pod3" | "client", string> = {
  pod1: ADDR.pod1,
  pod2: ADDR.pod2,
  pod3: ADDR.pod3,
  client: ADDR.client,
};

export interface CurlResult {
  /** curl's exit status: 0 ok, 7 connection refused, 28 timeout. */
  code: number;
  /** The response body (empty when curl failed). */
  body: string;
  /** The HTTP status (0 when there was no response). */
  status: number;
  stderr: string;
}

export interface Topology {
  backend: Backend;
  /** Namespace names by role; `ns.node` is the node. */
  ns: Record<Role, string>;
  /** Run argv inside a role's namespace (no shell). */
  run(role: Role, argv: string[], input?: string): Exec;
  /** Run argv inside the node namespace. */
  inNode(argv: string[], input?: string): Exec;
  /** The backend's commands, e.g. `iptables-nft`, `iptables-nft-restore`, `iptables-nft-save`. */
  cmd: { iptables: string; restore: string; save: string };
  /** `iptables-<backend> <args>` in the node. */
  iptables(args: string[]): Exec;
  /** `iptables-<backend>-restore <args>` in the node, input on stdin. */
  restore(input: string, args?: string[]): Exec;
  /** `iptables-<backend>-save [args]` in the node. */
  save(args?: string[]): Exec;
  /** `curl -s --max-time <s>` from a role's namespace. */
  curl(from: Role, url: string, maxTimeSeconds?: number): CurlResult;
  /** Forget every connection the node tracks (conntrack -F in the node). */
  conntrackFlush(): void;
  /** Kill the pod servers and delete every namespace. Safe to call twice. */
  stop(): Promise<void>;
}

let counter = 0;

function must(r: Exec, what: string): Exec {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r;
}

/** Wait for `cond` with a deadline, polling every `everyMs`. */
export async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  { timeoutMs = 10_000, everyMs = 20 } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

/** Build the topology for one backend. Throws (after cleaning up) when any step fails. */
export async function startTopology(backend: Backend): Promise<Topology> {
  const tag = `${backend}${++counter}`;
  const roles: Role[] = ["node", "pod1", "pod2", "pod3", "client", "ext", "ext2"];
  const ns = Object.fromEntries(roles.map((r) => [r, `${PREFIX}${process.pid}-${tag}-${r}`])) as Record<Role, string>;
  const servers: ChildProcess[] = [];
  let stopped = false;

  const run = (role: Role, argv: string[], input?: string) => exec(["ip", "netns", "exec", ns[role], ...argv], input);
  const inNode = (argv: string[], input?: string) => run("node", argv, input);
  const ipn = (role: Role, args: string[]) =>
    must(exec(["ip", "-n", ns[role], ...args]), `ip -n ${role} ${args.join(" ")}`);
  const cmd = {
    iptables: `iptables-${backend}`,
    restore: `iptables-${backend}-restore`,
    save: `iptables-${backend}-save`,
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const exits = servers.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once("exit", () => resolve());
          p.kill("SIGKILL");
        }),
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 5_000);
    });
    await Promise.race([Promise.all(exits), deadline]);
    clearTimeout(timer);
    for (const r of roles) {
      deleteNetns(ns[r]);
    }
  };

  const topo: Topology = {
    backend,
    ns,
    run,
    inNode,
    cmd,
    iptables: (args) => inNode([cmd.iptables, ...args]),
    restore: (input, args = ["--noflush", "--counters"]) => inNode([cmd.restore, ...args], input),
    save: (args = []) => inNode([cmd.save, ...args]),
    curl: (from, url, maxTime = 2) => curlFrom(ns[from], url, maxTime),
    conntrackFlush: () => {
      const r = inNode(["conntrack", "-F"]);
      // conntrack -F reports "0 flow entries" on stderr; a failure is a real error.
      if (r.code !== 0) throw new Error(`conntrack -F: exit ${r.code}: ${r.stderr.trim()}`);
    },
    stop,
  };

  try {
    for (const r of roles) {
      must(addNetns(ns[r]), `ip netns add ${ns[r]}`);
      ipn(r, ["link", "set", "lo", "up"]);
    }

    // Node sysctls (kube-proxy's and the CNI's).
    for (const s of [
      "net.ipv4.ip_forward=1",
      "net.ipv4.conf.all.route_localnet=1",
      "net.bridge.bridge-nf-call-iptables=1",
    ]) {
      const r = inNode(["sysctl", "-w", s]);
      if (r.code !== 0)
        throw new Error(
          `sysctl -w ${s} in the node namespace failed (${r.stderr.trim()})` +
            (s.startsWith("net.bridge") ? ": br_netfilter is not available in network namespaces here" : ""),
        );
    }

    // Pod bridge.
    ipn("node", ["link", "add", "cni0", "type", "bridge", "forward_delay", "0", "stp_state", "0"]);
    ipn("node", ["addr", "add", `${ADDR.nodeBridge}/24`, "dev", "cni0"]);
    ipn("node", ["link", "set", "cni0", "up"]);
    for (const pod of ["pod1", "pod2", "pod3", "client"] as const) {
      const port = `veth${pod}`;
      ipn("node", ["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns[pod]]);
      ipn("node", ["link", "set", port, "master", "cni0"]);
      ipn("node", ["link", "set", port, "up"]);
      ipn("node", ["link", "set", port, "type", "bridge_slave", "hairpin", "on"]);
      ipn(pod, ["addr", "add", `${POD_ADDR[pod]}/24`, "dev", "eth0"]);
      ipn(pod, ["link", "set", "eth0", "up"]);
      ipn(pod, ["route", "add", "default", "via", ADDR.nodeBridge]);
    }

    // Outside links.
    ipn("node", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", ns.ext]);
    ipn("node", ["addr", "add", `${ADDR.nodeEth0}/24`, "dev", "eth0"]);
    ipn("node", ["link", "set", "eth0", "up"]);
    ipn("ext", ["addr", "add", `${ADDR.ext}/24`, "dev", "eth0"]);
    ipn("ext", ["link", "set", "eth0", "up"]);
    ipn("ext", ["route", "add", "default", "via", ADDR.nodeEth0]);
    ipn("ext", ["route", "add", `${ADDR.lbVIP}/32`, "via", ADDR.nodeEth0]);
    ipn("ext", ["route", "add", `${ADDR.externalIP}/32`, "via", ADDR.nodeEth0]);
    ipn("node", ["route", "add", "default", "via", ADDR.ext]);

    ipn("node", ["link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", ns.ext2]);
    ipn("node", ["addr", "add", `${ADDR.nodeEth1}/24`, "dev", "eth1"]);
    ipn("node", ["link", "set", "eth1", "up"]);
    ipn("ext2", ["addr", "add", `${ADDR.ext2}/24`, "dev", "eth0"]);
    ipn("ext2", ["link", "set", "eth0", "up"]);
    ipn("ext2", ["route", "add", "default", "via", ADDR.nodeEth1]);

    // The LoadBalancer VIP is the node's own (as a load balancer would deliver it). On lo:
    // the dummy module cannot be loaded here.
    ipn("node", ["addr", "add", `${ADDR.lbVIP}/32`, "dev", "lo"]);

    // Pod servers.
    for (const pod of SERVER_PODS) {
      const child = spawn(
        "ip",
        ["netns", "exec", ns[pod], process.execPath, POD_SERVER, pod, ...POD_PORTS.map(String)],
        { stdio: ["pipe", "pipe", "pipe"] },
      );
      servers.push(child);
      let err = "";
      child.stderr?.on("data", (d) => {
        err += String(d);
      });
      child.stdout?.resume();
      child.once("exit", (code, sig) => {
        if (!stopped) process.stderr.write(`pod server ${pod} exited (${code ?? sig}): ${err}\n`);
      });
    }
    await waitFor("the pod servers to answer from the node", () =>
      SERVER_PODS.every((pod) =>
        POD_PORTS.every((port) => {
          const r = curlFrom(ns.node, `http://${POD_ADDR[pod]}:${port}/`, 1);
          return r.code === 0 && r.body.startsWith(`${pod} `);
        }),
      ),
    );
    return topo;
  } catch (e) {
    await stop();
    throw e;
  }
}

function curlFrom(netns: string, url: string, maxTimeSeconds: number): CurlResult {
  const r = exec([
    "ip",
    "netns",
    "exec",
    netns,
    "curl",
    "-s",
    "--noproxy",
    "*",
    "--max-time",
    String(maxTimeSeconds),
    "-w",
    "\n%{http_code}",
    url,
  ]);
  const nl = r.stdout.lastIndexOf("\n");
  const status = Number(r.stdout.slice(nl + 1)) || 0;
  return { code: r.code, body: nl >= 0 ? r.stdout.slice(0, nl) : "", status, stderr: r.stderr };
}

/** `kip render` of the e2e manifests with the node's flags: restore input. */
export async function renderE2E(paths: string[] = [E2E_MANIFESTS], extraFlags: string[] = []): Promise<string> {
  const r = kip(["render", ...paths, ...NODE_FLAGS, ...extraFlags]);
  if (r.code !== 0) throw new Error(`kip render: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/**
 * kube-proxy's jump rules (spec §3.1), installed as it does on a fresh node: `-N` the target
 * chain (an existing one is fine), then `-I` the rule at the top of the built-in chain.
 */
export function installJumpRules(topo: Topology): void {
  for (const j of JUMP_RULES) {
    const n = topo.iptables(["-w", "-t", j.table, "-N", j.to]);
    if (n.code !== 0 && !/already exists/i.test(n.stderr))
      throw new Error(`${topo.cmd.iptables} -t ${j.table} -N ${j.to}: ${n.stderr.trim()}`);
    must(topo.iptables(["-w", "-t", j.table, "-I", j.from, ...jumpRuleArgs(j)]), `-I ${j.from} → ${j.to}`);
  }
}

/** Load restore input into the node as kube-proxy does (`--noflush --counters`). */
export function loadRules(topo: Topology, restoreInput: string): void {
  must(topo.restore(restoreInput), `${topo.cmd.restore} --noflush --counters`);
}

/** A node with kip's rules for the e2e manifests in place: jump rules, then the restore. */
export async function startNode(backend: Backend, restoreInput?: string): Promise<Topology> {
  const input = restoreInput ?? (await renderE2E());
  const topo = await startTopology(backend);
  try {
    installJumpRules(topo);
    loadRules(topo, input);
    return topo;
  } catch (e) {
    await topo.stop();
    throw e;
  }
}
