/**
 * The sbatch scripts `labsweep slurm` writes, compared byte for byte with the committed goldens in
 * test/golden/slurm/ (UPDATE_GOLDEN=1 rewrites them), with hostile paths and values; every option's
 * validation; and the hostile script run by bash, to show each value arrives intact.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  type AgentBinary,
  parseSlurmOptions,
  type SlurmFlagValues,
  SlurmOptionError,
  sbatchOptions,
  sbatchQuote,
  sbatchScript,
  shellQuote,
} from "../src/slurm/index.js";
import { tempDir } from "./helpers/cli.js";

const goldenDir = fileURLToPath(new URL("./golden/slurm/", import.meta.url));

function expectGolden(name: string, actual: string): void {
  const path = join(goldenDir, `${name}.sbatch`);
  if (process.env.UPDATE_GOLDEN === "1") {
    mkdirSync(goldenDir, { recursive: true });
    writeFileSync(path, actual);
  }
  if (!existsSync(path))
    throw new Error(`missing golden file ${path}: run with UPDATE_GOLDEN=1 to create it`);
  expect(actual).toBe(readFileSync(path, "utf8"));
}

const PLAIN: AgentBinary = { node: "/usr/local/bin/node", cli: "/opt/labsweep/bin/labsweep.js" };

/** Paths and values a careless generator would break on: quotes, `$(…)`, backticks, unicode. */
const HOSTILE_DIR = `/scratch/o'brien "runs" $(touch PWNED) \`touch PWNED\` #1 100% ünïcødé ✓`;
const HOSTILE_BINARY: AgentBinary = {
  node: `/opt/my tools/it's "node" $(touch PWNED) \`id\` ✓/bin/node`,
  // A line break is safe in the body, inside single quotes.
  cli: "/srv/lab\nsweep; rm -rf ~/bin/labsweep.js",
};
const HOSTILE_SERVERS = ["http://head-node:7070/lab'sweep$(id)", "https://backup:7070"];

interface Case {
  name: string;
  servers?: string[];
  flags: SlurmFlagValues;
  binary?: AgentBinary;
}

const CASES: Case[] = [
  { name: "minimal", flags: { agents: "1", output: "/home/ada/sweeps/labsweep-slurm" } },
  {
    name: "gpu-array",
    servers: ["http://head-node:7070", "http://backup-node:7070"],
    flags: {
      agents: "16",
      gres: "gpu:a100:2",
      partition: "gpu,gpu-long",
      time: "2-00:00:00",
      cpusPerTask: "16",
      mem: "64G",
      jobName: "sweep-7.b",
      output: "/scratch/ada/run 7",
    },
  },
  {
    name: "cpu-slots-from-cpus",
    flags: { agents: "3", cpusPerTask: "8", time: "90", mem: "0", output: "/home/ada/out" },
  },
  {
    name: "explicit-slots",
    flags: { agents: "2", gres: "gpu:4", slots: "8", time: "04:30:00", output: "/home/ada/out" },
  },
  {
    name: "hostile",
    servers: HOSTILE_SERVERS,
    flags: { agents: "2", output: HOSTILE_DIR },
    binary: HOSTILE_BINARY,
  },
  {
    name: "account-qos-extra-args",
    flags: {
      agents: "4",
      slots: "3",
      account: "lab-42",
      qos: "high",
      constraint: "(a100|h100)&ib",
      sbatchArg: ["--exclusive", "--mail-type=END", `--comment=o'brien's "sweep" #1 $(id)`, "-wnode[1-4]"],
      output: "/home/ada/out",
    },
  },
];

function render(testCase: Case): string {
  const spec = parseSlurmOptions(testCase.servers ?? ["http://coord:7070"], testCase.flags, "/home/ada");
  return sbatchScript(spec, testCase.binary ?? PLAIN);
}

