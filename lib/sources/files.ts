/**
 * Manifest paths → file texts: files, directories (recursive: .yaml, .yml, .json, in name
 * order) and `-` for standard input.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";

export interface ManifestFile {
  file: string;
  text: string;
}

const EXTENSIONS = [".yaml", ".yml", ".json"];

/** Every manifest file below `paths`; problems (missing paths, unreadable files) in errors. */
export function readManifestPaths(
  paths: readonly string[],
  readStdin: () => string,
): { files: ManifestFile[]; errors: string[] } {
  const files: ManifestFile[] = [];
  const errors: string[] = [];
  const visited = new Set<string>();
  const walk = (dir: string) => {
    let real: string;
    try {
      real = realpathSync(dir);
    } catch (e) {
      errors.push(`Cannot read directory ${JSON.stringify(dir)}: ${(e as Error).message}`);
      return;
    }
    if (visited.has(real)) return; // a symlink loop
    visited.add(real);
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch (e) {
      errors.push(`Cannot read directory ${JSON.stringify(dir)}: ${(e as Error).message}`);
      return;
    }
    for (const name of entries) {
      if (name.startsWith(".")) continue;
      const p = join(dir, name);
      let st: ReturnType<typeof statSync>;
      try {
        st = statSync(p);
      } catch {
        continue; // a dangling symlink
      }
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && EXTENSIONS.some((x) => name.endsWith(x))) read(p);
    }
  };
  const read = (p: string) => {
    try {
      files.push({ file: p, text: readFileSync(p, "utf8") });
    } catch (e) {
      errors.push(`Cannot read ${JSON.stringify(p)}: ${(e as Error).message}`);
    }
  };
  for (const p of paths) {
    if (p === "-") {
      files.push({ file: "<stdin>", text: readStdin() });
      continue;
    }
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      errors.push(`Cannot read ${JSON.stringify(p)}: no such file or directory`);
      continue;
    }
    if (st.isDirectory()) walk(p);
    else read(p);
  }
  return { files, errors };
}
