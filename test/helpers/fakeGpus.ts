import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The directory holding the fake `nvidia-smi`; put it first on PATH to use the fake. */
export const fakeBinDir = fileURLToPath(new URL("../fixtures/bin/", import.meta.url));

/**
 * One fake GPU. Every field is optional; the fake fills in a plausible RTX 3090 with all memory
 * free. `null` (or a string like "[Not Supported]") makes the fake print what a GPU that does not
 * report the value prints.
 */
export interface FakeGpu {
  name?: string;
  uuid?: string;
  memoryTotalMiB?: number;
  memoryFreeMiB?: number;
  /** (Default: memoryTotalMiB − memoryFreeMiB) */
  memoryUsedMiB?: number;
  utilization?: number | string | null;
  powerW?: number | string | null;
  driverVersion?: string;
  pciBusId?: string;
  /** What `--query-compute-apps` lists for this GPU. (Default: none) */
  processes?: FakeGpuProcess[];
}

/** A compute process on a fake GPU. */
export interface FakeGpuProcess {
  pid: number;
  /** null prints "[N/A]", as under some drivers and MIG. (Default: 0) */
  usedMemoryMiB?: number | null;
  name?: string;
}

/** `base` with the fake first on PATH and LABSWEEP_FAKE_GPUS set to `gpus`. */
export function fakeGpuEnv(gpus: FakeGpu[], base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...withoutFakeSettings(base),
    PATH: pathWithFake(base),
    LABSWEEP_FAKE_GPUS: JSON.stringify(gpus),
  };
}

/** Fake GPUs kept in a file the fake re-reads on every call, so a test can change them. */
export interface FakeGpuFile {
  env: NodeJS.ProcessEnv;
  path: string;
  /** Replaces the GPUs the next `nvidia-smi` call will see. */
  write(gpus: FakeGpu[]): void;
  /** Deletes the temporary directory holding the file. */
  remove(): void;
}

/** Like `fakeGpuEnv`, but through LABSWEEP_FAKE_GPUS_FILE; call `remove()` when done. */
export function fakeGpuFile(gpus: FakeGpu[], base: NodeJS.ProcessEnv = process.env): FakeGpuFile {
  const dir = mkdtempSync(join(tmpdir(), "labsweep-fake-gpus-"));
  const path = join(dir, "gpus.json");
  // Replaced whole (temp file, rename), so a concurrent nvidia-smi call never reads half of it.
  const write = (next: FakeGpu[]) => {
    writeFileSync(`${path}.tmp`, JSON.stringify(next));
    renameSync(`${path}.tmp`, path);
  };
  write(gpus);
  return {
    env: { ...withoutFakeSettings(base), PATH: pathWithFake(base), LABSWEEP_FAKE_GPUS_FILE: path },
    path,
    write,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function pathWithFake(base: NodeJS.ProcessEnv): string {
  return base.PATH ? `${fakeBinDir}${delimiter}${base.PATH}` : fakeBinDir;
}

// A setting inherited from the caller's environment would otherwise override the one asked for
// (the file wins over the inline list in the fake).
function withoutFakeSettings(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const {
    LABSWEEP_FAKE_GPUS: _list,
    LABSWEEP_FAKE_GPUS_FILE: _file,
    LABSWEEP_FAKE_NVIDIA_DRIVER: _driver,
    ...rest
  } = base;
  return rest;
}
