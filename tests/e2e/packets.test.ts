/**
 * Packets through the rules kip renders, on a node made of network namespaces
 * (tests/support/topology.ts), once per iptables backend: kube-proxy's jump rules (spec §3.1)
 * plus `kip render tests/e2e/manifests` loaded with `iptables-restore --noflush --counters`,
 * then real TCP connections with curl from pods, from the node and from outside clients.
 *
 * Needs root, iproute2, iptables (nft and legacy), conntrack and curl; skipped on a developer
 * machine without them, never under CI=true.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { ensureBinary } from "../support/binary.ts";
import { skipRealIptables } from "../support/netns.ts";
import {
  ADDR,
  BACKENDS,
  type CurlResult,
  E2E_MANIFESTS,
  NODE_FLAGS,
  type Role,
  renderE2E,
  SERVER_PODS,
  startNode,
  type Topology,
} from "../support/topology.ts";

const skip = skipRealIptables();
const KIP = skip ? "" : ensureBinary();

const NGINX_SVC = "http://10.97.54.248/";
const NODEPORT = `http://${ADDR.nodeEth0}:31082/`;
const AFFINITY_SVC = "http://10.96.100.10/";
const NO_ENDPOINTS_SVC = "http://10.96.100.20/";
const LOCAL_NODEPORT = `http://${ADDR.nodeEth0}:31083/`;
const LB_VIP = `http://${ADDR.lbVIP}/`;
const EXTERNAL_IP = `http://${ADDR.externalIP}/`;

/** The answer of a pod server: which pod, and the client address it saw. */
function answer(r: CurlResult): { pod: string; client: string } {
  const [pod = "", client = ""] = r.body.split(" ");
  return { pod, client };
}

/** Fail with curl's exit code and stderr rather than a bare "expected 0". */
function ok(r: CurlResult, what: string): { pod: string; client: string } {
  if (r.code !== 0 || r.status !== 200)
    throw new Error(`${what}: curl exit ${r.code}, HTTP ${r.status}, body ${JSON.stringify(r.body)} ${r.stderr}`);
  return answer(r);
}

let restoreInput: string | undefined;

