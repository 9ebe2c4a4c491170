/**
 * The chain names of one live table, read from `iptables-save -t TABLE` as it streams: only
 * the declarations (`:NAME POLICY [p:b]`, which come before every rule) are kept, and the
 * reader stops at the first rule. Stale-chain detection needs nothing else.
 *
 * Memory budget: the declarations only (~3 MB at 10k × 10: 110k names), where reading the
 * whole save held its 38 MB three times over (pipe chunks, their concatenation, the string)
 * and lifted the daemon's peak RSS by ~150 MB once per sync period after a change.
 */
import { spawn } from "node:child_process";

/**
 * Run `argv` (an iptables-save for one table) and return the chain names declared for
 * `table`. Throws when the command cannot run, or fails before the declarations ended.
 */
export function streamChainNames(argv: string[], table: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const names: string[] = [];
    const err: Buffer[] = [];
    let rest = "";
    /** 0: before `*table`; 1: in its declarations; 2: past them (done). */
    let phase = 0;
    let settled = false;
    const finish = (e?: Error) => {
      if (settled) return;
      settled = true;
      if (e) reject(e);
      else resolve(names);
    };
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      return finish(new Error(`Cannot run ${argv[0]}: ${(e as Error).message}`));
    }
    const lines = (text: string) => {
      let at = 0;
      for (;;) {
        const eol = text.indexOf("\n", at);
        if (eol < 0) break;
        const c = text.charCodeAt(at);
        if (phase === 0) {
          if (text.startsWith(`*${table}`, at) && eol === at + table.length + 1) phase = 1;
        } else if (c === 58 /* : */) {
          const sp = text.indexOf(" ", at);
          names.push(text.slice(at + 1, sp < 0 || sp > eol ? eol : sp));
        } else if (c !== 35 /* # */) {
          // The first rule, COMMIT or another table: the declarations are over.
          phase = 2;
          return at;
        }
        at = eol + 1;
      }
      return at;
    };
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      if (phase === 2) return;
      const text = rest + chunk;
      const used = lines(text);
      rest = phase === 2 ? "" : text.slice(used);
      if (phase === 2) {
        // Nothing more is needed: stop reading; iptables-save ends on the closed pipe.
        child.stdout?.destroy();
        child.kill("SIGTERM");
      }
    });
    child.stderr?.on("data", (b: Buffer) => {
      if (err.length < 64) err.push(b);
    });
    child.on("error", (e) => finish(new Error(`Cannot run ${argv[0]}: ${e.message}`)));
    child.on("close", (code) => {
      if (phase === 2 || code === 0) return finish();
      finish(new Error(`${argv[0]} failed: ${Buffer.concat(err).toString("utf8").trim() || `exit ${code}`}`));
    });
  });
}
