import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";
import ts from "typescript";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  appendCsvRows,
  type CsvContent,
  formatCell,
  readCsvFile,
  writeCsvAtomically,
} from "../src/results/csvFile.js";

let dir: string;
let csvPath: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "labsweep-csv-"));
  csvPath = join(dir, "final_results.csv");
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function inode(path: string): Promise<number> {
  return (await stat(path)).ino;
}

function pick<T>(items: T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

function csvText(header: string[], rows: string[][]): string {
  return stringify([header, ...rows], { record_delimiter: "\n" });
}

/** csv-parse over the whole text, with the torn-tail rule applied: what readCsvFile promises. */
function referenceRead(text: string): CsvContent {
  const [header = [], ...rows] = parse(text, {
    bom: true,
    relax_column_count: true,
    skip_empty_lines: true,
    record_delimiter: ["\r\n", "\n"],
  });
  // Every row labsweep writes ends in "\n": a last row without one is torn, whatever its width.
  const tornTail = !text.endsWith("\n") && rows.length > 0;
  if (tornTail) rows.pop();
  return { header, rows, tornTail };
}

describe("readCsvFile", () => {
  it("returns null for a missing file", async () => {
    expect(await readCsvFile(csvPath)).toBeNull();
  });

  it("reads a BOM + CRLF file as pandas writes it on Windows", async () => {
    await writeFile(csvPath, '\ufeffrun,loss,note\r\n0,0.5,"two\r\nlines"\r\n1,0.25,\r\n');
    expect(await readCsvFile(csvPath)).toEqual({
      header: ["run", "loss", "note"],
      rows: [
        ["0", "0.5", "two\r\nlines"],
        ["1", "0.25", ""],
      ],
      tornTail: false,
    });
  });

  it("keeps short rows from other tools instead of throwing", async () => {
    await writeFile(csvPath, "a,b,c\n1,2\n3,4,5\n");
    expect((await readCsvFile(csvPath))?.rows).toEqual([
      ["1", "2"],
      ["3", "4", "5"],
    ]);
  });

  it("drops a half-written last row (wrong field count, no final newline)", async () => {
    await writeFile(csvPath, "a,b,c\n1,2,3\n4,5");
    expect(await readCsvFile(csvPath)).toEqual({
      header: ["a", "b", "c"],
      rows: [["1", "2", "3"]],
      tornTail: true,
    });
  });

  it("drops a last row cut inside a quoted cell, even right after an embedded newline", async () => {
    await writeFile(csvPath, 'a,b\n1,2\n3,"multi\n');
    expect(await readCsvFile(csvPath)).toEqual({ header: ["a", "b"], rows: [["1", "2"]], tornTail: true });
    await writeFile(csvPath, 'a,b\n1,2\n3,"multi\nli');
    expect(await readCsvFile(csvPath)).toMatchObject({ rows: [["1", "2"]], tornTail: true });
  });

  it("drops a last row cut inside its last cell: right field count, but no final newline", async () => {
    // `3,0.52\n` cut to `3,0.5`: the cells look whole, only the missing newline tells.
    await writeFile(csvPath, "a,b\n1,2\n3,0.5");
    expect(await readCsvFile(csvPath)).toEqual({ header: ["a", "b"], rows: [["1", "2"]], tornTail: true });
    await writeFile(csvPath, 'a,b\n1,2\n3,"0.5"');
    expect(await readCsvFile(csvPath)).toEqual({ header: ["a", "b"], rows: [["1", "2"]], tornTail: true });
  });

  it("reads quote-free files (fast path) exactly as csv-parse does", async () => {
    const pieces = ["a", "7", "é", ",", ",", "\n", "\n", "\r\n", "\r", " ", ""];
    for (let sample = 0; sample < 300; sample++) {
      const body = Array.from({ length: Math.floor(Math.random() * 40) }, () => pick(pieces)).join("");
      const text = (Math.random() < 0.3 ? "\ufeff" : "") + body;
      await writeFile(csvPath, text);
      expect(await readCsvFile(csvPath), JSON.stringify(text)).toEqual(referenceRead(text));
    }
  });

  it("rejects damage that is not a torn tail, naming the file", async () => {
    await writeFile(csvPath, 'a,b\n"1"x,2\n3,4\n');
    await expect(readCsvFile(csvPath)).rejects.toThrow(csvPath);
  });
});

describe("writeCsvAtomically", () => {
  it("creates missing directories and leaves no temp file behind", async () => {
    const nested = join(dir, "deep", "er", "final_results.csv");
    await writeCsvAtomically(nested, ["x"], [["1"]]);
    expect(await readFile(nested, "utf8")).toBe("x\n1\n");
    expect(await readdir(join(dir, "deep", "er"))).toEqual(["final_results.csv"]);
  });

  it("refuses rows whose width differs from the header", async () => {
    await expect(writeCsvAtomically(csvPath, ["a", "b"], [["1"]])).rejects.toThrow(/row 0 has 1 fields/);
  });
});

describe("appendCsvRows", () => {
  it("creates the file, appends in place, and reads back", async () => {
    const header = ["run", "lr", "acc"];
    await appendCsvRows(csvPath, header, [["0", formatCell(0.001), formatCell(0.9)]]);
    const before = await inode(csvPath);
    const result = await appendCsvRows(csvPath, header, [
      ["1", formatCell(0.01), formatCell(0.95)],
      ["2", formatCell(0.1), formatCell(null)],
    ]);
    expect(result).toEqual({ header });
    expect(await inode(csvPath)).toBe(before); // appended, not rewritten
    expect(await readFile(csvPath, "utf8")).toBe("run,lr,acc\n0,0.001,0.9\n1,0.01,0.95\n2,0.1,\n");
  });

  it("grows the header by rewriting, keeping old columns in place", async () => {
    await appendCsvRows(csvPath, ["run", "acc"], [["0", "0.9"]]);
    const before = await inode(csvPath);
    const result = await appendCsvRows(csvPath, ["loss", "run", "seed"], [["0.3", "1", "7"]]);
    expect(result).toEqual({ header: ["run", "acc", "loss", "seed"] });
    expect(await inode(csvPath)).not.toBe(before);
    expect(await readCsvFile(csvPath)).toEqual({
      header: ["run", "acc", "loss", "seed"],
      rows: [
        ["0", "0.9", "", ""],
        ["1", "", "0.3", "7"],
      ],
      tornTail: false,
    });
    expect(await readdir(dir)).toEqual(["final_results.csv"]);
  });

  it("appends rows with a subset or reordering of the columns without rewriting", async () => {
    await appendCsvRows(csvPath, ["run", "acc", "loss"], [["0", "0.9", "0.3"]]);
    const before = await inode(csvPath);
    const result = await appendCsvRows(csvPath, ["loss", "run"], [["0.2", "1"]]);
    expect(result).toEqual({ header: ["run", "acc", "loss"] });
    expect(await inode(csvPath)).toBe(before);
    expect((await readCsvFile(csvPath))?.rows).toEqual([
      ["0", "0.9", "0.3"],
      ["1", "", "0.2"],
    ]);
  });

  it("pads short rows from other tools when the header grows", async () => {
    await writeFile(csvPath, "a,b,c\n1,2\n");
    await appendCsvRows(csvPath, ["a", "d"], [["3", "4"]]);
    expect(await readFile(csvPath, "utf8")).toBe("a,b,c,d\n1,2,,\n3,,,4\n");
  });

  it("refuses to grow the header over a row longer than its header", async () => {
    await writeFile(csvPath, "a,b\n1,2,3\n");
    await expect(appendCsvRows(csvPath, ["a", "z"], [["1", "2"]])).rejects.toThrow(/data row 1 has 3 fields/);
    expect(await readFile(csvPath, "utf8")).toBe("a,b\n1,2,3\n");
  });

  it("quotes commas, quotes and newlines only where needed, and round-trips them", async () => {
    const header = ["plain", "tricky"];
    const rows = [
      ["a", "x,y"],
      ["b", 'say "hi"'],
      ["c", "line1\nline2"],
      ["d", "cr\rlf\r\n"],
      ["e", " padded "],
      ["f", "ünï😀"],
    ];
    await appendCsvRows(csvPath, header, rows.slice(0, 2));
    await appendCsvRows(csvPath, header, rows.slice(2));
    const text = await readFile(csvPath, "utf8");
    expect(text.startsWith('plain,tricky\na,"x,y"\nb,"say ""hi"""\nc,"line1\nline2"\n')).toBe(true);
    expect(text).toContain("\ne, padded \n");
    expect(await readCsvFile(csvPath)).toEqual({ header, rows, tornTail: false });
  });

  it("keeps an empty cell of a one-column file from turning into a skipped blank line", async () => {
    await appendCsvRows(csvPath, ["note"], [["first"], [""]]);
    await appendCsvRows(csvPath, ["note"], [[""], ["last"]]);
    expect((await readCsvFile(csvPath))?.rows).toEqual([["first"], [""], [""], ["last"]]);
  });

  it("repairs a torn tail atomically on the next append", async () => {
    await writeFile(csvPath, 'a,b,c\n1,2,3\n4,"5');
    const before = await inode(csvPath);
    await appendCsvRows(csvPath, ["a", "b", "c"], [["7", "8", "9"]]);
    expect(await inode(csvPath)).not.toBe(before);
    expect(await readFile(csvPath, "utf8")).toBe("a,b,c\n1,2,3\n7,8,9\n");
  });

  it("drops a last row without its final newline when it appends, rather than keep a cut value", async () => {
    await writeFile(csvPath, "a,b\n1,2\n3,0.5");
    await appendCsvRows(csvPath, ["a", "b"], [["3", "0.52"]]);
    expect(await readFile(csvPath, "utf8")).toBe("a,b\n1,2\n3,0.52\n");
  });

  it("appends to a BOM + CRLF file so that both old and new rows read back", async () => {
    await writeFile(csvPath, "\ufeffa,b\r\n1,2\r\n");
    await appendCsvRows(csvPath, ["a", "b"], [["3", "4"]]);
    expect(await readCsvFile(csvPath)).toEqual({
      header: ["a", "b"],
      rows: [
        ["1", "2"],
        ["3", "4"],
      ],
      tornTail: false,
    });
  });

  it("leaves an existing file untouched when there is nothing to append, even with new columns", async () => {
    await writeFile(csvPath, "a,b\n1,2\n3,");
    const before = await stat(csvPath);
    expect(await appendCsvRows(csvPath, ["c"], [])).toEqual({ header: ["a", "b"] });
    const after = await stat(csvPath);
    expect([after.ino, after.mtimeMs, after.size]).toEqual([before.ino, before.mtimeMs, before.size]);
  });

  it("queues concurrent appends to one file so that no row is lost", async () => {
    const appends = Array.from({ length: 20 }, (_, index) =>
      appendCsvRows(csvPath, ["run", `metric_${index % 4}`], [[String(index), "1"]]),
    );
    await Promise.all(appends);
    const content = await readCsvFile(csvPath);
    expect(content?.header).toHaveLength(5);
    expect(content?.rows.map((row) => Number(row[0])).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 20 }, (_, index) => index),
    );
  });

  it("keeps queuing after a failed append", async () => {
    await writeFile(csvPath, "a,b\n1,2,3\n");
    const failing = appendCsvRows(csvPath, ["z"], [["1"]]);
    const following = appendCsvRows(csvPath, ["a", "b"], [["4", "5"]]);
    await expect(failing).rejects.toThrow(/data row 1 has 3 fields/);
    await following;
    expect(await readFile(csvPath, "utf8")).toBe("a,b\n1,2,3\n4,5\n");
  });

  it("creates a missing file with just the header when there is nothing to append", async () => {
    expect(await appendCsvRows(csvPath, ["a", "b"], [])).toEqual({ header: ["a", "b"] });
    expect(await readFile(csvPath, "utf8")).toBe("a,b\n");
  });

  it("validates rows and header before touching the file", async () => {
    await expect(appendCsvRows(csvPath, ["a", "b"], [["1", "2"], ["3"]])).rejects.toThrow(
      /row 1 has 1 fields but the header has 2/,
    );
    await expect(appendCsvRows(csvPath, ["a", "a"], [])).rejects.toThrow(/"a" appears twice/);
    expect(await readCsvFile(csvPath)).toBeNull();
  });
});

