import { execFile } from "node:child_process";

/**
 * When the SLURM allocation this agent runs in ends, in ms since the epoch; null outside SLURM,
 * for an allocation without a time limit, or when SLURM cannot say. SLURM 23.02 and later put the
 * end in `SLURM_JOB_END_TIME`; older ones are asked with `squeue -j $SLURM_JOB_ID -o %L` (the time
 * left, which needs no clock or time zone agreement with the controller).
 */
export async function allocationEnd(
  env: NodeJS.ProcessEnv = process.env,
  now: () => number = Date.now,
): Promise<number | null> {
  const jobId = env.SLURM_JOB_ID;
  if (!jobId) return null;
  const end = Number(env.SLURM_JOB_END_TIME);
  if (Number.isSafeInteger(end) && end > 0) return end * 1000;
  const asked = now();
  const left = parseTimeLeft(await squeueTimeLeft(jobId, env));
  return left === null ? null : asked + left;
}

function squeueTimeLeft(jobId: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve) => {
    execFile("squeue", ["-h", "-j", jobId, "-o", "%L"], { env, timeout: 10_000 }, (error, stdout) => {
      // No squeue here, or the controller did not answer: the agent runs as if nothing ended it.
      resolve(error ? "" : (stdout.trim().split("\n")[0]?.trim() ?? ""));
    });
  });
}

const TIME_LEFT = /^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$/;

/**
 * squeue's `%L` as ms: `[days-][hours:]minutes:seconds`; null for `UNLIMITED`, `NOT_SET`,
 * `INVALID` or anything else it may print.
 */
export function parseTimeLeft(text: string): number | null {
  const match = TIME_LEFT.exec(text);
  if (!match) return null;
  const [, days = "0", hours = "0", minutes = "0", seconds = "0"] = match;
  return (((Number(days) * 24 + Number(hours)) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000;
}
