import { join } from "node:path";
import { GitStateCache } from "../git/gitStateCache.js";
import { attemptFiles } from "../protocol/attemptFiles.js";
import type { GitState, Lease, Task } from "../protocol/interfaces.js";
import { attemptConfigFile, attemptDirs, checkpointDir, type TaskFiles, taskVariables } from "./taskFiles.js";
import { WorkDirs } from "./workDirs.js";

/**
 * What an attempt is given before its process starts and gives back once reported: its files,
 * its work dir (from the pool), its environment. One per agent, so what is the same for every
 * task is worked out once: reading the agent's environment (a getenv per variable) cost a no-op
 * task a tenth of a millisecond.
 */
export class AttemptSetup {
  private readonly workDirs: WorkDirs;
  /** The agent's environment, `env` over it, as it was when the agent started. */
  private readonly inherited: NodeJS.ProcessEnv;
  /** The git state of tasks' dirs, read once a second at most (gitStateCache.ts). */
  private readonly gitStates = new GitStateCache();

  constructor(
    private readonly options: { stateDir: string; env?: NodeJS.ProcessEnv; checkpointRoot?: string },
  ) {
    this.workDirs = new WorkDirs(join(options.stateDir, "work"), join(options.stateDir, "configs"));
    this.inherited = { ...process.env, ...options.env };
  }

  /**
   * The attempt's files, with a work dir taken from the pool (given back by `release`) and the
   * config file that goes with it.
   */
  files(lease: Lease): TaskFiles {
    const files = attemptFiles(this.options.stateDir, lease.task.id, lease.attemptNumber);
    const workDir = this.workDirs.take();
    return { ...files, workDir, configPath: this.workDirs.configPath(workDir) };
  }

  /**
   * The attempt's environment: `base`, the agent's (the same object for every attempt, so the
   * launcher is sent it once), with `own` over it.
   */
  environment(
    lease: Lease,
    files: TaskFiles,
    onGpuMachine: boolean,
  ): { base: NodeJS.ProcessEnv; own: NodeJS.ProcessEnv } {
    const own = taskVariables(lease, files, { ...this.options, inherited: this.inherited, onGpuMachine });
    return { base: this.inherited, own };
  }

  /**
   * The provenance of the code the attempt runs, as it starts: its snapshot's, taken with the
   * copy, else the git state of its cwd now (null outside a repository). Never fails the attempt.
   */
  provenance(task: Task): Promise<GitState | null> {
    if (task.snapshot) return Promise.resolve(task.snapshot.git);
    return this.gitStates.read(task.cwd).catch(() => null);
  }

  checkpointDir(task: Task): string {
    return checkpointDir(this.options.stateDir, task, this.options.checkpointRoot);
  }

  /**
   * Makes the attempt's work dir just before its launch (the pool's roots, its config files'
   * included, are made with the first); `starting` is what the process starter makes, clears and
   * writes.
   */
  prepare(files: TaskFiles): void {
    this.workDirs.prepare(files.workDir);
  }

  /**
   * What is made where the attempt's process is started (runProcess.ts): its task dir and
   * checkpoint dir, the files of an earlier attempt cleared, its config file written.
   */
  starting(
    lease: Lease,
    files: TaskFiles,
  ): { dirs: string[]; clear: string[]; files: Array<{ path: string; text: string }> } {
    const { task, attemptId, placements } = lease;
    return {
      ...attemptDirs(files, this.checkpointDir(task)),
      files: [attemptConfigFile(files, task, attemptId, placements)],
    };
  }

  /** Once the attempt is reported (its artifacts taken): its work dir goes back to the pool. */
  release(files: TaskFiles): Promise<void> {
    return this.workDirs.giveBack(files.workDir);
  }
}