for (const backend of BACKENDS) {
  describe.skipIf(skip)(`packets through kip's rules (${backend})`, () => {
    let topo: Topology | undefined;
    const node = () => {
      if (!topo) throw new Error("topology not started");
      return topo;
    };

    beforeAll(async () => {
      restoreInput ??= await renderE2E();
      topo = await startNode(backend, restoreInput);
    }, 120_000);

    afterAll(async () => {
      await topo?.stop();
    });

    // conntrack state would carry a previous check's DNAT choice into the next one.
    beforeEach(() => node().conntrackFlush());

    /** Request until every pod was seen, at most `max` times; returns what was seen. */
    function spread(from: Role, url: string, max = 60): Map<string, string> {
      const seen = new Map<string, string>();
      for (let i = 0; i < max && seen.size < SERVER_PODS.length; i++) {
        const a = ok(node().curl(from, url), `${from} → ${url}`);
        seen.set(a.pod, a.client);
      }
      return seen;
    }

    test("ClusterIP from a pod reaches all three endpoints, unmasqueraded", () => {
      const seen = spread("client", NGINX_SVC);
      expect([...seen.keys()].sort()).toEqual([...SERVER_PODS]);
      for (const client of seen.values()) expect(client).toBe(ADDR.client);
    }, 30_000);

    test("ClusterIP from the node itself reaches all three endpoints, masqueraded", () => {
      const seen = spread("node", NGINX_SVC);
      expect([...seen.keys()].sort()).toEqual([...SERVER_PODS]);
      // Not from the pod CIDR: KUBE-MARK-MASQ, then MASQUERADE to cni0's address.
      for (const client of seen.values()) expect(client).toBe(ADDR.nodeBridge);
    }, 30_000);

    test("NodePort from outside answers, client masqueraded to the node", () => {
      const a = ok(node().curl("ext", NODEPORT), `ext → ${NODEPORT}`);
      expect(SERVER_PODS as readonly string[]).toContain(a.pod);
      expect(a.client).not.toBe(ADDR.ext);
      expect(a.client).toBe(ADDR.nodeBridge);
    });

    test("ClientIP affinity: 10 requests from one client land on one pod", () => {
      const pods = new Set<string>();
      for (let i = 0; i < 10; i++) pods.add(ok(node().curl("client", AFFINITY_SVC), AFFINITY_SVC).pod);
      expect(pods.size).toBe(1);
      expect(SERVER_PODS as readonly string[]).toContain([...pods][0]);
    }, 30_000);

    test("a service without endpoints is refused at once (REJECT), not timed out", () => {
      const started = performance.now();
      const r = node().curl("client", NO_ENDPOINTS_SVC);
      expect(r.code).toBe(7);
      expect(performance.now() - started).toBeLessThan(1_500);
    });

    test("ETP=Local NodePort from outside: only the local pod answers, with the real client address", () => {
      for (let i = 0; i < 20; i++) {
        const a = ok(node().curl("ext", LOCAL_NODEPORT), `ext → ${LOCAL_NODEPORT} #${i + 1}`);
        expect(a).toEqual({ pod: "pod1", client: ADDR.ext });
      }
    }, 30_000);

    test("hairpin: pod1 reaching nginx-svc can land on itself, masqueraded", () => {
      let self: { pod: string; client: string } | undefined;
      for (let i = 0; i < 60 && !self; i++) {
        const a = ok(node().curl("pod1", NGINX_SVC), `pod1 → ${NGINX_SVC}`);
        if (a.pod === "pod1") self = a;
        // Another pod sees pod1's own address (pod-to-pod traffic is not masqueraded).
        else expect(a.client).toBe(ADDR.pod1);
      }
      expect(self?.pod).toBe("pod1");
      // KUBE-SEP's "-s <endpoint> -j KUBE-MARK-MASQ": a pod talking to itself via the
      // service is SNATed, so the reply goes back through the node.
      expect(self?.client).toBe(ADDR.nodeBridge);
    }, 30_000);

    test("LoadBalancer: allowed source range answers, other sources are dropped", () => {
      const a = ok(node().curl("ext", LB_VIP), `ext → ${LB_VIP}`);
      expect(SERVER_PODS as readonly string[]).toContain(a.pod);
      // 192.168.57.1 is outside loadBalancerSourceRanges: KUBE-PROXY-FIREWALL drops it.
      const r = node().curl("ext2", LB_VIP);
      expect(r.code).toBe(28);
      // ext2 itself reaches the node: the drop is the firewall, not a missing route.
      expect(ok(node().curl("ext2", `http://${ADDR.nodeEth1}:31082/`), "ext2 → nodePort").pod).toMatch(/^pod[123]$/);
    }, 15_000);

    test("externalIPs: reachable from outside via the node", () => {
      const a = ok(node().curl("ext", EXTERNAL_IP), `ext → ${EXTERNAL_IP}`);
      expect(SERVER_PODS as readonly string[]).toContain(a.pod);
      expect(a.client).toBe(ADDR.nodeBridge);
    });

    // Last, because it takes the rules away: the node as kip diff and kip cleanup see it.
    test("kip diff finds no drift; kip cleanup removes it all; ClusterIP traffic stops", () => {
      const diff = node().inNode([
        KIP,
        "diff",
        E2E_MANIFESTS,
        ...NODE_FLAGS,
        "--ip-family",
        "IPv4",
        "--backend",
        backend,
        "--no-color",
      ]);
      expect(diff.stdout).toBe("kip diff: IPv4: no drift\n");
      expect(diff.code).toBe(0);
      expect(ok(node().curl("client", NGINX_SVC), "before cleanup").pod).toMatch(/^pod[123]$/);

      const clean = node().inNode([KIP, "cleanup"]);
      expect(clean.code).toBe(0);
      expect(clean.stdout).toContain(`IPv4 ${backend}: removed nat:`);
      expect(node().save().stdout).not.toMatch(/^:KUBE-/m);

      node().conntrackFlush();
      expect(node().curl("client", NGINX_SVC).code).not.toBe(0);
      // The pods themselves still answer: only the service routing is gone.
      expect(ok(node().curl("client", `http://${ADDR.pod1}/`), "pod1 directly").pod).toBe("pod1");
      const after = node().inNode([
        KIP,
        "diff",
        E2E_MANIFESTS,
        ...NODE_FLAGS,
        "--ip-family",
        "IPv4",
        "--backend",
        backend,
        "--no-color",
      ]);
      expect(after.code).toBe(1);
      expect(after.stdout).toMatch(/chains missing/);
    }, 30_000);
  });
}
