/**
 * A pod's HTTP server for the e2e topology (tests/support/topology.ts), run inside the pod's
 * network namespace: `ip netns exec <pod> <bun> tests/support/pod_server.ts <name> <port>...`.
 * Every request on every port is answered `<name> <client-ip>`, so a test sees which pod
 * answered and which source address reached it (masqueraded or not).
 *
 * Prints `ready` once every port listens. Exits when its stdin closes, so a test runner that
 * dies without cleaning up leaves no server behind.
 */
export {};

const [name, ...portArgs] = process.argv.slice(2);
const ports = portArgs.map(Number);
if (!name || ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p <= 0 || p > 65535)) {
  process.stderr.write("usage: pod_server.ts <name> <port>...\n");
  process.exit(2);
}

for (const port of ports) {
  Bun.serve({
    hostname: "0.0.0.0",
    port,
    fetch(req, server) {
      const ip = server.requestIP(req)?.address ?? "?";
      return new Response(`${name} ${ip}`, { headers: { connection: "close" } });
    },
  });
}
process.stdout.write("ready\n");

process.stdin.on("data", () => {});
process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
