/**
 * Artifacts end to end, with real python3 tasks writing into $LABSWEEP_WORK_DIR: through
 * `labsweep run` (the in-process agent copies them into place), and through `labsweep serve` and
 * a real `labsweep agent` with separate state dirs on loopback (no shared filesystem: the files
 * travel over HTTP), with the coordinator SIGKILLed mid-upload of a 20 MB file and restarted on
 * the same ledger. Run `npm run build` first.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Database } from "../src/ledger/sqliteDriver.js";
import { type CliResult, runCli, startCli, tempDir, type Watched, watch, writeFile } from "./helpers/cli.js";
import { fakeGpuEnv } from "./helpers/fakeGpus.js";

/**
 * Writes files into its work dir and its own view of them (sha256 by path, its cwd, the work
 * dir's mode) to facts-X.json beside the config, for the test to compare. With FAIL_FIRST, the
 * first attempt writes stale.txt and fails.
 */
const TASK_PY = `import hashlib, json, os, sys
import labsweep
x = int(sys.argv[1]); big = int(sys.argv[2])
work = labsweep.work_dir()
assert str(work) == os.environ["LABSWEEP_WORK_DIR"] and os.listdir(work) == []
mode = oct(os.stat(work).st_mode & 0o777)
marker = f"tried-{x}"
if os.environ.get("FAIL_FIRST") and not os.path.exists(marker):
    open(marker, "w").close()
    (work / "stale.txt").write_text("from the failed attempt")
    sys.exit(1)
(work / "plots" / "sub").mkdir(parents=True)
(work / "notes.txt").write_text(f"task {x}")
(work / "plots" / "loss.csv").write_text("step,loss\\n1,0.5\\n")
(work / "plots" / "sub" / "deep.txt").write_text("deep")
(work / "ignored.bin").write_bytes(b"not matched")
os.symlink("/etc/hostname", work / "link.txt")
if big:
    with open(work / "plots" / "big.bin", "wb") as f:
        for _ in range(big):
            f.write(os.urandom(1 << 20))
hashes = {}
for root, _, names in os.walk(work):
    for name in names:
        path = os.path.join(root, name)
        if not os.path.islink(path):
            hashes[os.path.relpath(path, work)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
json.dump({"hashes": hashes, "cwd": os.getcwd(), "mode": mode}, open(f"facts-{x}.json", "w"))
labsweep.result(x=x)
`;

function project(extra = "", big = 0): string {
  const dir = tempDir();
  writeFile(dir, "task.py", TASK_PY);
  writeFile(
    dir,
    "sweep.yaml",
    `command: python3 task.py {x} ${big}\nretries: 1\nbackoff: 0.1s\nartifacts: ["*.txt", "plots/**"]\n${extra}p1:\n  output_dir: out\n  combinations:\n    - x: [1, 2]\n`,
  );
  return dir;
}

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function expectCode(result: CliResult, code: number): void {
  expect(result.code, `exited ${result.code}:\n${result.stderr}`).toBe(code);
}

interface Row {
  task_id: number;
  attempt_id: number;
  path: string;
  size: number;
  sha256: string;
  signature: string;
  x: number;
}

function artifactRows(stateDir: string): Row[] {
  const db = new Database(join(stateDir, "ledger.sqlite"), { readonly: true });
  try {
    return db
      .prepare(
        `SELECT r.*, t.signature, json_extract(t.params_json, '$.x') AS x
           FROM artifacts r JOIN tasks t ON t.id = r.task_id ORDER BY t.id, r.path`,
      )
      .all() as Row[];
  } finally {
    db.close();
  }
}

const COLLECTED = ["notes.txt", "plots/big.bin", "plots/loss.csv", "plots/sub/deep.txt"];

/** Every collected file of every task is in each output dir with the hash the task computed. */
function expectStored(dir: string, outputDirs: string[], big: boolean): Row[] {
  const rows = artifactRows(join(dir, ".labsweep"));
  const expected = COLLECTED.filter((path) => big || path !== "plots/big.bin");
  for (const x of [1, 2]) {
    const facts = JSON.parse(readFileSync(join(dir, `facts-${x}.json`), "utf8")) as {
      hashes: Record<string, string>;
      cwd: string;
      mode: string;
    };
    expect(facts.cwd).toBe(dir);
    expect(facts.mode).toBe("0o700");
    const mine = rows.filter((row) => row.x === x);
    expect(mine.map((row) => row.path)).toEqual(expected);
    for (const row of mine) {
      expect(row.sha256).toBe(facts.hashes[row.path]);
      for (const outputDir of outputDirs) {
        const root = join(dir, outputDir, "artifacts", row.signature);
        expect(sha(join(root, ...row.path.split("/")))).toBe(row.sha256);
        // Never a file of the failed attempt, nor one no glob matched, nor a symlink's target.
        expect(existsSync(join(root, "stale.txt"))).toBe(false);
        expect(existsSync(join(root, "ignored.bin"))).toBe(false);
        expect(existsSync(join(root, "link.txt"))).toBe(false);
      }
    }
  }
  return rows;
}

