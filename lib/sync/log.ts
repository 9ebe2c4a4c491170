/**
 * Structured logs: one line per event, `text` (key=value) or `json`. Credentials in URLs
 * (`https://user:password@host`) never reach a line: every message and field is redacted.
 */
export type Level = "info" | "warn" | "error";

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
}

/** `scheme://user:password@host…` → `scheme://***@host…`, wherever it appears in `s`. */
export function redactURLs(s: string): string {
  return s.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/?#\s"']*@/gi, "$1***@");
}

function redactDeep(v: unknown): unknown {
  if (typeof v === "string") return redactURLs(v);
  if (Array.isArray(v)) return v.map(redactDeep);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactDeep(x)]));
  return v;
}

function value(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

export function createLogger(format: "text" | "json", write: (line: string) => void, now = () => new Date()): Logger {
  return {
    log(level, rawMsg, rawFields = {}) {
      const time = now().toISOString();
      const msg = redactURLs(rawMsg);
      const fields = redactDeep(rawFields) as Record<string, unknown>;
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
