/**
 * systemd's notify protocol, for `Type=notify` + `WatchdogSec=` units: READY=1 once the
 * daemon runs, then WATCHDOG=1 every half watchdog period while the daemon is healthy (what
 * /livez reports). A frozen event loop or a stuck sync stops the pings, and systemd restarts
 * kip. Node has no unix datagram sockets, so the messages go through `systemd-notify`, spawned
 * with an argv (never a shell); the unit needs `NotifyAccess=all` for that.
 */
import { execFile } from "../iptables/exec_runner.ts";

export interface Notifier {
  stop(): void;
}

/**
 * Starts notifying when NOTIFY_SOCKET is set (undefined otherwise). `healthy` gates each
 * watchdog ping; `warn` hears a failed notification once.
 */
export function startSystemdNotify(
  env: Record<string, string | undefined>,
  healthy: () => boolean,
  warn: (message: string) => void,
  run: (argv: string[]) => Promise<{ code: number; stderr: string }> = execFile,
): Notifier | undefined {
  if (!env.NOTIFY_SOCKET) return undefined;
  let warned = false;
  const send = (message: string) => {
    run(["systemd-notify", message]).then(
      (r) => {
        if (r.code !== 0 && !warned) {
          warned = true;
          warn(`systemd-notify ${message} failed: ${r.stderr.trim()}`);
        }
      },
      (e: Error) => {
        if (!warned) {
          warned = true;
          warn(`systemd-notify ${message} failed: ${e.message}`);
        }
      },
    );
  };
  send("READY=1");
  const usec = Number(env.WATCHDOG_USEC);
  // WATCHDOG_PID, when set, names the process meant to ping: not us, no pings.
  const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === process.pid;
  if (!(usec > 0) || !forUs) return { stop() {} };
  const timer = setInterval(
    () => {
      if (healthy()) send("WATCHDOG=1");
    },
    Math.max(100, usec / 2000),
  );
  return { stop: () => clearInterval(timer) };
}
