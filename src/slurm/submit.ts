import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  accessSync,
  closeSync,
  constants,
  fchmodSync,
  fsyncSync,
  openSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, delimiter, dirname, join } from "node:path";

/** The absolute path of an executable `command` on `PATH`, or null. */
export function findOnPath(command: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here (or not executable): try the next dir
    }
  }
  return null;
}

/**
 * Writes `text` to `path` atomically: a temp file beside it (mode set explicitly, so the umask
 * does not decide), fsynced, then renamed over `path`. Readers see the old file or the new one.
 */
export function writeFileAtomically(path: string, text: string, mode = 0o644): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = openSync(temp, "wx", mode);
  try {
    try {
      writeSync(fd, text);
      fchmodSync(fd, mode);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/** What `sbatch --parsable` printed: the job id, and the cluster on a multi-cluster setup. */
export interface Submitted {
  jobId: string;
  cluster: string | null;
  /** What sbatch wrote to stderr while accepting the job (warnings), trimmed; "" when nothing. */
  warnings: string;
}

/**
 * Runs `sbatch --parsable OPTIONS… SCRIPT` with `env` (which carries LABSWEEP_TOKEN to the jobs:
 * the token is never an argument, so `ps` on the login node does not show it). The options are
 * the script's own `#SBATCH` lines again: on the command line they win over `SBATCH_*`
 * variables in the user's environment (an `SBATCH_EXPORT` would keep the token from the jobs, an
 * `SBATCH_ARRAY_INX` change the number of agents).
 */
export function submitSbatch(
  sbatch: string,
  options: string[],
  script: string,
  env: NodeJS.ProcessEnv,
): Promise<Submitted> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(sbatch, ["--parsable", ...options, script], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once("error", (error) => reject(new Error(`cannot run ${sbatch}`, { cause: error })));
    child.once("close", (code, signal) => {
      if (code !== 0) {
        const how = signal ? `was killed by ${signal}` : `exited ${code}`;
        reject(
          new Error(`sbatch ${how}${stderr.trim() ? `: ${stderr.trim().replaceAll("\n", " / ")}` : ""}`),
        );
        return;
      }
      const line = stdout.trim().split("\n").at(-1) ?? "";
      const [jobId = "", cluster] = line.split(";");
      if (!/^[0-9]+$/.test(jobId)) {
        reject(new Error(`sbatch printed ${JSON.stringify(stdout.trim())} instead of a job id`));
        return;
      }
      resolvePromise({ jobId, cluster: cluster ?? null, warnings: stderr.trim() });
    });
  });
}