describe("appendCsvRows when another tool changes the file between our appends", () => {
  const header = ["run", "note"];

  it("sees whole rows appended behind its back and appends after them", async () => {
    await appendCsvRows(csvPath, header, [["0", "ours"]]);
    appendFileSync(csvPath, '1,"theirs, quoted"\n');
    await appendCsvRows(csvPath, header, [["2", "ours"]]);
    expect(await readFile(csvPath, "utf8")).toBe('run,note\n0,ours\n1,"theirs, quoted"\n2,ours\n');
  });

  it("treats a row appended without a final newline as torn, never gluing its row onto it", async () => {
    await appendCsvRows(csvPath, header, [["0", "ours"]]);
    appendFileSync(csvPath, "1,theirs");
    await appendCsvRows(csvPath, header, [["2", "ours"]]);
    expect(await readFile(csvPath, "utf8")).toBe("run,note\n0,ours\n2,ours\n");
  });

  it("repairs a torn tail left by another writer after our last append", async () => {
    await appendCsvRows(csvPath, header, [["0", "ours"]]);
    const before = await inode(csvPath);
    appendFileSync(csvPath, '1,"cut off mid\nrow');
    await appendCsvRows(csvPath, header, [["2", "ours"]]);
    expect(await inode(csvPath)).not.toBe(before);
    expect(await readFile(csvPath, "utf8")).toBe("run,note\n0,ours\n2,ours\n");
  });

  it("follows a header rewritten in place (same inode)", async () => {
    await appendCsvRows(csvPath, header, [["0", "ours"]]);
    const before = await inode(csvPath);
    await writeFile(csvPath, "note,run,extra\nours,0,x\n");
    expect(await inode(csvPath)).toBe(before);
    expect(await appendCsvRows(csvPath, header, [])).toEqual({ header: ["note", "run", "extra"] });
    expect(await appendCsvRows(csvPath, header, [["1", "again"]])).toEqual({
      header: ["note", "run", "extra"],
    });
    expect(await readFile(csvPath, "utf8")).toBe("note,run,extra\nours,0,x\nagain,1,\n");
  });

  it("follows a file replaced by rename, even one of the same size", async () => {
    await appendCsvRows(csvPath, header, [["0", "ours"]]);
    const ours = await readFile(csvPath, "utf8");
    const theirs = "note,run\nours,0\n";
    expect(theirs.length).toBe(ours.length);
    await writeFile(join(dir, "replacement.csv"), theirs);
    await rename(join(dir, "replacement.csv"), csvPath);
    await appendCsvRows(csvPath, header, [["1", "again"]]);
    expect(await readFile(csvPath, "utf8")).toBe("note,run\nours,0\nagain,1\n");
  });

  it("recreates a file deleted behind its back, with the header", async () => {
    await appendCsvRows(csvPath, header, [["0", "ours"]]);
    await rm(csvPath);
    await appendCsvRows(csvPath, header, [["1", "again"]]);
    expect(await readFile(csvPath, "utf8")).toBe("run,note\n1,again\n");
  });

  it("keeps its knowledge of the header private from callers", async () => {
    const created = [...header];
    await appendCsvRows(csvPath, created, []);
    created.push("mutated");
    const returned = (await appendCsvRows(csvPath, header, [])).header;
    returned.push("mutated");
    const again = await appendCsvRows(csvPath, header, []);
    expect(again).toEqual({ header });
    again.header.reverse();
    await appendCsvRows(csvPath, header, [["0", "ours"]]);
    expect(await readFile(csvPath, "utf8")).toBe("run,note\n0,ours\n");
  });
});

