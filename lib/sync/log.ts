/**
 * Structured logs: one line per event, `text` (key=value) or `json`.
 */
export type Level = "info" | "warn" | "error";

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

function value(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

export function createLogger(format: "text" | "json", write: (line: string) => void, now = () => new Date()): Logger {
  return {
    log(level, msg, fields = {}) {
      const time = now().toISOString();
      if (format === "json") write(`${JSON.stringify({ time, level, msg, ...fields })}\n`);
      else {
        const kv = Object.entries(fields)
          .map(([k, v]) => `${k}=${value(v)}`)
          .join(" ");
        write(`${time} ${level.toUpperCase()} ${msg}${kv ? ` ${kv}` : ""}\n`);
      }
    },
  };
}
