/**
 * kip in CI on application repositories as they are written: no clusterIP, no nodePort, no
 * namespace, no EndpointSlices, a kustomization.yaml beside them. The compiled binary, run as
 * a pipeline step would run it.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { kip } from "../support/binary.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";
import { tempDir } from "../support/tempdir.ts";

interface PortJSON {
  service: string;
  servicePortName: string;
  clusterIP: string;
  nodePort: number;
  endpoints: { address: string; ready: boolean }[];
  simulated?: string[];
}

/** Three repository shapes, and what each must give: service port → endpoint count. */
const REPOS: { dir: string; ns: string; ports: Record<string, number>; nodePorts: string[] }[] = [
  {
    dir: "examples/ci-app/k8s",
    ns: "shop",
    ports: {
      "shop/frontend:http": 3,
      "shop/frontend-metrics:metrics": 3,
      "shop/api:http": 2,
      "shop/api:ws": 2,
      "shop/redis-any:redis": 2,
    },
    nodePorts: ["shop/frontend:http"],
  },
  {
    dir: "tests/repos/ingress-controller",
    ns: "default",
    ports: {
      "ingress-nginx/ingress-nginx-controller:http": 2,
      "ingress-nginx/ingress-nginx-controller:https": 2,
      "ingress-nginx/ingress-nginx-controller-admission:https-webhook": 2,
    },
    nodePorts: ["ingress-nginx/ingress-nginx-controller:http", "ingress-nginx/ingress-nginx-controller:https"],
  },
  {
    dir: "tests/repos/statefulset-per-pod",
    ns: "kafka",
    ports: {
      "kafka/kafka:tcp-client": 3,
      "kafka/kafka-0-external:tcp-kafka": 1,
      "kafka/kafka-1-external:tcp-kafka": 1,
      "kafka/kafka-2-external:tcp-kafka": 1,
    },
    nodePorts: [
      "kafka/kafka-0-external:tcp-kafka",
      "kafka/kafka-1-external:tcp-kafka",
      "kafka/kafka-2-external:tcp-kafka",
    ],
  },
];

const render = (dir: string, ns: string, extra: string[] = []) =>
  kip(["render", dir, "--simulate", "--strict", "-n", ns, "--hostname-override", "node1", ...extra]);

