/**
 * `kip explain --live` against real packets, on the node of namespaces from
 * tests/support/topology.ts (kube-proxy's jump rules + the rendered e2e manifests), once per
 * backend. For each check, explain runs inside the node namespace on the live tables; then
 * real connections (bounded curl loops) must reach exactly the pods it predicts, and each pod
 * must see the client address it predicts (masqueraded ⇒ the address MASQUERADE picks, the
 * node's bridge address 10.244.1.1; not masqueraded ⇒ the client's own).
 *
 * One extra Service (a NodePort without endpoints) checks the node's own traffic to its own
 * address: it loops back through filter INPUT, where KUBE-EXTERNAL-SERVICES rejects it.
 *
 * Needs root, iproute2, iptables (nft and legacy), conntrack and curl; skipped on a developer
 * machine without them, never under CI=true.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Explanation } from "../../lib/explain/types.ts";
import { ensureBinary } from "../support/binary.ts";
import { skipRealIptables } from "../support/netns.ts";
import { removeTempDir, tempDir } from "../support/tempdir.ts";
import {
  ADDR,
  BACKENDS,
  E2E_MANIFESTS,
  type Role,
  renderE2E,
  SERVER_PODS,
  startNode,
  type Topology,
} from "../support/topology.ts";

const skip = skipRealIptables();
const KIP = skip ? "" : ensureBinary();

/** A NodePort Service without endpoints (node1's own traffic to it meets filter INPUT). */
const EXTRA = `apiVersion: v1
kind: Service
metadata: { name: np-no-endpoints, namespace: default }
spec:
  type: NodePort
  clusterIP: 10.96.100.60
  ports: [{ port: 80, protocol: TCP, targetPort: 80, nodePort: 31085 }]
`;
const NP_EMPTY = 31085;
/** A port the node's own test server also answers on, outside any rule. */
const NODE_PLAIN_PORT = 31086;

const POD_OF: Record<string, string> = { [ADDR.pod1]: "pod1", [ADDR.pod2]: "pod2", [ADDR.pod3]: "pod3" };

interface Check {
  name: string;
  from: "pod" | "node" | "external";
  /** Where curl runs. */
  client: Role;
  src?: string;
  inInterface?: string;
  dst: string;
}

const CHECKS: Check[] = [
  {
    name: "ClusterIP from the client pod",
    from: "pod",
    client: "client",
    src: ADDR.client,
    inInterface: "cni0",
    dst: "10.97.54.248:80",
  },
  { name: "ClusterIP from the node", from: "node", client: "node", dst: "10.97.54.248:80" },
  {
    name: "NodePort from ext",
    from: "external",
    client: "ext",
    src: ADDR.ext,
    inInterface: "eth0",
    dst: `${ADDR.nodeEth0}:31082`,
  },
  {
    name: "ETP=Local NodePort from ext",
    from: "external",
    client: "ext",
    src: ADDR.ext,
    inInterface: "eth0",
    dst: `${ADDR.nodeEth0}:31083`,
  },
  {
    name: "LoadBalancer from ext (allowed)",
    from: "external",
    client: "ext",
    src: ADDR.ext,
    inInterface: "eth0",
    dst: `${ADDR.lbVIP}:80`,
  },
  {
    name: "LoadBalancer from ext2 (not allowed)",
    from: "external",
    client: "ext2",
    src: ADDR.ext2,
    inInterface: "eth1",
    dst: `${ADDR.lbVIP}:80`,
  },
  {
    name: "externalIP from ext",
    from: "external",
    client: "ext",
    src: ADDR.ext,
    inInterface: "eth0",
    dst: `${ADDR.externalIP}:80`,
  },
  {
    name: "no-endpoints service from the client pod",
    from: "pod",
    client: "client",
    src: ADDR.client,
    inInterface: "cni0",
    dst: "10.96.100.20:80",
  },
  {
    name: "hairpin from pod1",
    from: "pod",
    client: "pod1",
    src: ADDR.pod1,
    inInterface: "cni0",
    dst: "10.97.54.248:80",
  },
  {
    name: "node → its own NodePort without endpoints",
    from: "node",
    client: "node",
    dst: `${ADDR.nodeEth0}:${NP_EMPTY}`,
  },
];

let restoreInput: string | undefined;
let extraDir: string | undefined;

