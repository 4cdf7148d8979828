#!/usr/bin/env node
// Size budget for src/: no file over 400 lines and no function over 80.
// Long files and functions hide more than one concept; the budget keeps each
// module readable in one sitting. A declarative table (a literal of rows that
// reads top to bottom, such as a schema or a migration list) is exempt when the
// line above it says `// size: declarative table` — say why there, not here.
//
// Usage: node scripts/check-size.mjs [--report]   (--report lists, never fails)
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";

const FILE_LIMIT = 400;
const FUNCTION_LIMIT = 80;
const EXEMPT = "// size: declarative table";
const root = new URL("..", import.meta.url).pathname;
const report = process.argv.includes("--report");
// Over budget when the check arrived, each to be split (issue 12); remove an entry once it holds.
// An entry that holds already fails the check, so the list only shrinks.
const PENDING = new Set([]);
const seen = new Set();

function* sourceFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) yield path;
  }
}

function isFunctionLike(node) {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isFunctionExpression(node) ||
    ts.isArrowFunction(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node)
  );
}

function functionName(node, sourceFile) {
  if (node.name) return node.name.getText(sourceFile);
  const parent = node.parent;
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent))) {
    return parent.name.getText(sourceFile);
  }
  if (ts.isConstructorDeclaration(node)) return "constructor";
  return "(anonymous)";
}

function isExempt(lines, startLine) {
  // The marker sits on the line above the declaration (or above its comment block).
  for (let line = startLine - 1; line >= 0; line--) {
    const text = lines[line].trim();
    if (text === EXEMPT) return true;
    if (!text.startsWith("//") && !text.startsWith("*") && !text.startsWith("/*")) return false;
  }
  return false;
}

const problems = [];
for (const path of sourceFiles(join(root, "src"))) {
  const text = readFileSync(path, "utf8");
  const lines = text.split("\n");
  const name = relative(root, path);
  const lineCount = text.endsWith("\n") ? lines.length - 1 : lines.length;
  if (lineCount > FILE_LIMIT) {
    seen.add(name);
    if (!PENDING.has(name) || report) problems.push(`${name}: ${lineCount} lines (budget ${FILE_LIMIT})`);
  }
  const sourceFile = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const visit = (node) => {
    if (isFunctionLike(node) && node.body) {
      const start = sourceFile.getLineAndCharacterOfPosition(node.getStart(sourceFile)).line;
      const end = sourceFile.getLineAndCharacterOfPosition(node.end).line;
      const length = end - start + 1;
      const key = `${name}#${functionName(node, sourceFile)}`;
      if (length > FUNCTION_LIMIT && !isExempt(lines, statementLine(node, sourceFile))) {
        seen.add(key);
        if (!PENDING.has(key) || report)
          problems.push(
            `${name}:${start + 1}: function ${functionName(node, sourceFile)} is ${length} lines (budget ${FUNCTION_LIMIT})`,
          );
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sourceFile);
}

// The line of the statement that holds a function, so a marker above
// `export const x = () => …` counts for the arrow inside it.
function statementLine(node, sourceFile) {
  let holder = node;
  while (
    holder.parent &&
    !ts.isSourceFile(holder.parent) &&
    !ts.isClassDeclaration(holder.parent) &&
    !ts.isBlock(holder.parent)
  ) {
    holder = holder.parent;
  }
  return sourceFile.getLineAndCharacterOfPosition(holder.getStart(sourceFile)).line;
}

for (const entry of PENDING) {
  if (!seen.has(entry))
    problems.push(`${entry} is within budget now: remove it from PENDING in scripts/check-size.mjs`);
}
for (const problem of problems) console.log(problem);
if (problems.length > 0 && !report) {
  console.error(
    `check-size: ${problems.length} over budget. Split by concept, or mark a declarative table with "${EXEMPT}".`,
  );
  process.exit(1);
}
if (problems.length === 0) {
  console.log(
    PENDING.size === 0
      ? "check-size: every file and function within budget"
      : `check-size: within budget but for ${PENDING.size} pending (scripts/check-size.mjs PENDING)`,
  );
}
