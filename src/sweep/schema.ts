import { z } from "zod";
import { parseDuration } from "./duration.js";

/** Keys a phase may carry, with the default the user gets when leaving one out. */
export const PHASE_KEYS: Record<string, string> = {
  defaults: "{}",
  combinations: "one task from defaults",
  output_dir: "results/{phase}",
  command: "the file-level command",
  after: "[]",
  gate: "all_succeeded",
  retries: "3",
  timeout: "none",
  backoff: "1s",
  resources: "{gpus: 1 per task on GPU machines, gpu_memory_gb: 0, cpus: 1}",
};

/** Top-level keys that are settings; every other top-level key is a phase. */
export const FILE_KEYS: Record<string, string> = {
  defaults: "{}",
  seeds: "none (legacy: multiplies every phase whose combinations do not list seed)",
  output_dir: "results/{phase}",
  command: "none: required here, in each phase, or via --command",
  retries: "3",
  timeout: "none",
  backoff: "1s",
  resources: "{}",
};

export const RESOURCE_KEYS: Record<string, string> = {
  gpus: "1 on GPU machines, else 0",
  gpu_memory_gb: "0",
  cpus: "1",
};

const duration = z
  .union([z.string(), z.number()])
  .refine((value) => parseDuration(value) !== null, "expected a duration such as 90s, 30m, 2h or 1h30m");

/** A timeout of 0 would kill every task at once; leaving `timeout` out means none. */
const timeout = duration.refine(
  (value) => (parseDuration(value) ?? 1) > 0,
  "must be longer than 0 (leave timeout out for no timeout)",
);

const resources = z.strictObject({
  gpus: z.number().min(0).optional(),
  gpu_memory_gb: z.number().min(0).optional(),
  cpus: z.number().positive().optional(),
});

const gate = z.union([z.literal("all_succeeded"), z.strictObject({ min_success: z.number().gt(0).max(1) })]);

const paramMap = z.record(z.string(), z.unknown());

const axis = z
  .record(z.string(), z.array(z.unknown()).min(1, "has no values: list at least one"))
  .refine((entry) => Object.keys(entry).length === 1, {
    message: "each combinations entry is a single-key map `param: [values]`",
  });

const policy = {
  command: z.string().min(1, "is empty").optional(),
  retries: z.int().min(0).optional(),
  timeout: timeout.optional(),
  backoff: duration.optional(),
  resources: resources.optional(),
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
