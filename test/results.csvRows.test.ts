import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CsvFileError } from "../src/results/csvFileError.js";
import {
  parseCsvBytes,
  parseCsvBytesWithCsvParse,
  readCsvFile,
  readCsvRows,
} from "../src/results/csvRead.js";
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

  it("reads random files exactly as csv-parse reads them, and as they were written", async () => {
    // Rows of random cells, written as a CSV writer would (quoted only where needed, or at random
    // where the file has quotes anyway), "\n" or "\r\n" line by line, a blank line here and there
    // (skipped), maybe a BOM, maybe a row
    // cut short at the end. Half the files hold no quote, so the quote-free path reads them.
    const next = mulberry32(1407);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
    const plain = ["", "a", "x y", " 7 ", "é", "日本", "🎲", "1e-5", "4.0", "-0", "0.1", "NaN", "[1,2]"];
    const needsQuotes = ["a,b", ',"', 'say "hi"', "two\nlines", "cr\rx", "crlf\r\nin", '""'];
    const encode = (cell: string, quoteAll: boolean) =>
      quoteAll || /[",\r\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell;
    for (let sample = 0; sample < 400; sample++) {
      const quoted = next() < 0.5;
      const width = 2 + Math.floor(next() * 5);
      const cell = () => (quoted && next() < 0.3 ? pick(needsQuotes) : pick(plain));
      const records = Array.from({ length: 1 + Math.floor(next() * 8) }, () =>
        Array.from({ length: width }, cell),
      );
      const lines = records.map((record) =>
        record.map((value) => encode(value, quoted && next() < 0.2)).join(","),
      );
      let text =
        (next() < 0.3 ? "\ufeff" : "") +
        lines
          .map((line) => (next() < 0.1 ? pick(["\n", "\r\n"]) : "") + line + pick(["\n", "\r\n"]))
          .join("");
      const torn = records.length > 1 && next() < 0.3;
      if (torn) {
        // The last row cut short before its newline, as a crash mid-append leaves it.
        const last = lines.at(-1) as string;
        text = text.slice(0, text.lastIndexOf(last)) + last.slice(0, 1 + Math.floor(next() * last.length));
        records.pop();
      }
      const bytes = Buffer.from(text, "utf8");
      const label = `sample ${sample}: ${JSON.stringify(text)}`;
      const reference = parseCsvBytesWithCsvParse(bytes);
      expect({ header: reference.header, rows: reference.rows, tornTail: reference.tornTail }, label).toEqual(
        {
          header: records[0],
          rows: records.slice(1),
          tornTail: torn,
        },
      );
      expect(parseCsvBytes(bytes), label).toEqual(reference);
      await writeFile(csvPath, bytes);
      expect(await readRows(csvPath), label).toEqual({
        header: reference.header,
        rows: reference.rows,
        tornTail: reference.tornTail,
      });
    }
  });

  it("is null for a missing file and names a malformed one", async () => {
    expect(await readCsvRows(csvPath)).toBeNull();
    await writeFile(csvPath, 'a,b\n"1"x,2\n3,4\n');
    await expect(readCsvRows(csvPath)).rejects.toThrow(CsvFileError);
    await expect(readCsvRows(csvPath)).rejects.toThrow(csvPath);
  });
});
