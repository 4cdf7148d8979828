import { ARTIFACT_PATH_MAX_BYTES, MAX_ARTIFACT_FILES } from "../../protocol/artifacts.js";

/** JSON schemas of request bodies: anything else is a 400 before a handler runs. */
const id = { type: "string", minLength: 1, maxLength: 200 } as const;

const capacity = {
  type: "object",
  required: ["freeSlots", "gpus", "hasGpus"],
  properties: {
    freeSlots: { type: "integer", minimum: 0, maximum: 4096 },
    freeCpus: { type: ["number", "null"] },
    hasGpus: { type: "boolean" },
    tags: { type: "array", maxItems: 100, items: { type: "string", maxLength: 100 }, default: [] },
    timeLeftMs: { type: ["number", "null"] },
    gpus: {
      type: "array",
      maxItems: 256,
      items: {
        type: "object",
        required: ["index", "freeShare"],
        properties: {
          index: { type: "integer", minimum: 0 },
          freeShare: { type: "number" },
          freeMemoryMiB: { type: ["number", "null"] },
        },
      },
    },
  },
} as const;

/** The provenance an outcome carries (protocol GitState): a sha, a flag, a SHA-256 or null. */
const git = {
  type: "object",
  required: ["commit", "dirty", "diffSha256"],
  additionalProperties: false,
  properties: {
    commit: { type: "string", pattern: "^[0-9a-f]{40}([0-9a-f]{24})?$" },
    dirty: { type: "boolean" },
    diffSha256: { type: ["string", "null"], pattern: "^[0-9a-f]{64}$" },
  },
} as const;

/** How an attempt ended (finishAttempt.ts AttemptOutcome). */
const outcome = {
  type: "object",
  required: ["kind"],
  properties: {
    kind: { enum: ["succeeded", "failed", "timeout", "oom", "hung", "interrupted", "preempted", "lost"] },
    metrics: { type: "object" },
    wallSeconds: { type: "number" },
    exitCode: { type: ["integer", "null"] },
    signal: { type: ["string", "null"] },
    error: { type: "string", maxLength: 10_000 },
    oom: { type: "string", maxLength: 200 },
    git,
  },
  // A success carries its metrics and wall time (finishAttempt stores both).
  anyOf: [
    { properties: { kind: { not: { const: "succeeded" } } } },
    { required: ["metrics", "wallSeconds"] },
  ],
} as const;

const logTail = { type: "string", maxLength: 65_536 } as const;

/**
 * A success's artifacts, as its finish report declares them: bounded, each a path and a SHA-256.
 * The path's own rules (artifactPathError) are checked by the route, which names the entry.
 */
const declaredArtifacts = {
  type: "array",
  maxItems: MAX_ARTIFACT_FILES,
  items: {
    type: "object",
    required: ["path", "sha256"],
    additionalProperties: false,
    properties: {
      path: { type: "string", minLength: 1, maxLength: ARTIFACT_PATH_MAX_BYTES },
      sha256: { type: "string", pattern: "^[0-9a-f]{64}$" },
    },
  },
} as const;

export const schemas = {
  register: {
    type: "object",
    required: ["agentId", "name", "host", "slots", "cpus", "gpus", "tags"],
    properties: {
      agentId: id,
      name: { type: "string", maxLength: 200 },
      host: { type: "string", maxLength: 255 },
      pid: { type: "integer" },
      slots: { type: "integer", minimum: 1, maximum: 4096 },
      cpus: { type: "integer", minimum: 1 },
      ramMb: { type: "number" },
      gpus: { type: "array", maxItems: 256, items: { type: "object", required: ["index"] } },
      tags: { type: "array", maxItems: 100, items: { type: "string", maxLength: 100 } },
      probes: { type: "object" },
    },
  },
  lease: {
    type: "object",
    required: ["agentId", "capacity", "waitMs"],
    properties: {
      agentId: id,
      capacity,
      waitMs: { type: "integer", minimum: 0, maximum: 600_000 },
      max: { type: "integer", minimum: 0, maximum: 256 },
      reports: {
        type: "array",
        maxItems: 256,
        items: {
          type: "object",
          required: ["attemptId", "outcome"],
          properties: { attemptId: { type: "integer", minimum: 1 }, outcome, logTail },
        },
      },
    },
  },
  heartbeat: {
    type: "object",
    required: ["agentId", "attemptIds"],
    properties: {
      agentId: id,
      attemptIds: { type: "array", maxItems: 4096, items: { type: "integer" } },
      gpus: {
        type: "array",
        maxItems: 256,
        items: {
          type: "object",
          required: ["index", "utilizationPct", "memoryUsedMiB", "memoryTotalMiB"],
          properties: {
            index: { type: "integer", minimum: 0 },
            utilizationPct: { type: "number", minimum: 0, maximum: 100 },
            memoryUsedMiB: { type: "number", minimum: 0 },
            memoryTotalMiB: { type: "number", minimum: 0 },
          },
        },
      },
    },
  },
  started: {
    type: "object",
    required: ["agentId", "pid"],
    properties: { agentId: id, pid: { type: "integer", minimum: 1 } },
  },
  finish: {
    type: "object",
    required: ["agentId", "outcome"],
    properties: {
      agentId: id,
      logTail,
      outcome,
      artifacts: declaredArtifacts,
    },
  },
  log: {
    type: "object",
    required: ["agentId", "offset", "text"],
    properties: {
      agentId: id,
      offset: { type: "integer", minimum: 0 },
      text: { type: "string", maxLength: 512 * 1024 },
    },
  },
  cancel: {
    type: "object",
    properties: {
      taskIds: { type: "array", maxItems: 100_000, items: { type: "integer" } },
      phase: { type: "string", maxLength: 200 },
    },
  },
  retry: { type: "object", properties: { phase: { type: "string", maxLength: 200 } } },
  pause: {
    type: "object",
    additionalProperties: false,
    properties: { phase: { type: "string", maxLength: 200 } },
  },
  configs: {
    type: "object",
    required: ["files"],
    properties: {
      files: {
        type: "array",
        minItems: 1,
        maxItems: 100,
        items: {
          type: "object",
          required: ["path", "text"],
          properties: { path: { type: "string", minLength: 1, maxLength: 4096 }, text: { type: "string" } },
        },
      },
      yes: { type: "boolean" },
    },
  },
  attemptParams: { type: "object", properties: { id: { type: "string", pattern: "^[0-9]{1,15}$" } } },
  taskParams: { type: "object", properties: { id: { type: "string", pattern: "^[0-9]{1,15}$" } } },
  /** A task id, or a signature (22 base64url characters) or the start of one. */
  taskRef: { type: "object", properties: { id: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" } } },
  channelQuery: { type: "object", required: ["agentId"], properties: { agentId: id } },
  goodbye: {
    type: "object",
    required: ["agentId"],
    additionalProperties: false,
    properties: { agentId: id },
  },
} as const;
