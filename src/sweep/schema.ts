import { z } from "zod";
import { parseDuration } from "./duration.js";
import { managedFlagIn } from "./launcher.js";
import { stopSignalProblem } from "./stopSignal.js";

/** Keys a phase may carry, with the default the user gets when leaving one out. */
export const PHASE_KEYS: Record<string, string> = {
  defaults: "{}",
  combinations: "one task from defaults",
  output_dir: "results/{phase}",
  command: "the file-level command",
  after: "[]",
  gate: "all_succeeded",
  retries: "3",
  max_lost: "3",
  timeout: "none",
  backoff: "1s",
  resources: "{gpus: 1 per task on GPU machines, gpu_memory_gb: 0, cpus: 1, tags: []}",
  launcher: "the file-level launcher, else none",
  artifacts: "the file-level artifacts, else [] (none collected)",
  artifact_limit_mb: "the file-level limit, else 1024",
  checkpoint_root: "the file's, else <agent state dir>/checkpoints",
  stop_signal: "SIGTERM",
  stop_grace: "the agent's --grace, else 30s",
  hang_timeout: "none",
  on_oom: "the file-level on_oom, else none (e.g. {param: batch_size, factor: 0.5, min: 1})",
};

/** Top-level keys that are settings; every other top-level key is a phase. */
export const FILE_KEYS: Record<string, string> = {
  defaults: "{}",
  seeds: "none (legacy: multiplies every phase whose combinations do not list seed)",
  output_dir: "results/{phase}",
  command: "none: required here, in each phase, or via --command",
  retries: "3",
  max_lost: "3",
  timeout: "none",
  backoff: "1s",
  resources: "{}",
  launcher: "none (the command runs as is)",
  artifacts: "[] (none collected)",
  artifact_limit_mb: "1024",
  checkpoint_root: "<agent state dir>/checkpoints",
  stop_signal: "SIGTERM",
  stop_grace: "the agent's --grace, else 30s",
  hang_timeout: "none",
  on_oom: "none (e.g. {param: batch_size, factor: 0.5, min: 1})",
};

export const RESOURCE_KEYS: Record<string, string> = {
  gpus: "1 on GPU machines, else 0",
  gpu_memory_gb: "0",
  cpus: "1",
  tags: "[] (any agent)",
};

/** `launcher: NAME`; the mapping form `{name: NAME, …}` takes the keys below. */
export const LAUNCHER_NAMES = ["none", "accelerate", "torchrun"] as const;

export const MIXED_PRECISIONS = ["no", "fp16", "bf16", "fp8"] as const;

/** Keys of the mapping form of `launcher`, per launcher, with their defaults. */
export const LAUNCHER_KEYS: Record<"accelerate" | "torchrun", Record<string, string>> = {
  accelerate: {
    name: "required: accelerate",
    mixed_precision: "accelerate's config, else no",
    main_process_port: "auto",
    extra_args: "[]",
  },
  torchrun: {
    name: "required: torchrun",
    master_port: "auto",
    extra_args: "[]",
  },
};

const duration = z
  .union([z.string(), z.number()])
  .refine((value) => parseDuration(value) !== null, "expected a duration such as 90s, 30m, 2h or 1h30m");

/** A timeout of 0 would kill every task at once; leaving `timeout` out means none. */
const timeout = duration.refine(
  (value) => (parseDuration(value) ?? 1) > 0,
  "must be longer than 0 (leave timeout out for no timeout)",
);

/** A stop_grace of 0 would SIGKILL at once: no task could save anything. */
const stopGrace = duration.refine(
  (value) => (parseDuration(value) ?? 1) > 0,
  "must be longer than 0 (the time a task has to save a checkpoint before SIGKILL)",
);

const hangTimeout = duration.refine(
  (value) => (parseDuration(value) ?? 1) > 0,
  "must be longer than 0 (leave hang_timeout out to never stop a silent task)",
);

const stopSignal = z.string().superRefine((value, context) => {
  const problem = stopSignalProblem(value);
  if (problem) context.addIssue({ code: "custom", message: problem });
});

const resources = z.strictObject({
  gpus: z.number().min(0).optional(),
  gpu_memory_gb: z.number().min(0).optional(),
  cpus: z.number().positive().optional(),
  tags: z.array(z.string().min(1, "is empty").max(100, "is longer than 100 characters")).optional(),
});

