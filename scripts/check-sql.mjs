// Architecture check: SQL lives in src/ledger/ only, so a dialect change touches one floor.
// Scans every TypeScript file outside src/ledger/ for SQL statements in its text. PENDING may
// list files allowed to hold SQL while it moves (a ratchet: a listed file that no longer holds
// any must leave the list); since issue 12 moved the last query it is empty.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

const PENDING = new Set([]);

/** A statement keyword followed by what only SQL puts after it. */
const SQL =
  /\b(SELECT\s+[\w*(]|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|CREATE\s+(TEMP\s+)?TABLE\b)/;

function* tsFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* tsFiles(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

const root = join(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "..");
const holding = [];
for (const file of tsFiles(join(root, "src"))) {
  const path = relative(root, file);
  if (path.startsWith("src/ledger/")) continue;
  if (SQL.test(readFileSync(file, "utf8"))) holding.push(path);
}
const unexpected = holding.filter((path) => !PENDING.has(path));
const moved = [...PENDING].filter((path) => !holding.includes(path));
for (const path of unexpected) console.error(`check-sql: ${path} holds SQL: move the query into src/ledger/`);
for (const path of moved)
  console.error(`check-sql: ${path} holds no SQL any more: remove it from PENDING in scripts/check-sql.mjs`);
console.log(`check-sql: ${holding.length} files outside src/ledger/ hold SQL`);
process.exit(unexpected.length + moved.length > 0 ? 1 : 0);
