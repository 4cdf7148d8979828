import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CsvFileError } from "../src/results/csvFileError.js";
import { readCsvFile, readCsvRows } from "../src/results/csvRead.js";
import { mulberry32 } from "./helpers/random.js";

// readCsvRows is readCsvFile one row at a time (the resume scan's reader): the same header, rows
// and torn tail for every file, and the same errors.

let dir: string;
let csvPath: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "labsweep-csv-rows-"));
  csvPath = join(dir, "final_results.csv");
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readRows(path: string) {
  const source = await readCsvRows(path);
  return source && { header: source.header, rows: [...source.rows], tornTail: source.tornTail };
}

describe("readCsvRows", () => {
  it("reads what readCsvFile reads: blank lines, CRLF, a BOM, a torn last row, a header alone", async () => {
    const texts = [
      "",
      "\ufeff",
      "a,b",
      "a,b\n",
      "a,b\r\n1,2\r\n",
      "\ufeffa,b\r\n1,2\r\n3,4",
      "\n\na,b\n\n1,2\n\n",
      "a,b\n1,2\n3,0.5",
      "a,b\n1,2\n\r",
      "a,b\n1,2\r\r\n,\n",
      "a\r\nb\rc\n",
      'a,b\n1,"x,y"\n2,"z',
      'a,b\n"1\n2",3\n',
    ];
    for (const text of texts) {
      await writeFile(csvPath, text);
      expect(await readRows(csvPath), JSON.stringify(text)).toEqual(await readCsvFile(csvPath));
    }
  });

  it("reads random quote-free and quoted files as readCsvFile does", async () => {
    const next = mulberry32(14);
    const pieces = ["a", "7", "é", ",", ",", "\n", "\n", "\r\n", "\r", " ", "", '"'];
    for (let sample = 0; sample < 300; sample++) {
      const length = Math.floor(next() * 40);
      const quoted = next() < 0.2;
      const body = Array.from(
        { length },
        () => pieces[Math.floor(next() * (pieces.length - (quoted ? 0 : 1)))] as string,
      ).join("");
      const text = (next() < 0.3 ? "\ufeff" : "") + body;
      await writeFile(csvPath, text);
      const expected = await readCsvFile(csvPath).catch((error: unknown) => error);
      const got = await readRows(csvPath).catch((error: unknown) => error);
      if (expected instanceof Error) expect(got, `sample ${sample}`).toBeInstanceOf(CsvFileError);
      else expect(got, `sample ${sample}: ${JSON.stringify(text)}`).toEqual(expected);
    }
  });

  it("is null for a missing file and names a malformed one", async () => {
    expect(await readCsvRows(csvPath)).toBeNull();
    await writeFile(csvPath, 'a,b\n"1"x,2\n3,4\n');
    await expect(readCsvRows(csvPath)).rejects.toThrow(CsvFileError);
    await expect(readCsvRows(csvPath)).rejects.toThrow(csvPath);
  });
});