describe("formatCell", () => {
  it("formats values the way results readers expect", () => {
    expect(formatCell(null)).toBe("");
    expect(formatCell(undefined)).toBe("");
    expect(formatCell(3)).toBe("3");
    expect(formatCell(3.0)).toBe("3");
    expect(formatCell(-0)).toBe("0");
    expect(formatCell(0.1 + 0.2)).toBe("0.30000000000000004");
    expect(formatCell(1e-7)).toBe("1e-7");
    expect(formatCell(Number.NaN)).toBe("NaN");
    expect(formatCell(12345678901234567890n)).toBe("12345678901234567890");
    expect(formatCell(true)).toBe("true");
    expect(formatCell(false)).toBe("false");
    expect(formatCell("a,b")).toBe("a,b");
    expect(formatCell([1, "x"])).toBe('[1,"x"]');
    expect(formatCell({ k: null })).toBe('{"k":null}');
    expect(formatCell(new Date("2024-01-02T03:04:05Z"))).toBe("2024-01-02T03:04:05.000Z");
  });
});

describe("performance", () => {
  const header = Array.from({ length: 20 }, (_, column) => `col_${column}`);
  const numericRows = () =>
    Array.from({ length: 100_000 }, (_, row) =>
      header.map((_, column) => (column === 0 ? `run-${row}` : formatCell(row * 0.001 + column))),
    );

  async function timeRead(label: string, rows: string[][]): Promise<void> {
    await writeCsvAtomically(csvPath, header, rows);
    const { size } = await stat(csvPath);
    const readStart = performance.now();
    const content = await readCsvFile(csvPath);
    const readMs = performance.now() - readStart;
    expect(content?.rows).toEqual(rows);
    const appendStart = performance.now();
    await appendCsvRows(csvPath, header, [rows[0] ?? []]);
    const appendMs = performance.now() - appendStart;
    console.log(
      `readCsvFile, 100k rows x 20 cols, ${label} (${(size / 1e6).toFixed(1)} MB): ${readMs.toFixed(0)} ms; ` +
        `appendCsvRows of one row to it: ${appendMs.toFixed(0)} ms`,
    );
  }

  it("reads 100,000 rows x 20 numeric columns (time printed)", async () => {
    await timeRead("numeric, no quotes", numericRows());
  });

  it("appends 2,000 one-row batches to a file of 50,000 rows (time printed)", async () => {
    const columns = ["run", "seed", "lr", "loss", "acc", "config"];
    const row = (index: number) => [
      `run-${index}`,
      String(index % 7),
      formatCell(index * 1e-5),
      formatCell(1 / (index + 1)),
      formatCell((index % 100) / 100),
      formatCell({ depth: index % 5, tag: "a,b" }),
    ];
    const initial = Array.from({ length: 50_000 }, (_, index) => row(index));
    // Written by "another tool", so the first append has to read the whole file once.
    await writeFile(csvPath, csvText(columns, initial));
    const start = performance.now();
    for (let index = 50_000; index < 52_000; index++) {
      await appendCsvRows(csvPath, columns, [row(index)]);
    }
    const ms = performance.now() - start;
    console.log(
      `appendCsvRows x 2,000 (one row each) onto 50,000 rows: ${ms.toFixed(0)} ms (${(ms / 2000).toFixed(2)} ms per append)`,
    );
    const content = await readCsvFile(csvPath);
    expect(content?.tornTail).toBe(false);
    expect(content?.header).toEqual(columns);
    expect(content?.rows).toHaveLength(52_000);
    expect(content?.rows).toEqual(Array.from({ length: 52_000 }, (_, index) => row(index)));
  });

  it("reads 100,000 rows x 20 columns with a quoted JSON column (time printed)", async () => {
    const rows = numericRows().map((row, index) => [
      ...row.slice(0, -1),
      formatCell({ lr: index * 1e-4, tag: "a,b" }),
    ]);
    await timeRead("one quoted JSON column", rows);
  });
});