for (const backend of BACKENDS) {
  describe.skipIf(skip)(`kip explain --live predicts real packets (${backend})`, () => {
    let topo: Topology | undefined;
    let nodeServer: ChildProcess | undefined;
    const node = () => {
      if (!topo) throw new Error("topology not started");
      return topo;
    };

    beforeAll(async () => {
      if (!restoreInput) {
        extraDir = tempDir("kip-explain-e2e-");
        writeFileSync(join(extraDir, "np-no-endpoints.yaml"), EXTRA);
        restoreInput = await renderE2E([E2E_MANIFESTS, extraDir]);
      }
      topo = await startNode(backend, restoreInput);
      // A listener on the node itself: a refusal on NP_EMPTY is then the REJECT rule's doing.
      const server = spawn(
        "ip",
        [
          "netns",
          "exec",
          topo.ns.node,
          process.execPath,
          join(import.meta.dir, "..", "support", "pod_server.ts"),
          "node",
          String(NP_EMPTY),
          String(NODE_PLAIN_PORT),
        ],
        { stdio: ["pipe", "pipe", "pipe"] },
      );
      nodeServer = server;
      await new Promise<void>((resolve, reject) => {
        let out = "";
        const timer = setTimeout(() => reject(new Error("the node's test server did not start in 10 s")), 10_000);
        server.stdout?.on("data", (d) => {
          out += String(d);
          if (out.includes("ready")) {
            clearTimeout(timer);
            resolve();
          }
        });
        server.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`the node's test server exited (${code})`));
        });
      });
    }, 120_000);

    afterAll(async () => {
      if (nodeServer && nodeServer.exitCode === null) {
        const gone = new Promise((r) => nodeServer?.once("exit", r));
        nodeServer.kill("SIGKILL");
        await gone;
      }
      await topo?.stop();
      if (extraDir && backend === BACKENDS.at(-1)) removeTempDir(extraDir);
    });

    beforeEach(() => node().conntrackFlush());

    function explainLive(c: Check): Explanation {
      const argv = [KIP, "explain", "--live", "--backend", backend, "--from", c.from, "--dst", c.dst, "-o", "json"];
      if (c.src) argv.push("--src", c.src);
      if (c.inInterface) argv.push("--in-interface", c.inInterface);
      const r = node().inNode(argv);
      if (r.code !== 0) throw new Error(`kip explain: exit ${r.code}: ${r.stderr}`);
      return JSON.parse(r.stdout) as Explanation;
    }

    for (const c of CHECKS) {
      test(c.name, () => {
        const ex = explainLive(c);
        expect(ex.unknown).toEqual([]);
        // Predicted: pod → the client address it sees.
        const want = new Map<string, string>();
        for (const o of ex.outcomes) {
          if (o.verdict !== "DNAT") continue;
          const ip = o.dnat?.split(":")[0] ?? "";
          const pod = POD_OF[ip];
          if (!pod) throw new Error(`explain predicts ${o.dnat}, which is no pod of this node`);
          want.set(pod, o.masquerade ? (o.masquerade.to ?? "?") : ex.packet.src);
        }
        const blocked = ex.outcomes.filter((o) => o.verdict === "REJECT" || o.verdict === "DROP");
        expect(blocked.length === 0 || want.size === 0).toBe(true);

        const url = `http://${c.dst}/`;
        if (want.size === 0) {
          // REJECT: refused at once (curl 7); DROP: no answer (curl 28).
          expect(blocked.length).toBe(1);
          const r = node().curl(c.client, url, 1);
          expect(r.code).toBe(blocked[0].verdict === "REJECT" ? 7 : 28);
          if (c.client === "node" && c.dst.endsWith(`:${NP_EMPTY}`)) {
            // The listener is there: only the rule refused the connection.
            expect(node().curl("node", `http://${ADDR.nodeEth0}:${NODE_PLAIN_PORT}/`, 2).body).toStartWith("node ");
          }
          return;
        }
        const seen = new Map<string, string>();
        const tries = want.size === 1 ? 8 : 60;
        for (let i = 0; i < tries && !(want.size > 1 && seen.size === want.size); i++) {
          const r = node().curl(c.client, url, 2);
          if (r.code !== 0 || r.status !== 200)
            throw new Error(`${c.name}: curl exit ${r.code}, HTTP ${r.status}: ${r.stderr}`);
          const [pod = "", client = ""] = r.body.split(" ");
          const prev = seen.get(pod);
          if (prev !== undefined) expect(`${pod} saw ${client}`).toBe(`${pod} saw ${prev}`);
          seen.set(pod, client);
        }
        expect([...seen.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [pod, client] of seen) expect(`${pod} saw ${client}`).toBe(`${pod} saw ${want.get(pod)}`);
        // Masqueraded traffic shows up as the node's bridge address, as MASQUERADE picks it.
        for (const o of ex.outcomes) if (o.masquerade) expect(o.masquerade.to).toBe(ADDR.nodeBridge);
        expect(SERVER_PODS as readonly string[]).toEqual(expect.arrayContaining([...seen.keys()]));
      }, 30_000);
    }
  });
}
