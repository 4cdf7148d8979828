import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, afterEach, beforeAll } from "vitest";
import { freePort } from "../../src/agent/freePort.js";
import type { Db } from "../../src/ledger/db.js";
import { openLedger } from "../../src/ledger/openLedger.js";

const run = promisify(execFile);

/** A PostgreSQL server of the test's own, in a temp dir, on 127.0.0.1 and a free port. */
export interface PgServer {
  /** `postgres://labsweep@127.0.0.1:PORT/postgres`: the admin database. */
  adminUrl: string;
  port: number;
  /** Creates an empty database and returns its URL; each test gets its own. */
  createDatabase(): Promise<string>;
  /**
   * Stops the server (`pg_ctl stop -m fast`: every connection is cut with 57P01 admin_shutdown,
   * as a service restart does), keeps it down for `downMs`, and starts it again on the same port
   * and data. Not `-m immediate`: with this server's durability off, a crash loses commits it
   * already acknowledged, which no client could survive.
   */
  restart(options?: { downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Where initdb/pg_ctl live: $LABSWEEP_PG_BIN, else PATH (CI's /usr/local/bin links), else
 * Debian's /usr/lib/postgresql/<newest>/bin.
 */
export function postgresBinDir(): string {
  const candidates = [process.env.LABSWEEP_PG_BIN, ...(process.env.PATH ?? "").split(":"), "/usr/local/bin"];
  for (const dir of candidates) {
    if (dir && existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"))) return dir;
  }
  const debian = "/usr/lib/postgresql";
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((name) => existsSync(join(debian, name, "bin", "initdb")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(debian, versions[0], "bin");
  }
  throw new Error(
    "PostgreSQL's initdb/pg_ctl were not found (PATH, /usr/lib/postgresql/*/bin, $LABSWEEP_PG_BIN): install Debian's postgresql package (bash .ci/run does)",
  );
}

/**
 * Starts a throw-away server: initdb into a temp dir, pg_ctl start on 127.0.0.1 and a free port
 * (plus a unix socket in the temp dir), trust auth for the `labsweep` superuser. PostgreSQL
 * refuses to run as root, so as root the server runs as the `postgres` user. Throws — the test fails, never skips — when it cannot.
 */
export async function startPostgres(): Promise<PgServer> {
  const bin = postgresBinDir();
  const root = mkdtempSync(join(tmpdir(), "labsweep-pg-"));
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? postgresUser() : null;
  if (owner) chownSync(root, owner.uid, owner.gid);
  const as = (file: string, args: string[]) =>
    owner
      ? run("setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", join(bin, file), ...args])
      : run(join(bin, file), args);
  const data = join(root, "data");
  const log = join(root, "server.log");
  let port = 0;
  // Durability off: a test server need not survive a power loss.
  const optionsFor = (serverPort: number): string =>
    [
      "listen_addresses=127.0.0.1",
      `port=${serverPort}`,
      `unix_socket_directories=${root}`,
      "fsync=off",
      "synchronous_commit=off",
      "full_page_writes=off",
      "max_connections=200",
    ]
      .map((setting) => `-c ${setting}`)
      .join(" ");
  try {
    await as("initdb", ["-D", data, "-U", "labsweep", "--auth=trust", "-E", "UTF8", "--no-sync", "-N"]);
    // Another process may take the free port before the server binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await as("pg_ctl", ["-D", data, "-l", log, "-w", "-t", "60", "-o", optionsFor(port), "start"]);
        break;
      } catch (error) {
        if (attempt >= 3) throw error;
      }
    }
  } catch (error) {
    const tail = existsSync(log) ? readFileSync(log, "utf8").slice(-2000) : "";
    rmSync(root, { recursive: true, force: true });
    throw new Error(`could not start PostgreSQL from ${bin}: ${(error as Error).message}\n${tail}`, {
      cause: error,
    });
  }
  const adminUrl = `postgres://labsweep@127.0.0.1:${port}/postgres`;
  let databases = 0;
  // A test process that ends without afterAll (killed by a timeout, Ctrl-C) still stops its
  // server: best effort, synchronously, as the process exits.
  const stopAtExit = (): void => {
    const command = owner
      ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", join(bin, "pg_ctl")]
      : [join(bin, "pg_ctl")];
    try {
      execFileSync(command[0] as string, [...command.slice(1), "-D", data, "-m", "immediate", "stop"], {
        stdio: "ignore",
      });
    } catch (error) {
      process.stderr.write(`could not stop the test PostgreSQL in ${root}: ${(error as Error).message}\n`);
    }
    rmSync(root, { recursive: true, force: true });
  };
  process.once("exit", stopAtExit);
  return {
    adminUrl,
    port,
    async createDatabase() {
      const name = `t${process.pid}_${++databases}`;
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://labsweep@127.0.0.1:${port}/${name}`;
    },
    async restart({ downMs = 0 } = {}) {
      await as("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]);
      await new Promise((resolve) => setTimeout(resolve, downMs));
      await as("pg_ctl", ["-D", data, "-l", log, "-w", "-t", "60", "-o", optionsFor(port), "start"]);
    },
    async stop() {
      process.off("exit", stopAtExit);
      await as("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((entry) => entry.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (!uid || !gid) throw new Error("running as root, but there is no `postgres` user to run PostgreSQL as");
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * Starts one server for the calling test file (beforeAll) and stops it after its last test.
 * Returns an accessor: it throws the reason the server could not start, so every test that needs
 * PostgreSQL fails with it — counted as failed, never skipped — while the others still run.
 */
export function usePostgres(): () => PgServer {
  let server: PgServer | null = null;
  let failure: unknown = null;
  beforeAll(async () => {
    try {
      server = await startPostgres();
    } catch (error) {
      failure = error;
    }
  });
  afterAll(async () => {
    await server?.stop();
  });
  return () => {
    if (server) return server;
    throw new Error("the test PostgreSQL server did not start", { cause: failure });
  };
}

/** One ledger backend of the shared behavioural suite. */
export interface LedgerBackend {
  name: "sqlite" | "postgres";
  /**
   * A fresh, migrated ledger of its own (a temp state dir; on PostgreSQL a new database), closed
   * and removed after the test. `store` opens the same ledger again (another pool or process).
   */
  open(): Promise<{ db: Db; store: string; stateDir: string }>;
  /** Another connection (pool) to a ledger `open` made; closed after the test. */
  reopen(store: string, stateDir: string): Promise<Db>;
}

/**
 * Registers this test file's hooks and returns both backends for `describe.each`: one
 * PostgreSQL server for the whole file (usePostgres: a failure to start fails the PostgreSQL
 * tests, never skips them), one database per test, and SQLite files in temp dirs.
 */
export function useLedgerBackends(): LedgerBackend[] {
  const server = usePostgres();
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });
  const reopen = async (store: string, stateDir: string) => {
    const db = await openLedger(stateDir, { store });
    cleanup.push(() => db.close());
    return db;
  };
  const stateDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "labsweep-ledger-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };
  return [
    {
      name: "sqlite",
      async open() {
        const dir = stateDir();
        const store = join(dir, "ledger.sqlite");
        return { db: await reopen(store, dir), store, stateDir: dir };
      },
      reopen,
    },
    {
      name: "postgres",
      async open() {
        const store = await server().createDatabase();
        const dir = stateDir();
        return { db: await reopen(store, dir), store, stateDir: dir };
      },
      reopen,
    },
  ];
}
