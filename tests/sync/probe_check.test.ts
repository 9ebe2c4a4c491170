/**
 * lib/sync/probe_check.ts against servers on loopback (port 0): TCP connect, HTTP status
 * ranges, headers, redirects followed only on the same endpoint, and the abort at a timeout.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { PROBE_DEFAULTS } from "../../lib/model/probe.ts";
import type { ReadinessProbe } from "../../lib/model/types.ts";
import { networkCheck, tcpCheck } from "../../lib/sync/probe_check.ts";
import type { ProbeTarget } from "../../lib/sync/prober.ts";

let server: Server;
let other: Server;
let port = 0;
let otherPort = 0;
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

const listen = (s: Server) =>
  new Promise<number>((resolve) => s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port)));

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    const url = req.url ?? "/";
    if (url === "/ok") return res.writeHead(200).end("ok");
    if (url === "/fail") return res.writeHead(500).end("no");
    if (url === "/moved") return res.writeHead(302, { Location: "/ok" }).end();
    if (url === "/moved-bad") return res.writeHead(302, { Location: "/fail" }).end();
    if (url === "/away") return res.writeHead(302, { Location: `http://127.0.0.1:${otherPort}/ok` }).end();
    if (url === "/loop") return res.writeHead(302, { Location: "/loop" }).end();
    if (url === "/hang") return; // never answers
    res.writeHead(404).end();
  });
  other = createServer((req, res) => {
    seen.push({ url: `other${req.url}`, headers: req.headers });
    res.writeHead(500).end();
  });
  port = await listen(server);
  otherPort = await listen(other);
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
  other.close();
});

const http = (path: string, headers: { name: string; value: string }[] = []): ProbeTarget => {
  const probe: ReadinessProbe = {
    handler: { type: "httpGet", path, scheme: "HTTP", headers },
    ...PROBE_DEFAULTS,
  };
  return { key: "k", namespace: "ns", service: "web", address: "127.0.0.1", port, probe };
};
const signal = () => new AbortController().signal;

describe("probe checks", () => {
  test("tcpSocket: connected, or refused", async () => {
    expect(await tcpCheck("127.0.0.1", port, signal())).toEqual({ ok: true, reason: "connected" });
    const closed = createServer();
    const p = await listen(closed);
    await new Promise((r) => closed.close(r));
    expect(await tcpCheck("127.0.0.1", p, signal())).toEqual({ ok: false, reason: "connection refused" });
  });

  test("httpGet: 200-399 pass, others fail; kip's User-Agent and the probe's headers are sent", async () => {
    expect(await networkCheck(http("/ok", [{ name: "X-Probe", value: "yes" }]), signal())).toEqual({
      ok: true,
      reason: "HTTP 200",
    });
    const req = seen.find((s) => s.url === "/ok");
    expect(req?.headers["x-probe"]).toBe("yes");
    expect(req?.headers["user-agent"]).toMatch(/^kip-probe\//);
    expect(await networkCheck(http("/fail"), signal())).toEqual({ ok: false, reason: "HTTP 500" });
    expect(await networkCheck(http("/nothing"), signal())).toEqual({ ok: false, reason: "HTTP 404" });
  });

  test("a probe header replaces the default of the same name", async () => {
    seen.length = 0;
    await networkCheck(http("/ok", [{ name: "user-agent", value: "custom" }]), signal());
    expect(seen[0].headers["user-agent"]).toBe("custom");
  });

  test("redirects: followed on the same endpoint, never off it (counted as success, as the kubelet does)", async () => {
    expect(await networkCheck(http("/moved"), signal())).toEqual({ ok: true, reason: "HTTP 200" });
    expect(await networkCheck(http("/moved-bad"), signal())).toEqual({ ok: false, reason: "HTTP 500" });
    seen.length = 0;
    expect(await networkCheck(http("/away"), signal())).toEqual({
      ok: true,
      reason: "HTTP 302, redirect off the endpoint not followed",
    });
    expect(seen.map((s) => s.url)).toEqual(["/away"]); // the other server saw nothing
    expect(await networkCheck(http("/loop"), signal())).toEqual({ ok: false, reason: "stopped after 10 redirects" });
  });

  test("an abort (the prober's timeout) ends a probe that hangs", async () => {
    const c = new AbortController();
    const p = networkCheck(http("/hang"), c.signal);
    c.abort();
    expect(await p).toEqual({ ok: false, reason: "aborted" });
  });
});
