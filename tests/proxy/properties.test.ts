/**
 * Property tests of buildRules over random cluster states: structural invariants of the
 * restore text, determinism, and behaviour checked with the packet tracer (an oracle that
 * reads only the rendered rules).
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { ClusterState, Endpoint, EndpointSlice, IPFamily, Protocol, Service } from "../../lib/model/types.ts";
import { buildRules } from "../../lib/proxy/build.ts";
import { defaultConfig, type ProxyConfig, resolveBuildOptions } from "../../lib/proxy/options.ts";
import { toRestore } from "../../lib/proxy/ruleset.ts";
import { modelService } from "../support/objects.ts";
import { type Outcome, trace } from "../support/trace.ts";

/** Override with KIP_PROP_RUNS=5000 for a longer hunt. */
const NUM_RUNS = Number(process.env.KIP_PROP_RUNS ?? 150);
const NODE = "node1";
const FAMILIES: IPFamily[] = ["IPv4", "IPv6"];

// Disjoint address pools per role, all canonical.
const hex = (n: number) => n.toString(16);
const POOL = {
  IPv4: {
    clusterIP: (i: number) => `10.96.0.${i + 1}`,
    endpoint: (i: number) => `10.244.0.${i + 1}`,
    externalIP: (i: number) => `192.0.2.${i + 1}`,
    lbIP: (i: number) => `198.51.100.${i + 1}`,
    ranges: ["203.0.113.0/25", "203.0.113.128/25", "192.168.0.0/16"],
    podSrc: "10.1.0.5",
    externalSrc: "192.0.2.200",
    nodeIP: "192.168.0.10",
  },
  IPv6: {
    clusterIP: (i: number) => `fd00:96::${hex(i + 1)}`,
    endpoint: (i: number) => `fd10:244::${hex(i + 1)}`,
    externalIP: (i: number) => `2001:db8:e::${hex(i + 1)}`,
    lbIP: (i: number) => `2001:db8:1b::${hex(i + 1)}`,
    ranges: ["2001:db8:5::/48", "2001:db8:aa::/64"],
    podSrc: "fd10:1::5",
    externalSrc: "2001:db8:9::1",
    nodeIP: "2001:db8:aa::10",
  },
} as const;
const BRIDGE = "cbr0";
const PREFIX = "veth";

// ---------------------------------------------------------------------------------------
// Arbitraries

const tri = fc.constantFrom<boolean | undefined>(undefined, true, false);
const mostlyTrue = fc.constantFrom<boolean | undefined>(undefined, true, true, false);
const hintsArb = (values: string[]) => fc.constantFrom<string[]>([], ...values.map((v) => [v]), values);

const endpointArb = (withHints: boolean) =>
  fc.record({
    ip: fc.integer({ min: 0, max: 11 }),
    ready: mostlyTrue,
    serving: tri,
    terminating: tri,
    nodeName: fc.constantFrom<string | undefined>(undefined, NODE, NODE, "node2"),
    zoneHints: withHints ? hintsArb(["z1", "z2"]) : fc.constant<string[]>([]),
    nodeHints: withHints ? hintsArb([NODE, "node2"]) : fc.constant<string[]>([]),
  });

const sliceArb = fc.boolean().chain((withHints) =>
  fc.record({
    // "first"/"second": the family of the service's first/second cluster IP.
    family: fc.constantFrom<"first" | "second" | IPFamily>("first", "first", "second", "second", "IPv4", "IPv6"),
    allPorts: fc.boolean(),
    ports: fc.array(fc.record({ index: fc.nat(), port: fc.constantFrom<number | null>(80, 8080, 53, 9090, null) }), {
      minLength: 1,
      maxLength: 3,
    }),
    endpoints: fc.array(endpointArb(withHints), { minLength: 1, maxLength: 5 }),
  }),
);

