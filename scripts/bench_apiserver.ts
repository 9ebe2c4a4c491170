/**
 * The stand-in apiserver of `scripts/bench_agent.ts --mode apiserver`: the in-repo test
 * apiserver (HTTPS, a throwaway CA, a bearer token) holding N Services × 10 endpoints and
 * node-0. Prints `kubeconfig PATH` once ready; each stdin line `I GEN` moves endpoint 0 of
 * Service I's slice (a MODIFIED event). Not a test and not shipped.
 */
import { startTestApiserver } from "../tests/support/apiserver.ts";
import { benchObjects } from "./bench_agent.ts";

const n = Number(process.argv[2] ?? 10000);
const api = await startTestApiserver();
api.add({ kind: "Node", metadata: { name: "node-0", labels: {} }, spec: {} });
for (let i = 0; i < n; i++) for (const o of benchObjects(i)) api.add(o);
process.stdout.write(`kubeconfig ${api.kubeconfigPath}\n`);
let buf = "";
process.stdin.on("data", (b: Buffer) => {
  buf += b.toString("utf8");
  const lines = buf.split("\n");
  buf = lines.pop() ?? "";
  for (const l of lines) {
    const [i, gen] = l.split(" ").map(Number);
    api.update(benchObjects(i, gen)[1]);
  }
});
const stop = () => void api.close().finally(() => process.exit(0));
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
