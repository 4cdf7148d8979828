import { constants } from "node:fs";
import { copyFile, lstat, mkdir, readdir, readlink, symlink } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";

/**
 * Copies `paths` (relative to `source`; each a file, a symlink or a dir, copied whole) into
 * `target`, keeping their relative places and modes. Symlinks are copied as links, never followed
 * (a link out of the tree stays one); sockets, FIFOs and devices are left out, and so is a path
 * that no longer exists (a tracked file deleted from the work tree). `skip(absolutePath)` leaves a
 * path out, and everything under it when it is a dir. Returns how many files and links it copied.
 * Regular files are cloned where the filesystem can (copy-on-write), else copied.
 */
export async function copyTree(
  source: string,
  target: string,
  paths: readonly string[],
  skip: (absolutePath: string) => boolean,
): Promise<number> {
  const made = new Set<string>();
  let copied = 0;
  const ensureDir = async (dir: string): Promise<void> => {
    if (made.has(dir)) return;
    await mkdir(dir, { recursive: true });
    made.add(dir);
  };
  const copyOne = async (path: string): Promise<void> => {
    const from = join(source, path);
    if (skip(from)) return;
    const stats = await lstat(from).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT" || error.code === "ENOTDIR") return null;
      throw error;
    });
    if (stats === null) return;
    const to = join(target, path);
    if (stats.isDirectory()) {
      await ensureDir(to);
      for (const entry of await readdir(from)) await copyOne(join(path, entry));
      return;
    }
    if (!stats.isFile() && !stats.isSymbolicLink()) return;
    await ensureDir(dirname(to));
    if (stats.isSymbolicLink()) await symlink(await readlink(from), to);
    else await copyFile(from, to, constants.COPYFILE_FICLONE);
    copied++;
  };
  for (const path of paths) await copyOne(path);
  return copied;
}

/** Whether `path` is `dir` or lies under it (both absolute and normalized). */
export function isWithin(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep));
}
