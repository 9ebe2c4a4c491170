/**
 * The daemon's HTTP servers (spec §11): /healthz and /livez; /metrics, /proxyMode and
 * /debug/last-restore; and one health-check server per ETP=Local LoadBalancer Service.
 *
 * Every server caps its connections and closes idle ones (limits()), so a flood of idle
 * connections cannot take the file descriptors the daemon needs to run iptables.
 * /debug/last-restore lists every Service and pod IP: it answers loopback clients only,
 * unless the operator opts in, and its body is built once per restore, not per request.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { IPFamily } from "../model/ip.ts";
import type { Metrics } from "./metrics.ts";
import type { RestoreRecord } from "./proxier.ts";

const START = Date.now();

/** Go's time.Time.String(), as kube-proxy prints it, with the monotonic reading. */
export function goTime(ms: number | undefined): string {
  if (ms === undefined) return "0001-01-01 00:00:00 +0000 UTC";
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const date = `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}`;
  const time = `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}000000`;
  return `${date} ${time} +0000 UTC m=+${((ms - START) / 1000).toFixed(9)}`;
}

/** Per family: when rules were last written, and since when a change has been waiting. */
export class HealthState {
  private families = new Map<IPFamily, { lastUpdated?: number; oldestPending?: number }>();
  private checks: (() => string | undefined)[] = [];
  nodeEligible = true;

  constructor(
    families: IPFamily[],
    private readonly timeoutMs: number,
    private readonly now: () => number,
  ) {
    for (const f of families) this.families.set(f, { lastUpdated: now() });
  }

  queued(): void {
    for (const s of this.families.values()) s.oldestPending ??= this.now();
  }

  updated(family: IPFamily): void {
    const s = this.families.get(family);
    if (!s) return;
    s.lastUpdated = this.now();
    s.oldestPending = undefined;
  }

  /** One more liveness condition: a message when it fails (a stuck manifests scan). */
  addCheck(check: () => string | undefined): void {
    this.checks.push(check);
  }

  /** The first failing extra check, if any. */
  problem(): string | undefined {
    for (const c of this.checks) {
      const p = c();
      if (p) return p;
    }
    return undefined;
  }

  /** Healthy unless some family has had a change waiting longer than 2 × syncPeriod, or a check fails. */
  healthy(): boolean {
    if (this.problem()) return false;
    const now = this.now();
    for (const s of this.families.values())
      if (s.oldestPending !== undefined && now - s.oldestPending > this.timeoutMs) return false;
    return true;
  }

  lastUpdated(): number | undefined {
    let out: number | undefined;
    for (const s of this.families.values()) if (s.lastUpdated !== undefined) out = Math.max(out ?? 0, s.lastUpdated);
    return out;
  }
}

function send(res: ServerResponse, code: number, body: string, type = "application/json"): void {
  res.writeHead(code, { "Content-Type": type, "X-Content-Type-Options": "nosniff" });
  res.end(body);
}

/** Connection limits of every server. */
export interface ServerLimits {
  /** Connections open at once; more are closed as they arrive. */
  maxConnections: number;
  /** A connection with no request in flight for this long is closed (ms). */
  idleTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = { maxConnections: 128, idleTimeoutMs: 10_000 };

/** Caps `server`'s connections and times out idle or slow ones. */
export function limits(server: Server, l: ServerLimits = DEFAULT_LIMITS): Server {
  server.maxConnections = l.maxConnections;
  server.timeout = l.idleTimeoutMs;
  server.keepAliveTimeout = Math.min(5_000, l.idleTimeoutMs);
  server.headersTimeout = l.idleTimeoutMs;
  server.requestTimeout = l.idleTimeoutMs;
  server.on("timeout", (socket: import("node:net").Socket) => socket.destroy());
  server.on("clientError", (_e: Error, socket: import("node:net").Socket) => socket.destroy());
  // Once listening, an error (EMFILE on accept…) must not end the process: the server goes on.
  server.on("error", () => {});
  return server;
}

/** A loopback peer: 127.0.0.0/8, ::1, or 127.x mapped into IPv6. */
export function isLoopbackPeer(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.replace(/^::ffff:/i, "");
  return a === "::1" || /^127\.\d+\.\d+\.\d+$/.test(a);
}

export function listen(server: Server, bind: string): Promise<string> {
  const i = bind.lastIndexOf(":");
  const host = bind.slice(0, i).replace(/^\[|\]$/g, "") || "0.0.0.0";
  const port = Number(bind.slice(i + 1));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const a = server.address() as AddressInfo;
      resolve(`${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`);
    });
  });
}

export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

/** /healthz and /livez with kube-proxy's bodies and status codes. */
export function healthzServer(
  health: HealthState,
  metrics: Metrics | undefined,
  now: () => number,
  l: ServerLimits = DEFAULT_LIMITS,
): Server {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    const healthy = health.healthy();
    const current = goTime(now());
    if (path === "/livez") {
      const code = healthy ? 200 : 503;
      metrics?.livez.inc({ code: String(code) });
      const last = healthy ? current : goTime(health.lastUpdated());
      return send(res, code, `{"lastUpdated": "${last}","currentTime": "${current}"}`);
    }
    if (path === "/healthz") {
      const ok = healthy && health.nodeEligible;
      const code = ok ? 200 : 503;
      metrics?.healthz.inc({ code: String(code) });
      const last = ok ? current : goTime(health.lastUpdated());
      return send(
        res,
        code,
        `{"lastUpdated": "${last}","currentTime": "${current}", "nodeEligible": ${health.nodeEligible}}`,
      );
    }
    send(res, 404, "404 page not found\n", "text/plain; charset=utf-8");
  });
  return limits(server, l);
}