describe("artifacts through labsweep run", () => {
  it("are collected from each attempt's work dir and stored under every output dir, never mixing attempts", async () => {
    const dir = project("p2:\n  output_dir: out2\n  combinations:\n    - x: [1, 2]\n");
    const result = await runCli(["run", join(dir, "sweep.yaml"), "--no-dashboard"], {
      cwd: dir,
      env: { FAIL_FIRST: "1" },
    });
    expectCode(result, 0);
    const rows = expectStored(dir, ["out", "out2"], false);
    // The stored files are the second attempt's: the first failed, leaving stale.txt behind it.
    const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
    const second = db.prepare("SELECT id FROM attempts WHERE number = 2 ORDER BY task_id").all() as Array<{
      id: number;
    }>;
    db.close();
    expect(new Set(rows.map((row) => row.attempt_id))).toEqual(new Set(second.map((row) => row.id)));
    // Work dirs are emptied once the attempt ended (their files were taken), ready for reuse.
    for (const work of readdirSync(join(dir, ".labsweep", "work")))
      expect(readdirSync(join(dir, ".labsweep", "work", work))).toEqual([]);
  });

  it("a success whose artifacts are over artifact_limit_mb fails, saying so", async () => {
    const dir = project("artifact_limit_mb: 0.000001\n");
    const result = await runCli(["run", join(dir, "sweep.yaml"), "--no-dashboard"], { cwd: dir });
    expect(result.code).not.toBe(0);
    const failed = readFileSync(join(dir, ".labsweep", "failed_experiments.csv"), "utf8");
    expect(failed).toMatch(/artifacts are over 1 bytes \(artifact_limit_mb: 0\.000001\)/);
    expect(existsSync(join(dir, "out", "artifacts"))).toBe(false);
  });
});

/**
 * A loopback proxy to the coordinator that passes the agent's bytes at `bytesPerSecond`, so a
 * test can act mid-upload, and notes each PUT's offset. Stopped by the test.
 */
