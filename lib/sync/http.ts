/**
 * The daemon's HTTP servers (spec §11): /healthz and /livez; /metrics, /proxyMode and
 * /debug/last-restore; and one health-check server per ETP=Local LoadBalancer Service.
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

  /** Healthy unless some family has had a change waiting longer than 2 × syncPeriod. */
  healthy(): boolean {
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
export function healthzServer(health: HealthState, metrics: Metrics | undefined, now: () => number): Server {
  return createServer((req: IncomingMessage, res: ServerResponse) => {
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
}

/** /metrics, /healthz ("ok"), /proxyMode, /debug/last-restore. */
export function metricsServer(
  metrics: Metrics,
  lastRestores: () => Record<string, { lastSuccess?: RestoreRecord; lastFailure?: RestoreRecord }>,
): Server {
  return createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") return send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
    if (path === "/healthz") return send(res, 200, "ok", "text/plain; charset=utf-8");
    if (path === "/proxyMode") return send(res, 200, "iptables", "text/plain; charset=utf-8");
    if (path === "/debug/last-restore") return send(res, 200, `${JSON.stringify(lastRestores(), null, 2)}\n`);
    send(res, 404, "404 page not found\n", "text/plain; charset=utf-8");
  });
}

/** One health-check server per Service with a healthCheckNodePort (spec §11.1). */
export class HealthCheckServers {
  private servers = new Map<number, { server: Server; service: string; local: number }>();

  constructor(
    private readonly health: HealthState,
    private readonly bind: string,
    private readonly onProblem: (msg: string) => void,
  ) {}

  /** Open, close and update servers to match `wanted` (port → service and local endpoint count). */
  async sync(wanted: Map<number, { service: string; localEndpoints: number }>): Promise<void> {
    for (const [port, s] of this.servers)
      if (!wanted.has(port) || wanted.get(port)?.service !== s.service) {
        await close(s.server);
        this.servers.delete(port);
      }
    for (const [port, w] of wanted) {
      const have = this.servers.get(port);
      if (have) {
        have.local = w.localEndpoints;
        continue;
      }
      const entry = { server: undefined as unknown as Server, service: w.service, local: w.localEndpoints };
      entry.server = createServer((_req, res) => {
        const [namespace, name] = entry.service.split("/");
        const healthy = this.health.healthy();
        const code = entry.local > 0 && healthy ? 200 : 503;
        send(
          res,
          code,
          `{\n\t"service": {\n\t\t"namespace": ${JSON.stringify(namespace)},\n\t\t"name": ${JSON.stringify(name)}\n\t},\n\t"localEndpoints": ${entry.local},\n\t"serviceProxyHealthy": ${healthy}\n}`,
        );
      });
      try {
        await listen(entry.server, `${this.bind}:${port}`);
        this.servers.set(port, entry);
      } catch (e) {
        this.onProblem(`FailedToStartServiceHealthcheck: ${w.service} port ${port}: ${(e as Error).message}`);
      }
    }
  }

  async stop(): Promise<void> {
    for (const s of this.servers.values()) await close(s.server);
    this.servers.clear();
  }
}
