/**
 * `labsweep slurm` through the CLI: --dry-run, submission through a fake `sbatch` on PATH (it
 * records its arguments, LABSWEEP_TOKEN from its environment and the script, then prints a job
 * id), and the bad-input paths, which write nothing. Run `npm run build` first.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";
import { CLI, type CliResult, runCli, tempDir, writeFile } from "./helpers/cli.js";

const TOKEN = "tok-3f9a'$(id)-s3cret";

/** Records argv (NUL-separated), the token it was given and the script; prints `FAKE_SBATCH_OUT`. */
const FAKE_SBATCH = `#!/bin/bash
printf '%s\\0' "$@" > "$FAKE_SBATCH_DIR/argv"
printf '%s' "\${LABSWEEP_TOKEN-<unset>}" > "$FAKE_SBATCH_DIR/token"
cp -- "\${@: -1}" "$FAKE_SBATCH_DIR/script"
if [ -n "\${FAKE_SBATCH_WARN:-}" ]; then echo "sbatch: warning: $FAKE_SBATCH_WARN" >&2; fi
if [ -n "\${FAKE_SBATCH_FAIL:-}" ]; then echo "sbatch: error: $FAKE_SBATCH_FAIL" >&2; exit 1; fi
echo "\${FAKE_SBATCH_OUT:-4242}"
`;

function fakeSbatch(): { bin: string; records: string; env: NodeJS.ProcessEnv } {
  const dir = tempDir("labsweep-sbatch-");
  const bin = join(dir, "bin");
  mkdirSync(bin);
  chmodSync(writeFile(bin, "sbatch", FAKE_SBATCH), 0o755);
  const records = join(dir, "records");
  mkdirSync(records);
  return {
    bin,
    records,
    env: { PATH: `${bin}${delimiter}${process.env.PATH}`, FAKE_SBATCH_DIR: records, LABSWEEP_TOKEN: "" },
  };
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exited ${result.code}:\n${result.stdout}\n${result.stderr}`).toBe(code);
}

const BASE = ["slurm", "--server", "http://head-node:7070", "--agents", "3", "--gres", "gpu:1"];

describe("labsweep slurm --dry-run", () => {
  it("prints the script with this installation's node and labsweep, and never the token", async () => {
    const dir = tempDir();
    const output = join(dir, "out dir");
    const result = await runCli([...BASE, "--output", output, "--dry-run", "--token", TOKEN], {
      cwd: dir,
      env: { LABSWEEP_TOKEN: TOKEN },
    });
    expectCode(result, 0);
    expect(result.stdout).toMatch(/^#!\/bin\/bash\n/);
    expect(result.stdout).toContain("#SBATCH --array=0-2\n");
    expect(result.stdout).toContain(`#SBATCH --output="${output}/labsweep-%A_%a.log"\n`);
    expect(result.stdout).toContain(`\nnode='${process.execPath}'\n`);
    expect(result.stdout).toContain(`\nlabsweep='${CLI}'\n`);
    expect(result.stdout).toContain("--slots 1");
    expect(result.stdout).not.toContain("tok-3f9a");
    expect(result.stderr).toBe("");
    expect(existsSync(output)).toBe(false); // nothing written
  });

  it("needs neither a token nor sbatch", async () => {
    const dir = tempDir();
    const result = await runCli([...BASE, "--dry-run"], {
      cwd: dir,
      env: { LABSWEEP_TOKEN: "", PATH: tempDir() },
    });
    expectCode(result, 0);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("notes that a loopback URL only reaches this machine", async () => {
    const result = await runCli(["slurm", "--server", "127.0.0.1:7070", "--agents", "1", "--dry-run"]);
    expectCode(result, 0);
    expect(result.stderr).toContain("http://127.0.0.1:7070 is this machine");
  });
});

