/**
 * Manifest paths → file texts: files, directories (recursive: .yaml, .yml, .json, in name
 * order) and `-` for standard input.
 *
 * A manifests directory may hold files nobody meant kip to read, or be writable by someone
 * who should not decide what root reads. So every file is opened defensively:
 * - below a directory, a symlink must resolve inside that directory (a link to `/etc/shadow` or
 *   to `/` is refused), and the file actually opened is checked again through /proc;
 * - opened non-blocking and without following a last-moment symlink, then checked to be a
 *   regular file with fstat: a FIFO swapped in between the check and the read cannot freeze
 *   the process;
 * - capped in size, per file and in total.
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  statSync,
} from "node:fs";
import { join, sep } from "node:path";

export interface ManifestFile {
  file: string;
  text: string;
}

/** Caps on what is read (bytes); unset = no cap. */
export interface ReadLimits {
  maxFileBytes?: number;
  maxTotalBytes?: number;
  /**
   * A path named on the command line that is a pipe (`kip render <(kubectl get …)`) is read
   * to its end, as stdin is (default). The daemon sets false: it rescans, and must not block.
   */
  readNamedPipes?: boolean;
}

/** kip sync's defaults: ample for a 30k-Service `kubectl get -o json` dump, small enough for a node. */
export const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024;

const EXTENSIONS = [".yaml", ".yml", ".json"];
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

const inside = (root: string, p: string) => p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);

/** Why a path cannot be read, for one message. */
class Refused extends Error {}

/** Every manifest file below `paths`; problems (missing paths, unreadable files) in errors. */
export function readManifestPaths(
  paths: readonly string[],
  readStdin: () => string,
  limits: ReadLimits = {},
): { files: ManifestFile[]; errors: string[] } {
  const files: ManifestFile[] = [];
  const errors: string[] = [];
  const visited = new Set<string>();
  const maxFile = limits.maxFileBytes ?? Number.POSITIVE_INFINITY;
  const maxTotal = limits.maxTotalBytes ?? Number.POSITIVE_INFINITY;
  let total = 0;
  let overTotal = false;

  /** `dir` is below (or is) `root`, a real path. */
  const walk = (dir: string, real: string, root: string) => {
    if (visited.has(real)) return; // a symlink loop
    visited.add(real);
    let entries: string[];
    try {
      entries = readdirSync(real).sort();
    } catch (e) {
      errors.push(`Cannot read directory ${JSON.stringify(dir)}: ${(e as Error).message}`);
      return;
    }
    for (const name of entries) {
      if (name.startsWith(".")) continue;
      const p = join(dir, name);
      const wanted = EXTENSIONS.some((x) => name.endsWith(x));
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(join(real, name));
      } catch {
        continue; // removed meanwhile
      }
      let target = join(real, name);
      if (st.isSymbolicLink()) {
        try {
          target = realpathSync(target);
          st = statSync(target);
        } catch {
          continue; // a dangling symlink
        }
        if (!inside(root, target)) {
          if (wanted || st.isDirectory())
            errors.push(`Cannot read ${JSON.stringify(p)}: a symlink to outside ${JSON.stringify(root)} (skipped)`);
          continue;
        }
      }
      if (st.isDirectory()) walk(p, target, root);
      else if (!wanted) continue;
      else if (!st.isFile()) errors.push(`Cannot read ${JSON.stringify(p)}: not a regular file (skipped)`);
      else read(p, target, root);
    }
  };

  /** Open `path` (named `shown`) safely and read it; `root` confines what was opened. */
  const read = (shown: string, path: string, root?: string) => {
    if (overTotal) return;
    let fd: number | undefined;
    try {
      // Below a directory the path is already resolved: a symlink now is a swap, refused.
      fd = openSync(path, OPEN_FLAGS | (root ? constants.O_NOFOLLOW : 0));
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Refused("not a regular file (skipped)");
      if (root) {
        // A directory on the way swapped for a symlink: what the kernel opened says where we are.
        let opened: string | undefined;
        try {
          opened = readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          opened = undefined; // no /proc: the checks above stand alone
        }
        if (opened !== undefined && !inside(root, opened))
          throw new Refused(`opened outside ${JSON.stringify(root)} (skipped)`);
      }
      if (st.size > maxFile) throw new Refused(`${st.size} bytes is over the ${maxFile}-byte limit per file (skipped)`);
      const chunks: Buffer[] = [];
      let size = 0;
      for (;;) {
        const want = Math.min(1 << 20, maxFile + 1 - size);
        if (want <= 0) throw new Refused(`over the ${maxFile}-byte limit per file (skipped)`);
        const b = Buffer.allocUnsafe(want);
        let n: number;
        try {
          n = readSync(fd, b, 0, want, null);
        } catch (e) {
          // A regular file never says EAGAIN; anything that does is not one.
          if ((e as NodeJS.ErrnoException).code === "EAGAIN") throw new Refused("would block (skipped)");
          throw e;
        }
        if (n === 0) break;
        chunks.push(n === want ? b : b.subarray(0, n));
        size += n;
      }
      if (total + size > maxTotal) {
        overTotal = true;
        throw new Refused(
          `the manifests are over the ${maxTotal}-byte limit in total; this file and the ones after it are skipped`,
        );
      }
      total += size;
      files.push({ file: shown, text: Buffer.concat(chunks, size).toString("utf8") });
    } catch (e) {
      const why =
        e instanceof Refused
          ? e.message
          : (e as NodeJS.ErrnoException).code === "ELOOP"
            ? "it became a symlink (skipped)"
            : (e as Error).message;
      errors.push(`Cannot read ${JSON.stringify(shown)}: ${why}`);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };

  for (const p of paths) {
    if (p === "-") {
      files.push({ file: "<stdin>", text: readStdin() });
      continue;
    }
    let st: ReturnType<typeof statSync>;
    let real: string;
    try {
      st = statSync(p);
      real = realpathSync(p);
    } catch {
      errors.push(`Cannot read ${JSON.stringify(p)}: no such file or directory`);
      continue;
    }
    // A path named on the command line is followed: whoever runs kip chose it.
    if (st.isDirectory()) walk(p, real, real);
    else if (!st.isFile() && limits.readNamedPipes !== false) {
      try {
        files.push({ file: p, text: readFileSync(p, "utf8") });
      } catch (e) {
        errors.push(`Cannot read ${JSON.stringify(p)}: ${(e as Error).message}`);
      }
    } else read(p, real);
  }
  return { files, errors };
}
