/**
 * The security review's hostile manifests, one file each: what must never stop a manifests
 * scan (tests/sources/manifests.test.ts, tests/sync/hostile_real.test.ts).
 */
import { spawnSync } from "node:child_process";
import { symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** A good Service with one endpoint, shop/web at 10.96.0.40:80. */
export const GOOD = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.40, ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.244.1.5]}]
`;

export function mkfifo(p: string): void {
  const r = spawnSync("mkfifo", [p], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`mkfifo ${p}: ${r.stderr}`);
}

/** Writes the hostile files into `dir`; `outside` gets the target of a symlink out. */
export function hostileFiles(dir: string, outside: string): void {
  // An unresolved alias, inside an object kip does not even read.
  writeFileSync(join(dir, "alias.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: *nope}\n");
  // More than 100 aliases (the yaml library's alias-bomb guard throws).
  writeFileSync(
    join(dir, "aliases.yaml"),
    `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\ndata:\n  base: &b "x"\n${Array.from({ length: 120 }, (_, i) => `  k${i}: *b`).join("\n")}\n`,
  );
  // 200,000 nested arrays: a recursive parser runs out of stack.
  writeFileSync(join(dir, "deep.json"), "[".repeat(200_000));
  // A FIFO: reading it would block forever.
  mkfifo(join(dir, "fifo.yaml"));
  // A 2 MiB file (over the 1 MiB cap the tests set).
  writeFileSync(join(dir, "huge.yaml"), `# ${"x".repeat(2 * 1024 * 1024)}\n`);
  // A symlink to a file outside the directory.
  writeFileSync(join(outside, "secret.yaml"), "token: s3cr3t\n");
  symlinkSync(join(outside, "secret.yaml"), join(dir, "leak.yaml"));
}

/** Names in `dir` that hostileFiles reports a problem for (aliases.yaml may parse). */
export const REPORTED = ["alias.yaml", "deep.json", "fifo.yaml", "huge.yaml", "leak.yaml"];

/**
 * Another process that swaps `dir/x.yaml` between a symlink to a regular file and one to a
 * FIFO (both inside `dir`) for `ms`, then opens the FIFO for writing for a while: that frees a
 * reader stuck on it. Resolves with how many such readers it freed (0 when nobody was stuck).
 */
export function startSwapper(dir: string, ms: number): Promise<number> {
  writeFileSync(join(dir, "x-good.txt"), GOOD.replaceAll("web", "swap").replace("10.96.0.40", "10.96.0.42"));
  mkfifo(join(dir, "x-pipe"));
  const child = Bun.spawn(
    [
      process.execPath,
      "-e",
      `const fs = require("node:fs");
       const d = ${JSON.stringify(dir)};
       const until = Date.now() + ${ms};
       for (let i = 0; Date.now() < until; i++) {
         fs.symlinkSync(i % 2 ? "x-pipe" : "x-good.txt", d + "/.t" + i);
         fs.renameSync(d + "/.t" + i, d + "/x.yaml");
       }
       fs.symlinkSync("x-good.txt", d + "/.tend");
       fs.renameSync(d + "/.tend", d + "/x.yaml");
       let freed = 0;
       const stop = Date.now() + 500;
       while (Date.now() < stop) {
         try { fs.closeSync(fs.openSync(d + "/x-pipe", fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)); freed++; } catch {}
       }
       console.log(freed);`,
    ],
    { stdout: "pipe" },
  );
  return child.exited.then(async () => Number((await new Response(child.stdout).text()).trim()));
}
