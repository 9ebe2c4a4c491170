/**
 * A small Kubernetes API server for tests: the real list/watch protocol over HTTPS with a
 * throwaway CA (made with openssl) and bearer-token auth, for v1 Services,
 * discovery.k8s.io/v1 EndpointSlices and v1 Nodes.
 *
 * What it speaks, as the real one does:
 * - GET lists with labelSelector (`key`, `!key`, `key=v`, `key!=v`, `key in (a,b)`,
 *   `key notin (a,b)`), fieldSelector (`metadata.name`, `metadata.namespace`), a
 *   resourceVersion in the list metadata, and `limit`/`continue` chunking from a consistent
 *   snapshot (an expired continue token is 410 Gone);
 * - watches (`watch=true&resourceVersion=N`): chunked, one JSON event per line, ADDED /
 *   MODIFIED / DELETED after N (an object entering or leaving a selector is ADDED / DELETED),
 *   BOOKMARK on demand when allowWatchBookmarks is set, timeoutSeconds, and an ERROR event with
 *   code 410 when N is older than the compaction point;
 * - 401 without the right token.
 * Test controls: add/update/remove objects, drop every watch connection, compact, send
 * bookmarks, stop and restart on the same port. Every request is recorded.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { Socket } from "node:net";
import { join } from "node:path";
import { removeTempDir, tempDir } from "./tempdir.ts";

export type TestKind = "Service" | "EndpointSlice" | "Node";
type EventType = "ADDED" | "MODIFIED" | "DELETED";
type Obj = Record<string, any>;

const RESOURCES: Record<string, { kind: TestKind; apiVersion: string; namespaced: boolean }> = {
  "/api/v1/services": { kind: "Service", apiVersion: "v1", namespaced: true },
  "/apis/discovery.k8s.io/v1/endpointslices": {
    kind: "EndpointSlice",
    apiVersion: "discovery.k8s.io/v1",
    namespaced: true,
  },
  "/api/v1/nodes": { kind: "Node", apiVersion: "v1", namespaced: false },
};

/** One request as the server saw it. */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
  /** The HTTP status answered (200 for a watch that started, even one that sent a 410 ERROR). */
  status: number;
  /** For watches: whether the requested resourceVersion was too old (410 Gone event). */
  gone?: boolean;
}

export interface TestApiserver {
  /** `https://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** A kubeconfig with certificate-authority-data and the bearer token. */
  readonly kubeconfigPath: string;
  readonly token: string;
  readonly caPath: string;
  /** The temp dir holding the PKI and kubeconfigs (removed by close()). */
  readonly dir: string;
  /** The latest resourceVersion handed out (global across kinds, as etcd's revision). */
  readonly resourceVersion: number;
  readonly requests: RecordedRequest[];
  /** Open watch connections (optionally of one kind). */
  openWatches(kind?: TestKind): number;
  /** Store a new object (its `kind` says which); returns the stored copy with its resourceVersion. */
  add(obj: Obj): Obj;
  /** Replace an existing object; returns the stored copy. */
  update(obj: Obj): Obj;
  remove(kind: TestKind, namespace: string | undefined, name: string): void;
  /** Destroy every watch connection abruptly (no final chunk); returns how many. */
  dropWatches(): number;
  /** Make resourceVersions older than `rv` unavailable: watches from them get 410 Gone. */
  compactBefore(rv: number): void;
  /** Send a BOOKMARK at the current resourceVersion to every watch that asked for bookmarks; then end those watches cleanly if `thenClose`. Returns how many got one. */
  bookmark(opts?: { thenClose?: boolean }): number;
  /** Resolves once `pred()` holds (checked after every request and watch change), or rejects at the deadline. */
  waitFor(what: string, pred: () => boolean, timeoutMs?: number): Promise<void>;
  /** A kubeconfig for this server with other settings (another CA, token or server). */
  writeKubeconfig(opts?: { caPath?: string; token?: string; server?: string; name?: string }): string;
  /** Close the listener and every connection; the store is kept. */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  restart(): Promise<void>;
  /** stop() and remove the temp dir. */
  close(): Promise<void>;
}

