/** A read-only command meeting a ledger older than it needs says what to do, not "no such table". */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { runCli, tempDir, writeFile } from "./helpers/cli.js";

describe("export --metrics on a ledger from before live metrics", () => {
  it("exits 2 naming the version and `labsweep migrate`, and works once migrated", async () => {
    const dir = tempDir();
    writeFile(
      dir,
      "sweep.yaml",
      'command: "true"\nonly:\n  output_dir: out\n  combinations:\n    - i: [1]\n',
    );
    expect((await runCli(["run", "sweep.yaml", "--no-dashboard"], { cwd: dir })).code).toBe(0);
    // Turn it back into a version-8 ledger, as an older labsweep left it.
    const db = new Database(join(dir, ".labsweep", "ledger.sqlite"));
    db.exec(`DROP TABLE metric_points; DROP TABLE metric_series; DROP TABLE artifacts;
      ALTER TABLE tasks DROP COLUMN oom_value; ALTER TABLE tasks DROP COLUMN oom_retries;
      ALTER TABLE phases DROP COLUMN priority; ALTER TABLE phases DROP COLUMN paused;
      DROP TABLE notifications; DROP TABLE snapshots;
      ALTER TABLE attempts DROP COLUMN git_commit; ALTER TABLE attempts DROP COLUMN git_dirty;
      ALTER TABLE attempts DROP COLUMN git_diff_sha256; ALTER TABLE tasks DROP COLUMN git_commit;
      ALTER TABLE tasks DROP COLUMN git_dirty; ALTER TABLE tasks DROP COLUMN git_diff_sha256;
      DROP INDEX tasks_waiting; DROP INDEX tasks_claimable;
      CREATE INDEX tasks_claimable ON tasks (state, runnable, active, id);
      DELETE FROM labsweep_migrations WHERE version >= 9`);
    db.close();

    const old = await runCli(["export", "sweep.yaml", "--metrics"], { cwd: dir });
    expect(old.code).toBe(2);
    expect(old.stderr).toContain("needs ledger version 9; this ledger is at 8");
    expect(old.stderr).toContain("labsweep migrate");
    expect(old.stderr).not.toContain("no such table");

    const migrate = await runCli(["migrate", "--state", join(dir, ".labsweep")], { cwd: dir });
    expect(migrate.code, migrate.stderr).toBe(0);
    const migrated = await runCli(["export", "sweep.yaml", "--metrics"], { cwd: dir });
    expect(migrated.code).toBe(0);
    expect(migrated.stdout.split("\n")[0]).toContain("metric");
  });
});