const serviceArb = fc.record({
  namespace: fc.constantFrom("ns1", "ns2"),
  name: fc.constantFrom("a", "b", "web", "db", "cache", "api"),
  kind: fc.integer({ min: 0, max: 19 }), // 0: headless, 1: ExternalName, else normal
  type: fc.constantFrom<Service["type"]>("ClusterIP", "NodePort", "LoadBalancer"),
  stack: fc.constantFrom("v4", "v6", "v4v6", "v6v4", "legacy4", "legacy6"),
  unnamed: fc.boolean(),
  ports: fc.uniqueArray(
    fc.record({
      name: fc.constantFrom("http", "dns", "metrics", "grpc"),
      protocol: fc.constantFrom<Protocol>("TCP", "UDP", "SCTP"),
      port: fc.constantFrom(80, 53, 443, 8080),
      withNodePort: fc.boolean(),
    }),
    { minLength: 1, maxLength: 3, selector: (p) => p.name },
  ),
  externalIPs: fc.uniqueArray(fc.record({ v6: fc.boolean(), i: fc.integer({ min: 0, max: 3 }) }), {
    maxLength: 3,
    selector: (x) => `${x.v6}${x.i}`,
  }),
  ingress: fc.array(
    fc.record({
      v6: fc.boolean(),
      i: fc.integer({ min: 0, max: 3 }),
      ipMode: fc.constantFrom<string | undefined>(undefined, undefined, "VIP", "Proxy"),
      hostnameOnly: fc.constantFrom(false, false, false, true),
    }),
    { maxLength: 3 },
  ),
  sourceRanges: fc.subarray([...POOL.IPv4.ranges, ...POOL.IPv6.ranges]),
  etp: fc.constantFrom<"Cluster" | "Local">("Cluster", "Local"),
  itp: fc.constantFrom<"Cluster" | "Local">("Cluster", "Cluster", "Local"),
  affinity: fc.constantFrom(0, 0, 10800, 60),
  healthCheck: fc.boolean(),
  slices: fc.array(sliceArb, { minLength: 1, maxLength: 3 }),
});

type RawService = typeof serviceArb extends fc.Arbitrary<infer T> ? T : never;

const configArb = fc.record({
  detect: fc.constantFrom("ClusterCIDR", "ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix", "None"),
  masqueradeAll: fc.boolean(),
  masqueradeBit: fc.constantFrom(14, 14, 0, 31),
  localhostNodePorts: fc.boolean(),
  nfacct: fc.boolean(),
  randomFully: fc.boolean(),
  conntrackTCPBeLiberal: fc.boolean(),
  nodePortAddresses: fc.constantFrom<string[]>(
    [],
    [],
    ["primary"],
    ["192.168.0.0/16"],
    ["127.0.0.0/8", "2001:db8:aa::/64"],
  ),
  preferSame: fc.boolean(),
});

type RawConfig = typeof configArb extends fc.Arbitrary<infer T> ? T : never;

const scenarioArb = fc.record({
  services: fc.uniqueArray(serviceArb, { maxLength: 6, selector: (s) => `${s.namespace}/${s.name}` }),
  config: configArb,
  seed: fc.integer(),
});

// ---------------------------------------------------------------------------------------
// Raw → ClusterState

function toConfig(c: RawConfig): ProxyConfig {
  return {
    ...defaultConfig(),
    hostname: NODE,
    clusterCIDR: c.detect === "ClusterCIDR" ? "10.0.0.0/8,fd10::/16" : "",
    detectLocalMode: c.detect === "None" ? "" : c.detect,
    bridgeInterface: BRIDGE,
    interfaceNamePrefix: PREFIX,
    masqueradeAll: c.masqueradeAll,
    masqueradeBit: c.masqueradeBit,
    localhostNodePorts: c.localhostNodePorts,
    nodePortAddresses: c.nodePortAddresses,
    hostAddresses: ["192.168.0.10/24", "127.0.0.1/8", "2001:db8:aa::10/64", "::1/128"],
    randomFully: c.randomFully,
    nfacct: c.nfacct,
    conntrackTCPBeLiberal: c.conntrackTCPBeLiberal,
    featureGates: { PreferSameTrafficDistribution: c.preferSame, LoadBalancerIPMode: true },
  };
}

