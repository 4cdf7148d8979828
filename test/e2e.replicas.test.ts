/**
 * Replicated coordinators on one PostgreSQL database: any replica serves any agent, and the
 * duties every replica runs (lease expiry, gates, result files) are safe when they run at once.
 * Chaos: two replicas and six agents run a thousand short tasks while one replica and two
 * agents are SIGKILLed at random moments and restarted; at the end every task is in the results
 * file exactly once and the ledger agrees. Real PostgreSQL (started by the test), real processes.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/agent/freePort.js";
import { openPostgresDb } from "../src/ledger/postgresDb.js";
import { runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { type PgServer, startPostgres } from "./helpers/postgres.js";
import { mulberry32 } from "./helpers/random.js";

const TOKEN = "replicas-agent-token-0123456789";
let postgres: PgServer;

beforeAll(async () => {
  postgres = await startPostgres();
}, 120_000);
afterAll(async () => {
  await postgres?.stop();
});

function project(count: number): string {
  const dir = tempDir("labsweep-replicas-");
  const xs = Array.from({ length: count }, (_, i) => i + 1).join(", ");
  // Short tasks that write a metric: results land in out/final_results.csv.
  writeFile(dir, "task.sh", 'printf \'{"y": %s}\' "$1" > "$LABSWEEP_RESULT_FILE"\n');
  writeFile(
    dir,
    "sweep.yaml",
    `command: sh task.sh {x}\nretries: 2\nmain:\n  output_dir: out\n  combinations:\n    - x: [${xs}]\n`,
  );
  return dir;
}

interface Replica extends Watched {
  url: string;
  port: number;
}

async function replica(dir: string, store: string, name: string, port: number): Promise<Replica> {
  const watched = watch(
    startCli(
      [
        "serve",
        join(dir, "sweep.yaml"),
        "--store",
        store,
        "--state",
        join(dir, `replica-${name}`),
        "--agent-token",
        TOKEN,
        "--port",
        String(port),
        "--lease-seconds",
        "4",
      ],
      { cwd: dir },
    ),
    600_000,
  );
  await watched.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m, 60_000);
  return { ...watched, url: `http://127.0.0.1:${port}`, port };
}

function agent(dir: string, servers: string[], name: string): Watched {
  return watch(
    startCli(
      [
        "agent",
        "--server",
        servers.join(","),
        "--token",
        TOKEN,
        "--slots",
        "2",
        "--name",
        name,
        "--state",
        join(dir, `agent-${name}`),
        "--stay",
      ],
      { cwd: dir, env: { LABSWEEP_GPU_LOCK_DIR: join(dir, "locks"), PATH: "/usr/bin:/bin" } },
    ),
    600_000,
  );
}

async function stop(process: Watched, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (process.child.exitCode === null && process.child.signalCode === null) process.child.kill(signal);
  await process.result;
}

describe("replicated coordinators on PostgreSQL", () => {
  it("two replicas, six agents, a thousand tasks, kill -9 of a replica and two agents: every task once", async () => {
    const count = 1000;
    const dir = project(count);
    const store = await postgres.createDatabase();
    const rand = mulberry32(Number(process.env.CHAOS_SEED ?? 7));
    const ports = [await freePort(), await freePort()];
    const replicas: Replica[] = [];
    for (const [i, port] of ports.entries()) replicas.push(await replica(dir, store, `r${i}`, port));
    const urls = replicas.map((r) => r.url);
    const agents: Watched[] = [];
    // Half list replica 0 first, half replica 1: both serve agents from the start.
    for (let i = 0; i < 6; i++) agents.push(agent(dir, i % 2 === 0 ? urls : [...urls].reverse(), `a${i}`));
    const db = openPostgresDb(store, { max: 2 });
    const succeeded = async () =>
      Number((await db.one<{ n: number }>("SELECT count(*) AS n FROM tasks WHERE state = 'succeeded'"))?.n);
    try {
      const kills: string[] = [];
      // Kill -9 one replica and two agents at random moments while the sweep runs, restarting each.
      const chaos = async (): Promise<void> => {
        const at = (fraction: number) => Math.floor(count * fraction);
        const plan = [
          { when: at(0.15 + rand() * 0.2), what: "replica" as const, which: Math.floor(rand() * 2) },
          { when: at(0.2 + rand() * 0.5), what: "agent" as const, which: Math.floor(rand() * 6) },
          { when: at(0.3 + rand() * 0.5), what: "agent" as const, which: Math.floor(rand() * 6) },
        ].sort((a, b) => a.when - b.when);
        for (const step of plan) {
          while ((await succeeded()) < step.when) await new Promise((resolve) => setTimeout(resolve, 50));
          if (step.what === "replica") {
            const victim = replicas[step.which] as Replica;
            victim.child.kill("SIGKILL");
            await victim.result;
            kills.push(`replica r${step.which} at ${step.when}`);
            await new Promise((resolve) => setTimeout(resolve, rand() * 1000));
            replicas[step.which] = await replica(dir, store, `r${step.which}`, victim.port);
          } else {
            const victim = agents[step.which] as Watched;
            victim.child.kill("SIGKILL");
            await victim.result;
            kills.push(`agent a${step.which} at ${step.when}`);
            agents[step.which] = agent(
              dir,
              step.which % 2 === 0 ? urls : [...urls].reverse(),
              `a${step.which}`,
            );
          }
        }
      };
      await chaos();
      expect(kills).toHaveLength(3);
      const deadline = Date.now() + 300_000;
      while ((await succeeded()) < count && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await succeeded(), `kills: ${kills.join("; ")}`).toBe(count);
      // Result files catch up in the background: wait until nothing is owed.
      const owed = async () =>
        Number((await db.one<{ n: number }>("SELECT count(*) AS n FROM result_rows WHERE written = 0"))?.n);
      while ((await owed()) > 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await owed()).toBe(0);

      const rows = parse(readFileSync(join(dir, "out", "final_results.csv")), { columns: true }) as Array<
        Record<string, string>
      >;
      const xs = rows.map((row) => Number(row.x)).sort((a, b) => a - b);
      expect(xs.length, `kills: ${kills.join("; ")}`).toBe(count);
      expect(new Set(xs).size).toBe(count);
      expect(xs[0]).toBe(1);
      expect(xs.at(-1)).toBe(count);
      for (const row of rows) expect(Number(row.y)).toBe(Number(row.x));
      // The ledger agrees: one success per task, every owed row written once.
      expect(await db.one("SELECT count(*) AS n FROM attempts WHERE outcome = 'succeeded'")).toMatchObject({
        n: expect.any(Number),
      });
      const perTask = await db.all<{ task_id: number; n: number }>(
        "SELECT task_id, count(*) AS n FROM result_rows GROUP BY task_id HAVING count(*) <> 1",
      );
      expect(perTask).toEqual([]);
      const status = await runCli(["status", "--server", urls[0] as string, "--json"], {
        env: { LABSWEEP_TOKEN: TOKEN },
      });
      expect(status.code, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({ succeeded: count });
    } finally {
      await Promise.all(agents.map((a) => stop(a)));
      await Promise.all(replicas.map((r) => stop(r)));
      await db.close();
    }
  }, 600_000);
});
