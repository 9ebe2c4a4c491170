/**
 * The apiserver source, driving the real @kubernetes/client-node (list, watch, ListWatch)
 * over HTTPS against the in-repo test apiserver (tests/support/apiserver.ts).
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type ApiserverSourceOptions, createApiserverSource, leanCached } from "../../lib/sources/apiserver.ts";
import {
  type ObjectKind,
  PROXY_LABEL_SELECTOR,
  type Source,
  type SourceEvent,
  type SourceHandler,
} from "../../lib/sources/source.ts";
import { makeCertificateAuthority, startTestApiserver, type TestApiserver } from "../support/apiserver.ts";

const ROOT = resolve(import.meta.dir, "../..");
const NODE = "node1";

// ---------------------------------------------------------------------------------------------
// Fixtures

const svc = (name: string, ip: string, o: { ns?: string; labels?: Record<string, string>; port?: number } = {}) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace: o.ns ?? "default", labels: o.labels },
  spec: {
    type: "ClusterIP",
    clusterIP: ip,
    clusterIPs: [ip],
    ports: [{ name: "http", port: o.port ?? 80, protocol: "TCP" }],
  },
});

const slice = (name: string, service: string, ips: string[], labels: Record<string, string> = {}) => ({
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name, namespace: "default", labels: { "kubernetes.io/service-name": service, ...labels } },
  addressType: "IPv4",
  ports: [{ name: "http", port: 8080, protocol: "TCP" }],
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true }, nodeName: NODE })),
});

const node = (name: string, labels: Record<string, string> = {}) => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name, labels },
  spec: { podCIDRs: ["10.244.1.0/24"] },
  status: { addresses: [{ type: "InternalIP", address: "192.168.0.11" }] },
});

// ---------------------------------------------------------------------------------------------
// A handler that records everything and can wait for a condition (no sleeps)

class Recorder implements SourceHandler {
  events: SourceEvent[] = [];
  problems: string[] = [];
  synced: ObjectKind[] = [];
  /** Everything in order: events as `upsert Service default/web`, `synced Service`, `problem …`. */
  timeline: string[] = [];
  state: Record<ObjectKind, Map<string, any>> = { Service: new Map(), EndpointSlice: new Map(), Node: new Map() };
  private waiters = new Set<() => void>();

  onEvent(e: SourceEvent) {
    this.events.push(e);
    this.timeline.push(`${e.type} ${e.kind} ${e.key}`);
    if (e.type === "upsert") this.state[e.kind].set(e.key, e.object);
    else this.state[e.kind].delete(e.key);
    this.notify();
  }
  onSynced(kind: ObjectKind) {
    this.synced.push(kind);
    this.timeline.push(`synced ${kind}`);
    this.notify();
  }
  onProblem(message: string) {
    this.problems.push(message);
    this.timeline.push(`problem ${message}`);
    this.notify();
  }
  keys(kind: ObjectKind): string[] {
    return [...this.state[kind].keys()].sort();
  }
  allSynced(): boolean {
    return ["Service", "EndpointSlice", "Node"].every((k) => this.synced.includes(k as ObjectKind));
  }
  private notify() {
    for (const w of [...this.waiters]) w();
  }
  /** Resolves once `pred()` holds (checked after every callback), rejects at the deadline with what was seen. */
  waitFor(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (pred()) return resolve();
      const check = () => {
        if (!pred()) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${what}; seen:\n  ${this.timeline.join("\n  ")}`),
        );
      }, timeoutMs);
      this.waiters.add(check);
    });
  }
}

// ---------------------------------------------------------------------------------------------

let server: TestApiserver;
const sources: Source[] = [];

beforeEach(async () => {
  server = await startTestApiserver();
});
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  await server.close();
});

const FAST_RETRY = { initialMs: 20, maxMs: 200 };

async function startSource(
  o: Partial<ApiserverSourceOptions> = {},
): Promise<{ source: Source; rec: Recorder; logs: string[] }> {
  const logs: string[] = [];
  const source = createApiserverSource({
    kubeconfig: server.kubeconfigPath,
    nodeName: NODE,
    env: { HOME: server.dir },
    retry: FAST_RETRY,
    onLog: (m) => logs.push(m),
    ...o,
  });
  sources.push(source);
  const rec = new Recorder();
  await source.start(rec);
  return { source, rec, logs };
}

async function startSynced(o: Partial<ApiserverSourceOptions> = {}) {
  const r = await startSource(o);
  await r.rec.waitFor("all three informers synced", () => r.rec.allSynced());
  await server.waitFor("three watches open", () => server.openWatches() === 3);
  return r;
}

const lists = (path?: string) => server.requests.filter((r) => !r.watch && (!path || r.path === path));
const watches = (path?: string) => server.requests.filter((r) => r.watch && (!path || r.path === path));
const SERVICES = "/api/v1/services";
const SLICES = "/apis/discovery.k8s.io/v1/endpointslices";
const NODES = "/api/v1/nodes";

function seedCluster() {
  server.add(svc("web", "10.96.0.10"));
  server.add(svc("other-proxy", "10.96.0.11", { labels: { "service.kubernetes.io/service-proxy-name": "other" } }));
  server.add(svc("headless-labelled", "10.96.0.12", { labels: { "service.kubernetes.io/headless": "" } }));
  server.add(svc("api", "10.96.0.13", { ns: "shop" }));
  server.add(slice("web-abc", "web", ["10.244.1.5"]));
  server.add(
    slice("other-proxy-xyz", "other-proxy", ["10.244.1.6"], { "service.kubernetes.io/service-proxy-name": "other" }),
  );
  server.add(node(NODE, { "topology.kubernetes.io/zone": "z1" }));
  server.add(node("node2"));
}

// ---------------------------------------------------------------------------------------------

describe("apiserver source: lists and watches", () => {
  test("initial list: each kind's objects, then onSynced; selectors are sent and honoured", async () => {
    seedCluster();
    const { rec } = await startSynced();

    expect(rec.keys("Service")).toEqual(["default/web", "shop/api"]);
    expect(rec.keys("EndpointSlice")).toEqual(["default/web-abc"]);
    expect(rec.keys("Node")).toEqual([NODE]);
    expect(rec.problems).toEqual([]);
    // The validated model, not the raw object.
    expect(rec.state.Service.get("default/web")).toMatchObject({
      namespace: "default",
      name: "web",
      clusterIPs: ["10.96.0.10"],
      ports: [{ name: "http", port: 80, protocol: "TCP" }],
    });
    expect(rec.state.EndpointSlice.get("default/web-abc").endpoints[0].addresses).toEqual(["10.244.1.5"]);
    expect(rec.state.Node.get(NODE)).toMatchObject({
      name: NODE,
      labels: { "topology.kubernetes.io/zone": "z1" },
      podCIDRs: ["10.244.1.0/24"],
      addresses: [{ type: "InternalIP", address: "192.168.0.11" }],
    });
    // Each kind's upserts come before its onSynced, and onSynced comes once.
    for (const kind of ["Service", "EndpointSlice", "Node"] as const) {
      const at = rec.timeline.indexOf(`synced ${kind}`);
      const lastUpsert = rec.timeline.findLastIndex((l) => l.startsWith(`upsert ${kind} `));
      expect(lastUpsert).toBeLessThan(at);
      expect(rec.synced.filter((k) => k === kind)).toHaveLength(1);
    }
    // Every request of the informers carried the selectors of spec §1.1.
    for (const path of [SERVICES, SLICES]) {
      const reqs = server.requests.filter((r) => r.path === path);
      expect(reqs.length).toBeGreaterThanOrEqual(2);
      for (const r of reqs) expect(r.query.labelSelector).toBe(PROXY_LABEL_SELECTOR);
    }
    for (const r of server.requests.filter((r) => r.path === NODES))
      expect(r.query.fieldSelector).toBe(`metadata.name=${NODE}`);
    // Watches start at the list's resourceVersion and ask for bookmarks.
    for (const w of watches()) {
      expect(w.query.resourceVersion).toBe(String(server.resourceVersion));
      expect(w.query.allowWatchBookmarks).toBe("true");
      expect(Number(w.query.timeoutSeconds)).toBeGreaterThan(0);
    }
  });

  test("add, modify and delete arrive as events; selector entries and exits too", async () => {
    seedCluster();
    const { rec } = await startSynced();
    const before = rec.events.length;

    server.add(svc("new", "10.96.0.20"));
    server.update(svc("web", "10.96.0.10", { port: 8080 }));
    server.remove("Service", "shop", "api");
    server.add(slice("new-1", "new", ["10.244.1.7", "10.244.1.8"]));
    server.remove("EndpointSlice", "default", "web-abc");
    server.update(node(NODE, { "topology.kubernetes.io/zone": "z2" }));
    server.update(node("node2", { changed: "yes" })); // not this node: never delivered
    // Gains the service-proxy-name label: leaves the selector, so it is a delete for us.
    server.update(svc("new", "10.96.0.20", { labels: { "service.kubernetes.io/service-proxy-name": "other" } }));
    // Loses the label: enters the selector.
    server.update(svc("other-proxy", "10.96.0.11"));

    await rec.waitFor("the changes", () => rec.state.Node.get(NODE)?.labels["topology.kubernetes.io/zone"] === "z2");
    await rec.waitFor("the service changes", () => rec.state.Service.has("default/other-proxy"));
    await rec.waitFor("the slice changes", () => !rec.state.EndpointSlice.has("default/web-abc"));

    expect(rec.keys("Service")).toEqual(["default/other-proxy", "default/web"]);
    expect(rec.state.Service.get("default/web").ports[0].port).toBe(8080);
    expect(rec.keys("EndpointSlice")).toEqual(["default/new-1"]);
    expect(rec.state.EndpointSlice.get("default/new-1").endpoints).toHaveLength(2);
    expect(rec.keys("Node")).toEqual([NODE]);
    expect(rec.timeline.slice(rec.timeline.indexOf(`synced Node`))).not.toContain("upsert Node node2");
    const after = rec.events.slice(before).map((e) => `${e.type} ${e.kind} ${e.key}`);
    expect(after).toContain("upsert Service default/new");
    expect(after).toContain("delete Service default/new");
    expect(after).toContain("delete Service shop/api");
    expect(after).toContain("delete EndpointSlice default/web-abc");
    expect(after.filter((e) => e.includes("node2"))).toEqual([]);
    expect(rec.problems).toEqual([]);
    // Watches only: no relist was needed.
    expect(lists()).toHaveLength(3);
  });

  test("chunked lists (limit/continue) deliver every object once", async () => {
    for (let i = 0; i < 5; i++) server.add(svc(`s${i}`, `10.96.1.${i + 1}`));
    server.add(node(NODE));
    const { rec, logs } = await startSynced({ listPageSize: 2 });
    expect(rec.keys("Service")).toEqual(["default/s0", "default/s1", "default/s2", "default/s3", "default/s4"]);
    expect(rec.events.filter((e) => e.kind === "Service")).toHaveLength(5);
    const pages = lists(SERVICES);
    expect(pages.map((r) => r.query.limit)).toEqual(["2", "2", "2"]);
    expect(pages[0].query.continue).toBeUndefined();
    expect(pages[1].query.continue).toBeTruthy();
    expect(pages[2].query.continue).toBeTruthy();
    expect(logs.some((l) => l.includes("Listed 5 services") && l.includes("in 3 chunks"))).toBe(true);
  });

  test("BOOKMARK events move the resourceVersion: renewing after a compaction needs no relist", async () => {
    seedCluster();
    const { rec } = await startSynced();
    // Unrelated writes move the global resourceVersion past every informer's last event.
    server.update(node("node2", { a: "1" }));
    server.add(svc("filtered", "10.96.0.30", { labels: { "service.kubernetes.io/headless": "" } }));
    const bookmarkRV = server.resourceVersion;
    server.compactBefore(bookmarkRV);
    const watchesBefore = watches().length;
    // Each watch gets a BOOKMARK at bookmarkRV, then the server ends it (as at timeoutSeconds).
    expect(server.bookmark({ thenClose: true })).toBe(3);
    await server.waitFor(
      "three renewed watches",
      () => watches().length === watchesBefore + 3 && server.openWatches() === 3,
    );
    const renewed = watches().slice(watchesBefore);
    // Without bookmark handling these would ask for older versions and get 410 Gone.
    expect(renewed.map((w) => w.query.resourceVersion)).toEqual([
      String(bookmarkRV),
      String(bookmarkRV),
      String(bookmarkRV),
    ]);
    expect(renewed.some((w) => w.gone)).toBe(false);
    expect(lists()).toHaveLength(3);
    expect(rec.problems).toEqual([]);
    // Still live after the renewal.
    server.add(svc("after", "10.96.0.31"));
    await rec.waitFor("an event on the renewed watch", () => rec.state.Service.has("default/after"));
  });

  test("a watch the server ends at timeoutSeconds is renewed from its resourceVersion, quietly", async () => {
    seedCluster();
    const { rec, logs } = await startSynced({ watchTimeoutSeconds: 1 });
    expect(watches().map((w) => w.query.timeoutSeconds)).toEqual(["1", "1", "1"]);
    await server.waitFor("three renewed watches", () => watches().length >= 6 && server.openWatches() === 3);
    for (const w of watches().slice(3, 6)) expect(w.query.resourceVersion).toBe(String(server.resourceVersion));
    expect(rec.problems).toEqual([]);
    expect(lists()).toHaveLength(3);
    expect(logs.some((l) => /^Watch of \w+ ended after 1s; renewing$/.test(l))).toBe(true);
  });

  test("410 Gone: the informer relists and the state after the relist is right", async () => {
    seedCluster();
    server.add(svc("old", "10.96.0.40"));
    server.add(slice("old-1", "old", ["10.244.1.40"]));
    const { rec } = await startSynced();
    expect(rec.keys("Service")).toEqual(["default/old", "default/web", "shop/api"]);

    await server.stop();
    // While the client is away: changes, then a compaction past its resourceVersion.
    server.add(svc("new", "10.96.0.41"));
    server.update(svc("web", "10.96.0.10", { port: 9090 }));
    server.remove("Service", "default", "old");
    server.remove("EndpointSlice", "default", "old-1");
    server.update(node(NODE, { "topology.kubernetes.io/zone": "z9" }));
    server.compactBefore(server.resourceVersion);
    const listsBefore = lists().length;
    await server.restart();

    await rec.waitFor(
      "the relisted state",
      () =>
        rec.keys("Service").join() === "default/new,default/web,shop/api" &&
        rec.state.Service.get("default/web")?.ports[0].port === 9090 &&
        rec.keys("EndpointSlice").join() === "default/web-abc" &&
        rec.state.Node.get(NODE)?.labels["topology.kubernetes.io/zone"] === "z9",
    );
    // The watches were refused with 410 and every informer listed again.
    expect(watches().some((w) => w.gone)).toBe(true);
    await server.waitFor("three relists", () => lists().length >= listsBefore + 3);
    expect(rec.problems.some((p) => p.includes("410 Gone") && p.includes("relisting"))).toBe(true);
    // onSynced is not repeated by a relist.
    expect(rec.synced).toHaveLength(3);
  });

  test("a dropped watch reconnects from its resourceVersion without losing events", async () => {
    seedCluster();
    const { rec } = await startSynced();
    expect(server.dropWatches()).toBe(3);
    // Changes while the client reconnects: they must come from the watch backlog.
    server.add(svc("during", "10.96.0.50"));
    server.update(svc("web", "10.96.0.10", { port: 81 }));
    server.remove("Service", "shop", "api");
    server.add(slice("during-1", "during", ["10.244.1.50"]));
    await rec.waitFor(
      "the changes made during the reconnect",
      () =>
        rec.keys("Service").join() === "default/during,default/web" &&
        rec.state.Service.get("default/web")?.ports[0].port === 81 &&
        rec.state.EndpointSlice.has("default/during-1"),
    );
    await server.waitFor("three watches again", () => server.openWatches() === 3);
    expect(rec.problems.filter((p) => p.startsWith("Watch of ") && p.includes("failed"))).toHaveLength(3);
    expect(rec.events.filter((e) => e.key === "default/during")).toHaveLength(1);
    expect(lists()).toHaveLength(3); // resumed, not relisted
  });

  test("apiserver stopped and restarted: the problem is reported, the source reconnects and converges", async () => {
    seedCluster();
    const { rec } = await startSynced();
    const seen = rec.problems.length;
    await server.stop();
    // The watches break, and reconnecting is refused for a while.
    await rec.waitFor("a refused connection", () =>
      rec.problems.slice(seen).some((p) => /ECONNREFUSED|Unable to connect|refused/i.test(p)),
    );
    expect(rec.problems.slice(seen).every((p) => /retrying in \d+m?s$/.test(p))).toBe(true);
    server.add(svc("while-down", "10.96.0.60"));
    server.remove("EndpointSlice", "default", "web-abc");
    await server.restart();
    await rec.waitFor(
      "convergence after the restart",
      () => rec.state.Service.has("default/while-down") && !rec.state.EndpointSlice.has("default/web-abc"),
    );
    await server.waitFor("three watches again", () => server.openWatches() === 3);
    expect(lists()).toHaveLength(3);
  });
});

describe("apiserver source: refusals and bad objects", () => {
  test("a server certificate from another CA is refused: problems, no events, no request reaches it", async () => {
    seedCluster();
    const other = makeCertificateAuthority(join(server.dir, "other"), "other");
    const { rec } = await startSource({ kubeconfig: server.writeKubeconfig({ caPath: other.certPath }) });
    // Every informer fails, and retries with a growing delay.
    await rec.waitFor("two failures of each informer", () =>
      ["services", "endpointslices", "nodes"].every(
        (r) => rec.problems.filter((p) => p.startsWith(`List of ${r} failed`)).length >= 2,
      ),
    );
    expect(rec.problems[0]).toMatch(/certificate|verify|self.signed|issuer/i);
    expect(rec.problems.filter((p) => p.startsWith("List of services"))[0]).toMatch(/retrying in 20ms$/);
    expect(rec.problems.filter((p) => p.startsWith("List of services"))[1]).toMatch(/retrying in 40ms$/);
    expect(rec.events).toEqual([]);
    expect(rec.synced).toEqual([]);
    expect(server.requests).toEqual([]); // the TLS handshake never completed
  });

  test("a wrong token is refused: 401 problems, no events", async () => {
    seedCluster();
    const { rec } = await startSource({ kubeconfig: server.writeKubeconfig({ token: "not-the-token" }) });
    await rec.waitFor("each informer refused", () =>
      ["services", "endpointslices", "nodes"].every((r) =>
        rec.problems.some((p) => p.startsWith(`List of ${r} failed`)),
      ),
    );
    for (const p of rec.problems) expect(p).toMatch(/^List of \w+ failed: HTTP 401 Unauthorized; retrying in \d+ms$/);
    expect(rec.events).toEqual([]);
    expect(rec.synced).toEqual([]);
    expect(server.requests.length).toBeGreaterThan(0);
    expect(server.requests.every((r) => r.status === 401)).toBe(true);
  });

  test("an invalid object: a problem naming it and the field, a delete for its key, the rest delivered", async () => {
    seedCluster();
    server.add(svc("bad", "1.2.3.999"));
    server.add({ ...slice("bad-slice", "web", ["10.244.1.9"]), addressType: "IPv7" });
    const { rec } = await startSynced();
    expect(rec.keys("Service")).toEqual(["default/web", "shop/api"]);
    expect(rec.keys("EndpointSlice")).toEqual(["default/web-abc"]);
    expect(rec.problems).toContain(
      'Service default/bad: spec.clusterIPs[0]: "1.2.3.999" is not a valid IP address (object ignored)',
    );
    expect(rec.problems.some((p) => p.startsWith("EndpointSlice default/bad-slice: addressType:"))).toBe(true);
    expect(rec.timeline).toContain("delete Service default/bad");
    expect(rec.timeline).toContain("delete EndpointSlice default/bad-slice");

    // A good object turning bad must not linger; fixed again, it comes back.
    server.update({
      ...svc("web", "10.96.0.10"),
      spec: { ...svc("web", "10.96.0.10").spec, ports: [{ port: 70000 }] },
    });
    await rec.waitFor("web removed", () => !rec.state.Service.has("default/web"));
    expect(
      rec.problems.some((p) => p.startsWith("Service default/web: spec.ports[0].port: 70000 is out of range")),
    ).toBe(true);
    server.update(svc("web", "10.96.0.10"));
    await rec.waitFor("web back", () => rec.state.Service.has("default/web"));
    // A bad Node: the node goes away for the engine rather than keep stale pod CIDRs.
    server.update({ ...node(NODE), spec: { podCIDRs: ["10.244.1.0/33"] } });
    await rec.waitFor("node removed", () => !rec.state.Node.has(NODE));
    expect(rec.problems.some((p) => p.startsWith(`Node ${NODE}: spec.podCIDRs[0]:`))).toBe(true);
    server.add(svc("after", "10.96.0.70"));
    await rec.waitFor("later events still flow", () => rec.state.Service.has("default/after"));
  });

  test("a handler that throws is reported (the client would swallow it) and later events still flow", async () => {
    seedCluster();
    const { rec } = await startSynced();
    const onEvent = rec.onEvent.bind(rec);
    rec.onEvent = (e) => {
      if (e.key === "default/boom") throw new Error("engine bug");
      onEvent(e);
    };
    server.add(svc("boom", "10.96.0.90"));
    server.add(svc("next", "10.96.0.91"));
    await rec.waitFor("the next event", () => rec.state.Service.has("default/next"));
    expect(rec.problems).toEqual(["The handler failed on upsert of Service default/boom: engine bug"]);
  });
});

describe("apiserver source: kubeconfig resolution", () => {
  const bad = () => server.writeKubeconfig({ token: "wrong" });
  const homeWith = (kubeconfig?: string) => {
    const home = join(server.dir, `home-${Math.random().toString(36).slice(2)}`);
    mkdirSync(join(home, ".kube"), { recursive: true });
    if (kubeconfig) copyFileSync(kubeconfig, join(home, ".kube", "config"));
    return home;
  };
  const syncs = async (o: Partial<ApiserverSourceOptions>) => {
    const { rec, logs } = await startSynced({ kubeconfig: undefined, ...o });
    expect(rec.problems).toEqual([]);
    expect(rec.keys("Node")).toEqual([NODE]);
    return logs[0];
  };

  beforeEach(() => {
    server.add(node(NODE));
  });

  test("--kubeconfig wins over KUBECONFIG and ~/.kube/config", async () => {
    const log = await syncs({ kubeconfig: server.kubeconfigPath, env: { KUBECONFIG: bad(), HOME: homeWith(bad()) } });
    expect(log).toContain(`--kubeconfig ${server.kubeconfigPath}`);
  });

  test("KUBECONFIG wins over ~/.kube/config; missing files in it are skipped", async () => {
    const missing = join(server.dir, "nope");
    const log = await syncs({ env: { KUBECONFIG: `${missing}:${server.kubeconfigPath}`, HOME: homeWith(bad()) } });
    expect(log).toContain("KUBECONFIG=");
  });

  test("~/.kube/config when nothing else is given", async () => {
    const log = await syncs({ env: { HOME: homeWith(server.kubeconfigPath) } });
    expect(log).toContain("~/.kube/config");
  });

  test("the in-cluster service account when there is no kubeconfig", async () => {
    const sa = join(server.dir, "serviceaccount");
    mkdirSync(sa);
    writeFileSync(join(sa, "token"), server.token);
    copyFileSync(server.caPath, join(sa, "ca.crt"));
    const log = await syncs({
      env: { HOME: homeWith(), KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(server.port) },
      serviceAccountDir: sa,
    });
    expect(log).toContain("in-cluster service account");
    expect(server.requests.every((r) => r.status === 200)).toBe(true);
  });

  test("--master replaces the kubeconfig's server", async () => {
    const dead = server.writeKubeconfig({ server: "https://127.0.0.1:1" });
    const log = await syncs({ kubeconfig: dead, master: server.url });
    expect(log).toContain(`API server at ${server.url}`);
  });

  test("nothing to go on: start() rejects with what to do", async () => {
    const source = createApiserverSource({ nodeName: NODE, env: { HOME: homeWith() } });
    await expect(source.start(new Recorder())).rejects.toThrow(/No kubeconfig found: pass --kubeconfig/);
    await source.stop();
    const missing = createApiserverSource({ nodeName: NODE, kubeconfig: join(server.dir, "missing"), env: {} });
    await expect(missing.start(new Recorder())).rejects.toThrow(/Cannot load kubeconfig/);
    await missing.stop();
  });
});

describe("apiserver source: stopping", () => {
  test("stop() closes every watch and nothing more is delivered", async () => {
    seedCluster();
    const { source, rec } = await startSynced();
    const n = rec.events.length;
    await source.stop();
    await server.waitFor("no open watch", () => server.openWatches() === 0);
    server.add(svc("after-stop", "10.96.0.80"));
    // A second source sees the change, so it was sent; the stopped one got nothing.
    const second = await startSynced();
    expect(second.rec.state.Service.has("default/after-stop")).toBe(true);
    expect(rec.events).toHaveLength(n);
  });

  /**
   * Run `code` in a child bun; once its stdout shows `ready` and `whenReady()` holds, close its
   * stdin (the child's cue to call stop()) and wait for it to exit on its own.
   */
  const runChild = (
    code: string,
    env: Record<string, string>,
    ready: string,
    whenReady: () => Promise<void>,
    timeoutMs = 20_000,
  ) =>
    new Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }>((resolve) => {
      const child = spawn(process.execPath, ["-e", code], { cwd: ROOT, env: { ...process.env, ...env } });
      let stdout = "";
      let stderr = "";
      let cued = false;
      child.stdout.on("data", (d) => {
        stdout += d;
        if (!cued && stdout.includes(ready)) {
          cued = true;
          whenReady().then(
            () => child.stdin.end(),
            (e) => {
              stderr += String(e);
              child.kill("SIGKILL");
            },
          );
        }
      });
      child.stderr.on("data", (d) => (stderr += d));
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill("SIGKILL");
      }, timeoutMs);
      child.on("close", (c) => {
        clearTimeout(timer);
        resolve({ code: c, stdout, stderr, timedOut });
      });
    });

  // The child never calls process.exit: it ends only if stop() left no timer and no socket.
  const CHILD = `
    import { createApiserverSource } from ${JSON.stringify(join(ROOT, "lib/sources/apiserver.ts"))};
    const source = createApiserverSource({
      kubeconfig: process.env.KIP_TEST_KUBECONFIG, nodeName: "node1", env: {},
      retry: { initialMs: Number(process.env.KIP_TEST_RETRY_MS), maxMs: 60000 },
    });
    let synced = 0, problems = 0;
    await source.start({
      onEvent() {},
      onSynced() { if (++synced === 3) console.log("synced"); },
      onProblem() { if (++problems === 3) console.log("problems"); },
    });
    for await (const _ of process.stdin); // until the parent closes our stdin
    await source.stop();
    console.log("stopped after " + synced + " synced, " + problems + " problems");
  `;

  test("after stop() the process can exit: while watching", async () => {
    seedCluster();
    const r = await runChild(
      CHILD,
      { KIP_TEST_KUBECONFIG: server.kubeconfigPath, KIP_TEST_RETRY_MS: "20" },
      "synced",
      () => server.waitFor("the child's three watches", () => server.openWatches() === 3),
    );
    expect({ timedOut: r.timedOut, code: r.code }).toEqual({ timedOut: false, code: 0 });
    expect(r.stdout).toContain("stopped after 3 synced, 0 problems");
    await server.waitFor("no open watch", () => server.openWatches() === 0);
  }, 30_000);

  test("after stop() the process can exit: while waiting to retry", async () => {
    await server.stop(); // connections refused: each informer waits a minute before it retries
    const r = await runChild(
      CHILD,
      { KIP_TEST_KUBECONFIG: server.kubeconfigPath, KIP_TEST_RETRY_MS: "60000" },
      "problems",
      async () => {},
    );
    expect({ timedOut: r.timedOut, code: r.code }).toEqual({ timedOut: false, code: 0 });
    expect(r.stdout).toContain("stopped after 0 synced, 3 problems");
  }, 30_000);
});

describe("kip render does not load @kubernetes/client-node", () => {
  // Bun lists every loaded module, ESM included, in require.cache.
  const probe = (extra: string) => `
    import { readFileSync } from "node:fs";
    import { main } from ${JSON.stringify(join(ROOT, "cli/main.ts"))};
    let out = "";
    const io = {
      stdout: (t) => { out += t; }, stderr: () => {}, readStdin: () => "",
      readFile: (p) => readFileSync(p, "utf8"), hostname: () => "node1",
      stdoutIsTTY: false, stderrIsTTY: false, env: {},
    };
    const code = await main(["render", "examples/seed", "--hostname-override", "node1"], io);
    ${extra}
    const keys = Object.keys(require.cache);
    console.log(JSON.stringify({
      code,
      rendered: out.includes("KUBE-SERVICES"),
      renderLoaded: keys.some((k) => k.endsWith("/cli/render.ts")),
      client: keys.filter((k) => k.includes("/@kubernetes/client-node/")).length,
    }));
  `;
  const run = async (extra: string) => {
    const child = spawn(process.execPath, ["-e", probe(extra)], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on("close", r));
    if (code !== 0) throw new Error(`probe exited ${code}: ${stderr}`);
    return JSON.parse(stdout.trim().split("\n").pop()!);
  };

  test("render, and importing lib/sources/apiserver.ts, load none of it; the check sees it when loaded", async () => {
    const render = await run("");
    expect(render).toEqual({ code: 0, rendered: true, renderLoaded: true, client: 0 });
    // Importing the source module is free: the client comes only with start().
    const sourceModule = await run(`await import(${JSON.stringify(join(ROOT, "lib/sources/apiserver.ts"))});`);
    expect(sourceModule.client).toBe(0);
    // The control: the same probe does see the client once something imports it.
    const control = await run(`await import("@kubernetes/client-node");`);
    expect(control.client).toBeGreaterThan(0);
  }, 30_000);
});

describe("leanCached", () => {
  test("keeps only what ListWatch's cache reads: namespace, name and resourceVersion", () => {
    const labels = { "kubernetes.io/service-name": "web" };
    const obj = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: "web-1", namespace: "shop", resourceVersion: "42", labels, managedFields: [{}] },
      endpoints: [{ addresses: ["10.244.1.5"] }],
    };
    leanCached(obj);
    expect(obj as unknown).toEqual({ metadata: { name: "web-1", namespace: "shop", resourceVersion: "42" } });
    // What the model took from the object is not touched.
    expect(labels).toEqual({ "kubernetes.io/service-name": "web" });
  });
});
