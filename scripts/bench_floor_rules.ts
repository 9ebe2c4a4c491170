/**
 * The floor under `kip render` of scripts/bench.ts's synthetic cluster, with the rules made:
 * read and JSON.parse the input, then format the very bytes `kip render` prints for it (each
 * Service's port chain, its endpoints' chains, statistic jumps, DNATs), the shortest way this
 * runtime allows. No validation (no duplicate-key or depth scan, no field checks, no IP
 * parsing), no topology, traffic policy or node ports: only what this input needs. Chain names
 * are hashed natively where the runtime can (Bun.SHA256), the text is encoded straight into
 * one reused buffer and written. scripts/bench.ts checks its output equals kip's, byte for
 * byte, and prints kip's time beside it: what validating, and handling every other Service
 * shape, costs over formatting alone.
 *
 *   bun scripts/bench_floor_rules.ts cluster.json 10.128.0.0/9 > rules.txt
 */
import { createHash } from "node:crypto";
import { readFileSync, writeSync } from "node:fs";

interface Port {
  name?: string;
  port: number;
  protocol?: string;
}
interface Item {
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: { clusterIP: string; ports: Port[] };
  ports: Port[];
  endpoints: { addresses: string[]; conditions?: { ready?: boolean } }[];
}

const [input, clusterCIDR] = process.argv.slice(2);
const { items } = JSON.parse(readFileSync(input, "utf8")) as { items: Item[] };

const B32 = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"].map((c) => c.charCodeAt(0));
const native = (globalThis as { Bun?: { SHA256: { hash(s: string): Uint8Array } } }).Bun?.SHA256;
const sha256 = (s: string): Uint8Array => (native ? native.hash(s) : createHash("sha256").update(s).digest());
/** `prefix` + the first 16 characters of base32(sha256(text)) (spec §2). */
function chain(prefix: string, text: string): string {
  const d = sha256(text);
  const c: number[] = [];
  for (let i = 0; i < prefix.length; i++) c.push(prefix.charCodeAt(i));
  let acc = 0;
  let bits = 0;
  for (let i = 0; c.length < prefix.length + 16; ) {
    if (bits < 5) {
      acc = ((acc << 8) | d[i++]) & 0xffff;
      bits += 8;
    }
    c.push(B32[(acc >>> (bits - 5)) & 31]);
    bits -= 5;
  }
  return String.fromCharCode(...c);
}
/** Go's %0.10f of 1/n (no ties at these n). */
const probability: string[] = [];
const prob = (n: number) => {
  probability[n] ??= (1 / n).toFixed(10);
  return probability[n];
};

const slices = new Map<string, Item[]>();
/** Service ports, in kip's order: by ServicePortName (`ns/name:port`). */
const ports: { key: string; spn: string; svc: Item; p: Port }[] = [];
for (const o of items) {
  if (o.kind === "Service") {
    const key = `${o.metadata.namespace}/${o.metadata.name}`;
    for (const p of o.spec.ports) ports.push({ key, spn: p.name ? `${key}:${p.name}` : key, svc: o, p });
  } else if (o.kind === "EndpointSlice") {
    const key = `${o.metadata.namespace}/${o.metadata.labels?.["kubernetes.io/service-name"]}`;
    const list = slices.get(key);
    if (list) list.push(o);
    else slices.set(key, [o]);
  }
}
ports.sort((a, b) => (a.spn < b.spn ? -1 : a.spn > b.spn ? 1 : 0));

const chains: string[] = [];
const rules: string[] = [];
for (const { key, spn, svc, p } of ports) {
  const proto = (p.protocol ?? "TCP").toLowerCase();
  const svcChain = chain("KUBE-SVC-", spn + proto);
  const eps: string[] = [];
  for (const s of slices.get(key) ?? []) {
    const port = s.ports.find((q) => (q.name ?? "") === (p.name ?? ""))?.port;
    for (const e of s.endpoints) if (e.conditions?.ready !== false) eps.push(`${e.addresses[0]}:${port}`);
  }
  eps.sort();
  const match = `-m comment --comment "${spn} cluster IP" -m ${proto} -p ${proto} -d ${svc.spec.clusterIP} --dport ${p.port}`;
  chains.push(`:${svcChain} - [0:0]\n`);
  rules.push(`-A KUBE-SERVICES ${match} -j ${svcChain}\n`);
  rules.push(`-A ${svcChain} ${match} ! -s ${clusterCIDR} -j KUBE-MARK-MASQ\n`);
  const seps = eps.map((ep) => chain("KUBE-SEP-", spn + proto + ep));
  for (const sep of seps) chains.push(`:${sep} - [0:0]\n`);
  for (let i = 0; i < seps.length; i++)
    rules.push(
      i < seps.length - 1
        ? `-A ${svcChain} -m statistic --mode random --probability ${prob(seps.length - i)} -j ${seps[i]}\n`
        : `-A ${svcChain} -j ${seps[i]}\n`,
    );
  for (let i = 0; i < seps.length; i++) {
    const ip = eps[i].slice(0, eps[i].lastIndexOf(":"));
    rules.push(`-A ${seps[i]} -s ${ip} -j KUBE-MARK-MASQ\n`);
    rules.push(`-A ${seps[i]} -m ${proto} -p ${proto} -j DNAT --to-destination ${eps[i]}\n`);
  }
}

// kube-proxy's fixed chains and rules around them (spec §3), as kip renders them here.
const MARK = "0x00004000";
const FILTER = `*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark ${MARK}/${MARK} -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
`;
const NAT_RULES = `-A KUBE-POSTROUTING -m mark ! --mark ${MARK}/${MARK} -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark ${MARK}
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark ${MARK}
`;
const END = `-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`;

const buf = Buffer.allocUnsafe(1 << 20);
let used = 0;
const flush = () => {
  for (let off = 0; off < used; ) off += writeSync(1, buf, off, used - off);
  used = 0;
};
const put = (s: string) => {
  if (used + s.length * 3 > buf.length) flush();
  used += buf.write(s, used);
};
put(FILTER);
for (const c of chains) put(c);
put(NAT_RULES);
for (const r of rules) put(r);
put(END);
flush();
