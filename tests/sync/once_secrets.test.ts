/**
 * `kip sync --once` gives up when the sources cannot be listed (--once-timeout), and what it
 * logs on the way never shows credentials: a `--master https://user:password@…` is redacted,
 * and a kubeconfig that turns TLS verification off is called out.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { redactURLs } from "../../lib/sync/log.ts";
import { kip } from "../support/binary.ts";
import { exec } from "../support/netns.ts";
import { tempDir } from "../support/tempdir.ts";

const BASE = ["sync", "--once", "--dry-run", "--hostname-override", "n", "--ip-families", "IPv4"];
/** No kubeconfig from the environment: only what the test names. */
const env = () => ({ HOME: tempDir("kip-home-"), KUBECONFIG: "", KUBERNETES_SERVICE_HOST: "" });

// kip sync asks iptables for its version first: a non-root user's PATH may not have /usr/sbin.
describe.skipIf(exec(["which", "iptables"]).code !== 0)(
  "kip sync --once against an apiserver that does not answer",
  () => {
    test("exits 1 after --once-timeout with a clear message; the password in --master is never printed", () => {
      const t0 = performance.now();
      const r = kip([...BASE, "--master", "https://admin:s3cr3t-pw@127.0.0.1:1", "--once-timeout", "2s"], {
        env: env(),
      });
      const ms = performance.now() - t0;
      expect(r.stderr).toContain("kip: the sources were not listed within --once-timeout 2s; nothing was applied");
      expect(r.code).toBe(1);
      expect(ms).toBeLessThan(15_000);
      expect(r.stderr).toContain("https://***@127.0.0.1:1");
      expect(r.stderr + r.stdout).not.toContain("s3cr3t-pw");
    }, 30_000);

    test("a kubeconfig with insecure-skip-tls-verify gets a warning; its URL credentials are redacted too", () => {
      const dir = tempDir("kip-kc-");
      const kc = join(dir, "kubeconfig");
      writeFileSync(
        kc,
        `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://ops:hunter2@127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`,
      );
      const r = kip([...BASE, "--kubeconfig", kc, "--once-timeout", "1s"], { env: env() });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("disables TLS verification (insecure-skip-tls-verify)");
      expect(r.stderr).not.toContain("hunter2");
    }, 30_000);
  },
);

test("redactURLs hides user:password in any URL of a line, and leaves the rest", () => {
  expect(redactURLs("--master https://user:p@ss@10.0.0.1:6443/api failed")).toBe(
    "--master https://***@10.0.0.1:6443/api failed",
  );
  expect(redactURLs("x http://tok@h/ y https://a:b@c z")).toBe("x http://***@h/ y https://***@c z");
  expect(redactURLs("https://10.0.0.1:6443 user@host https://h/p?x=a@b")).toBe(
    "https://10.0.0.1:6443 user@host https://h/p?x=a@b",
  );
});
