// Architecture rules: what docs/architecture.md says about the floors, checked by `npm run arch`.
// Every rule is an error: issue 12's redesign met them all (a rule for a floor still being rebuilt
// would be a warning, printed, not failing, until it holds).
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "import circles make the floors meaningless",
      from: {},
      to: { circular: true },
    },
    {
      name: "sweep-is-pure",
      severity: "error",
      comment: "sweep/ turns configs into tasks: no other floor, no driver, no process or network I/O",
      from: { path: "^src/sweep/" },
      to: {
        path: [
          "^src/(?!sweep/)",
          "node_modules/(better-sqlite3|pg|fastify)/",
          "^(child_process|http|https|net)$",
        ],
      },
    },
    {
      name: "drivers-only-in-ledger",
      severity: "error",
      comment: "only ledger/ talks to a database driver",
      from: { path: "^src/", pathNot: "^src/ledger/" },
      to: { path: "node_modules/(better-sqlite3|pg|pg-[a-z-]+)/" },
    },
    {
      name: "tests-load-sqlite-through-the-driver",
      severity: "error",
      comment:
        "better-sqlite3 12.x aborts on Node 24.19+: tests load whichever build ledger/sqliteDriver.ts picks",
      from: { path: "^test/" },
      to: { path: "node_modules/better-sqlite3/" },
    },
    {
      name: "protocol-is-shared-vocabulary",
      severity: "error",
      comment: "the contract agents and coordinators share imports nothing but sweep/ types",
      from: { path: "^src/(protocol|api)/" },
      to: { path: "^src/(?!sweep/|protocol/|api/)" },
    },
    {
      name: "agent-not-above",
      severity: "error",
      comment: "an agent runs on another machine: it knows the protocol, never the ledger or the coordinator",
      from: { path: "^src/agent/" },
      to: { path: "^src/(ledger|coordinator|dashboard|results|cli|app)/" },
    },
    {
      name: "dashboard-not-coordinator",
      severity: "error",
      comment: "the dashboard is a plugin the coordinator mounts, not the other way round",
      from: { path: "^src/dashboard/" },
      to: { path: "^src/(coordinator|agent|cli|app)/" },
    },
    {
      name: "telemetry-is-a-leaf",
      severity: "error",
      comment:
        "GPU readings sit below the coordinator and the dashboard, which both read them: they know the protocol only",
      from: { path: "^src/telemetry/" },
      to: { path: "^src/(?!protocol/|telemetry/)" },
    },
    {
      name: "git-is-a-leaf",
      severity: "error",
      comment:
        "reading git (provenance, snapshots' file lists) sits below the agent and the coordinator, which both use it: it knows the protocol only",
      from: { path: "^src/git/" },
      to: { path: "^src/(?!protocol/|git/)" },
    },
    {
      name: "nothing-imports-cli-or-app",
      severity: "error",
      comment:
        "cli/ and app/ are the top floor: composition roots only the library surface (index.ts) imports",
      from: { path: "^src/", pathNot: "^src/((cli|app)/|index\\.ts$)" },
      to: { path: "^src/(cli|app)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^(dist|bench)/" },
  },
};