describe("kip render --simulate on application repositories", () => {
  for (const repo of REPOS) {
    test(`${repo.dir}: every Service port gets rules and every selected workload endpoints`, () => {
      const r = render(repo.dir, repo.ns, ["-o", "json"]);
      expect(r.stderr).not.toContain("warning");
      expect(r.code).toBe(0);
      const j = JSON.parse(r.stdout) as { services: PortJSON[]; simulated: { allocated: unknown[] } };
      const got = Object.fromEntries(j.services.map((s) => [s.servicePortName, s.endpoints.length]));
      expect(got).toEqual(repo.ports);
      for (const s of j.services) {
        expect(s.clusterIP).toMatch(/^10\.(9[6-9]|1[01][0-9])\./); // inside 10.96.0.0/12
        expect(s.simulated).toContain("clusterIP");
        expect(s.simulated).toContain("endpoints");
        expect(s.nodePort > 0).toBe(repo.nodePorts.includes(s.servicePortName));
        if (s.nodePort > 0) {
          expect(s.nodePort).toBeGreaterThanOrEqual(30000);
          expect(s.nodePort).toBeLessThanOrEqual(32767);
          expect(s.simulated).toContain("nodePort");
        }
      }
      expect(r.stderr).toMatch(/kip: simulated: allocated \d+ cluster IPs?, \d+ node ports?/);
    });

    test(`${repo.dir}: the same rules on every run`, () => {
      const a = render(repo.dir, repo.ns);
      expect(a.code).toBe(0);
      expect(render(repo.dir, repo.ns).stdout).toBe(a.stdout);
    });
  }

  test("kip explain follows a packet through the simulated rules", () => {
    const r = kip(["explain", "examples/ci-app/k8s", "--simulate", "-n", "shop", "--service", "shop/frontend:http"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/from a pod/);
    expect((r.stdout.match(/^├─ 1\/3 \(33\.3%\)|^└─ 1\/3 \(33\.3%\)/gm) ?? []).length).toBe(3);
  });

  test("a kustomization.yaml is skipped with a note that says what to do", () => {
    const r = render("examples/ci-app/k8s", "shop");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      'kip: note: examples/ci-app/k8s/kustomization.yaml: a kustomization: skipping it; render the overlay with "kustomize build DIR | kip render -"',
    );
  });

  test("input without a Service is a warning, so a wrong path fails under --strict", () => {
    const dir = tempDir("kip-ci-");
    writeFileSync(join(dir, "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    const r = kip(["render", dir, "--simulate", "--strict"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`warning: no Services in ${dir}`);
  });

  test("bad cluster flags are usage errors naming the flag", () => {
    for (const [flag, value, message] of [
      ["--service-node-port-range", "30000", '--service-node-port-range: "30000" is not a port range'],
      ["--service-cluster-ip-range", "10.96.0.0/12,10.0.0.0/8", "holds two IPv4 ranges"],
      ["-n", "Shop", '--namespace: "Shop" is not a valid namespace'],
    ]) {
      const r = kip(["render", "examples/ci-app/k8s", "--simulate", flag, value]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(message);
    }
  });

  describe.skipIf(skipRealIptables())("the rendered rules load", () => {
    for (const repo of REPOS)
      for (const backend of ["nft", "legacy"])
        test(`${backend}: iptables-restore --test accepts ${repo.dir}`, async () => {
          const r = render(repo.dir, repo.ns);
          expect(r.code).toBe(0);
          await withNetns((_ns, run) => {
            const t = run([`iptables-${backend}-restore`, "--test"], r.stdout);
            expect(t.stderr).toBe("");
            expect(t.code).toBe(0);
          });
        });
  });
});

describe("kip diff --from BASE --to HEAD on an application repository", () => {
  /** A copy of examples/ci-app as BASE and an edited copy as HEAD. */
  function change(edit: (text: string) => string, file = "frontend.yaml"): { base: string; head: string } {
    const root = tempDir("kip-ci-diff-");
    const base = join(root, "base");
    const head = join(root, "head");
    cpSync("examples/ci-app/k8s", base, { recursive: true });
    cpSync("examples/ci-app/k8s", head, { recursive: true });
    writeFileSync(join(head, file), edit(readFileSync(join(head, file), "utf8")));
    return { base, head };
  }
  const diff = (c: { base: string; head: string }, extra: string[] = []) =>
    kip(["diff", "--from", c.base, "--to", c.head, "--simulate", "-n", "shop", "--hostname-override", "n1", ...extra]);

  test("replicas 3 → 5 is drift (exit 1), and the review says 3 → 5 endpoints", () => {
    const c = change((t) => t.replace("replicas: 3", "replicas: 5"));
    const text = diff(c);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain("+-A KUBE-SVC-");
    const md = diff(c, ["-o", "markdown"]);
    expect(md.code).toBe(1);
    expect(md.stdout).toContain("| `shop/frontend` | changed | http/TCP: 3 × 33.3% → 5 × 20% |");
    expect(md.stdout).toContain("Nothing new is reachable from outside the cluster.");
  });

  test("no change: exit 0 in every format", () => {
    const c = change((t) => t);
    expect(diff(c).code).toBe(0);
    const md = diff(c, ["-o", "markdown"]);
    expect(md.code).toBe(0);
    expect(md.stdout).toContain("No change to the rules kube-proxy would write.");
  });

  test("the review names an opened NodePort and a widened source range", () => {
    const c = change(
      (t) =>
        `${t.replace("- 203.0.113.0/24", "- 203.0.113.0/24\n    - 0.0.0.0/0")}---
apiVersion: v1
kind: Service
metadata: {name: debug}
spec:
  type: NodePort
  selector: {app.kubernetes.io/name: frontend}
  ports: [{name: pprof, port: 6060}]
`,
    );
    const md = diff(c, ["-o", "markdown"]);
    expect(md.code).toBe(1);
    expect(md.stdout).toMatch(/- \*\*opened\*\* · `shop\/debug`: NodePort 3\d{4}\/TCP opened \(port pprof\)/);
    expect(md.stdout).toContain(
      "- **opened** · `shop/frontend`: loadBalancerSourceRanges widened: 203.0.113.0/24 → 203.0.113.0/24, 0.0.0.0/0",
    );
    expect(md.stdout).toContain("| `shop/debug` | added |");
    expect(md.stdout).toContain("<details>");
    expect(md.stdout).toContain("```diff");
    const json = JSON.parse(diff(c, ["-o", "json"]).stdout);
    expect(json.review.exposure.filter((x: { kind: string }) => x.kind === "opened")).toHaveLength(2);
  });

  test("-o markdown needs --from/--to", () => {
    const r = kip(["diff", "examples/ci-app/k8s", "--live", "/dev/null", "-o", "markdown"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("-o markdown reviews a change: give --from BASE --to HEAD");
  });
});