const gate = z.union([z.literal("all_succeeded"), z.strictObject({ min_success: z.number().gt(0).max(1) })]);

const port = z.union([z.literal("auto"), z.int().min(1).max(65535)]);

const extraArgs = z.array(z.union([z.string(), z.number()]));

const launcher = z
  .union([
    z.enum(LAUNCHER_NAMES),
    z.strictObject({
      name: z.literal("accelerate"),
      mixed_precision: z.enum(MIXED_PRECISIONS).optional(),
      main_process_port: port.optional(),
      extra_args: extraArgs.optional(),
    }),
    z.strictObject({
      name: z.literal("torchrun"),
      master_port: port.optional(),
      extra_args: extraArgs.optional(),
    }),
  ])
  .superRefine((value, context) => {
    if (typeof value === "string") return;
    const clash = managedFlagIn(value.name, value.extra_args ?? []);
    if (clash) {
      context.addIssue({
        code: "custom",
        path: ["extra_args", clash.index],
        message: `${clash.flag} cannot be an extra argument: ${clash.advice}`,
      });
    }
  });

/**
 * `artifacts:` globs, relative to the attempt's work dir (LABSWEEP_WORK_DIR): one that is
 * absolute or climbs out with `..` could only match files outside it, which are never collected.
 */
const artifactGlob = z
  .string()
  .min(1, "is empty")
  .max(1000, "is longer than 1000 characters")
  .refine((glob) => !glob.includes("\0"), "holds a NUL character")
  .refine(
    (glob) => !glob.startsWith("/") && !glob.startsWith("~"),
    "is absolute: globs are relative to the attempt's work dir ($LABSWEEP_WORK_DIR)",
  )
  .refine(
    (glob) => !glob.split(/[\\/]/).includes(".."),
    "climbs out of the work dir with `..`: globs are relative to $LABSWEEP_WORK_DIR",
  );
/** Keys of `on_oom`, with their defaults. */
export const ON_OOM_KEYS: Record<string, string> = {
  param: "required: a parameter with numeric values",
  factor: "0.5",
  min: "1",
};

/** `on_oom`: retry an attempt that ran out of memory with `param` scaled by `factor`. */
const onOom = z.strictObject({
  param: z.string().min(1, "is empty"),
  factor: z.number().gt(0).lt(1).optional(),
  min: z.number().min(0).optional(),
});

const paramMap = z.record(z.string(), z.unknown());

const axis = z
  .record(z.string(), z.array(z.unknown()).min(1, "has no values: list at least one"))
  .refine((entry) => Object.keys(entry).length === 1, {
    message: "each combinations entry is a single-key map `param: [values]`",
  });

const policy = {
  command: z.string().min(1, "is empty").optional(),
  retries: z.int().min(0).optional(),
  max_lost: z.int().min(1).optional(),
  on_oom: onOom.optional(),
  timeout: timeout.optional(),
  backoff: duration.optional(),
  resources: resources.optional(),
  launcher: launcher.optional(),
  artifacts: z.array(artifactGlob).optional(),
  artifact_limit_mb: z.number().positive().optional(),
  checkpoint_root: z.string().min(1, "is empty").optional(),
  stop_signal: stopSignal.optional(),
  stop_grace: stopGrace.optional(),
  hang_timeout: hangTimeout.optional(),
};

export const phaseSchema = z.strictObject({
  defaults: paramMap.optional(),
  combinations: z.array(axis).min(1, "is empty: list at least one `param: [values]`").optional(),
  output_dir: z.string().min(1, "is empty").optional(),
  after: z.array(z.string()).optional(),
  gate: gate.optional(),
  ...policy,
});

export const fileSettingsSchema = z.strictObject({
  defaults: paramMap.optional(),
  seeds: z
    .array(z.union([z.number(), z.string()]))
    .min(1, "is empty")
    .optional(),
  output_dir: z.string().min(1, "is empty").optional(),
  ...policy,
});

export type PhaseInput = z.infer<typeof phaseSchema>;
export type FileSettingsInput = z.infer<typeof fileSettingsSchema>;
export type LauncherInput = z.infer<typeof launcher>;