// ---------------------------------------------------------------------------------------------
// Crash safety: child processes append to one file and are killed with SIGKILL at random moments,
// while this process keeps reading the file and checks every row after every kill.

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const BASE_COLUMNS = ["id", "round", "seq", "payload", "checksum"];
const ROUNDS = 30;

function checksum(id: string, payload: string): string {
  return createHash("sha256").update(`${id}\u0000${payload}`).digest("hex").slice(0, 16);
}

/** The module and the sibling modules it imports (as `./NAME.js`). */
const CSV_MODULES = ["csvFile", "csvFileError", "csvRead", "durableWrite"];

/** Node 20 cannot run TypeScript, so the child gets the modules transpiled to plain JS. */
async function writeChildProgram(workDir: string): Promise<string> {
  for (const name of CSV_MODULES) {
    const source = await readFile(join(repoRoot, `src/results/${name}.ts`), "utf8");
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    await writeFile(join(workDir, name === "csvFile" ? "csvFile.mjs" : `${name}.js`), outputText);
  }
  // The siblings are imported as `./NAME.js`: ES modules, as in the package.
  await writeFile(join(workDir, "package.json"), '{"type": "module"}\n');
  // Lets the transpiled module resolve csv-parse / csv-stringify from the temp dir.
  await symlink(join(repoRoot, "node_modules"), join(workDir, "node_modules"));
  const runner = join(workDir, "appender.mjs");
  await writeFile(runner, APPENDER_SOURCE);
  return runner;
}

