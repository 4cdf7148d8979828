/**
 * End to end: `labsweep add` against a real `labsweep serve` gets the very checks `serve` gave
 * its own configs (schema, the 10-million-task guard with --yes, writable output dirs): a
 * refusal is exit 2 naming file:line:column or the field, the HTTP answer is a 400 with that
 * message, and the ledger and the disk are left as they were.
 * Run `npm run build` first: these tests run bin/labsweep.js, which runs dist/.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { API_PREFIX } from "../src/protocol/http.js";
import { type CliResult, collect, runCli, startCli, tempDir, writeFile } from "./helpers/cli.js";

const TOKEN = "e2e-add-token-7c1d2e";
/** `add` needs the admin token; the agent token no longer allows it. */
const ADMIN_TOKEN = "e2e-add-admin-token-9f3b5a";
const CLEAN_ENV = {
  LABSWEEP_AGENT_TOKEN: "",
  LABSWEEP_ADMIN_TOKEN: "",
  LABSWEEP_VIEWER_TOKEN: "",
  LABSWEEP_TOKEN: "",
  LABSWEEP_SERVER: "",
};

const SWEEP =
  "retries: 0\nmain:\n  command: echo main {x}\n  output_dir: out\n  combinations:\n    - x: [1, 2]\n";

/** 60⁴ = 12,960,000 tasks: over the 10 M guard. */
const HUGE_AXES = ["a", "b", "c", "d"]
  .map((name) => `    - ${name}: [${Array.from({ length: 60 }, (_, i) => i).join(", ")}]`)
  .join("\n");

async function serve(dir: string): Promise<{ url: string; stop(): Promise<CliResult> }> {
  const child = startCli(
    ["serve", join(dir, "sweep.yaml"), "--port", "0", "--agent-token", TOKEN, "--admin-token", ADMIN_TOKEN],
    {
      cwd: dir,
      env: CLEAN_ENV,
    },
  );
  const exit = collect(child, 60_000);
  const url = await new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes("\n")) resolve((text.split("\n")[0] ?? "").trim());
    });
    void exit.then((result) => reject(new Error(`serve exited ${result.code} first:\n${result.stderr}`)));
  });
  return {
    url,
    stop() {
      child.kill("SIGTERM");
      return exit;
    },
  };
}

function add(url: string, files: string[], extra: string[] = []): Promise<CliResult> {
  return runCli(["add", ...files, "--server", url, "--token", ADMIN_TOKEN, ...extra], {
    env: CLEAN_ENV,
    timeoutMs: 30_000,
  });
}

/** Unique active tasks in the served ledger, and its phases. */
async function ledgerState(url: string): Promise<{ unique: number; phases: string[] }> {
  const response = await fetch(`${url}${API_PREFIX}/status`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const body = (await response.json()) as { unique: number; phases: Array<{ name: string }> };
  return { unique: body.unique, phases: body.phases.map((phase) => phase.name) };
}

describe("labsweep add is checked like serve's own configs", () => {
  it("refuses a schema error, a huge grid without --yes and an unwritable output dir; writes nothing", async () => {
    const dir = tempDir();
    writeFile(dir, "sweep.yaml", SWEEP);
    const served = await serve(dir);
    try {
      const before = await ledgerState(served.url);
      expect(before).toEqual({ unique: 2, phases: ["main"] });

      writeFile(dir, "typo.yaml", "extra:\n  command: echo {y}\n  combinatons:\n    - y: [1]\n");
      const typo = await add(served.url, [join(dir, "typo.yaml")]);
      expect(typo.code, typo.stderr).toBe(2);
      expect(typo.stderr).toContain(`${join(dir, "typo.yaml")}:3:3: extra.combinatons: unknown key`);

      writeFile(
        dir,
        "huge.yaml",
        `huge:\n  command: echo {a} {b} {c} {d}\n  output_dir: huge\n  combinations:\n${HUGE_AXES}\n`,
      );
      const huge = await add(served.url, [join(dir, "huge.yaml")]);
      expect(huge.code, huge.stderr).toBe(2);
      expect(huge.stderr).toContain(`${join(dir, "huge.yaml")}:1:1: huge: the sweep has 12,960,002 tasks`);
      expect(huge.stderr).toContain("pass --yes to accept");

      // --yes reaches the coordinator: the grid passes, and the next check (a dir under a
      // regular file, which even root cannot create) refuses it before any task is synced.
      writeFile(
        dir,
        "blocked.yaml",
        `blocked:\n  command: echo {a} {b} {c} {d}\n  output_dir: sweep.yaml/out\n  combinations:\n${HUGE_AXES}\n`,
      );
      const blocked = await add(served.url, [join(dir, "blocked.yaml")], ["--yes"]);
      expect(blocked.code, blocked.stderr).toBe(2);
      expect(blocked.stderr).toContain(`${join(dir, "blocked.yaml")}:1:1: blocked.output_dir: output dir`);
      expect(blocked.stderr).toContain("is not a directory");
      expect(blocked.stderr).not.toContain("--yes");

      // The HTTP answer itself: 400 and the same message, for any client.
      const response = await fetch(`${served.url}${API_PREFIX}/configs`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({
          files: [
            {
              path: join(dir, "huge.yaml"),
              text: `huge:\n  command: echo {a}\n  combinations:\n${HUGE_AXES}\n`,
            },
          ],
        }),
      });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: string }).error).toMatch(
        /huge\.yaml:\d+:\d+: huge: the sweep has/,
      );

      expect(await ledgerState(served.url)).toEqual(before);
      expect(existsSync(join(dir, "huge"))).toBe(false);

      // A good file still goes in afterwards: the refusals left the served sweep as it was.
      writeFile(
        dir,
        "good.yaml",
        "good:\n  command: echo good {y}\n  output_dir: good\n  combinations:\n    - y: [7, 8]\n",
      );
      const good = await add(served.url, [join(dir, "good.yaml")]);
      expect(good.code, good.stderr).toBe(0);
      expect(good.stdout).toContain("added: 2 new tasks");
      expect(await ledgerState(served.url)).toEqual({ unique: 4, phases: ["main", "good"] });
    } finally {
      await served.stop();
    }
  }, 120_000);
});
