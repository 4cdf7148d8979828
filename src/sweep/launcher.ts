/**
 * The command rule for `launcher:` (pure; shared by config validation and the agent).
 *
 * A launcher (`accelerate launch …`, `torchrun …`) starts the Python script itself, once per
 * process, so the command must begin with what it can run: a script (a word ending in `.py`) or
 * `-m module`, each optionally after a bare `python`/`python3`, which is dropped: the launcher
 * runs the script with the Python it is installed in. What follows is passed on untouched.
 * The script or module is literal text (no placeholder), so a template that passes the check
 * renders to a command that does too.
 */

const INTERPRETER = /^python3?[ \t]+/;
/** A script path of shell-safe characters that ends in `.py` and does not look like an option. */
const SCRIPT = /^(?!-)[\w@%+=:,./-]*\.py(?=\s|$)/;
/** `-m` and a dotted module name. */
const MODULE = /^-m[ \t]+[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?=\s|$)/;

/**
 * The command without a leading `python`/`python3`, starting at the script or at `-m`, or null
 * when the command does not start with a Python script or module.
 */
export function pythonEntry(command: string): string | null {
  const rest = command.replace(/^[ \t]+/, "").replace(INTERPRETER, "");
  return SCRIPT.test(rest) || MODULE.test(rest) ? rest : null;
}

/** Why a command cannot run under a launcher, as the end of a sentence; null when it can. */
export function pythonEntryProblem(command: string): string | null {
  if (pythonEntry(command) !== null) return null;
  const trimmed = command.replace(/^[ \t]+/, "");
  const interpreter = INTERPRETER.test(trimmed);
  const rest = trimmed.replace(INTERPRETER, "");
  const first = rest.split(/\s/, 1)[0] ?? "";
  if (interpreter && first.startsWith("-") && first !== "-m")
    return `python options such as ${first} cannot pass through a launcher (for -u, set PYTHONUNBUFFERED=1 instead)`;
  if (interpreter && first === "-m") return "-m must be followed by a module name such as pkg.train";
  if (/^(\S*\/)?python[\d.]*$/.test(first))
    return `the launcher runs the script with its own Python: drop "${first}" and start with the script`;
  if (first.includes("{")) return `the script must be written out, not a placeholder ("${first}")`;
  if (first === "") return "it is empty";
  return `"${first}" is neither a .py script nor -m module`;
}

/**
 * Launcher flags labsweep sets itself, by the flag's name with dashes as underscores; the value
 * says what to do instead. An extra argument repeating one would silently win over labsweep's.
 */
export const MANAGED_FLAGS: Record<"accelerate" | "torchrun", Record<string, string>> = {
  accelerate: {
    num_processes: "labsweep sets it from the GPUs a task gets (resources.gpus)",
    gpu_ids: "labsweep sets it from the GPUs a task gets (resources.gpus)",
    multi_gpu: "labsweep sets it when a task has several GPUs",
    cpu: "labsweep sets it when a task has no GPU",
    main_process_port: "use the main_process_port key",
    mixed_precision: "use the mixed_precision key",
    m: "write -m pkg.module at the start of the command",
    module: "write -m pkg.module at the start of the command",
  },
  torchrun: {
    nproc_per_node: "labsweep sets it from the GPUs a task gets (resources.gpus)",
    master_port: "use the master_port key",
    master_addr: "labsweep pins the rendezvous to 127.0.0.1 (tasks run on one machine)",
    nnodes: "labsweep runs each task on one node",
    node_rank: "labsweep runs each task on one node",
    standalone:
      "labsweep pins the rendezvous to 127.0.0.1 with a port per task instead (--standalone binds port 29400 before torch 2.1)",
    rdzv_backend: "labsweep pins the rendezvous to 127.0.0.1 with a port per task",
    rdzv_endpoint: "labsweep pins the rendezvous to 127.0.0.1 with a port per task",
    m: "write -m pkg.module at the start of the command",
    module: "write -m pkg.module at the start of the command",
  },
};

/** The index and advice of the first extra argument that sets a flag labsweep manages, or null. */
export function managedFlagIn(
  launcher: "accelerate" | "torchrun",
  extraArgs: ReadonlyArray<string | number>,
): { index: number; flag: string; advice: string } | null {
  const managed = MANAGED_FLAGS[launcher];
  for (const [index, arg] of extraArgs.entries()) {
    const text = String(arg);
    if (!text.startsWith("-")) continue;
    const flag = text.split("=", 1)[0] as string;
    const name = flag.replace(/^--?/, "").replaceAll("-", "_");
    const advice = managed[name];
    if (advice !== undefined) return { index, flag, advice };
  }
  return null;
}
