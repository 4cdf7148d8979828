/** The dirs an attempt needs, made with one syscall in the usual case and right in every other. */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { privateDirWithParents, removeDir } from "../src/files/privateFiles.js";
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
