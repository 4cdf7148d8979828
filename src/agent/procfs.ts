import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";

/**
 * The one reader of /proc (Linux): which processes exist, their state and process group, their
 * environment and resident memory. Every reader returns null or empty when the process exited
 * while we looked or is not ours to read; `listPids` returns null where there is no procfs.
 */

/** The pids in /proc, or null when there is no procfs (not Linux). */
export function listPids(): number[] | null {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return null;
  }
  const pids: number[] = [];
  for (const entry of entries) {
    const first = entry.charCodeAt(0);
    if (first < 48 || first > 57) continue; // not a pid: "self", "meminfo", …
    pids.push(Number(entry));
  }
  return pids;
}

export interface ProcStat {
  /** One letter: R, S, D, … and Z (zombie) or X (dead) for processes already gone. */
  state: string;
  processGroup: number;
}

/** The state and process group of a process, from `/proc/<pid>/stat`. */
export function readProcStat(pid: number): ProcStat | null {
  const stat = readStatText(pid);
  if (stat === null) return null;
  // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses, so go from the last ")".
  const close = stat.lastIndexOf(")");
  if (close < 0) return null;
  const ppidEnd = stat.indexOf(" ", close + 4);
  const pgrpEnd = stat.indexOf(" ", ppidEnd + 1);
  if (ppidEnd < 0 || pgrpEnd < 0) return null;
  return { state: stat.charAt(close + 2), processGroup: Number(stat.slice(ppidEnd + 1, pgrpEnd)) };
}

/** Whether a process with this stat is dead already (a zombie waiting to be reaped counts). */
export function isGone(stat: ProcStat): boolean {
  return stat.state === "Z" || stat.state === "X";
}

/** The `NAME=value` entries of a process's environment; [] when unreadable. */
export function environmentOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/** A process's resident memory (VmRSS, KiB); null for kernel threads and exiting processes. */
export function residentKiB(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
    return match ? Number(match[1]) : null;
  } catch {
    return null; // exited while we looked
  }
}

// The sampler reads every process of the machine each second: one open, read and close into a
// reused buffer costs half of readFileSync's (which also stats the file and allocates).
const statBuffer = Buffer.alloc(1024);

function readStatText(pid: number): string | null {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/stat`, "r");
  } catch {
    return null;
  }
  try {
    return statBuffer.toString("latin1", 0, readSync(fd, statBuffer, 0, statBuffer.length, 0));
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * How many processes the kernel's OOM killer has killed, as far as this process can tell: its
 * cgroup's `oom_kill` count (cgroup v2 `memory.events`, found through /proc/self/cgroup, at
 * /sys/fs/cgroup or the hybrid layout's /sys/fs/cgroup/unified), else the host's (`oom_kill` in
 * /proc/vmstat, Linux 4.13+). Null where neither can be read. Read as every task starts and
 * ends: the file that answered first is the only one read again, into a reused buffer.
 */
export function oomKillCount(): number | null {
  if (oomCountFile === undefined) {
    oomCountFile = null;
    for (const path of oomCountFiles()) {
      if (readOomCount(path) === null) continue;
      oomCountFile = path;
      break;
    }
  }
  return oomCountFile === null ? null : readOomCount(oomCountFile);
}

/** The file oomKillCount reads; null: none answered (undefined: not looked for yet). */
let oomCountFile: string | null | undefined;

/** Where the OOM kill count may be read, best first. */
function oomCountFiles(): string[] {
  const files: string[] = [];
  try {
    const group = /^0::(.*)$/m.exec(readFileSync("/proc/self/cgroup", "utf8"))?.[1]?.trim();
    if (group !== undefined && !group.includes("..")) {
      const relative = group === "/" ? "" : group;
      for (const root of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"])
        files.push(`${root}${relative}/memory.events`);
    }
  } catch {
    // No cgroup information (not Linux, or no procfs): only the host's count remains.
  }
  files.push("/proc/vmstat");
  return files;
}

// /proc/vmstat is about 4 KiB; oom_kill is in its first half.
const countBuffer = Buffer.alloc(16 * 1024);

function readOomCount(path: string): number | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return null;
  }
  try {
    const text = countBuffer.toString("latin1", 0, readSync(fd, countBuffer, 0, countBuffer.length, 0));
    const match = /^oom_kill (\d+)$/m.exec(text);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
