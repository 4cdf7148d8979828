/**
 * `labsweep results` as a user runs it: a real sweep run by `labsweep run` (python tasks, some
 * failing, one with a hostile parameter value), then the summary read from its ledger in every
 * format, with and without the config, and bad flags answered with one line naming them.
 */
import { rmSync } from "node:fs";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Summary } from "../src/results/summary.js";
import { runCli, tempDir } from "./helpers/cli.js";
import { EXPECTED_MAIN, HOSTILE } from "./helpers/summaryFixture.js";
import { runSummarySweep } from "./helpers/summaryRun.js";

let dir: string;
let config: string;

beforeAll(async () => {
  ({ dir, config } = await runSummarySweep("labsweep-results-cli-"));
}, 150_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("labsweep results", () => {
  it("prints the table for the config's sweep, and for ./.labsweep without one", async () => {
    const table = await runCli(["results", config, "--phase", "main"], { cwd: dir });
    expect(table.stderr).toBe("");
    expect(table.code).toBe(0);
    const lines = table.stdout.split("\n");
    expect(lines[0]).toMatch(/^lr\s+tag\s+n\s+acc ↑\s+acc 95% CI\s+loss ↓\s+loss 95% CI$/);
    expect(lines[4]?.split(/ {2,}/)).toEqual([
      "0.1",
      HOSTILE.replace("\n", "\\n"),
      "2/3 †",
      "0.720 ± 0.028",
      "[0.466, 0.974]",
      "0.60 ± — (n=1)",
      "—",
    ]);
    // Without a config: the state dir of the current directory, as status and export look.
    const here = await runCli(["results", "--phase", "main"], { cwd: dir });
    expect(here.stdout).toBe(table.stdout);
  });

  it("writes JSON, CSV, Markdown and LaTeX from the same numbers", async () => {
    const json = await runCli(["results", config, "--format", "json"], { cwd: dir });
    expect(json.code).toBe(0);
    const summary = JSON.parse(json.stdout) as Summary;
    expect(summary.phase_column).toBe(true);
    expect(summary.phases).toEqual(["main", "extra"]);
    const main = summary.rows.filter((row) => row.phase === "main");
    expect(main.map((row) => [row.params, row.planned, row.finished])).toEqual(
      EXPECTED_MAIN.map((row) => [row.params, row.planned, row.finished]),
    );
    expect(main[3]?.metrics.acc?.ci_low).toBeCloseTo(EXPECTED_MAIN[3]?.acc.ci?.[0] as number, 9);

    const csv = await runCli(["results", config, "--format", "csv", "--by", "lr", "--metric", "acc"], {
      cwd: dir,
    });
    const records = parse(csv.stdout, { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(records[0] ?? {})).toEqual([
      "phase",
      "lr",
      "n",
      "planned",
      "incomplete",
      "acc_n",
      "acc_mean",
      "acc_std",
      "acc_ci95_low",
      "acc_ci95_high",
    ]);
    expect(
      records.map((record) => [record.phase, record.lr, record.n, record.planned, record.incomplete]),
    ).toEqual([
      ["main", "0.01", "4", "6", "true"],
      ["main", "0.1", "5", "6", "true"],
      ["extra", "0.1", "3", "3", "false"],
    ]);
    expect(Number(records[1]?.acc_mean)).toBeCloseTo(0.78, 12);

    const md = await runCli(
      ["results", config, "--format", "md", "--phase", "main", "--metric", "loss:max"],
      {
        cwd: dir,
      },
    );
    // loss:max: the highest mean loss (1, the n = 1 row) is the best.
    expect(md.stdout.split("\n")[2]).toMatch(
      /^\| 0\.01 \| a,b .*\\\|p\\\| .*<br>line2 \| 1\/3 † \| \*\*1\.00 ± —\*\* \| — \|$/,
    );
    const latex = await runCli(["results", config, "--format", "latex", "--phase", "main"], { cwd: dir });
    expect(latex.stdout).toContain("\\begin{tabular}{llrrrrr}");
    expect(latex.stdout).toContain("50\\% \\_x\\_");
  });

  it("names an unknown --by parameter, --metric, --phase or --format in one line, exit 2", async () => {
    const cases: Array<[string[], string]> = [
      [
        ["--by", "lr,sed"],
        'labsweep: unknown parameter "sed" in --by (parameters: epochs, lr, tag, seed) — did you mean "seed"?\n',
      ],
      [
        ["--metric", "acc,los"],
        'labsweep: unknown metric "los" in --metric: no finished task reported it as a number (metrics: acc, loss) — did you mean "loss"?\n',
      ],
      [
        ["--phase", "extar"],
        'labsweep: unknown phase "extar" (phases: main, extra) — did you mean "extra"?\n',
      ],
      [
        ["--format", "latx"],
        'labsweep: --format must be one of table, md, latex, csv, json, got "latx" — did you mean "latex"?\n',
      ],
    ];
    for (const [flags, message] of cases) {
      const result = await runCli(["results", config, ...flags], { cwd: dir });
      expect([result.code, result.stdout, result.stderr], flags.join(" ")).toEqual([2, "", message]);
    }
    const none = await runCli(["results"], { cwd: tempDir() });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(
      /^labsweep: no ledger in .*\.labsweep: start one with `labsweep run CONFIG…`/,
    );
  });
});