describe("sbatch script goldens", () => {
  it.each(CASES)("$name", (testCase) => {
    expectGolden(testCase.name, render(testCase));
  });

  it("has a golden for every case and no stale one", () => {
    if (process.env.UPDATE_GOLDEN === "1") return;
    expect(readdirSync(goldenDir).sort()).toEqual(CASES.map((testCase) => `${testCase.name}.sbatch`).sort());
  });

  it.each(CASES)("$name is valid bash", (testCase) => {
    const result = spawnSync("bash", ["-n"], { input: render(testCase), encoding: "utf8" });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it("every case's #SBATCH lines read back to the options labsweep slurm passes on sbatch's command line", () => {
    for (const testCase of CASES) {
      const spec = parseSlurmOptions(testCase.servers ?? ["http://coord:7070"], testCase.flags, "/home/ada");
      expect(scriptOptions(render(testCase))).toEqual(sbatchOptions(spec).map((option) => option.arg));
    }
  });

  it("asks SLURM for a CPU per slot unless --cpus-per-task says otherwise", () => {
    const cpus = (flags: SlurmFlagValues) =>
      parseSlurmOptions(["http://c:1"], { agents: "1", ...flags }).cpusPerTask;
    expect(cpus({})).toBe(1);
    expect(cpus({ slots: "4" })).toBe(4);
    expect(cpus({ gres: "gpu:2" })).toBe(2);
    expect(cpus({ gres: "gpu:2", slots: "6" })).toBe(6);
    expect(cpus({ slots: "4", cpusPerTask: "16" })).toBe(16);
    expect(cpus({ slots: "4", cpusPerTask: "2" })).toBe(2); // asked for: a task per half CPU
  });

  it("derives slots: GPUs of --gres gpu:N, else --cpus-per-task, else 1; --slots wins", () => {
    const slots = (flags: SlurmFlagValues) =>
      parseSlurmOptions(["http://c:1"], { agents: "1", ...flags }).slots;
    expect(slots({})).toBe(1);
    expect(slots({ cpusPerTask: "6" })).toBe(6);
    expect(slots({ gres: "gpu:3", cpusPerTask: "6" })).toBe(3);
    expect(slots({ gres: "shard:3", cpusPerTask: "6" })).toBe(6); // not GPUs
    expect(slots({ gres: "gpu:3", slots: "5" })).toBe(5);
  });

  it("resolves a relative --output against the working directory", () => {
    expect(parseSlurmOptions(["http://c:1"], { agents: "1", output: "runs/x" }, "/home/ada").outputDir).toBe(
      "/home/ada/runs/x",
    );
    expect(parseSlurmOptions(["http://c:1"], { agents: "1" }, "/home/ada").outputDir).toBe(
      "/home/ada/labsweep-slurm",
    );
  });
});

describe("option validation", () => {
  const BAD: Array<[string, SlurmFlagValues, RegExp]> = [
    ["no --agents", { agents: undefined }, /^labsweep slurm needs --agents N/],
    ["--agents 0", { agents: "0" }, /^--agents must be a positive whole number, got "0"$/],
    ["--agents 2.5", { agents: "2.5" }, /^--agents must be a positive whole number/],
    ["--agents -1", { agents: "-1" }, /^--agents must be/],
    ["--cpus-per-task x", { cpusPerTask: "x" }, /^--cpus-per-task must be a positive whole number, got "x"$/],
    ["--slots 0", { slots: "0" }, /^--slots must be/],
    ["--gres gpu", { gres: "gpu" }, /^--gres takes name\[:type\]:count.*got "gpu"$/],
    ["--gres gpu:0", { gres: "gpu:0" }, /^--gres takes/],
    ["--gres with a space", { gres: "gpu:a 100:1" }, /^--gres takes/],
    ["--gres with $(…)", { gres: "gpu:$(id):1" }, /^--gres takes/],
    ["--time 25:00", { time: "25:00" }, /^--time takes \[D-\]HH:MM:SS or whole minutes.*got "25:00"$/],
    ["--time 1-24:00:00", { time: "1-24:00:00" }, /^--time takes/],
    ["--time 04:61:00", { time: "04:61:00" }, /^--time takes/],
    ["--time 1h", { time: "1h" }, /^--time takes/],
    [
      "--mem 16GB",
      { mem: "16GB" },
      /^--mem takes a whole number with an optional unit K, M, G or T.*got "16GB"$/,
    ],
    ["--mem 1.5G", { mem: "1.5G" }, /^--mem takes/],
    ["--mem with a newline", { mem: "16G\n#SBATCH --uid=0" }, /^--mem takes/],
    ["--partition a;b", { partition: "gpu;rm" }, /^--partition takes partition names/],
    ["--partition a,,b", { partition: "a,,b" }, /^--partition takes/],
    ["--partition hetjob", { partition: "hetjob" }, /^--partition "hetjob" cannot be used: sbatch reads/],
    ["--job-name with a space", { jobName: "my job" }, /^--job-name takes letters, digits.*got "my job"$/],
    ["--job-name with a quote", { jobName: `x"y` }, /^--job-name takes/],
    ["--job-name empty", { jobName: "" }, /^--job-name takes/],
    ["--job-name packjob", { jobName: "my-PackJob" }, /^--job-name "my-PackJob" cannot be used/],
    [
      "--output with a newline",
      { output: "/tmp/a\nb" },
      /^--output "\/tmp\/a\\nb" cannot be used: a line break cannot be written on an #SBATCH line$/,
    ],
    ["--output with a carriage return", { output: "/tmp/a\rb" }, /^--output .* cannot be used: a line break/],
    ["--output with a backslash", { output: "/tmp/a\\b" }, /^--output "\/tmp\/a\\\\b" holds a backslash/],
    ["--output empty", { output: "" }, /^--output needs a directory/],
    ["--give-up-after 0", { giveUpAfter: "0" }, /^--give-up-after must be a positive whole number, got "0"$/],
    ["--give-up-after 10m", { giveUpAfter: "10m" }, /^--give-up-after must be a positive whole number/],
    ["--stop-before 0", { stopBefore: "0" }, /^--stop-before must be a positive whole number, got "0"$/],
    ["--stop-before 2m", { stopBefore: "2m" }, /^--stop-before must be a positive whole number/],
    ["--stop-before 70000", { stopBefore: "70000" }, /^--stop-before must be at most 65535 seconds/],
    [
      "--time 1 with the default --stop-before",
      { time: "1" },
      /^--time 1 \(60 s\) must be at least --stop-before \(120 s, the default\) plus the 60 s SLURM may send its warning early \(180 s\), or agents may be told to stop as they start/,
    ],
    [
      "--time 00:10:00 --stop-before 600",
      { time: "00:10:00", stopBefore: "600" },
      /^--time 00:10:00 \(600 s\) must be at least --stop-before \(600 s\) plus/,
    ],
    [
      "--time 3 --stop-before 121",
      { time: "3", stopBefore: "121" },
      /^--time 3 \(180 s\) must be at least .*\(181 s\)/,
    ],
    [
      "--account with a space",
      { account: "my lab" },
      /^--account takes an account name of letters.*got "my lab"$/,
    ],
    ["--qos with $(…)", { qos: "$(id)" }, /^--qos takes a QOS name of letters/],
    ["--constraint empty", { constraint: " " }, /^--constraint needs node features/],
    [
      "--constraint with a newline",
      { constraint: "a100\n#SBATCH --uid=0" },
      /^--constraint .* cannot be used: a line break/,
    ],
    [
      "--sbatch-arg without a dash",
      { sbatchArg: ["exclusive"] },
      /^--sbatch-arg takes one sbatch option, a value joined to it.*got "exclusive"$/,
    ],
    [
      "--sbatch-arg with a space",
      { sbatchArg: ["--mail-type END"] },
      /^--sbatch-arg takes one sbatch option/,
    ],
    [
      "--sbatch-arg --time",
      { sbatchArg: ["--time=5"] },
      /^--sbatch-arg "--time=5": labsweep slurm sets sbatch's --time itself: use labsweep slurm's --time$/,
    ],
    ["--sbatch-arg -t5", { sbatchArg: ["-t5"] }, /sets sbatch's --time itself: use labsweep slurm's --time$/],
    [
      "--sbatch-arg --part=x",
      { sbatchArg: ["--part=x"] },
      /sets sbatch's --partition itself: use labsweep slurm's --partition$/,
    ],
    [
      "--sbatch-arg -a0-9",
      { sbatchArg: ["-a0-9"] },
      /sets sbatch's --array itself: use labsweep slurm's --agents$/,
    ],
    ["--sbatch-arg --signal", { sbatchArg: ["--signal=B:TERM@60"] }, /use labsweep slurm's --stop-before$/],
    [
      "--sbatch-arg --export",
      { sbatchArg: ["--export=NONE"] },
      /sets sbatch's --export itself, as its agents need it$/,
    ],
    [
      "--sbatch-arg --requeue",
      { sbatchArg: ["--requeue"] },
      /sets sbatch's --requeue itself, as its agents need it$/,
    ],
    [
      "--sbatch-arg with a newline",
      { sbatchArg: ["--comment=a\nb"] },
      /^--sbatch-arg .* cannot be used: a line break/,
    ],
    [
      "--sbatch-arg hetjob",
      { sbatchArg: ["--comment=hetjob"] },
      /^--sbatch-arg .* cannot be used: sbatch reads any #SBATCH line containing "hetjob"/,
    ],
  ];

  it("--stop-before sets how long before the time limit the agent gets SIGUSR2", () => {
    const spec = parseSlurmOptions(["http://c:1"], { agents: "1", stopBefore: "600" }, "/home/ada");
    expect(sbatchScript(spec, PLAIN)).toContain("\n#SBATCH --signal=B:USR2@600\n");
  });

  it("takes sbatch options it does not set itself, and a time limit a minute longer than --stop-before", () => {
    expect(parseSlurmOptions(["http://c:1"], { agents: "1", time: "3" }).time).toBe("3"); // 180 s = 120 + 60
    const spec = parseSlurmOptions(
      ["http://c:1"],
      { agents: "1", time: "3", sbatchArg: ["--time-min=2", "--mem-per-gpu=8G", "-e/tmp/err", "--gpus=1"] },
      "/home/ada",
    );
    expect(spec.sbatchArgs).toEqual(["--time-min=2", "--mem-per-gpu=8G", "-e/tmp/err", "--gpus=1"]);
    expect(parseSlurmOptions(["http://c:1"], { agents: "1", time: "0" }).time).toBe("0"); // no limit
  });

  it.each(BAD)("%s", (_name, flags, message) => {
    let error: unknown;
    try {
      parseSlurmOptions(["http://c:1"], { agents: "1", ...flags }, "/home/ada");
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(SlurmOptionError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain("\n"); // one line
  });

  it("accepts the forms SLURM documents", () => {
    for (const time of ["0", "90", "00:30:00", "4:00:00", "2-00:00:00", "14-23:59:59"])
      expect(parseSlurmOptions(["http://c:1"], { agents: "1", time }).time).toBe(time);
    for (const mem of ["0", "512", "16G", "1T", "800M", "1024K"])
      expect(parseSlurmOptions(["http://c:1"], { agents: "1", mem }).mem).toBe(mem);
    expect(parseSlurmOptions(["http://c:1"], { agents: "1", gres: "gpu:a100-80gb:4" }).gres).toEqual({
      name: "gpu",
      type: "a100-80gb",
      count: 4,
    });
  });
});

describe("quoting", () => {
  const WORDS = [
    "",
    "plain",
    "it's",
    `'`,
    `''`,
    `a "b" c`,
    "$(touch PWNED)",
    "`id`",
    "a\nb",
    "ünï ✓",
    "\\",
    "$HOME",
  ];

  it.each(WORDS)("shellQuote(%j) is one bash word for exactly that string", (word) => {
    const out = execFileSync("bash", ["-c", `printf '%s' ${shellQuote(word)}`], { encoding: "utf8" });
    expect(out).toBe(word);
  });

  it("sbatchQuote escapes what sbatch's #SBATCH parser treats specially and refuses line breaks", () => {
    expect(sbatchQuote(`/a b/it's "x" #1 $(id) \\`)).toBe(`"/a b/it's \\"x\\" #1 $(id) \\\\"`);
    expect(() => sbatchQuote("a\nb")).toThrow(/line break/);
  });

  it("the hostile golden's #SBATCH lines read back, as sbatch parses them, to the intended options", () => {
    const options = scriptOptions(readFileSync(join(goldenDir, "hostile.sbatch"), "utf8"));
    expect(options).toContain(`--output=${HOSTILE_DIR.replaceAll("%", "%%")}/labsweep-%A_%a.log`);
    expect(options).toEqual([
      "--job-name=labsweep-agents",
      "--array=0-1",
      "--nodes=1",
      "--ntasks=1",
      "--cpus-per-task=1",
      `--output=${HOSTILE_DIR.replaceAll("%", "%%")}/labsweep-%A_%a.log`,
      "--signal=B:USR2@120",
      "--no-requeue",
      "--export=ALL",
    ]);
  });
});

/**
 * The arguments sbatch reads from a script's `#SBATCH` lines, modelled on `_get_argument` and
 * `_opt_batch_script` in SLURM's src/sbatch/opt.c: lines up to the first command; `"` or `'`
 * group (whitespace included), a backslash makes the next character literal, an unquoted `#`
 * starts a comment.
 */
function scriptOptions(script: string): string[] {
  const options: string[] = [];
  for (const line of script.split("\n")) {
    if (!line.startsWith("#SBATCH")) {
      if (/^\s*[^\s#]/.test(line)) break;
      continue;
    }
    let current: string | null = null;
    let quote: string | null = null;
    let escaped = false;
    for (const char of line.slice("#SBATCH".length)) {
      if (escaped) escaped = false;
      else if (char === "\\") {
        escaped = true;
        continue;
      } else if (quote !== null) {
        if (char === quote) {
          quote = null;
          continue;
        }
      } else if (char === '"' || char === "'") {
        quote = char;
        current ??= "";
        continue;
      } else if (char === "#") break;
      else if (/\s/.test(char)) {
        if (current !== null) options.push(current);
        current = null;
        continue;
      }
      current = (current ?? "") + char;
    }
    if (quote !== null) throw new Error(`sbatch: unmatched ${quote} in ${line}`);
    if (current !== null) options.push(current);
  }
  return options;
}

/** A fake `node` that records the arguments it was started with, NUL-separated. */
const RECORDING_NODE = `#!/bin/bash
printf '%s\\0' "$0" "$@" > "$RECORD"
`;

function setUpHostileInstall(): { dir: string; binary: AgentBinary; output: string; record: string } {
  const dir = tempDir("labsweep-slurm-");
  const install = join(dir, `it's "node" $(touch PWNED) \`touch PWNED\` ✓ dir\nline 2`);
  mkdirSync(join(install, "bin"), { recursive: true });
  const node = join(install, "bin", "node");
  writeFileSync(node, RECORDING_NODE);
  chmodSync(node, 0o755);
  const cli = join(install, "bin", "labsweep.js");
  writeFileSync(cli, "");
  return {
    dir,
    binary: { node, cli },
    output: join(dir, `o'brien "runs" $(touch PWNED) \`touch PWNED\` #1 100% ✓`),
    record: join(dir, "argv"),
  };
}

function runScript(script: string, dir: string, env: NodeJS.ProcessEnv) {
  const path = join(dir, "job.sbatch");
  writeFileSync(path, script);
  return spawnSync("bash", [path], {
    cwd: dir,
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: dir, ...env },
  });
}

describe("the hostile script under bash", () => {
  it("starts the agent with every path and URL intact, nothing expanded, and SLURM's GPUs", () => {
    const { dir, binary, output, record } = setUpHostileInstall();
    const spec = parseSlurmOptions(HOSTILE_SERVERS, { agents: "4", gres: "gpu:2", output }, dir);
    const result = runScript(sbatchScript(spec, binary), dir, {
      RECORD: record,
      LABSWEEP_TOKEN: "s3cret",
      SLURM_ARRAY_JOB_ID: "42",
      SLURM_ARRAY_TASK_ID: "3",
      CUDA_VISIBLE_DEVICES: "0,2",
    });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(readFileSync(record, "utf8").split("\0").slice(0, -1)).toEqual([
      binary.node,
      binary.cli,
      "agent",
      "--server",
      HOSTILE_SERVERS.join(","),
      "--slots",
      "2",
      "--give-up-after",
      "600",
      "--stop-before",
      "120",
      "--state",
      join(output, "agents", "42_3"),
      "--gpus",
      "0,2",
    ]);
    // Nothing in a value ran: no PWNED file anywhere.
    const found = spawnSync("find", [dir, "-name", "PWNED"], { encoding: "utf8" });
    expect(found.stdout).toBe("");
  });

  it("passes no --gpus when CUDA_VISIBLE_DEVICES is unset or not plain indices", () => {
    const { dir, binary, output, record } = setUpHostileInstall();
    const script = sbatchScript(parseSlurmOptions(["http://c:1"], { agents: "1", output }, dir), binary);
    for (const devices of [undefined, "GPU-5f8a-uuid", ""]) {
      const env: NodeJS.ProcessEnv = {
        RECORD: record,
        LABSWEEP_TOKEN: "t",
        SLURM_ARRAY_JOB_ID: "7",
        SLURM_ARRAY_TASK_ID: "0",
      };
      if (devices !== undefined) env.CUDA_VISIBLE_DEVICES = devices;
      expect(runScript(script, dir, env).status).toBe(0);
      expect(readFileSync(record, "utf8")).not.toContain("--gpus");
    }
  });

  it("stops with a clear message without LABSWEEP_TOKEN, outside a job array, or without labsweep on the node", () => {
    const { dir, binary, output, record } = setUpHostileInstall();
    const script = sbatchScript(parseSlurmOptions(["http://c:1"], { agents: "1", output }, dir), binary);
    const job = { RECORD: record, SLURM_ARRAY_JOB_ID: "7", SLURM_ARRAY_TASK_ID: "0" };
    const noToken = runScript(script, dir, job);
    expect(noToken.status).toBe(2);
    expect(noToken.stderr).toMatch(/^labsweep: LABSWEEP_TOKEN is not set/);
    const notArray = runScript(script, dir, { RECORD: record, LABSWEEP_TOKEN: "t" });
    expect(notArray.status).toBe(2);
    expect(notArray.stderr).toMatch(/^labsweep: not an element of a job array/);
    const missing = runScript(
      sbatchScript(parseSlurmOptions(["http://c:1"], { agents: "1", output }, dir), {
        ...binary,
        cli: join(dir, "nowhere", "labsweep.js"),
      }),
      dir,
      { ...job, LABSWEEP_TOKEN: "t", HOSTNAME: "node17" },
    );
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain(
      "is missing on node17: labsweep must be at the same path on every compute node",
    );
    expect(existsSync(record)).toBe(false);
  });
});
