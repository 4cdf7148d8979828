/**
 * The summary table's hand-computed fixture, shared by the in-process tests (results.summary)
 * and the end-to-end ones (cli.results, dashboard.summaryTable): two learning rates × two tags
 * (one of them hostile to every output format) × three seeds, where
 * - lr 0.1, plain: every seed finishes (acc .80/.82/.84, loss .5/.4/.3);
 * - lr 0.1, hostile: seed 2 fails and seed 3 reports no loss (acc .70/.74, loss .6 alone);
 * - lr 0.01, plain: every seed the same (acc .9, loss .2): std 0, the best of both columns;
 * - lr 0.01, hostile: only seed 1 finishes (acc .5, loss 1): n = 1.
 * A second phase, `extra`, repeats lr 0.1 plain: the same three tasks, placed in both phases.
 */

/** Commas, quotes, pipes, Markdown's and LaTeX's specials, HTML, and a newline. */
export const HOSTILE = "a,b \"q\" 's' |p| 50% _x_ *y* $z$ {w} #1 & ~^\\ <br> `c`\nline2";

export const SUMMARY_SWEEP = `command: python3 train.py
retries: 0
defaults:
  epochs: 5
main:
  output_dir: out
  combinations:
    - lr: [0.1, 0.01]
    - tag: ["plain", ${JSON.stringify(HOSTILE)}]
    - seed: [1, 2, 3]
extra:
  output_dir: out2
  combinations:
    - lr: [0.1]
    - tag: ["plain"]
    - seed: [1, 2, 3]
`;

/** A task's metrics, or null where it fails. */
export function fixtureMetrics(params: {
  lr: number;
  tag: string;
  seed: number;
}): Record<string, number> | null {
  const plain = params.tag === "plain";
  const seed = params.seed;
  if (params.lr === 0.1 && plain)
    return { acc: [0.8, 0.82, 0.84][seed - 1] as number, loss: [0.5, 0.4, 0.3][seed - 1] as number };
  if (params.lr === 0.1) return seed === 1 ? { acc: 0.7, loss: 0.6 } : seed === 3 ? { acc: 0.74 } : null;
  if (plain) return { acc: 0.9, loss: 0.2 };
  return seed === 1 ? { acc: 0.5, loss: 1 } : null;
}

/** The fixture's task script: the same metrics as fixtureMetrics, written as a real task would. */
export const SUMMARY_TRAIN = `import json, os, sys
p = json.loads(os.environ["LABSWEEP_PARAMS"])
plain = p["tag"] == "plain"
seed = p["seed"]
if p["lr"] == 0.1 and plain:
    m = {"acc": [0.8, 0.82, 0.84][seed - 1], "loss": [0.5, 0.4, 0.3][seed - 1]}
elif p["lr"] == 0.1:
    m = {"acc": 0.7, "loss": 0.6} if seed == 1 else {"acc": 0.74} if seed == 3 else None
elif plain:
    m = {"acc": 0.9, "loss": 0.2}
else:
    m = {"acc": 0.5, "loss": 1} if seed == 1 else None
if m is None:
    print("diverged", file=sys.stderr)
    sys.exit(1)
with open(os.environ["LABSWEEP_RESULT_FILE"], "w") as out:
    json.dump(m, out)
`;

/** t(0.975, df) from the t table's full-precision values (scipy.stats.t.ppf). */
const T = { 1: 12.706204736174698, 2: 4.302652729749464, 3: 3.182446305284263 };

/** The phase `main`'s rows, in the summary's order (lr ascending, then tag), computed by hand. */
export const EXPECTED_MAIN = [
  {
    params: { lr: 0.01, tag: HOSTILE },
    planned: 3,
    finished: 1,
    acc: { n: 1, mean: 0.5, std: null, ci: null },
    loss: { n: 1, mean: 1, std: null, ci: null },
  },
  {
    params: { lr: 0.01, tag: "plain" },
    planned: 3,
    finished: 3,
    acc: { n: 3, mean: 0.9, std: 0, ci: [0.9, 0.9] },
    loss: { n: 3, mean: 0.2, std: 0, ci: [0.2, 0.2] },
  },
  {
    params: { lr: 0.1, tag: HOSTILE },
    planned: 3,
    finished: 2,
    // std = √(((.70 − .72)² + (.74 − .72)²) / 1) = .028284; half = t(.975, 1) · std / √2
    acc: { n: 2, mean: 0.72, std: Math.sqrt(0.0008), ci: ci(0.72, Math.sqrt(0.0008), 2, T[1]) },
    loss: { n: 1, mean: 0.6, std: null, ci: null },
  },
  {
    params: { lr: 0.1, tag: "plain" },
    planned: 3,
    finished: 3,
    acc: { n: 3, mean: 0.82, std: 0.02, ci: ci(0.82, 0.02, 3, T[2]) },
    loss: { n: 3, mean: 0.4, std: 0.1, ci: ci(0.4, 0.1, 3, T[2]) },
  },
];

/** `--by lr` over phase main: lr 0.1 pools both tags (5 of 6 finished; loss from 4). */
export const EXPECTED_BY_LR_01 = {
  planned: 6,
  finished: 5,
  // acc .80 .82 .84 .70 .74: mean .78, squared deviations sum .0136, std √(.0136/4)
  acc: { n: 5, mean: 0.78, std: Math.sqrt(0.0034), ci: [0.7075991695691257, 0.8524008304308743] },
  // loss .5 .4 .3 .6: mean .45, squared deviations sum .05, std √(.05/3)
  loss: { n: 4, mean: 0.45, std: Math.sqrt(0.05 / 3), ci: ci(0.45, Math.sqrt(0.05 / 3), 4, T[3]) },
};

function ci(mean: number, std: number, n: number, t: number): [number, number] {
  const half = (t * std) / Math.sqrt(n);
  return [mean - half, mean + half];
}