function toState(raw: RawService[]): ClusterState {
  let nodePort = 30000;
  const services: Service[] = [];
  const endpointSlices: EndpointSlice[] = [];
  raw.forEach((r, si) => {
    // Names are unique already; port and protocol must be too.
    const unique = r.ports.filter(
      (p, i) => r.ports.findIndex((q) => q.port === p.port && q.protocol === p.protocol) === i,
    );
    const ports = unique.map((p) => ({
      name: r.unnamed && unique.length === 1 ? "" : p.name,
      protocol: p.protocol,
      port: p.port,
      nodePort: r.type !== "ClusterIP" && p.withNodePort ? nodePort++ : 0,
    }));
    const v4 = POOL.IPv4.clusterIP(si);
    const v6 = POOL.IPv6.clusterIP(si);
    const stacks: Record<string, [string[], IPFamily[]]> = {
      v4: [[v4], ["IPv4"]],
      v6: [[v6], ["IPv6"]],
      v4v6: [
        [v4, v6],
        ["IPv4", "IPv6"],
      ],
      v6v4: [
        [v6, v4],
        ["IPv6", "IPv4"],
      ],
      legacy4: [[v4], []],
      legacy6: [[v6], []],
    };
    let [clusterIPs, ipFamilies] = stacks[r.stack];
    let type = r.type;
    if (r.kind === 0) [clusterIPs, ipFamilies, type] = [["None"], [], "ClusterIP"];
    if (r.kind === 1) [clusterIPs, ipFamilies, type] = [[], [], "ExternalName"];
    const isLB = type === "LoadBalancer";
    const fam = (v6: boolean): IPFamily => (v6 ? "IPv6" : "IPv4");
    services.push({
      namespace: r.namespace,
      name: r.name,
      labels: {},
      type,
      clusterIPs,
      ipFamilies,
      ports,
      externalIPs: r.externalIPs.map((x) => POOL[fam(x.v6)].externalIP(x.i)),
      loadBalancerSourceRanges: isLB ? r.sourceRanges : [],
      loadBalancerIngress: isLB
        ? r.ingress.map((g) => (g.hostnameOnly ? {} : { ip: POOL[fam(g.v6)].lbIP(g.i), ipMode: g.ipMode }))
        : [],
      sessionAffinity: r.affinity > 0 ? "ClientIP" : "None",
      affinityTimeoutSeconds: r.affinity,
      externalTrafficPolicy: r.etp,
      internalTrafficPolicy: r.itp,
      healthCheckNodePort: isLB && r.etp === "Local" && r.healthCheck ? 32000 + si : 0,
    });
    const familyOf = (ip: string | undefined): IPFamily => (ip?.includes(":") ? "IPv6" : "IPv4");
    r.slices.forEach((s, k) => {
      const family =
        s.family === "first"
          ? familyOf(clusterIPs[0])
          : s.family === "second"
            ? familyOf(clusterIPs[1] ?? clusterIPs[0])
            : s.family;
      const refs = s.allPorts ? ports.map((_, index) => ({ index, port: s.ports[0].port })) : s.ports;
      const slicePorts = refs.map((p) => {
        const sp = ports[p.index % ports.length];
        return { name: sp.name, protocol: sp.protocol, port: p.port };
      });
      endpointSlices.push({
        namespace: r.namespace,
        name: `${r.name}-${k}`,
        labels: { "kubernetes.io/service-name": r.name },
        addressType: family,
        ports: slicePorts.filter(
          (p, i) => slicePorts.findIndex((q) => q.name === p.name && q.protocol === p.protocol) === i,
        ),
        endpoints: s.endpoints.map(
          (e): Endpoint => ({
            addresses: [POOL[family].endpoint(e.ip)],
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            nodeName: e.nodeName,
            zoneHints: e.zoneHints,
            nodeHints: e.nodeHints,
          }),
        ),
      });
    });
  });
  const node = {
    name: NODE,
    labels: { "topology.kubernetes.io/zone": "z1" },
    podCIDRs: ["10.1.0.0/24", "fd10:1::/64"],
    addresses: [
      { type: "InternalIP", address: POOL.IPv4.nodeIP },
      { type: "InternalIP", address: POOL.IPv6.nodeIP },
    ],
  };
  return { services, endpointSlices, node };
}

