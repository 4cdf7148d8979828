import type { SlurmJobSpec } from "./options.js";
import { sbatchOptions, TIME_LIMIT_SIGNAL } from "./sbatchOptions.js";
import { shellQuote } from "./shellQuote.js";

/** How a compute node starts `labsweep agent`: absolute paths, the same on every node. */
export interface AgentBinary {
  /** The Node.js executable. */
  node: string;
  /** labsweep's `bin/labsweep.js`. */
  cli: string;
}

/** The name of the script `labsweep slurm` writes in the output dir. */
export const SCRIPT_NAME = "labsweep-agents.sbatch";

/**
 * The sbatch script for a job array of agents. Pure: the same spec gives the same bytes (golden
 * tests pin them). Values on `#SBATCH` lines are validated or sbatch-quoted; every path and URL in
 * the body is one single-quoted bash word. The token is never written: the job reads it from
 * `LABSWEEP_TOKEN` in the environment sbatch was called in.
 */
export function sbatchScript(spec: SlurmJobSpec, binary: AgentBinary): string {
  const directives = sbatchOptions(spec).map((option) => option.line);
  return `#!/bin/bash
# labsweep agents as a SLURM job array, written by \`labsweep slurm\`. Each array element runs one
# \`labsweep agent\`, which exits 0 once the sweep has nothing left for it, so its allocation is
# released. The agent token is not in this file: each job reads LABSWEEP_TOKEN from the
# environment sbatch was called in (--export=ALL). To submit it yourself:
#   export LABSWEEP_TOKEN=…   # \`labsweep token\` on the coordinator's machine
#   sbatch THIS_FILE
# (sbatch lets SBATCH_* environment variables override the lines below; \`labsweep slurm\`
# gives sbatch these options on its command line too, which wins over both.)
${directives.map((directive) => `#SBATCH ${directive}`).join("\n")}
set -euo pipefail

node=${shellQuote(binary.node)}
labsweep=${shellQuote(binary.cli)}
output=${shellQuote(spec.outputDir)}

if [ -z "\${LABSWEEP_TOKEN:-}" ]; then
  echo "labsweep: LABSWEEP_TOKEN is not set: submit with the agent token in the environment (sbatch --export=ALL, the default)" >&2
  exit 2
fi
if [ -z "\${SLURM_ARRAY_JOB_ID:-}" ] || [ -z "\${SLURM_ARRAY_TASK_ID:-}" ]; then
  echo "labsweep: not an element of a job array: submit this script with sbatch" >&2
  exit 2
fi
if [ ! -x "$node" ] || [ ! -f "$labsweep" ]; then
  echo "labsweep: $node or $labsweep is missing on \${HOSTNAME:-this node}: labsweep must be at the same path on every compute node (a shared filesystem)" >&2
  exit 2
fi

# Each element has its own agent state dir (id, outbox, task logs), named after the element. An
# element that finds no coordinator for ${spec.giveUpAfterSeconds} s while idle (it started after the sweep ended) exits.
args=(agent --server ${shellQuote(spec.servers.join(","))} --slots ${spec.slots}
  --give-up-after ${spec.giveUpAfterSeconds}${idleExit(spec)}
  --stop-before ${spec.stopBeforeSeconds}
  --state "$output/agents/\${SLURM_ARRAY_JOB_ID}_\${SLURM_ARRAY_TASK_ID}")
# SLURM names the GPUs it allocated in CUDA_VISIBLE_DEVICES: use only those.
if [[ "\${CUDA_VISIBLE_DEVICES:-}" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  args+=(--gpus "$CUDA_VISIBLE_DEVICES")
fi
# exec: SLURM's signals reach the agent — SIG${TIME_LIMIT_SIGNAL} ${spec.stopBeforeSeconds} s before the time limit (--signal),
# SIGTERM on scancel, preemption or the limit itself — and it stops its tasks: each gets its
# stop signal and stop_grace to checkpoint, and is recorded as preempted (no retry spent) to
# resume wherever it runs next.
exec "$node" "$labsweep" "\${args[@]}"
`;
}

/** `serve --slurm`'s agents exit when idle, so their allocations follow the queue. */
function idleExit(spec: SlurmJobSpec): string {
  const seconds = spec.idleExitSeconds ?? null;
  return seconds === null ? "" : ` --idle-exit ${seconds}`;
}
