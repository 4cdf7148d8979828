import { availableParallelism } from "node:os";
import { checkProbes, describeMachine } from "../agent/capabilities.js";
import { probeGpus } from "../agent/gpuProbe.js";
import { planSlots } from "../agent/slots.js";
import type { AgentCapabilities } from "../protocol/http.js";
import { probeList } from "./agent.js";
import { EXIT } from "./exitCodes.js";
import { seconds } from "./flags.js";

export interface DoctorFlags {
  json?: boolean;
  probe?: string[];
  probeTimeout?: string;
  tag?: string[];
}

/** What `labsweep doctor` prints: the capability record an agent here would send, without an id. */
export type DoctorReport = Omit<AgentCapabilities, "agentId"> & { agentId: null };

/**
 * `labsweep doctor`: what an agent on this machine would tell the coordinator — CPUs, RAM, GPUs
 * (nvidia-smi), driver and CUDA versions, and the result of each `--probe`. Exit 1 when a probe
 * fails, so it can gate a job script.
 */
export async function doctorCommand(flags: DoctorFlags): Promise<number> {
  const probes = probeList(flags.probe);
  const timeoutMs =
    flags.probeTimeout === undefined ? undefined : seconds("--probe-timeout", flags.probeTimeout) * 1000;
  const gpus = await probeGpus();
  const slots = planSlots({ gpus, cpuCount: availableParallelism() });
  const [capabilities, results] = await Promise.all([
    describeMachine({
      agentId: "",
      slots: slots.length,
      gpus,
      tags: (flags.tag ?? [])
        .flatMap((tag) => tag.split(","))
        .map((tag) => tag.trim())
        .filter(Boolean),
    }),
    // Run here rather than by describeMachine, to say why a failed one failed.
    checkProbes(probes, { timeoutMs }),
  ]);
  const probeResults = Object.fromEntries(results.map((result) => [result.name, result.ok]));
  const report: DoctorReport = { ...capabilities, probes: probeResults, agentId: null };
  process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : humanReport(report));
  // On stderr, so --json output stays one JSON object.
  const failed = results.filter((result) => !result.ok);
  for (const result of failed)
    process.stderr.write(`labsweep doctor: probe ${result.name} failed: ${result.why}\n`);
  if (failed.length === 0) return EXIT.ok;
  process.stderr.write(
    `labsweep doctor: exit 1 because ${failed.length} of ${results.length} probe${results.length === 1 ? "" : "s"} failed (${failed.map((result) => result.name).join(", ")})\n`,
  );
  return EXIT.failed;
}

function humanReport(report: DoctorReport): string {
  const rows: Array<[string, string]> = [
    ["host", report.name === report.host ? report.host : `${report.host} (name ${report.name})`],
    ["cpus", String(report.cpus)],
    ["ram", `${(report.ramMb / 1024).toFixed(1)} GiB`],
    [
      "driver",
      report.driverVersion
        ? `${report.driverVersion}${report.cudaVersion ? `, CUDA ${report.cudaVersion}` : ""}`
        : "none",
    ],
  ];
  if (report.gpus.length === 0) rows.push(["gpus", "none"]);
  for (const gpu of report.gpus)
    rows.push([
      gpu.index === report.gpus[0]?.index ? "gpus" : "",
      `${gpu.index}  ${gpu.name}  ${gpu.memoryFreeMiB}/${gpu.memoryTotalMiB} MiB free  ${gpu.uuid}`,
    ]);
  rows.push(["slots", String(report.slots)]);
  rows.push(["tags", report.tags.join(", ") || "none"]);
  const probes = Object.entries(report.probes);
  rows.push(["probes", probes.map(([name, ok]) => `${name} ${ok ? "ok" : "FAILED"}`).join(", ") || "none"]);
  if (report.slurm)
    rows.push([
      "slurm",
      `job ${report.slurm.jobId}${report.slurm.arrayTaskId ? ` task ${report.slurm.arrayTaskId}` : ""}`,
    ]);
  return `${rows.map(([key, value]) => `${key.padEnd(8)}${value}`).join("\n")}\n`;
}
