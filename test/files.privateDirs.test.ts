/**
 * The dirs an attempt needs, made with one syscall in the usual case and right in every other;
 * and its pooled config file, rewritten in place.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { overwritePrivateFile, privateDirWithParents, removeDir } from "../src/files/privateFiles.js";
import { tempDir } from "./helpers/cli.js";

describe("attempt dirs", () => {
  it("privateDirWithParents makes missing parents and leaves an existing dir as it is", () => {
    const root = tempDir();
    const dir = join(root, "a", "b", "c");
    expect(privateDirWithParents(dir)).toBe(true);
    expect(statSync(dir).isDirectory()).toBe(true);
    writeFileSync(join(dir, "keep.txt"), "checkpoint");
    expect(privateDirWithParents(dir)).toBe(false);
    expect(readdirSync(dir)).toEqual(["keep.txt"]);
  });

  it("overwritePrivateFile makes a file 0600 whatever the umask, and leaves only the latest text in it", () => {
    const path = join(tempDir(), "1.json");
    const umask = process.umask(0);
    try {
      overwritePrivateFile(path, '{"task_id": 1000, "long": "xxxxxxxx"}\n');
    } finally {
      process.umask(umask);
    }
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const inode = statSync(path).ino;
    overwritePrivateFile(path, '{"task_id": 2}\n');
    expect(readFileSync(path, "utf8")).toBe('{"task_id": 2}\n');
    // The same file, rewritten in place: no new inode.
    expect(statSync(path).ino).toBe(inode);
  });

  it("removeDir removes an empty dir, a full one and a file in its place, and ignores a missing one", async () => {
    const root = tempDir();
    const empty = join(root, "empty");
    mkdirSync(empty);
    await removeDir(empty);
    const full = join(root, "full");
    mkdirSync(join(full, "deep"), { recursive: true });
    writeFileSync(join(full, "deep", "x"), "x");
    await removeDir(full);
    const file = join(root, "file");
    writeFileSync(file, "not a dir");
    await removeDir(file);
    await removeDir(join(root, "never"));
    expect([empty, full, file].some((path) => existsSync(path))).toBe(false);
  });
});