// Two kinds of appender share this program. "module" appends through the real module in a tight
// loop (so kills also land in header-growth and repair rewrites: each group of rounds adds a
// column). "raw" uses the same technique (one write of whole rows on an 'a' handle) as a burst of
// multi-page writes with no reading or fsync between them, so the kill can land inside a write
// and leave a torn tail for the next "module" round to repair. Rows carry a checksum; payloads
// mix quotes, commas, newlines and multi-byte characters.
const APPENDER_SOURCE = `
import { createHash } from "node:crypto";
import { openSync, writeSync } from "node:fs";
import { stringify } from "csv-stringify/sync";
import { appendCsvRows } from "./csvFile.mjs";
const [path, round, mode, fileHeaderJson] = process.argv.slice(2);
const extra = "extra_" + Math.floor(Number(round) / 5);
const header = mode === "raw" ? JSON.parse(fileHeaderJson) : ["id", "round", "seq", "payload", "checksum", extra];
const alphabet = ["a", "b", "7", ",", '"', "\\n", " ", "é", "€", "😀"];
const payload = (maxLength) =>
  Array.from({ length: Math.floor(Math.random() * maxLength) }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
const checksum = (id, text) => createHash("sha256").update(id + "\\u0000" + text).digest("hex").slice(0, 16);
const makeRows = (firstSeq, count, maxLength) =>
  Array.from({ length: count }, (_, i) => {
    const id = round + "-" + (firstSeq + i);
    const text = payload(maxLength);
    const cells = { id, round, seq: String(firstSeq + i), payload: text, checksum: checksum(id, text), [extra]: id };
    return header.map((column) => cells[column] ?? "");
  });
if (mode === "raw") {
  // Everything is prepared before "ready", and writing starts on "go", which the parent follows
  // with SIGKILL almost at once: the few milliseconds of writing are when the kill lands.
  const batches = Array.from({ length: 8 }, (_, b) => stringify(makeRows(b * 40, 40, 1600), { record_delimiter: "\\n" }));
  const fd = openSync(path, "a");
  process.stdin.once("data", () => {
    for (const batch of batches) writeSync(fd, batch);
  });
  process.stdout.write("ready\\n");
} else {
  process.stdout.write("ready\\n");
  for (let seq = 0; ; ) {
    const count = Math.random() < 0.1 ? 200 : 1 + Math.floor(Math.random() * 8);
    await appendCsvRows(path, header, makeRows(seq, count, 400));
    seq += count;
  }
}
`;

