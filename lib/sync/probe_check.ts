/**
 * The real network side of a readiness probe (lib/sync/prober.ts's Check): a TCP connect, or
 * an HTTP(S) GET, to an endpoint's own address, as the kubelet makes them (pkg/probe/tcp,
 * pkg/probe/http): a fresh connection per probe, `User-Agent: kube-probe/…`-style header,
 * 200–399 is success, HTTPS certificates are not verified.
 *
 * Probe traffic goes only where the manifests say: the address is the endpoint's, there is
 * no `host` field, and a redirect is followed only when it stays on the same scheme, address
 * and port (at most 10 times). A redirect off the endpoint is not followed and counts as
 * success, as the kubelet counts it. The response body is never read.
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect } from "node:net";
import { VERSION } from "../version.ts";
import type { CheckResult, ProbeTarget } from "./prober.ts";

const MAX_REDIRECTS = 10;

function errorReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "EHOSTUNREACH") return "host unreachable";
  if (code === "ENETUNREACH") return "network unreachable";
  if (code === "ECONNRESET") return "connection reset";
  return code ?? ((e as Error)?.message || String(e));
}

/** A TCP connect to address:port; success once connected (the connection is closed at once). */
export function tcpCheck(address: string, port: number, signal: AbortSignal): Promise<CheckResult> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve({ ok: false, reason: "aborted" });
    const socket = connect({ host: address, port });
    const done = (r: CheckResult) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(r);
    };
    const onAbort = () => done({ ok: false, reason: "aborted" });
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => done({ ok: true, reason: "connected" }));
    socket.once("error", (e) => done({ ok: false, reason: errorReason(e) }));
  });
}

function hostPort(address: string, port: number): string {
  return `${address.includes(":") ? `[${address}]` : address}:${port}`;
}

/** One GET, answered with the status and the Location header (the body is not read). */
function getOnce(
  scheme: "HTTP" | "HTTPS",
  address: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<{ status: number; location?: string } | { error: string }> {
  return new Promise((resolve) => {
    const send = scheme === "HTTPS" ? httpsRequest : httpRequest;
    let settled = false;
    const settle = (v: { status: number; location?: string } | { error: string }) => {
      if (settled) return;
      settled = true;
      resolve(v);
    };
    try {
      const req = send(
        {
          host: address,
          port,
          path,
          method: "GET",
          headers,
          agent: false,
          signal,
          // The kubelet does not verify a probe's certificate either.
          rejectUnauthorized: false,
        },
        (res: IncomingMessage) => {
          const location = typeof res.headers.location === "string" ? res.headers.location : undefined;
          settle({ status: res.statusCode ?? 0, location });
          res.destroy();
        },
      );
      req.once("error", (e) => settle({ error: signal.aborted ? "aborted" : errorReason(e) }));
      req.end();
    } catch (e) {
      settle({ error: errorReason(e) });
    }
  });
}

/** An HTTP(S) GET of `path` on address:port, redirects followed only on the same endpoint. */
export async function httpCheck(
  target: ProbeTarget,
  handler: Extract<ProbeTarget["probe"]["handler"], { type: "httpGet" }>,
  signal: AbortSignal,
): Promise<CheckResult> {
  const { address, port } = target;
  const headers: Record<string, string> = {
    "User-Agent": `kip-probe/${VERSION}`,
    Accept: "*/*",
    Connection: "close",
  };
  // A header written in the probe replaces the default of the same name (as the kubelet's).
  for (const h of handler.headers) {
    for (const k of Object.keys(headers)) if (k.toLowerCase() === h.name.toLowerCase()) delete headers[k];
    headers[h.name] = h.value;
  }
  const origin = `${handler.scheme.toLowerCase()}://${hostPort(address, port)}`;
  let path = handler.path;
  for (let hop = 0; ; hop++) {
    const r = await getOnce(handler.scheme, address, port, path, headers, signal);
    if ("error" in r) return { ok: false, reason: r.error };
    const ok = r.status >= 200 && r.status < 400;
    if (r.status < 300 || r.status >= 400 || r.location === undefined) return { ok, reason: `HTTP ${r.status}` };
    let next: URL;
    try {
      next = new URL(r.location, origin + path);
    } catch {
      return { ok: true, reason: `HTTP ${r.status}, redirect to an invalid location not followed` };
    }
    if (next.origin !== new URL(origin).origin)
      return { ok: true, reason: `HTTP ${r.status}, redirect off the endpoint not followed` };
    if (hop >= MAX_REDIRECTS) return { ok: false, reason: `stopped after ${MAX_REDIRECTS} redirects` };
    path = next.pathname + next.search;
  }
}

/** The Check the daemon uses: tcpSocket or httpGet, to the target's address and port. */
export function networkCheck(target: ProbeTarget, signal: AbortSignal): Promise<CheckResult> {
  const h = target.probe.handler;
  if (h.type === "tcpSocket") return tcpCheck(target.address, target.port, signal);
  return httpCheck(target, h, signal);
}