function render(state: ClusterState, config: ProxyConfig, family: IPFamily): string {
  return toRestore(buildRules(state, resolveBuildOptions(config, family, state.node)));
}

/** Deterministic Fisher–Yates (mulberry32). */
function shuffle<T>(list: readonly T[], seed: number): T[] {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Shuffle a slice's endpoints, duplicates of one address included (kip breaks such ties). */
function shuffleEndpoints(eps: readonly Endpoint[], seed: number): Endpoint[] {
  return shuffle(eps, seed);
}

// ---------------------------------------------------------------------------------------
// Restore-text helpers (independent of the engine)

interface ParsedTable {
  chains: string[];
  rules: { chain: string; tokens: string[]; line: string }[];
}

function parseTables(text: string): Record<string, ParsedTable> {
  const out: Record<string, ParsedTable> = {};
  let cur: ParsedTable | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) out[line.slice(1)] = cur = { chains: [], rules: [] };
    else if (line.startsWith(":")) cur?.chains.push(line.slice(1).split(" ")[0]);
    else if (line.startsWith("-A ")) {
      const tokens = line.match(/"[^"]*"|\S+/g) ?? [];
      cur?.rules.push({ chain: tokens[1], tokens, line });
    }
  }
  return out;
}

const jumpTarget = (tokens: string[]) => {
  const i = tokens.indexOf("-j");
  return i < 0 ? undefined : tokens[i + 1];
};