interface CrashStats {
  snapshots: number;
  tornSnapshots: number;
  tornAfterKill: number;
  rawRounds: number;
  truncatedButWholeLooking: string[];
}

/**
 * Every row must be whole (right width, valid checksum, extra cells empty or its id), ids unique, and
 * each round's rows a gap-free prefix of what it appended (nothing lost or duplicated). No row may
 * fail the checksum, not even the last: a write cut inside the last field leaves a row with the
 * right width and no final newline, which reads as torn.
 */
function checkContent(content: CsvContent, stats: CrashStats): void {
  const extraColumns = content.header.flatMap((name, index) => (name.startsWith("extra_") ? [index] : []));
  expect(content.header.slice(0, BASE_COLUMNS.length)).toEqual(BASE_COLUMNS);
  const nextSeqByRound = new Map<string, number>();
  const ids = new Set<string>();
  content.rows.forEach((row, index) => {
    expect(row.length).toBe(content.header.length);
    const [id = "", round = "", seq = "", payload = "", sum = ""] = row;
    expect(ids.has(id)).toBe(false);
    ids.add(id);
    expect(Number(seq)).toBe(nextSeqByRound.get(round) ?? 0);
    nextSeqByRound.set(round, Number(seq) + 1);
    const whole =
      sum === checksum(id, payload) && extraColumns.every((at) => row[at] === "" || row[at] === id);
    // A write cut inside the last field leaves the right width but no final newline: read as torn.
    if (!whole) stats.truncatedButWholeLooking.push(id);
    expect(whole, `row ${id} (row ${index + 1} of ${content.rows.length}) is damaged`).toBe(true);
  });
}