type LastRestores = Record<string, { lastSuccess?: RestoreRecord; lastFailure?: RestoreRecord }>;

/**
 * The /debug/last-restore body, rebuilt only when a record changed (records are replaced,
 * never mutated, so identity says it all): 30 parallel requests for a 15 MB body must not
 * make 30 copies of it.
 */
export function cachedDebugBody(lastRestores: () => LastRestores): () => string {
  let refs: unknown[] = [];
  let body = "";
  return () => {
    const now = lastRestores();
    const next = Object.entries(now).flatMap(([k, v]) => [k, v.lastSuccess, v.lastFailure]);
    if (next.length !== refs.length || next.some((r, i) => r !== refs[i])) {
      body = `${JSON.stringify(now, null, 2)}\n`;
      refs = next;
    }
    return body;
  };
}

/**
 * /metrics, /healthz ("ok"), /proxyMode, /debug/last-restore and /debug/endpoints (loopback
 * clients, unless `debugFromNetwork`: both list endpoint addresses).
 */
export function metricsServer(
  metrics: Metrics,
  lastRestores: () => LastRestores,
  opts: {
    debugFromNetwork?: boolean;
    limits?: ServerLimits;
    /** Each probed endpoint's state (kip sync --manifests); absent: the list is empty, and why. */
    endpoints?: () => unknown[];
  } = {},
): Server {
  const debugBody = cachedDebugBody(lastRestores);
  const server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") return send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
    if (path === "/healthz") return send(res, 200, "ok", "text/plain; charset=utf-8");
    if (path === "/proxyMode") return send(res, 200, "iptables", "text/plain; charset=utf-8");
    if (path === "/debug/last-restore" || path === "/debug/endpoints") {
      if (!opts.debugFromNetwork && !isLoopbackPeer(req.socket.remoteAddress))
        return send(
          res,
          403,
          `${path} answers loopback clients only (kip sync --debug-from-network allows others)\n`,
          "text/plain; charset=utf-8",
        );
      if (path === "/debug/endpoints") {
        const body = opts.endpoints
          ? { endpoints: opts.endpoints() }
          : { endpoints: [], note: "readiness probes run with kip sync --manifests only" };
        return send(res, 200, `${JSON.stringify(body, null, 2)}\n`);
      }
      return send(res, 200, debugBody());
    }
    send(res, 404, "404 page not found\n", "text/plain; charset=utf-8");
  });
  return limits(server, opts.limits);
}

/**
 * One health-check server per Service with a healthCheckNodePort (spec §11.1), on each of
 * `binds` (the node's addresses that --nodeport-addresses selects; ["0.0.0.0"] when it selects all).
 */
export class HealthCheckServers {
  private servers = new Map<number, { servers: Server[]; service: string; local: number }>();
  private readonly binds: string[];

  constructor(
    private readonly health: HealthState,
    binds: string | string[],
    private readonly onProblem: (msg: string) => void,
    private readonly serverLimits: ServerLimits = DEFAULT_LIMITS,
  ) {
    this.binds = typeof binds === "string" ? [binds] : binds;
  }

  /** Open, close and update servers to match `wanted` (port → service and local endpoint count). */
  async sync(wanted: Map<number, { service: string; localEndpoints: number }>): Promise<void> {
    for (const [port, s] of this.servers)
      if (!wanted.has(port) || wanted.get(port)?.service !== s.service) {
        for (const server of s.servers) await close(server);
        this.servers.delete(port);
      }
    for (const [port, w] of wanted) {
      const have = this.servers.get(port);
      if (have) {
        have.local = w.localEndpoints;
        continue;
      }
      const entry = { servers: [] as Server[], service: w.service, local: w.localEndpoints };
      const handler = (_req: IncomingMessage, res: ServerResponse) => {
        const [namespace, name] = entry.service.split("/");
        const healthy = this.health.healthy();
        const code = entry.local > 0 && healthy ? 200 : 503;
        send(
          res,
          code,
          `{\n\t"service": {\n\t\t"namespace": ${JSON.stringify(namespace)},\n\t\t"name": ${JSON.stringify(name)}\n\t},\n\t"localEndpoints": ${entry.local},\n\t"serviceProxyHealthy": ${healthy}\n}`,
        );
      };
      for (const bind of this.binds) {
        const server = limits(createServer(handler), this.serverLimits);
        const host = bind.includes(":") ? `[${bind}]` : bind;
        try {
          await listen(server, `${host}:${port}`);
          entry.servers.push(server);
        } catch (e) {
          this.onProblem(
            `FailedToStartServiceHealthcheck: ${w.service} port ${port} on ${bind}: ${(e as Error).message}`,
          );
        }
      }
      if (entry.servers.length > 0) this.servers.set(port, entry);
    }
  }

  async stop(): Promise<void> {
    for (const s of this.servers.values()) for (const server of s.servers) await close(server);
    this.servers.clear();
  }
}