async function throttledProxy(targetPort: number, bytesPerSecond: number) {
  const offsets: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host: "127.0.0.1", port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on("error", close);
      socket.on("close", close);
    }
    upstream.pipe(client);
    client.on("data", (chunk: Buffer) => {
      for (const match of chunk.toString("latin1", 0, 4096).matchAll(/PUT \S*\?offset=(\d+)/g))
        offsets.push(Number(match[1]));
      upstream.write(chunk);
      client.pause();
      setTimeout(() => client.resume(), (chunk.length / bytesPerSecond) * 1000);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    offsets,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function serve(dir: string, port: number, extra: string[] = []): Promise<Watched> {
  const served = watch(
    startCli(["serve", join(dir, "sweep.yaml"), "--exit-when-done", "--port", String(port), ...extra], {
      cwd: dir,
    }),
  );
  await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
  return served;
}

/** The bytes of the largest upload part now in the coordinator's `.parts` dir. */
function largestPart(dir: string): number {
  const parts = join(dir, "out", "artifacts", ".parts");
  if (!existsSync(parts)) return 0;
  return Math.max(0, ...readdirSync(parts).map((name) => statSync(join(parts, name)).size));
}

describe("artifacts through serve and a remote agent", () => {
  it("arrive with checksums intact after the coordinator is SIGKILLed mid-upload: the upload resumes", async () => {
    const dir = project("", 20);
    const port = await freePort();
    let served = await serve(dir, port);
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    const proxy = await throttledProxy(port, 8 * 1024 * 1024);
    try {
      const agentState = join(tempDir(), "agent");
      const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir(), LABSWEEP_TOKEN: token };
      const args = ["agent", "--server", proxy.url, "--state", agentState, "--slots", "1", "--grace", "1"];
      const worker = watch(startCli(args, { env, cwd: tempDir() }));
      const deadline = Date.now() + 60_000;
      while (largestPart(dir) < 4 * 1024 * 1024 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 20));
      const before = largestPart(dir);
      expect(before).toBeGreaterThan(0);
      expect(before).toBeLessThan(20 * 1024 * 1024);
      served.child.kill("SIGKILL");
      await served.result;
      served = await serve(dir, port);
      const [agentExit, serveExit] = await Promise.all([worker.result, served.result]);
      expectCode(agentExit, 0);
      expectCode(serveExit, 0);
      // After the restart, the upload went on from what the coordinator held, not from 0.
      expect(proxy.offsets.some((offset) => offset >= before)).toBe(true);
      expectStored(dir, ["out"], true);
      // Nothing left in the agent's outbox: reports sent, their artifacts deleted.
      expect(readdirSync(join(agentState, "outbox")).filter((name) => name !== "artifacts")).toEqual([]);
      expect(readdirSync(join(agentState, "outbox", "artifacts"))).toEqual([]);
      expect(readdirSync(join(dir, "out", "artifacts", ".parts"))).toEqual([]);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it("an upload longer than a lease keeps its attempt's lease: no task runs twice", async () => {
    // Two 6 MB files at 2 MB/s, 1 s leases: each upload takes three leases' time, with nothing
    // else running on the agent while the last one goes (no other lease to renew, no GPUs).
    const dir = project("", 6);
    const port = await freePort();
    const served = await serve(dir, port, ["--lease-seconds", "1"]);
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    const proxy = await throttledProxy(port, 2 * 1024 * 1024);
    try {
      const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir(), LABSWEEP_TOKEN: token };
      const args = ["agent", "--server", proxy.url, "--state", join(tempDir(), "agent"), "--slots", "1"];
      const worker = watch(startCli(args, { env, cwd: tempDir() }));
      const [agentExit, serveExit] = await Promise.all([worker.result, served.result]);
      expectCode(agentExit, 0);
      expectCode(serveExit, 0);
      const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
      const attempts = db.prepare("SELECT task_id, count(*) AS n FROM attempts GROUP BY task_id").all();
      db.close();
      expect(attempts).toEqual([
        { task_id: 1, n: 1 },
        { task_id: 2, n: 1 },
      ]);
      expectStored(dir, ["out"], true);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it("a file over the coordinator's --artifact-limit fails its attempt at the agent, saying so; nothing is stored", async () => {
    const dir = project();
    writeFile(
      dir,
      "sweep.yaml",
      readFileSync(join(dir, "sweep.yaml"), "utf8").replace("retries: 1", "retries: 0"),
    );
    const port = await freePort();
    const served = watch(
      startCli(
        [
          "serve",
          join(dir, "sweep.yaml"),
          "--exit-when-done",
          "--port",
          String(port),
          "--artifact-limit",
          "0.00001",
        ],
        {
          cwd: dir,
        },
      ),
    );
    await served.waitFor(/^http:\/\/127\.0\.0\.1:\d+$/m);
    const token = (await runCli(["token", "--state", join(dir, ".labsweep")])).stdout.trim();
    const env = { ...fakeGpuEnv([]), LABSWEEP_GPU_LOCK_DIR: tempDir(), LABSWEEP_TOKEN: token };
    const args = [
      "agent",
      "--server",
      `http://127.0.0.1:${port}`,
      "--state",
      join(tempDir(), "agent"),
      "--grace",
      "1",
    ];
    const worker = watch(startCli(args, { env, cwd: tempDir() }));
    const [agentExit, serveExit] = await Promise.all([worker.result, served.result]);
    expectCode(agentExit, 0);
    expect(serveExit.code, serveExit.stderr).not.toBeNull();
    expect(artifactRows(join(dir, ".labsweep"))).toEqual([]);
    expect(agentExit.stderr).toMatch(
      /attempt \d+ is reported failed: the coordinator refused its artifact "plots\/loss\.csv"/,
    );
    const db = new Database(join(dir, ".labsweep", "ledger.sqlite"), { readonly: true });
    const states = db.prepare("SELECT state FROM tasks").all() as Array<{ state: string }>;
    const errors = db.prepare("SELECT error FROM attempts").all() as Array<{ error: string }>;
    db.close();
    expect(states.map((task) => task.state)).toEqual(["failed", "failed"]);
    // The process succeeded; the attempt failed at the coordinator's limit, which it names.
    for (const { error } of errors)
      expect(error).toMatch(
        /the coordinator refused its artifact "plots\/loss\.csv" \(413: .*--artifact-limit/,
      );
  }, 60_000);
});
