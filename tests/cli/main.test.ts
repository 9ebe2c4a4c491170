/**
 * cli/main.ts as the one place errors become exit statuses: each error type's status and
 * message, directly (reportError) and through the commands that throw it.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CommanderError } from "@commander-js/extra-typings";
import { ManifestErrors, NeedsRoot, UsageError } from "../../cli/errors.ts";
import type { IO } from "../../cli/io.ts";
import { reportError } from "../../cli/main.ts";
import { IptablesUnavailable } from "../../lib/iptables/runner.ts";
import { runKip } from "../support/io.ts";
import { tempDir } from "../support/tempdir.ts";

function capture(): { io: IO; err: () => string } {
  let err = "";
  const io: IO = {
    stdout: () => {},
    stderr: (t) => {
      err += t;
    },
    readStdin: () => "",
    readFile: () => "",
    hostname: () => "test-host",
    stdoutIsTTY: false,
    stderrIsTTY: false,
    env: {},
  };
  return { io, err: () => err };
}

function report(e: unknown, at: { command?: string; verbose?: boolean } = {}) {
  const c = capture();
  const code = reportError(e, c.io, { command: at.command, verbose: at.verbose ?? false });
  return { code, stderr: c.err() };
}

describe("reportError: each error type's exit status", () => {
  test("UsageError: 2, every line of the message is kip's", () => {
    expect(report(new UsageError('Cannot read "a"\nCannot read "b"'))).toEqual({
      code: 2,
      stderr: 'kip: Cannot read "a"\nkip: Cannot read "b"\n',
    });
  });

  test("ManifestErrors: 2", () => {
    expect(report(new ManifestErrors("2 errors in the manifests; nothing rendered"))).toEqual({
      code: 2,
      stderr: "kip: 2 errors in the manifests; nothing rendered\n",
    });
  });

  test("NeedsRoot: 2", () => {
    expect(report(new NeedsRoot("run kip cleanup as root"), { command: "cleanup" })).toEqual({
      code: 2,
      stderr: "kip: run kip cleanup as root\n",
    });
  });

  test("IptablesUnavailable: 2, no stack even under --verbose", () => {
    expect(report(new IptablesUnavailable("iptables is not installed"), { verbose: true })).toEqual({
      code: 2,
      stderr: "kip: iptables is not installed\n",
    });
  });

  test("anything else: 1 with its message; the stack only under --verbose", () => {
    expect(report(new Error("boom"))).toEqual({ code: 1, stderr: "kip: boom\n" });
    const verbose = report(new Error("boom"), { verbose: true });
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toStartWith("kip: boom\nError: boom\n    at ");
  });

  test("credentials in a URL never reach stderr", () => {
    expect(report(new Error("GET https://admin:s3cret@10.0.0.1:6443/api: connection refused"))).toEqual({
      code: 1,
      stderr: "kip: GET https://***@10.0.0.1:6443/api: connection refused\n",
    });
  });

  test("kip diff: any trouble is 2, as diff(1) says", () => {
    expect(report(new Error("boom"), { command: "diff" })).toEqual({ code: 2, stderr: "kip: boom\n" });
    expect(report(new Error("boom"), { command: "diff", verbose: true }).stderr).toStartWith(
      "kip: boom\nError: boom\n",
    );
    expect(report(new UsageError("bad"), { command: "diff" })).toEqual({ code: 2, stderr: "kip: bad\n" });
  });

  test("commander's own ends: --help and --version 0, a parse error 2 (already printed)", () => {
    expect(report(new CommanderError(0, "commander.helpDisplayed", "(outputHelp)"))).toEqual({ code: 0, stderr: "" });
    expect(report(new CommanderError(1, "commander.unknownOption", "error: unknown option"))).toEqual({
      code: 2,
      stderr: "",
    });
  });
});

describe("through the commands", () => {
  let uid: ReturnType<typeof spyOn> | undefined;
  afterEach(() => {
    uid?.mockRestore();
    uid = undefined;
  });
  const notRoot = () => {
    uid = spyOn(process, "getuid").mockReturnValue(1000);
  };

  test("NeedsRoot: cleanup, diff, explain --live and sync say so, exit 2, before any other work", async () => {
    notRoot();
    expect(await runKip(["cleanup", "--dry-run"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "kip: cleanup reads and changes iptables: run kip cleanup as root\n",
    });
    expect(await runKip(["diff", "examples/seed"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "kip: reading the live tables needs root (iptables-save): run kip diff as root, or give --live FILE\n",
    });
    expect(await runKip(["explain", "--live", "--service", "default/nginx-svc"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "kip: reading the live tables needs root (iptables-save): run as root, or give --live FILE\n",
    });
    expect(await runKip(["sync", "--once"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "kip: kip sync changes iptables: run it as root (or use --dry-run)\n",
    });
  });

  test("ManifestErrors: each problem, then the count; exit 2 and nothing on stdout", async () => {
    const r = await runKip(["render", "tests/fixtures/bad-manifests/input.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toStartWith("error: tests/fixtures/bad-manifests/input.yaml:9: ");
    expect(r.stderr).toEndWith("kip: 13 errors in the manifests; nothing rendered\n");
  });

  test("a usage error of several lines, in any command: every line is kip's", async () => {
    const config = join(tempDir("kip-main-"), "config.yaml");
    writeFileSync(
      config,
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nclusterCIDR: x\n",
    );
    const want = [
      `kip: ${config}:3: mode: "ipvs": kip implements the iptables mode only\n`,
      `kip: ${config}:4: clusterCIDR: cluster CIDR "x" is not a valid CIDR\n`,
    ].join("");
    for (const argv of [
      ["render", "examples/seed"],
      ["diff", "examples/seed", "--live", "tests/fixtures-live/seed-iptables-nft.rules"],
      ["explain", "examples/seed", "--dst", "10.97.54.248:80"],
      ["sync", "--dry-run", "--manifests", "examples/seed"],
    ])
      expect({ argv, ...(await runKip([...argv, "--config", config])) }).toEqual({
        argv,
        code: 2,
        stdout: "",
        stderr: want,
      });
  });

  test("UsageError before any command runs (a boolean flag's value): 2", async () => {
    expect(await runKip(["render", "--strict=maybe"])).toEqual({
      code: 2,
      stdout: "",
      stderr: 'kip: --strict takes true or false, not "maybe"\n',
    });
  });
});