/** A throwaway CA in `dir` (openssl): returns the certificate and key paths. */
export function makeCertificateAuthority(dir: string, name = "ca"): { certPath: string; keyPath: string } {
  mkdirSync(dir, { recursive: true });
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyPath,
    "-out",
    certPath,
    "-days",
    "2",
    "-subj",
    `/CN=kip-test-${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return { certPath, keyPath };
}

/** A server certificate for 127.0.0.1 and localhost, signed by the CA. */
function makeServerCertificate(dir: string, ca: { certPath: string; keyPath: string }) {
  const keyPath = join(dir, "server.key");
  const csrPath = join(dir, "server.csr");
  const certPath = join(dir, "server.crt");
  const extPath = join(dir, "server.ext");
  writeFileSync(
    extPath,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
  );
  openssl([
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyPath,
    "-out",
    csrPath,
    "-subj",
    "/CN=kube-apiserver",
  ]);
  openssl([
    "x509",
    "-req",
    "-in",
    csrPath,
    "-CA",
    ca.certPath,
    "-CAkey",
    ca.keyPath,
    "-CAcreateserial",
    "-out",
    certPath,
    "-days",
    "2",
    "-extfile",
    extPath,
  ]);
  return { certPath, keyPath };
}

function openssl(args: string[]) {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args[0]} failed: ${stderr || (e as Error).message}`);
  }
}

