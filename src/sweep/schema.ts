import { en } from "zod/locales";
import * as z from "zod/mini";
import { parseDuration } from "./duration.js";
import { managedFlagIn } from "./launcher.js";
import { stopSignalProblem } from "./stopSignal.js";

// zod/mini, not zod's classic API: the same checks and issues, but tree-shaken to a fraction of
// the code and without classic's dozens of methods attached to every schema instance. Classic
// cost every command that loads a sweep ~50 ms of start-up (issue 14). Unlike classic, mini
// loads no locale: English is set here, since schemaIssues.ts shows zod's own message as a
// fallback.
z.config(en());

/** Keys a phase may carry, with the default the user gets when leaving one out. */
export const PHASE_KEYS: Record<string, string> = {
  defaults: "{}",
  combinations: "one task from defaults",
  output_dir: "results/{phase}",
  command: "the file-level command",
  after: "[]",
  gate: "all_succeeded",
  priority: "0 (a phase with a higher priority leases first)",
  retries: "3",
  max_lost: "3",
  max_failures: "none (e.g. 5, or 0.2 of the phase's tasks: then the phase stops)",
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
  env: 'the file-level env, this map\'s keys over it (e.g. {WANDB_RUN_ID: "{signature}"})',
};

/** Top-level keys that are settings; every other top-level key is a phase. */
export const FILE_KEYS: Record<string, string> = {
  defaults: "{}",
  seeds: "none (legacy: multiplies every phase whose combinations do not list seed)",
  output_dir: "results/{phase}",
  command: "none: required here, in each phase, or via --command",
  retries: "3",
  max_lost: "3",
  max_failures: "none",
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
  notify: "[] (none; e.g. [{on: task_failed, webhook: URL}])",
  env: '{} (no variables; e.g. {WANDB_RUN_GROUP: "{group}"})',
  snapshot: "false (tasks run from the config's dir; true: from a copy taken when the sweep is created)",
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
  .check(
    z.refine((value) => parseDuration(value) !== null, "expected a duration such as 90s, 30m, 2h or 1h30m"),
  );

/** A timeout of 0 would kill every task at once; leaving `timeout` out means none. */
const timeout = duration.check(
  z.refine(
    (value) => (parseDuration(value) ?? 1) > 0,
    "must be longer than 0 (leave timeout out for no timeout)",
  ),
);

/** A stop_grace of 0 would SIGKILL at once: no task could save anything. */
const stopGrace = duration.check(
  z.refine(
    (value) => (parseDuration(value) ?? 1) > 0,
    "must be longer than 0 (the time a task has to save a checkpoint before SIGKILL)",
  ),
);

const hangTimeout = duration.check(
  z.refine(
    (value) => (parseDuration(value) ?? 1) > 0,
    "must be longer than 0 (leave hang_timeout out to never stop a silent task)",
  ),
);

const stopSignal = z.string().check(
  z.superRefine((value, context) => {
    const problem = stopSignalProblem(value);
    if (problem) context.addIssue({ code: "custom", message: problem });
  }),
);

const nonEmpty = z.string().check(z.minLength(1, "is empty"));

const resources = z.strictObject({
  gpus: z.optional(z.number().check(z.gte(0))),
  gpu_memory_gb: z.optional(z.number().check(z.gte(0))),
  cpus: z.optional(z.number().check(z.positive())),
  tags: z.optional(
    z.array(z.string().check(z.minLength(1, "is empty"), z.maxLength(100, "is longer than 100 characters"))),
  ),
});

const gate = z.union([
  z.literal("all_succeeded"),
  z.strictObject({ min_success: z.number().check(z.gt(0), z.lte(1)) }),
]);

const port = z.union([z.literal("auto"), z.int().check(z.gte(1), z.lte(65535))]);

const extraArgs = z.array(z.union([z.string(), z.number()]));

const launcher = z
  .union([
    z.enum(LAUNCHER_NAMES),
    z.strictObject({
      name: z.literal("accelerate"),
      mixed_precision: z.optional(z.enum(MIXED_PRECISIONS)),
      main_process_port: z.optional(port),
      extra_args: z.optional(extraArgs),
    }),
    z.strictObject({
      name: z.literal("torchrun"),
      master_port: z.optional(port),
      extra_args: z.optional(extraArgs),
    }),
  ])
  .check(
    z.superRefine((value, context) => {
      if (typeof value === "string") return;
      const clash = managedFlagIn(value.name, value.extra_args ?? []);
      if (clash) {
        context.addIssue({
          code: "custom",
          path: ["extra_args", clash.index],
          message: `${clash.flag} cannot be an extra argument: ${clash.advice}`,
        });
      }
    }),
  );

/**
 * `artifacts:` globs, relative to the attempt's work dir (LABSWEEP_WORK_DIR): one that is
 * absolute or climbs out with `..` could only match files outside it, which are never collected.
 */
const artifactGlob = z.string().check(
  z.minLength(1, "is empty"),
  z.maxLength(1000, "is longer than 1000 characters"),
  z.refine((glob) => !glob.includes("\0"), "holds a NUL character"),
  z.refine(
    (glob) => !glob.startsWith("/") && !glob.startsWith("~"),
    "is absolute: globs are relative to the attempt's work dir ($LABSWEEP_WORK_DIR)",
  ),
  z.refine(
    (glob) => !glob.split(/[\\/]/).includes(".."),
    "climbs out of the work dir with `..`: globs are relative to $LABSWEEP_WORK_DIR",
  ),
);
/** Keys of `on_oom`, with their defaults. */
export const ON_OOM_KEYS: Record<string, string> = {
  param: "required: a parameter with numeric values",
  factor: "0.5",
  min: "1",
};

/** `on_oom`: retry an attempt that ran out of memory with `param` scaled by `factor`. */
const onOom = z.strictObject({
  param: nonEmpty,
  factor: z.optional(z.number().check(z.gt(0), z.lt(1))),
  min: z.optional(z.number().check(z.gte(0))),
});

/** Events a `notify:` entry's `on:` names as a word; `{failure_rate: F}` is the fifth. */
export const NOTIFY_EVENTS = ["sweep_finished", "phase_finished", "task_failed", "agent_lost"] as const;

/**
 * `failure_rate`'s `min_finished` when left out: the rate is judged once this many tasks have
 * finished (or all of a smaller sweep), so one early failure (1 of 1: 100%) does not fire it.
 */
export const DEFAULT_MIN_FINISHED = 10;

/** Keys of a `notify:` entry, with their defaults. */
export const NOTIFY_KEYS: Record<string, string> = {
  on: `required: ${NOTIFY_EVENTS.join(", ")} or {failure_rate: 0.2, min_finished: ${DEFAULT_MIN_FINISHED}}`,
  webhook: "none: an http(s) URL that gets a JSON POST (exactly one of webhook and command)",
  command: "none: a shell command run with the event in its environment",
};

const webhookUrl = z.string().check(z.refine((text) => webhookProblem(text) === null, "not an http(s) URL"));

/**
 * A `notify:` entry. notifySetting.ts words what is wrong with one (schemaIssues defers to it):
 * a union's issues say too little.
 */
const notifyEntry = z
  .strictObject({
    on: z.union([
      z.enum(NOTIFY_EVENTS),
      z.strictObject({
        failure_rate: z.number().check(z.gt(0), z.lte(1)),
        min_finished: z.optional(z.int().check(z.gte(1))),
      }),
    ]),
    webhook: z.optional(webhookUrl),
    command: z.optional(nonEmpty),
  })
  .check(
    z.refine(
      (entry) => (entry.webhook === undefined) !== (entry.command === undefined),
      "needs exactly one of webhook and command",
    ),
  );

/** Why `text` is not a webhook URL labsweep posts to, or null when it is one. */
export function webhookProblem(text: string): string | null {
  if (!URL.canParse(text)) return "is not a URL";
  const url = new URL(text);
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return `uses ${url.protocol.replace(/:$/, "")}: only http and https URLs are posted to`;
  if (!url.hostname) return "names no host";
  return null;
}

const paramMap = z.record(z.string(), z.unknown());

const axis = z
  .record(z.string(), z.array(z.unknown()).check(z.minLength(1, "has no values: list at least one")))
  .check(
    z.refine((entry) => Object.keys(entry).length === 1, {
      message: "each combinations entry is a single-key map `param: [values]`",
    }),
  );

const policy = {
  command: z.optional(nonEmpty),
  retries: z.optional(z.int().check(z.gte(0))),
  max_lost: z.optional(z.int().check(z.gte(1))),
  max_failures: z.optional(
    z.number().check(
      z.refine((value) => (Number.isInteger(value) && value >= 1) || (value > 0 && value < 1), {
        message:
          "must be a whole number of tasks (at least 1) or a fraction of the phase's tasks between 0 and 1",
      }),
    ),
  ),
  on_oom: z.optional(onOom),
  timeout: z.optional(timeout),
  backoff: z.optional(duration),
  resources: z.optional(resources),
  launcher: z.optional(launcher),
  artifacts: z.optional(z.array(artifactGlob)),
  artifact_limit_mb: z.optional(z.number().check(z.positive())),
  checkpoint_root: z.optional(nonEmpty),
  stop_signal: z.optional(stopSignal),
  stop_grace: z.optional(stopGrace),
  hang_timeout: z.optional(hangTimeout),
  env: z.optional(z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]))),
};

export const phaseSchema = z.strictObject({
  defaults: z.optional(paramMap),
  combinations: z.optional(
    z.array(axis).check(z.minLength(1, "is empty: list at least one `param: [values]`")),
  ),
  output_dir: z.optional(nonEmpty),
  after: z.optional(z.array(z.string())),
  gate: z.optional(gate),
  priority: z.optional(z.int()),
  ...policy,
});

export const fileSettingsSchema = z.strictObject({
  defaults: z.optional(paramMap),
  seeds: z.optional(z.array(z.union([z.number(), z.string()])).check(z.minLength(1, "is empty"))),
  output_dir: z.optional(nonEmpty),
  notify: z.optional(z.array(notifyEntry)),
  snapshot: z.optional(z.boolean()),
  ...policy,
});

export type PhaseInput = z.infer<typeof phaseSchema>;
export type FileSettingsInput = z.infer<typeof fileSettingsSchema>;
export type LauncherInput = z.infer<typeof launcher>;
export type NotifyInput = z.infer<typeof notifyEntry>;