const BUILTIN_TARGETS = new Set(["DNAT", "MARK", "MASQUERADE", "ACCEPT", "DROP", "REJECT", "RETURN"]);
const ROOTS: Record<string, Set<string>> = {
  nat: new Set(["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]),
  filter: new Set([
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-FORWARD",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-FIREWALL",
    "KUBE-FIREWALL",
  ]),
};

/** Per SVC/SVL chain: the probability each dispatch rule (in order) is taken. */
function dispatchShares(table: ParsedTable): Map<string, { seps: string[]; shares: number[]; rcheck: string[] }> {
  const out = new Map<string, { seps: string[]; shares: number[]; rcheck: string[] }>();
  for (const c of table.chains)
    if (c.startsWith("KUBE-SVC-") || c.startsWith("KUBE-SVL-")) out.set(c, { seps: [], shares: [], rcheck: [] });
  for (const [chain, d] of out) {
    let rest = 1;
    for (const r of table.rules) {
      if (r.chain !== chain) continue;
      const target = jumpTarget(r.tokens) ?? "";
      if (!target.startsWith("KUBE-SEP-")) continue;
      if (r.tokens.includes("--rcheck")) {
        d.rcheck.push(target);
        continue;
      }
      const pi = r.tokens.indexOf("--probability");
      const p = pi < 0 ? 1 : Number(r.tokens[pi + 1]);
      d.seps.push(target);
      d.shares.push(rest * p);
      rest *= 1 - p;
    }
  }
  return out;
}

const V4_RE = /(?<![0-9.])\d{1,3}(\.\d{1,3}){3}(?![0-9])/;

/** Address-looking substrings of the other family. */
function foreignAddresses(text: string, family: IPFamily): string[] {
  if (family === "IPv6") return text.match(new RegExp(V4_RE.source, "g")) ?? [];
  // IPv6: runs of hex digits and colons with at least two colons.
  return (text.match(/[0-9a-fA-F:]*:[0-9a-fA-F]*:[0-9a-fA-F:]*/g) ?? []).filter(
    (s) => s.includes("::") || s.split(":").length > 2,
  );
}

// ---------------------------------------------------------------------------------------
// Expected behaviour of pod → cluster IP traffic, from the spec (§1.3, §5.1, §6)

interface EpFacts {
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  local: boolean;
  hinted: boolean;
}

/** Endpoints of one service port by `ip:port`; undefined when duplicates disagree. */
function endpointFacts(state: ClusterState, svc: Service, port: Service["ports"][number], family: IPFamily) {
  const byIpPort = new Map<string, EpFacts>();
  for (const s of state.endpointSlices) {
    if (s.namespace !== svc.namespace || s.labels["kubernetes.io/service-name"] !== svc.name) continue;
    if (s.addressType !== family) continue;
    for (const sp of s.ports) {
      if (sp.name !== port.name || sp.protocol !== port.protocol || !sp.port) continue;
      for (const e of s.endpoints) {
        const ip = e.addresses[0];
        const ipPort = family === "IPv6" ? `[${ip}]:${sp.port}` : `${ip}:${sp.port}`;
        const f: EpFacts = {
          ready: e.ready !== false,
          serving: e.serving !== false,
          terminating: e.terminating === true,
          local: e.nodeName === NODE,
          hinted: e.zoneHints.length > 0 || e.nodeHints.length > 0,
        };
        const prev = byIpPort.get(ipPort);
        if (prev && JSON.stringify(prev) !== JSON.stringify(f)) return undefined;
        byIpPort.set(ipPort, f);
      }
    }
  }
  return byIpPort;
}

type Expectation = { verdict: "REJECT" | "DROP" | "NONE" } | { verdict: "DNAT"; dests: string[] };

/** Where new connections go under a traffic policy (ITP for cluster IPs, ETP for NodePorts). */
function expectedFor(eps: Map<string, EpFacts>, policyLocal: boolean): Expectation | undefined {
  const all = [...eps.entries()];
  const pick = (pred: (f: EpFacts) => boolean) => all.filter(([, f]) => pred(f)).map(([k]) => k);
  const usable = pick((f) => f.ready || (f.serving && f.terminating));
  if (usable.length === 0) return { verdict: "REJECT" };
  if (policyLocal) {
    let dests = pick((f) => f.local && f.ready);
    if (dests.length === 0) dests = pick((f) => f.local && f.serving && f.terminating);
    return dests.length === 0 ? { verdict: "DROP" } : { verdict: "DNAT", dests };
  }
  if (all.some(([, f]) => f.hinted)) return undefined; // topology: not modelled here
  const ready = pick((f) => f.ready);
  return { verdict: "DNAT", dests: ready.length > 0 ? ready : pick((f) => f.serving && f.terminating) };
}

function checkOutcomes(outcomes: Outcome[], want: Expectation, masquerade: boolean, what: string): void {
  const total = outcomes.reduce((a, o) => a + o.probability, 0);
  expect(Math.abs(total - 1), `${what}: total probability`).toBeLessThan(1e-9);
  if (want.verdict !== "DNAT") {
    expect(
      outcomes.map((o) => [o.verdict, o.masquerade]),
      what,
    ).toEqual([[want.verdict, false]]);
    return;
  }
  expect(
    outcomes.map((o) => o.verdict),
    what,
  ).toEqual(outcomes.map(() => "DNAT"));
  expect(outcomes.map((o) => o.dnat).sort(), what).toEqual([...want.dests].sort());
  for (const o of outcomes) {
    expect(Math.abs(o.probability - 1 / want.dests.length), `${what}: share of ${o.dnat}`).toBeLessThan(1e-9);
    expect(o.masquerade, `${what}: masquerade to ${o.dnat}`).toBe(masquerade);
  }
}

function clusterIPOf(svc: Service, family: IPFamily): string | undefined {
  if (svc.type === "ExternalName" || svc.clusterIPs[0] === "None") return undefined;
  if (svc.ipFamilies.length === 0)
    return svc.clusterIPs[0].includes(":") === (family === "IPv6") ? svc.clusterIPs[0] : undefined;
  const i = svc.ipFamilies.indexOf(family);
  return i < 0 ? undefined : svc.clusterIPs[i];
}

// ---------------------------------------------------------------------------------------

const forEachFamily = (fn: (family: IPFamily) => void) => {
  for (const f of FAMILIES) fn(f);
};

describe("buildRules properties", () => {
  test("every KUBE-* jump target is declared in its table, and every declared chain is used", () => {
    fc.assert(
      fc.property(scenarioArb, ({ services, config }) => {
        const state = toState(services);
        forEachFamily((family) => {
          const text = render(state, toConfig(config), family);
          const tables = parseTables(text);
          expect(Object.keys(tables)).toEqual(["filter", "nat"]);
          for (const [name, t] of Object.entries(tables)) {
            const declared = new Set(t.chains);
            expect(declared.size, `${name}: chains declared once`).toBe(t.chains.length);
            const used = new Set<string>();
            for (const r of t.rules) {
              expect(declared.has(r.chain), `${name}: rule for undeclared chain: ${r.line}`).toBe(true);
              const target = jumpTarget(r.tokens);
              if (target === undefined || BUILTIN_TARGETS.has(target)) continue;
              expect(target.startsWith("KUBE-"), `${name}: unexpected target: ${r.line}`).toBe(true);
              expect(declared.has(target), `${name}: jump to undeclared chain: ${r.line}`).toBe(true);
              used.add(target);
            }
            const unused = t.chains.filter((c) => !used.has(c) && !ROOTS[name].has(c));
            expect(unused, `${name}: declared but never jumped to`).toEqual([]);
          }
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test("output is deterministic and independent of input order", () => {
    fc.assert(
      fc.property(scenarioArb, ({ services, config, seed }) => {
        const state = toState(services);
        const shuffled: ClusterState = {
          node: state.node,
          services: shuffle(state.services, seed),
          endpointSlices: shuffle(
            state.endpointSlices.map((s, i) => ({ ...s, endpoints: shuffleEndpoints(s.endpoints, seed + i + 1) })),
            seed + 7,
          ),
        };
        const cfg = toConfig(config);
        forEachFamily((family) => {
          const a = render(state, cfg, family);
          expect(render(state, cfg, family)).toBe(a);
          expect(render(shuffled, cfg, family)).toBe(a);
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test("SVC/SVL dispatch gives every endpoint 1/N", () => {
    fc.assert(
      fc.property(scenarioArb, ({ services, config }) => {
        const state = toState(services);
        forEachFamily((family) => {
          const nat = parseTables(render(state, toConfig(config), family)).nat;
          for (const [chain, d] of dispatchShares(nat)) {
            const n = d.seps.length;
            expect(n, `${chain}: has dispatch rules`).toBeGreaterThan(0);
            expect(new Set(d.seps).size, `${chain}: endpoints distinct`).toBe(n);
            for (const s of d.shares) expect(Math.abs(s - 1 / n), `${chain}: share`).toBeLessThan(1e-9);
            if (d.rcheck.length > 0) expect(d.rcheck, `${chain}: affinity rules`).toEqual(d.seps);
          }
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test("each family's output mentions only addresses of that family", () => {
    fc.assert(
      fc.property(scenarioArb, ({ services, config }) => {
        const state = toState(services);
        forEachFamily((family) => {
          const text = render(state, toConfig(config), family);
          expect(foreignAddresses(text, family), `${family} output`).toEqual([]);
        });
      }),
      { numRuns: NUM_RUNS },
    );
  });

  test("pod and external traffic to a cluster IP reaches exactly the usable endpoints (tracer)", () => {
    let checked = 0;
    fc.assert(
      fc.property(scenarioArb, ({ services, config }) => {
        const state = toState(services);
        const cfg = toConfig(config);
        forEachFamily((family) => {
          const text = render(state, cfg, family);
          const pool = POOL[family];
          const host = { localAddresses: [pool.nodeIP] };
          const podIface = config.detect === "BridgeInterface" ? BRIDGE : `${PREFIX}1a2b`;
          const detects = config.detect !== "None";
          for (const svc of state.services) {
            const cip = clusterIPOf(svc, family);
            if (!cip) continue;
            for (const port of svc.ports) {
              const eps = endpointFacts(state, svc, port, family);
              const want = eps && expectedFor(eps, svc.internalTrafficPolicy === "Local");
              if (!want) continue;
              checked++;
              const what = `${family} ${svc.namespace}/${svc.name}:${port.name} ${port.protocol} ${cip}:${port.port}`;
              const proto = port.protocol.toLowerCase() as "tcp" | "udp" | "sctp";
              const base = { dst: cip, dport: port.port, proto };
              const pod = trace(text, { ...base, src: pool.podSrc, from: "pod", inInterface: podIface }, host);
              checkOutcomes(pod.outcomes, want, config.masqueradeAll, `pod → ${what}`);
              const ext = trace(text, { ...base, src: pool.externalSrc, from: "external", inInterface: "eth0" }, host);
              checkOutcomes(ext.outcomes, want, config.masqueradeAll || detects, `external → ${what}`);
            }
          }
        });
      }),
      { numRuns: NUM_RUNS },
    );
    expect(checked).toBeGreaterThan(NUM_RUNS);
  });

  test("external traffic to a NodePort on the node IP follows externalTrafficPolicy (tracer)", () => {
    let checked = 0;
    fc.assert(
      fc.property(scenarioArb, ({ services, config }) => {
        const state = toState(services);
        forEachFamily((family) => {
          const text = render(state, toConfig(config), family);
          const pool = POOL[family];
          const host = { localAddresses: [pool.nodeIP] };
          // nodePortAddresses (spec §7.4): does any of this family's CIDRs cover the node IP?
          const cidrs = config.nodePortAddresses.filter((c) => c.includes(":") === (family === "IPv6"));
          const onNodeIP =
            config.nodePortAddresses.includes("primary") ||
            cidrs.length === 0 ||
            cidrs.some((c) => c.startsWith(family === "IPv4" ? "192.168." : "2001:db8:aa:"));
          for (const svc of state.services) {
            if (!clusterIPOf(svc, family)) continue;
            const etpLocal = svc.externalTrafficPolicy === "Local";
            for (const port of svc.ports) {
              if (port.nodePort === 0) continue;
              const eps = endpointFacts(state, svc, port, family);
              let want = eps && expectedFor(eps, etpLocal);
              if (!want) continue;
              // Without a KUBE-NODEPORTS entry point only the filter REJECT/DROP rules apply.
              if (want.verdict === "DNAT" && !onNodeIP) want = { verdict: "NONE" };
              checked++;
              const what = `${family} ${svc.namespace}/${svc.name}:${port.name} ${port.protocol} nodePort ${port.nodePort}`;
              const proto = port.protocol.toLowerCase() as "tcp" | "udp" | "sctp";
              const pkt = {
                src: pool.externalSrc,
                dst: pool.nodeIP,
                dport: port.nodePort,
                proto,
                from: "external",
              } as const;
              const { outcomes } = trace(text, { ...pkt, inInterface: "eth0" }, host);
              checkOutcomes(outcomes, want, !etpLocal, `external → ${what}`);
            }
          }
        });
      }),
      { numRuns: NUM_RUNS },
    );
    expect(checked).toBeGreaterThan(NUM_RUNS / 2);
  });

  // Two endpoints with the same address in one slice tie on `ip:port`; kip breaks the tie by
  // state (spec §1.3 leaves it open), so input order never decides which one is kept.
  test("duplicate addresses in one slice: output does not depend on their order", () => {
    const ep = (ready: boolean): Endpoint => ({
      addresses: ["10.244.0.3"],
      ready,
      nodeName: NODE,
      zoneHints: [],
      nodeHints: [],
    });
    const state = (ready: boolean[]): ClusterState => {
      const base = toState([]);
      const svc: Service = modelService("ns1", "a", "10.96.0.1");
      const slice: EndpointSlice = {
        namespace: "ns1",
        name: "a-0",
        labels: { "kubernetes.io/service-name": "a" },
        addressType: "IPv4",
        ports: [{ name: "http", protocol: "TCP", port: 80 }],
        endpoints: ready.map(ep),
      };
      return { ...base, services: [svc], endpointSlices: [slice] };
    };
    const cfg = { ...defaultConfig(), hostname: NODE, clusterCIDR: "10.0.0.0/8" };
    expect(render(state([true, false]), cfg, "IPv4")).toBe(render(state([false, true]), cfg, "IPv4"));
  });
});
