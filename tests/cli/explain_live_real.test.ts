/**
 * `kip explain --live` on this host's tables (a network namespace standing in for a node):
 * every family whose iptables works is read when only --service names the destination, and
 * a node without kube-proxy's rules is said to be one.
 */
import { describe, expect, test } from "bun:test";
import { ensureBinary, kip } from "../support/binary.ts";
import { loadLikeKubeProxy } from "../support/kube_proxy.ts";
import { skipRealIptables, withNetns } from "../support/netns.ts";

const skip = skipRealIptables();
const V6 = ["tests/fixtures/ipv6-nodeport-local", "--hostname-override", "test-node", "--ip-family", "IPv6"];

describe.skipIf(skip)("kip explain --live on a node", () => {
  test("--service without --ip-family: found in the IPv6 tables when only they have it", async () => {
    const rendered = kip(["render", ...V6]);
    expect(rendered.code).toBe(0);
    await withNetns((_ns, run) => {
      loadLikeKubeProxy(run, "IPv6", "nft", rendered.stdout);
      const argv = ["explain", "--live", "--backend", "nft", "--service", "ns1/svc1", "--from", "external"];
      const r = run([ensureBinary(), ...argv, "--host-address", "2001:db8::5/64", "--no-color"]);
      expect(r.stdout).toContain("Verdict: DNAT to one of 2 endpoints of ns1/svc1:p80");
      expect(r.code).toBe(0);
    });
  });

  test("a node with no kube-proxy rules: exit 0, and a warning saying so", async () => {
    await withNetns((_ns, run) => {
      const argv = ["explain", "--live", "--backend", "nft", "--dst", "10.96.0.10:53", "--src", "10.244.0.5"];
      const r = run([ensureBinary(), ...argv, "--host-address", "192.0.2.5/24", "--no-color"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("Verdict: no service");
      expect(r.stderr).toContain(
        "kip: warning: this host's IPv4 tables hold no kube-proxy rules (no KUBE-SERVICES chain)",
      );
    });
  });
});
