// The system packages the test suite drives for real: Debian's chromium (the dashboard's browser
// tests) and PostgreSQL's server binaries (the ledger tests start a throw-away server). So that
// `npm install && npm test` works on a fresh Debian machine, missing ones are installed with
// apt-get when that is possible (root); otherwise this says what to install, and the tests that
// need them fail with the same advice.
import { execSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";

const has = (command) => spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
const hasPostgres = () =>
  has("initdb") ||
  (existsSync("/usr/lib/postgresql") &&
    readdirSync("/usr/lib/postgresql").some((version) =>
      existsSync(`/usr/lib/postgresql/${version}/bin/initdb`),
    ));

const missing = [];
if (!existsSync(process.env.LABSWEEP_CHROMIUM ?? "/usr/bin/chromium")) missing.push("chromium");
if (!hasPostgres()) missing.push("postgresql");
if (!has("setpriv")) missing.push("util-linux");

if (missing.length > 0) {
  const canInstall = process.getuid?.() === 0 && has("apt-get");
  if (!canInstall) {
    console.error(
      `labsweep tests: missing system packages: ${missing.join(" ")} — install them (apt-get install -y ${missing.join(" ")})`,
    );
  } else {
    console.error(`labsweep tests: installing ${missing.join(" ")} (apt-get)…`);
    execSync(`apt-get update -qq && apt-get install -y -qq ${missing.join(" ")}`, { stdio: "inherit" });
  }
}