describe("labsweep slurm (submitting)", () => {
  it("writes the script 0644 without the token, runs sbatch --parsable with the token only in its environment", async () => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const result = await runCli([...BASE, "--output", "runs", "--time", "04:00:00"], {
      cwd: dir,
      env: { ...sbatch.env, LABSWEEP_TOKEN: TOKEN },
    });
    expectCode(result, 0);
    const file = join(dir, "runs", "labsweep-agents.sbatch");
    expect(result.stdout).toBe(
      [
        "submitted job array 4242: 3 labsweep agent(s), elements 0-2",
        `script: ${file}`,
        `logs:   ${join(dir, "runs")}/labsweep-4242_N.log`,
        "watch:  labsweep agents --server http://head-node:7070",
        "stop:   scancel 4242",
        "",
      ].join("\n"),
    );
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(readdirSync(join(dir, "runs"))).toEqual(["labsweep-agents.sbatch"]); // no temp file left
    const script = readFileSync(file, "utf8");
    expect(script).toContain("#SBATCH --time=04:00:00\n");
    expect(script).not.toContain("tok-3f9a");
    expect(readFileSync(join(sbatch.records, "script"), "utf8")).toBe(script);
    // The script's options again, on the command line, where they win over SBATCH_* variables.
    const argv = readFileSync(join(sbatch.records, "argv"), "utf8").split("\0").slice(0, -1);
    expect(argv).toEqual([
      "--parsable",
      "--job-name=labsweep-agents",
      "--array=0-2",
      "--nodes=1",
      "--ntasks=1",
      "--cpus-per-task=1",
      "--gres=gpu:1",
      "--time=04:00:00",
      `--output=${join(dir, "runs")}/labsweep-%A_%a.log`,
      "--signal=B:USR2@120",
      "--no-requeue",
      "--export=ALL",
      file,
    ]);
    expect(readFileSync(join(sbatch.records, "token"), "utf8")).toBe(TOKEN);
  });

  it("passes --account, --qos, --constraint and each --sbatch-arg; notes the SBATCH_* variables its command line overrides", async () => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const result = await runCli(
      [
        ...BASE,
        "--output",
        dir,
        "--account",
        "lab-42",
        "--qos",
        "high",
        "--constraint",
        "a100|h100",
        "--partition",
        "gpu",
        "--sbatch-arg",
        "--exclusive",
        "--sbatch-arg=--comment=a b",
      ],
      {
        cwd: dir,
        env: {
          ...sbatch.env,
          LABSWEEP_TOKEN: TOKEN,
          SBATCH_PARTITION: "debug",
          SBATCH_ARRAY_INX: "0-99",
          SBATCH_MEM_PER_NODE: "1G", // no --mem given: the user's default stays
          SBATCH_EXPORT: "",
        },
      },
    );
    expectCode(result, 0);
    expect(result.stderr).toBe(
      "labsweep slurm: note: SBATCH_ARRAY_INX, SBATCH_PARTITION in the environment are overridden: labsweep passes its own options on sbatch's command line\n",
    );
    const argv = readFileSync(join(sbatch.records, "argv"), "utf8").split("\0").slice(0, -1);
    expect(argv).toEqual(
      expect.arrayContaining([
        "--array=0-2",
        "--partition=gpu",
        "--account=lab-42",
        "--qos=high",
        "--constraint=a100|h100",
        "--exclusive",
        "--comment=a b",
      ]),
    );
    expect(argv.some((arg) => arg.startsWith("--mem"))).toBe(false);
    const script = readFileSync(join(dir, "labsweep-agents.sbatch"), "utf8");
    expect(script).toContain('\n#SBATCH --constraint="a100|h100"\n#SBATCH --output=');
    expect(script).toContain('\n#SBATCH --exclusive\n#SBATCH "--comment=a b"\nset -euo pipefail\n');
  });

  it("refuses an --sbatch-arg that sets what labsweep sets itself: exit 2, nothing written", async () => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const result = await runCli([...BASE, "--output", join(dir, "out"), "--sbatch-arg", "--array=0-99"], {
      cwd: dir,
      env: { ...sbatch.env, LABSWEEP_TOKEN: TOKEN },
    });
    expectCode(result, 2);
    expect(result.stderr).toContain(
      `--sbatch-arg "--array=0-99": labsweep slurm sets sbatch's --array itself: use labsweep slurm's --agents`,
    );
    expect(existsSync(join(dir, "out"))).toBe(false);
    expect(existsSync(join(sbatch.records, "argv"))).toBe(false);
  });

  it("passes --token to sbatch's environment, not its arguments; shows a cluster and sbatch's warnings", async () => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const result = await runCli([...BASE, "--output", dir, "--token", TOKEN], {
      cwd: dir,
      env: { ...sbatch.env, FAKE_SBATCH_OUT: "977;gpucluster", FAKE_SBATCH_WARN: "mem rounded up" },
    });
    expectCode(result, 0);
    expect(result.stderr).toBe("sbatch: warning: mem rounded up\n");
    expect(result.stdout).toContain("submitted job array 977 on cluster gpucluster: 3 labsweep agent(s)");
    expect(readFileSync(join(sbatch.records, "token"), "utf8")).toBe(TOKEN);
    expect(readFileSync(join(sbatch.records, "argv"), "utf8")).not.toContain("tok-3f9a");
    expect(readFileSync(join(dir, "labsweep-agents.sbatch"), "utf8")).not.toContain("tok-3f9a");
  });

  it("reads the token from --token-file into sbatch's environment; never into the script or argv", async () => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const tokenFile = join(dir, "agent.token");
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const result = await runCli([...BASE, "--output", dir, "--token-file", tokenFile], {
      cwd: dir,
      env: sbatch.env,
    });
    expectCode(result, 0);
    expect(readFileSync(join(sbatch.records, "token"), "utf8")).toBe(TOKEN);
    expect(readFileSync(join(sbatch.records, "argv"), "utf8")).not.toContain(TOKEN);
    expect(readFileSync(join(dir, "labsweep-agents.sbatch"), "utf8")).not.toContain(TOKEN);
    expect(result.stdout).not.toContain(TOKEN);
  });

  it("reports sbatch's refusal with its message, exit 1", async () => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const result = await runCli([...BASE, "--output", dir, "--partition", "nope"], {
      cwd: dir,
      env: { ...sbatch.env, LABSWEEP_TOKEN: TOKEN, FAKE_SBATCH_FAIL: "invalid partition specified: nope" },
    });
    expectCode(result, 1);
    expect(result.stderr).toBe(
      "labsweep: sbatch exited 1: sbatch: error: invalid partition specified: nope\n",
    );
  });

  it("without sbatch on PATH: one clear error, exit 2, nothing written", async () => {
    const dir = tempDir();
    const result = await runCli([...BASE, "--output", "runs"], {
      cwd: dir,
      env: { PATH: tempDir(), LABSWEEP_TOKEN: TOKEN },
    });
    expectCode(result, 2);
    expect(result.stderr).toMatch(/^labsweep: sbatch is not on PATH: .*--dry-run/);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("without a token: one clear error, exit 2, nothing written, sbatch not run", async () => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const result = await runCli([...BASE, "--output", "runs"], { cwd: dir, env: sbatch.env });
    expectCode(result, 2);
    expect(result.stderr).toMatch(
      /^labsweep: labsweep slurm needs the coordinator's agent token: LABSWEEP_TOKEN in the environment, or --token-file FILE/,
    );
    expect(readdirSync(dir)).toEqual([]);
    expect(readdirSync(sbatch.records)).toEqual([]);
  });

  it.each<[string, string[], RegExp]>([
    ["no --server", ["slurm", "--agents", "2"], /needs the coordinator's URL as compute nodes reach it/],
    ["no --agents", ["slurm", "--server", "h:1"], /needs --agents N/],
    ["a bad --time", [...BASE, "--time", "3h"], /^labsweep: --time takes \[D-\]HH:MM:SS or whole minutes/],
    ["a bad --mem", [...BASE, "--mem", "16 G"], /^labsweep: --mem takes/],
    ["a bad --gres", [...BASE, "--gres", "gpu:$(id)"], /^labsweep: --gres takes name\[:type\]:count/],
    ["a bad --partition", [...BASE, "--partition", "a b"], /^labsweep: --partition takes/],
    ["a bad --job-name", [...BASE, "--job-name", "x;y"], /^labsweep: --job-name takes/],
    [
      "a newline in --output",
      [...BASE, "--output", "a\nb"],
      /^labsweep: --output "a\\nb" cannot be used: a line break/,
    ],
    [
      "a bad --server",
      ["slurm", "--server", "ftp://x", "--agents", "1"],
      /^labsweep: --server URLs are http/,
    ],
    ["an unknown option", [...BASE, "--nodes", "2"], /unknown option '--nodes'/],
  ])("%s: exit 2 naming the option, nothing written", async (_name, args, message) => {
    const sbatch = fakeSbatch();
    const dir = tempDir();
    const result = await runCli(args, {
      cwd: dir,
      env: { ...sbatch.env, LABSWEEP_TOKEN: TOKEN, LABSWEEP_SERVER: "" },
    });
    expectCode(result, 2);
    expect(result.stderr).toMatch(message);
    expect(readdirSync(dir)).toEqual([]);
    expect(readdirSync(sbatch.records)).toEqual([]);
  });
});