function waitForReady(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.stdout?.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`appender exited early with code ${code}`)));
  });
}

async function readWhileRunning(exited: Promise<unknown>, stats: CrashStats): Promise<void> {
  let running = true;
  void exited.then(() => {
    running = false;
  });
  while (running) {
    const content = await readCsvFile(csvPath);
    if (content === null) continue;
    stats.snapshots++;
    if (content.tornTail) stats.tornSnapshots++;
    checkContent(content, stats);
  }
}

/**
 * Odd rounds write raw, but only onto a clean file: the raw writer does not repair, so it needs a
 * file that ends on a row boundary, and it needs the file's header to put cells in place.
 */
async function rawAppenderArgs(round: number): Promise<string[]> {
  if (round % 2 === 0) return ["module"];
  const content = await readCsvFile(csvPath);
  if (content === null || content.tornTail) return ["module"];
  const endsWithNewline = (await readFile(csvPath)).at(-1) === 0x0a;
  return endsWithNewline ? ["raw", JSON.stringify(content.header)] : ["module"];
}

describe("crash safety", () => {
  it("never shows a torn, lost or duplicated row while an appender is killed with SIGKILL", async () => {
    const runner = await writeChildProgram(dir);
    const stats: CrashStats = {
      snapshots: 0,
      tornSnapshots: 0,
      tornAfterKill: 0,
      rawRounds: 0,
      truncatedButWholeLooking: [],
    };
    for (let round = 0; round < ROUNDS; round++) {
      const args = [runner, csvPath, String(round), ...(await rawAppenderArgs(round))];
      const isRaw = args.length > 4;
      if (isRaw) stats.rawRounds++;
      const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] });
      let stderr = "";
      child.stderr?.on("data", (chunk) => {
        stderr += chunk;
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.once("exit", (_code, signal) => resolve(signal)),
      );
      await waitForReady(child);
      if (isRaw) child.stdin?.write("go\n");
      const killer = new Promise<void>((resolve) =>
        setTimeout(
          () => resolve(void child.kill("SIGKILL")),
          isRaw ? Math.random() * 2 : Math.random() * 150,
        ),
      );
      await Promise.all([readWhileRunning(exited, stats), killer]);
      expect(await exited, `appender died on its own: ${stderr}`).toBe("SIGKILL");
      const afterKill = await readCsvFile(csvPath);
      if (afterKill === null) continue;
      if (afterKill.tornTail) stats.tornAfterKill++;
      checkContent(afterKill, stats);
    }
    // A final append from this process repairs whatever the last kill left behind.
    const last = await readCsvFile(csvPath);
    expect(last).not.toBeNull();
    const header = last?.header ?? [];
    const row = header.map((name) => (name === "id" ? "final-0" : ""));
    await appendCsvRows(csvPath, header, [row]);
    const repaired = await readCsvFile(csvPath);
    expect(repaired?.tornTail).toBe(false);
    expect(repaired?.rows.at(-1)).toEqual(row);
    const tempFiles = (await readdir(dir)).filter((name) => name.includes(".tmp-"));
    console.log(
      `crash safety: ${ROUNDS} kills (${stats.rawRounds} of raw writers), ${repaired?.rows.length} rows, ${stats.snapshots} concurrent reads ` +
        `(${stats.tornSnapshots} saw an in-flight tail), ${stats.tornAfterKill} kills left a torn tail, ` +
        `${tempFiles.length} stale temp files, truncated-but-whole-looking rows: ${stats.truncatedButWholeLooking.length}`,
    );
    // 30 children, each read while it writes: 35 s on a quiet 2-core CI machine, past a minute on
    // a busy one. A hang still fails, at twice that.
  }, 120_000);
});