/** A kubeconfig file with one cluster, one token user and one context. */
export function writeKubeconfigFile(
  path: string,
  opts: { server: string; caPath?: string; token?: string; name?: string },
): string {
  const name = opts.name ?? "kip-test";
  const ca = opts.caPath ? `    certificate-authority-data: ${readFileSync(opts.caPath).toString("base64")}\n` : "";
  const user = opts.token ? `    token: ${opts.token}\n` : "    {}\n";
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters:
- name: ${name}
  cluster:
    server: ${opts.server}
${ca}users:
- name: ${name}
  user:
${user}contexts:
- name: ${name}
  context:
    cluster: ${name}
    user: ${name}
current-context: ${name}
`,
  );
  return path;
}

// ---------------------------------------------------------------------------------------------
// Selectors

type Requirement = (labels: Record<string, string>) => boolean;

/** Parse a label selector; throws on syntax this server does not know (so a test notices). */
export function parseLabelSelector(sel: string): Requirement[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of sel) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  const out: Requirement[] = [];
  for (const raw of parts) {
    const p = raw.trim();
    if (p === "") continue;
    let m: RegExpMatchArray | null;
    if ((m = p.match(/^!\s*([A-Za-z0-9_./-]+)$/))) {
      const k = m[1];
      out.push((l) => !(k in l));
    } else if ((m = p.match(/^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)$/))) {
      const [, k, op, v] = m;
      out.push(op === "!=" ? (l) => l[k] !== v : (l) => l[k] === v);
    } else if ((m = p.match(/^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      const [, k, op, list] = m;
      const vals = new Set(list.split(",").map((s) => s.trim()));
      out.push(op === "in" ? (l) => k in l && vals.has(l[k]) : (l) => !(k in l) || !vals.has(l[k]));
    } else if ((m = p.match(/^([A-Za-z0-9_./-]+)$/))) {
      const k = m[1];
      out.push((l) => k in l);
    } else throw new Error(`unable to parse requirement: ${JSON.stringify(p)}`);
  }
  return out;
}

function parseFieldSelector(sel: string): ((o: Obj) => boolean)[] {
  const out: ((o: Obj) => boolean)[] = [];
  for (const raw of sel.split(",")) {
    const p = raw.trim();
    if (p === "") continue;
    const m = p.match(/^(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw new Error(`field label not supported: ${JSON.stringify(p)}`);
    const [, field, op, v] = m;
    const get = (o: Obj) => String((field === "metadata.name" ? o.metadata?.name : o.metadata?.namespace) ?? "");
    out.push(op === "!=" ? (o) => get(o) !== v : (o) => get(o) === v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface LogEntry {
  rv: number;
  type: EventType;
  obj: Obj;
  /** The object before this event (MODIFIED, DELETED). */
  prev?: Obj;
}

interface Watcher {
  kind: TestKind;
  res: ServerResponse;
  socket: Socket;
  matches: (o: Obj) => boolean;
  bookmarks: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

const clone = <T>(o: T): T => JSON.parse(JSON.stringify(o));
const keyOf = (o: Obj) =>
  o.metadata?.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : String(o.metadata?.name);

export async function startTestApiserver(opts: { token?: string } = {}): Promise<TestApiserver> {
  const dir = tempDir("kip-apiserver-");
  const ca = makeCertificateAuthority(dir, "ca");
  const cert = makeServerCertificate(dir, ca);
  const tlsOptions = { key: readFileSync(cert.keyPath), cert: readFileSync(cert.certPath) };
  const token = opts.token ?? `kip-test-token-${Math.random().toString(36).slice(2)}`;

  let rv = 0;
  let compacted = 0;
  const store: Record<TestKind, Map<string, Obj>> = { Service: new Map(), EndpointSlice: new Map(), Node: new Map() };
  const log: Record<TestKind, LogEntry[]> = { Service: [], EndpointSlice: [], Node: [] };
  const watchers = new Set<Watcher>();
  const sockets = new Set<Socket>();
  const requests: RecordedRequest[] = [];
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };

  const resourceOf = (kind: TestKind) => Object.values(RESOURCES).find((r) => r.kind === kind)!;

  const record = (type: EventType, kind: TestKind, obj: Obj, prev?: Obj) => {
    const entry: LogEntry = { rv, type, obj: clone(obj), prev: prev && clone(prev) };
    log[kind].push(entry);
    for (const w of watchers) if (w.kind === kind) sendEntry(w, entry);
  };

  /** Write one log entry to a watcher, as the watch cache would after selector filtering. */
  const sendEntry = (w: Watcher, e: LogEntry) => {
    const now = w.matches(e.obj);
    const before = e.prev !== undefined && w.matches(e.prev);
    let type: EventType | undefined;
    if (e.type === "ADDED") type = now ? "ADDED" : undefined;
    else if (e.type === "DELETED") type = before ? "DELETED" : undefined;
    else if (now && before) type = "MODIFIED";
    else if (now) type = "ADDED";
    else if (before) type = "DELETED";
    if (type) w.res.write(`${JSON.stringify({ type, object: e.obj })}\n`);
  };

  const stamp = (kind: TestKind, obj: Obj, created?: Obj): Obj => {
    const r = resourceOf(kind);
    const o = clone(obj);
    o.apiVersion = r.apiVersion;
    o.kind = kind;
    o.metadata = { ...(o.metadata ?? {}) };
    if (r.namespaced) o.metadata.namespace = o.metadata.namespace || "default";
    else delete o.metadata.namespace;
    o.metadata.resourceVersion = String(++rv);
    o.metadata.uid = created?.metadata?.uid ?? crypto.randomUUID();
    o.metadata.creationTimestamp =
      created?.metadata?.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z");
    return o;
  };

  const keyFor = (kind: TestKind, o: Obj) =>
    resourceOf(kind).namespaced
      ? `${o.metadata?.namespace || "default"}/${o.metadata?.name}`
      : String(o.metadata?.name);

  const kindOf = (obj: Obj): TestKind => {
    if (obj.kind === "Service" || obj.kind === "EndpointSlice" || obj.kind === "Node") return obj.kind;
    throw new Error(`test apiserver: unknown kind ${JSON.stringify(obj.kind)}`);
  };

  /** The objects of `kind` at resourceVersion `at` (a consistent snapshot for chunked lists). */
  const snapshot = (kind: TestKind, at: number): Obj[] => {
    if (at >= rv) return [...store[kind].values()];
    const m = new Map<string, Obj>();
    for (const e of log[kind]) {
      if (e.rv > at) break;
      if (e.type === "DELETED") m.delete(keyOf(e.obj));
      else m.set(keyOf(e.obj), e.obj);
    }
    return [...m.values()];
  };

  const status = (res: ServerResponse, code: number, reason: string, message: string) => {
    res.writeHead(code, { "Content-Type": "application/json" });
    res.end(
      JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code }),
    );
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "https://x");
    const query = Object.fromEntries(url.searchParams);
    const watch = query.watch === "true" || query.watch === "1";
    const rec: RecordedRequest = { method: req.method ?? "", path: url.pathname, query, watch, status: 0 };
    requests.push(rec);
    const fail = (code: number, reason: string, message: string) => {
      rec.status = code;
      status(res, code, reason, message);
      notify();
    };
    if (req.headers.authorization !== `Bearer ${token}`) return fail(401, "Unauthorized", "Unauthorized");
    const r = RESOURCES[url.pathname];
    if (!r) return fail(404, "NotFound", `the server could not find the requested resource (${url.pathname})`);
    if (req.method !== "GET") return fail(405, "MethodNotAllowed", `${req.method} is not supported`);
    let matches: (o: Obj) => boolean;
    try {
      const labels = parseLabelSelector(query.labelSelector ?? "");
      const fields = parseFieldSelector(query.fieldSelector ?? "");
      matches = (o) => labels.every((t) => t(o.metadata?.labels ?? {})) && fields.every((t) => t(o));
    } catch (e) {
      return fail(400, "BadRequest", (e as Error).message);
    }
    const kind = r.kind;

    if (!watch) {
      // A chunked list reads the snapshot its first chunk was cut from.
      let at = rv;
      let after = "";
      if (query.continue) {
        let tok: { rv: number; after: string };
        try {
          tok = JSON.parse(Buffer.from(query.continue, "base64url").toString());
        } catch {
          return fail(400, "BadRequest", "continue key is not valid");
        }
        if (tok.rv < compacted)
          return fail(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter",
          );
        at = tok.rv;
        after = tok.after;
      }
      const all = snapshot(kind, at)
        .filter(matches)
        .sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0))
        .filter((o) => after === "" || keyOf(o) > after);
      const limit = Number(query.limit ?? 0);
      const page = limit > 0 ? all.slice(0, limit) : all;
      const metadata: Obj = { resourceVersion: String(at) };
      if (page.length < all.length) {
        metadata.continue = Buffer.from(JSON.stringify({ rv: at, after: keyOf(page[page.length - 1]) })).toString(
          "base64url",
        );
        metadata.remainingItemCount = all.length - page.length;
      }
      // Items of a list carry no kind/apiVersion, as the real server sends them.
      const items = page.map((o) => {
        const { kind: _k, apiVersion: _a, ...rest } = o;
        return rest;
      });
      rec.status = 200;
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ kind: `${kind}List`, apiVersion: r.apiVersion, metadata, items }));
      notify();
      return;
    }

    // Watch.
    const from = query.resourceVersion ?? "";
    rec.status = 200;
    res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
    res.flushHeaders(); // the client waits for the headers before it reads events
    const w: Watcher = {
      kind,
      res,
      socket: req.socket as Socket,
      matches,
      bookmarks: query.allowWatchBookmarks === "true",
    };
    if (from !== "" && from !== "0" && Number(from) < compacted) {
      rec.gone = true;
      res.end(
        `${JSON.stringify({
          type: "ERROR",
          object: {
            kind: "Status",
            apiVersion: "v1",
            metadata: {},
            status: "Failure",
            message: `too old resource version: ${from} (${compacted})`,
            reason: "Expired",
            code: 410,
          },
        })}\n`,
      );
      notify();
      return;
    }
    if (from === "" || from === "0") {
      for (const o of store[kind].values())
        if (matches(o)) res.write(`${JSON.stringify({ type: "ADDED", object: o })}\n`);
    } else {
      const n = Number(from);
      for (const e of log[kind]) if (e.rv > n) sendEntry(w, e);
    }
    watchers.add(w);
    const done = () => {
      if (!watchers.delete(w)) return;
      clearTimeout(w.timer);
      notify();
    };
    res.on("close", done);
    req.socket.on("close", done);
    const timeout = Number(query.timeoutSeconds ?? 0);
    if (timeout > 0)
      w.timer = setTimeout(() => {
        res.end();
        done();
      }, timeout * 1000);
    notify();
  };

  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer(tlsOptions, handle);
      s.on("connection", (sock: Socket) => {
        sockets.add(sock);
        sock.on("close", () => sockets.delete(sock));
      });
      s.on("tlsClientError", () => {}); // a client that refuses our CA: its problem, not ours
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => {
        port = (s.address() as { port: number }).port;
        server = s;
        resolve();
      });
    });
  await listen();
  const url = `https://127.0.0.1:${port}`;
  const kubeconfigPath = writeKubeconfigFile(join(dir, "kubeconfig"), { server: url, caPath: ca.certPath, token });
  let kubeconfigs = 0;

  const stop = async () => {
    const s = server;
    server = undefined;
    for (const w of [...watchers]) {
      clearTimeout(w.timer);
      watchers.delete(w);
    }
    if (!s) return;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    for (const sock of sockets) sock.destroy();
    sockets.clear();
    await closed;
    notify();
  };

  const api: TestApiserver = {
    url,
    get port() {
      return port;
    },
    kubeconfigPath,
    token,
    caPath: ca.certPath,
    dir,
    get resourceVersion() {
      return rv;
    },
    requests,
    openWatches: (kind) => [...watchers].filter((w) => kind === undefined || w.kind === kind).length,
    add(obj) {
      const kind = kindOf(obj);
      const key = keyFor(kind, obj);
      if (store[kind].has(key)) throw new Error(`test apiserver: ${kind} ${key} already exists`);
      const o = stamp(kind, obj);
      store[kind].set(key, o);
      record("ADDED", kind, o);
      return clone(o);
    },
    update(obj) {
      const kind = kindOf(obj);
      const key = keyFor(kind, obj);
      const prev = store[kind].get(key);
      if (!prev) throw new Error(`test apiserver: ${kind} ${key} does not exist`);
      const o = stamp(kind, obj, prev);
      store[kind].set(key, o);
      record("MODIFIED", kind, o, prev);
      return clone(o);
    },
    remove(kind, namespace, name) {
      const key = keyFor(kind, { metadata: { namespace, name } });
      const prev = store[kind].get(key);
      if (!prev) throw new Error(`test apiserver: ${kind} ${key} does not exist`);
      store[kind].delete(key);
      const o = clone(prev);
      o.metadata.resourceVersion = String(++rv);
      record("DELETED", kind, o, prev);
    },
    dropWatches() {
      const n = watchers.size;
      for (const w of [...watchers]) {
        clearTimeout(w.timer);
        watchers.delete(w);
        w.socket.destroy();
      }
      notify();
      return n;
    },
    compactBefore(n) {
      compacted = Math.max(compacted, n);
    },
    bookmark(o = {}) {
      let n = 0;
      for (const w of [...watchers]) {
        if (!w.bookmarks) continue;
        const r = resourceOf(w.kind);
        w.res.write(
          `${JSON.stringify({ type: "BOOKMARK", object: { kind: w.kind, apiVersion: r.apiVersion, metadata: { resourceVersion: String(rv) } } })}\n`,
        );
        n++;
        if (o.thenClose) {
          clearTimeout(w.timer);
          watchers.delete(w);
          w.res.end();
        }
      }
      notify();
      return n;
    },
    waitFor(what, pred, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        if (pred()) return resolve();
        const check = () => {
          if (!pred()) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`test apiserver: timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    writeKubeconfig(o = {}) {
      return writeKubeconfigFile(join(dir, `kubeconfig-${++kubeconfigs}`), {
        server: o.server ?? url,
        caPath: o.caPath ?? ca.certPath,
        token: o.token ?? token,
        name: o.name,
      });
    },
    stop,
    async restart() {
      if (server) return;
      await listen();
      notify();
    },
    async close() {
      await stop();
      removeTempDir(dir);
    },
  };
  return api;
}
